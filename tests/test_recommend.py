"""Recommender rules on hand-made results with known answers (pure Python, no framework)."""

from __future__ import annotations

import pytest

from edgeopt.errors import InvalidInput
from edgeopt.recommend import Candidate, ideal_distances, pareto_front, rank, recommend
from edgeopt.report import BaselineResult, Constraints, DeviceEstimate, LatencyStats, RunResult

LAT = LatencyStats(host=1.0, host_p90=1.2)


def _estimate(latency_ms: float, fits: bool = True) -> dict[str, DeviceEstimate]:
    return {
        "rpi4": DeviceEstimate(
            latency_ms=latency_ms,
            memory_mb=50.0,
            power_w=6.0,
            energy_mj=6.0 * latency_ms,
            fits=fits,
            runtime="xnnpack",
            threads=4,
        )
    }


def _run(
    technique: str, accuracy: float, size_mb: float, latency_ms: float, status: str = "completed", sparsity: float = 0.0
) -> RunResult:
    if status != "completed":
        return RunResult(technique=technique, status=status, error="it broke")  # type: ignore[arg-type]
    return RunResult(
        technique=technique,
        status="completed",
        accuracy=accuracy,
        accuracy_drop=0.95 - accuracy,
        size_bytes=int(size_mb * 1e6),
        compressed_size_bytes=int(size_mb * 1e6),
        params=1,
        flops=1,
        sparsity=sparsity,
        latency_ms=LAT,
        estimates=_estimate(latency_ms),
        artifact=f"{technique}.pte",
    )


BASELINE = BaselineResult(
    accuracy=0.95,
    size_bytes=40_000_000,
    compressed_size_bytes=38_000_000,
    params=10,
    flops=10,
    latency_ms=LAT,
    artifact="baseline.pte",
    estimates=_estimate(100.0),
)

# accuracy, MB, ms: a realistic spread of the seven techniques.
RUNS = [
    _run("ptq_int8", 0.945, 10.0, 40.0),
    _run("ptq_int4", 0.92, 5.0, 40.0),
    _run("prune_unstructured", 0.94, 40.0, 100.0, sparsity=0.5),
    _run("prune_structured", 0.93, 20.0, 50.0),
    _run("distillation", 0.92, 10.0, 30.0),
    _run("qat_int8", 0.948, 10.0, 40.0),
    _run("hybrid_prune_int8", 0.91, 5.0, 15.0),
]


def C(name: str, acc: float, size: int, lat: float | None) -> Candidate:  # noqa: N802 - reads like a table row
    return Candidate(name, acc, size, lat)


def test_pareto_front_with_ties_and_dominated_duplicates() -> None:
    points = [
        C("a", 0.90, 10, 5.0),
        C("b", 0.90, 10, 5.0),  # exact duplicate of a: neither dominates the other, both stay
        C("c", 0.95, 20, 8.0),
        C("d", 0.85, 30, 9.0),  # dominated by a
        C("e", 0.85, 30, 9.0),  # duplicate of d, also dominated
        C("f", 0.90, 10, 6.0),  # ties a on accuracy and size, slower: dominated
        C("g", 0.80, 5, 9.0),  # smallest: on the front
    ]
    assert sorted(c.name for c in pareto_front(points)) == ["a", "b", "c", "g"]


def test_missing_latency_counts_as_worst() -> None:
    front = pareto_front([C("a", 0.9, 10, None), C("b", 0.9, 10, 3.0)])
    assert [c.name for c in front] == ["b"]


def test_goal_rankings() -> None:
    points = [C("x", 0.90, 30, 5.0), C("y", 0.95, 20, 9.0), C("z", 0.95, 10, 7.0), C("w", 0.80, 5, 2.0)]
    assert [c.name for c in rank(points, "maximize_accuracy")] == ["z", "y", "x", "w"]  # tie at 0.95 -> smaller
    assert [c.name for c in rank(points, "minimize_size")] == ["w", "z", "y", "x"]
    assert [c.name for c in rank(points, "minimize_latency")] == ["w", "x", "z", "y"]
    # balanced: y is dominated by z; distances after min-max: z (0, 0.2, 0.714) = 0.74, w (1, 0, 0) = 1.0,
    # x (0.333, 1, 0.429) = 1.14; dominated y comes last.
    distances = ideal_distances(points)
    assert distances["z"] == pytest.approx((0.2**2 + (5 / 7) ** 2) ** 0.5)
    assert [c.name for c in rank(points, "balanced")] == ["z", "w", "x", "y"]


def test_recommend_each_goal_on_a_report() -> None:
    pairs = {
        "maximize_accuracy": "qat_int8",
        "minimize_size": "ptq_int4",  # 5 MB tie with hybrid: ptq_int4 is more accurate
        "minimize_latency": "hybrid_prune_int8",
    }
    for goal, expected in pairs.items():
        rec = recommend((BASELINE, RUNS), goal, Constraints(), "rpi4")
        assert rec.technique == expected, goal
        assert rec.all_constraints_met
        assert rec.ranking[0] == expected and len(rec.ranking) == 7
    balanced = recommend((BASELINE, RUNS), "balanced", Constraints(), "rpi4")
    assert set(balanced.pareto) == {"qat_int8", "ptq_int4", "distillation", "hybrid_prune_int8"}
    # normalised over the 7 runs, qat_int8 sits at (0, 0.14, 0.29): closest to the ideal point
    assert balanced.technique == "qat_int8"


