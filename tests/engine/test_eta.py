"""ETA model: driven by a fake clock through a synthetic run whose true durations are known."""

from __future__ import annotations

from edgeopt.eta import SEARCH_SHARE, EtaModel, prior_unit_seconds
from edgeopt.progress import ProgressEvent

TECHNIQUES = ["ptq_int8", "prune_structured", "qat_int8"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _event(kind: str, technique: str, fraction: float = 0.0, stage: str = "") -> ProgressEvent:
    return ProgressEvent(kind=kind, technique=technique, fraction=fraction, stage=stage)  # type: ignore[arg-type]


def _simulate(durations: dict[str, float], samples: list[float]) -> list[tuple[float, float]]:
    """Play a run with the given true durations; return (true remaining, ETA) at the sampled instants.

    The baseline reports its stages as the pipeline does: loading and export at fraction 0 (the first 30 %), then
    its measurement from 0.3 to 1.0; each technique reports 20 steps up to 0.85."""
    clock = FakeClock()
    model = EtaModel(techniques=TECHNIQUES, clock=clock)
    timeline: list[tuple[float, ProgressEvent]] = []
    t = 0.0
    timeline.append((t, _event("progress", "baseline", 0.0, "Loading the dataset")))
    for i in range(8):
        fraction = 0.3 + 0.7 * i / 8
        timeline.append((t + durations["baseline"] * fraction, _event("progress", "baseline", fraction, "Measuring")))
    t += durations["baseline"]
    timeline.append((t, _event("baseline_measured", "baseline", 1.0)))
    for name in TECHNIQUES:
        timeline.append((t, _event("technique_started", name)))
        steps = 20
        for i in range(1, steps + 1):
            stage = "Fine-tuning (epoch 1 of 2)" if name != "ptq_int8" else "Calibrating"
            timeline.append((t + durations[name] * i / steps, _event("progress", name, 0.85 * i / steps, stage)))
        t += durations[name]
        timeline.append((t, _event("technique_completed", name, 1.0)))
    total = t + durations.get("retime", 0.0)  # the side-by-side re-timing reports nothing; the run ends after it
    out = []
    queue = sorted(samples)
    for when, event in timeline:
        while queue and queue[0] * total <= when:
            clock.now = queue.pop(0) * total
            out.append((total - clock.now, model.overall_eta()))
        clock.now = when
        model.observe(event)
        model.overall_eta()
    return out


def _as_predicted(scale: float = 1.0) -> dict[str, float]:
    """True durations equal to what the cost model predicts (times ``scale``) for a 2-second baseline."""
    model = EtaModel(techniques=TECHNIQUES, unit_s=2.0)
    predicted = {name: scale * model.predicted_seconds(name) for name in TECHNIQUES}
    return {"baseline": 2.0, **predicted, "retime": scale * model.retime_seconds()}


def test_eta_is_close_when_the_cost_model_fits() -> None:
    durations = _as_predicted()
    for remaining, eta in _simulate(durations, [0.25, 0.5, 0.75]):
        assert abs(eta - remaining) <= 0.35 * remaining, (eta, remaining)


def test_eta_never_negative_and_reaches_zero() -> None:
    durations = {"baseline": 1.0, "ptq_int8": 30.0, "prune_structured": 1.0, "qat_int8": 1.0}
    results = _simulate(durations, [0.1, 0.3, 0.6, 0.9, 0.999])
    assert all(eta >= 0 for _, eta in results)
    assert results[-1][1] < 0.2 * sum(durations.values())


def test_estimate_does_not_jump_by_more_than_double() -> None:
    clock = FakeClock()
    model = EtaModel(techniques=TECHNIQUES, clock=clock)
    model.observe(_event("progress", "baseline"))
    clock.now = 1.0
    model.observe(_event("technique_started", "ptq_int8"))
    first = model.overall_eta()
    clock.now = 1.5
    model.observe(_event("progress", "ptq_int8", 0.01, "Calibrating"))  # a very slow start
    second = model.overall_eta()
    assert second <= 2 * first + 1.0


def test_correction_learns_a_run_slower_than_predicted() -> None:
    """Techniques take 1.8x what the cost model says: once one has finished, the ETA has caught up."""
    durations = _as_predicted(scale=1.8)
    ((remaining, eta),) = _simulate(durations, [0.75])
    assert abs(eta - remaining) <= 0.35 * remaining, (eta, remaining)


def test_eta_before_the_baseline_is_measured_comes_from_the_prior_and_counts_the_baseline() -> None:
    """The first figure a user sees is already the whole experiment, baseline included, not a few seconds."""
    from edgeopt.eta import prior_unit_seconds

    clock = FakeClock()
    model = EtaModel(techniques=TECHNIQUES, clock=clock, framework="pytorch", model_bytes=1_500_000)
    model.observe(_event("progress", "baseline", 0.0, "Loading the dataset"))
    unit = prior_unit_seconds("pytorch", 1_500_000)
    expected = unit + sum(model.predicted_seconds(name) for name in TECHNIQUES) + model.retime_seconds()
    assert model.overall_eta() == expected
    assert expected > 3 * unit  # the techniques are counted at the prior unit, not at one second each

    clock.now = unit * 2.0  # the baseline takes twice the prior: once it is measured the unit is the measured one
    model.observe(_event("baseline_measured", "baseline", 1.0))
    assert model.unit_s == unit * 2.0 and model.baseline_done


def test_prior_grows_with_the_model_file() -> None:
    from edgeopt.eta import prior_unit_seconds

    small, large = prior_unit_seconds("pytorch", 1_500_000), prior_unit_seconds("pytorch", 45_000_000)
    assert 3.0 < large / small < 5.0  # ResNet18's unit was about 4x the demo's
    assert prior_unit_seconds("tensorflow", None) < prior_unit_seconds("pytorch", None)


def test_a_searching_technique_is_expected_to_take_its_search_too() -> None:
    """By default a search is expected to take a share of the technique's own time; with the user's budget, its
    share of that budget."""
    payload = {"framework": "pytorch", "epochs": None, "technique_configs": {}, "time_budget_s": None}
    plain = EtaModel(techniques=TECHNIQUES, unit_s=2.0)
    default = EtaModel.for_experiment(payload, TECHNIQUES, None)
    default.unit_s = 2.0
    assert default.searching == {"prune_structured"}  # the only one of the three with a strength knob
    assert default.predicted_seconds("prune_structured") == (1 + SEARCH_SHARE) * plain.predicted_seconds(
        "prune_structured"
    )
    assert default.predicted_seconds("ptq_int8") == plain.predicted_seconds("ptq_int8")

    budget = EtaModel.for_experiment({**payload, "time_budget_s": 90.0}, ["prune_structured", "distillation"], None)
    budget.unit_s = 2.0
    assert budget.predicted_seconds("distillation") == plain.predicted_seconds("distillation") + 45.0

    fixed = {**payload, "technique_configs": {"prune_structured": {"channel_sparsity": 0.5}}}
    assert EtaModel.for_experiment(fixed, TECHNIQUES, None).searching == frozenset()  # the user fixed the strength


def test_the_baseline_measurement_steps_are_not_read_as_its_rate() -> None:
    """The baseline's export (most of its time) reports nothing, then its measurement runs 0.3 -> 1.0 in moments:
    at 44 % after 36 s the baseline is nearly done, not 80 s long (the trace in benchmarks/results/eta.md)."""
    clock = FakeClock()
    model = EtaModel(techniques=TECHNIQUES, clock=clock)
    model.observe(_event("progress", "baseline", 0.0, "Loading the dataset"))
    clock.now = 36.0
    model.observe(_event("progress", "baseline", 0.44, "Evaluating accuracy on the test split"))
    model.overall_eta()
    assert model.predicted_seconds("qat_int8") <= 1.05 * EtaModel(techniques=TECHNIQUES, unit_s=36.0).predicted_seconds(
        "qat_int8"
    )


def test_a_baseline_slower_than_the_prior_raises_the_estimate_while_it_runs() -> None:
    """A baseline still exporting at twice the prior unit means a unit of at least that: the techniques are
    counted at it, not at the prior that was already proven wrong."""
    clock = FakeClock()
    model = EtaModel(techniques=TECHNIQUES, clock=clock)
    prior = prior_unit_seconds("pytorch", None)
    model.observe(_event("progress", "baseline", 0.0, "Loading the dataset"))
    model.overall_eta()
    units = sum(EtaModel(techniques=TECHNIQUES, unit_s=1.0).predicted_seconds(name) for name in TECHNIQUES)
    for step in range(1, 21):  # updates every tenth of the prior, as stages report
        clock.now = 0.1 * prior * step
        model.observe(_event("progress", "baseline", 0.0, "Exporting the original model to the board runtime"))
        eta = model.overall_eta()
    assert eta >= 2.0 * prior * units * 0.9, (eta, 2.0 * prior * units)


def test_a_running_technique_slower_than_predicted_corrects_the_rest_before_it_ends() -> None:
    """Before any technique has finished, the first one running at twice its prediction doubles the others'."""
    clock = FakeClock()
    model = EtaModel(techniques=TECHNIQUES, clock=clock, unit_s=2.0, baseline_done=True)
    before = model.predicted_seconds("qat_int8")
    first = model.predicted_seconds("ptq_int8")
    model.observe(_event("technique_started", "ptq_int8"))
    for step in range(1, 16):  # three quarters of its true duration (twice the prediction), at an even pace
        clock.now = 2.0 * first * step / 20
        model.observe(_event("progress", "ptq_int8", step / 20, "Calibrating"))
    assert model.predicted_seconds("qat_int8") >= 1.7 * before, (model.predicted_seconds("qat_int8"), before)