def test_constraints_filter_and_are_reported_per_run() -> None:
    constraints = Constraints(max_accuracy_drop=0.01, max_size_mb=12)
    rec = recommend((BASELINE, RUNS), "minimize_latency", constraints, "rpi4")
    # within 1 point of 95 % and at most 12 MB: ptq_int8 (40 ms) and qat_int8 (40 ms, more accurate)
    assert rec.technique == "qat_int8"
    assert rec.ranking[:2] == ["qat_int8", "ptq_int8"]
    assert rec.constraints["distillation"] == {"max_size_mb": True, "max_accuracy_drop": False}
    assert rec.constraints["prune_unstructured"] == {"max_size_mb": False, "max_accuracy_drop": True}
    assert rec.all_constraints_met
    assert "meets all 2 of your limits" in rec.reasoning
    latency = recommend((BASELINE, RUNS), "maximize_accuracy", Constraints(max_latency_ms=35), "rpi4")
    assert latency.technique == "distillation"  # the most accurate of those under 35 ms (30 and 15 ms)


def test_reasoning_contains_the_real_numbers() -> None:
    rec = recommend((BASELINE, RUNS), "maximize_accuracy", Constraints(max_accuracy_drop=0.0025), "rpi4")
    assert rec.technique == "qat_int8"
    assert "4.00x smaller" in rec.reasoning and "10.00 MB vs 40.00 MB" in rec.reasoning
    assert "2.50x faster" in rec.reasoning and "40 ms vs 100 ms" in rec.reasoning
    assert "0.20 points" in rec.reasoning  # 95.0 % -> 94.8 %
    assert "Close to the limit: maximum accuracy drop" in rec.reasoning  # 0.2 of 0.25 points used
    assert any("4.00x smaller" in p for p in rec.pros)
    pruned = rec.run_pros_cons["prune_unstructured"]
    assert any("zero weights do not speed up" in c for c in pruned["cons"])
    assert set(rec.run_pros_cons) == {run.technique for run in RUNS}


def test_best_effort_when_nothing_meets_every_constraint() -> None:
    constraints = Constraints(max_size_mb=4.0, min_accuracy=0.94)
    rec = recommend((BASELINE, RUNS), "balanced", constraints, "rpi4")
    assert not rec.all_constraints_met
    # every run misses max_size_mb; ptq_int8, qat_int8 and prune_unstructured meet min_accuracy (one miss each);
    # the smallest size violation among them: 10 MB vs 4 MB (1.5) beats 40 MB (9.0); qat/ptq tie -> balanced order
    assert rec.technique in {"ptq_int8", "qat_int8"}
    assert rec.ranking[2] == "prune_unstructured" or rec.ranking.index("prune_unstructured") > 1
    assert "No result meets every constraint" in rec.reasoning
    assert "maximum size: 10 MB vs at most 4 MB, over by 6 MB (150.0 %)" in rec.reasoning
    assert rec.technique is not None


def test_best_effort_says_when_the_original_would_do() -> None:
    rec = recommend((BASELINE, RUNS), "balanced", Constraints(min_accuracy=0.949), "rpi4")
    assert not rec.all_constraints_met and rec.technique == "qat_int8"
    assert "original model itself meets every constraint" in rec.reasoning


def test_only_completed_runs_are_candidates_and_baseline_is_the_fallback() -> None:
    runs = [_run("ptq_int8", 0, 0, 0, status="failed"), _run("ptq_int4", 0, 0, 0, status="skipped")]
    rec = recommend((BASELINE, runs), "balanced", Constraints(max_size_mb=50), "rpi4")
    assert rec.technique == "baseline" and rec.all_constraints_met
    assert "Post-training INT8 (failed)" in rec.reasoning and "Post-training INT4 weights (skipped)" in rec.reasoning
    nothing = recommend((None, runs), "balanced", None, "rpi4")
    assert nothing.technique is None and "no technique completed" in nothing.reasoning
    mixed = recommend((BASELINE, [*runs, RUNS[0]]), "balanced", None, "rpi4")
    assert mixed.ranking == ["ptq_int8"]


def test_bad_goal_or_device() -> None:
    with pytest.raises(InvalidInput, match="goal"):
        recommend((BASELINE, RUNS), "fastest", None, "rpi4")
    with pytest.raises(InvalidInput, match="device"):
        recommend((BASELINE, RUNS), "balanced", None, "jetson")


def test_accepts_a_report_and_the_result_serialises() -> None:
    from edgeopt.report import ExperimentInfo, Recommendation, Report

    report = Report(
        experiment=ExperimentInfo(id="e1", framework="pytorch", dataset="digits", device="rpi4", goal="balanced"),
        baseline=BASELINE,
        runs=RUNS,
    )
    rec = recommend(report, "balanced", {"max_accuracy_drop": 0.01}, "rpi4")
    assert rec == recommend((BASELINE, RUNS), "balanced", Constraints(max_accuracy_drop=0.01), "rpi4")
    assert Recommendation.model_validate_json(rec.model_dump_json()) == rec


@pytest.mark.parametrize("goal", ["balanced", "maximize_accuracy", "minimize_size", "minimize_latency"])
def test_reasoning_reads_as_prose_without_internal_ids(goal: str) -> None:
    from edgeopt.catalog import TECHNIQUE_NAMES

    for constraints in (Constraints(), Constraints(max_accuracy_drop=0.01), Constraints(max_size_mb=12)):
        rec = recommend((BASELINE, RUNS), goal, constraints, "rpi4")
        texts = [rec.reasoning, *(p for pc in rec.run_pros_cons.values() for p in pc["pros"] + pc["cons"])]
        for text in texts:
            assert not any(name in text for name in TECHNIQUE_NAMES), text
            assert "(s)" not in text and " 1 constraints" not in text and "max_" not in text, text
            assert "0.00 points higher" not in text, text
