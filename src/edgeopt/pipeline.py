"""One experiment end to end: load, baseline, techniques in the fixed order, measure, estimate, recommend.

The pipeline is the only place that measures: every artifact, the baseline's included, goes through
``measure_output`` so all figures in a report are comparable. It emits ``ProgressEvent``s and knows nothing of HTTP
or SQL; the CLI draws a bar from the events and the job runner relays them to the database and the WebSocket.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeopt import catalog
from edgeopt.data.dataset import Dataset
from edgeopt.errors import Cancelled, EdgeOptError, InvalidInput, TechniqueFailed, Unsupported
from edgeopt.expectations import EXPECTATIONS, shortfall_sentence, shortfalls
from edgeopt.frameworks import FrameworkBackend, LoadedModel, ModelSource, get_backend
from edgeopt.measure import file_sha256
from edgeopt.preprocessing import VALUE_SCALE, Preprocessing
from edgeopt.progress import CancelCheck, ProgressCallback, ProgressEvent, StageReporter
from edgeopt.report import (
    BaselineResult,
    Constraints,
    ExperimentInfo,
    LatencyStats,
    Report,
    RunResult,
)
from edgeopt.settings import Settings, get_settings
from edgeopt.techniques import (
    MAX_EPOCHS,
    TechniqueContext,
    TechniqueOutput,
    check_applicable,
    get_technique,
    make_config,
)

log = logging.getLogger(__name__)

BASELINE = "baseline"
MEASURE_START = 0.85  # share of a technique's progress bar given to its own work; measuring takes the rest
CHANCE_FACTOR = 1.5  # a baseline scoring at most this many times chance (1 / classes) is broken, not compressible
_VERSIONED_PACKAGES = (
    "edgeopt",
    "torch",
    "torchvision",
    "torchao",
    "executorch",
    "torch-pruning",
    "tensorflow-cpu",
    "tf-keras",
    "tensorflow-model-optimization",
    "ai-edge-litert",
    "ai-edge-quantizer",
    "numpy",
)


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything that defines an experiment; the CLI, the Python API and the job runner all build one.

    Frozen: once built it is the experiment's one description, sent as it is (``to_payload``) to a worker process or
    a Celery task and read back there with ``from_payload``.
    """

    framework: str
    dataset: str  # preset name or path to a custom archive
    device: str
    out_dir: Path
    model: Path | None = None
    arch: str | None = None
    goal: str = "balanced"
    techniques: Sequence[str] | None = None  # None = all, always run in catalog order
    constraints: Constraints = field(default_factory=Constraints)
    epochs: int | None = None
    technique_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    random_init: bool = False
    seed: int = 0
    experiment_id: str = "local"
    dataset_label: str | None = None  # what the report calls the dataset (a custom path's display name)
    preprocessing: Preprocessing | None = None  # the user's input convention; None = the model's own
    # Off only for conformance benchmarks and tests of random-initialised models; the CLI, the Python API's
    # ``optimize`` and the service never turn it off, so a user's at-chance model always stops the run.
    check_baseline: bool = True
    # Seconds all strength searches of the experiment may take together (edgeopt.strength_search); None = each
    # searching technique may spend about its own predicted duration, so the experiment takes at most ~2x.
    time_budget_s: float | None = None

    def validate(self) -> None:
        _check_choice("framework", self.framework, catalog.FRAMEWORKS)
        _check_choice("device", self.device, catalog.DEVICE_NAMES)
        _check_choice("goal", self.goal, catalog.GOAL_NAMES)
        for name in self.techniques or ():
            _check_choice("techniques", name, catalog.TECHNIQUE_NAMES)
        if self.arch is not None:
            _check_choice("arch", self.arch, catalog.ARCHITECTURE_NAMES)
        if self.model is None and self.arch is None:
            raise InvalidInput("Give a model file, or a named architecture with --arch.", field="model")
        if self.model is not None and not Path(self.model).is_file():
            raise InvalidInput(f"Model file {self.model} does not exist.", field="model")
        if self.epochs is not None and not 0 <= self.epochs <= MAX_EPOCHS:
            raise InvalidInput(f"--epochs must be from 0 to {MAX_EPOCHS}.", field="epochs")
        for name in self.technique_configs:
            _check_choice("technique_configs", name, catalog.TECHNIQUE_NAMES)
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise InvalidInput(
                "The time budget must be a positive number of seconds (for example 300).", field="time_budget_s"
            )

    def info(self) -> ExperimentInfo:
        """What the report says about this experiment (the same for one process or many workers)."""
        return ExperimentInfo(
            id=self.experiment_id,
            framework=self.framework,
            dataset=self.dataset_label or str(self.dataset),
            device=self.device,
            goal=self.goal,
            constraints=self.constraints.active(),
            preprocessing=self.preprocessing,
        )

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe form of every field (paths as strings, models as dicts); ``from_payload`` reverses it."""
        payload = {f.name: getattr(self, f.name) for f in fields(self)}
        payload["out_dir"] = str(self.out_dir)
        payload["model"] = str(self.model) if self.model is not None else None
        payload["techniques"] = list(self.techniques) if self.techniques is not None else None
        payload["constraints"] = self.constraints.model_dump(mode="json")
        payload["preprocessing"] = self.preprocessing.model_dump(mode="json") if self.preprocessing else None
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ExperimentSpec:
        values = dict(payload)
        values["out_dir"] = Path(values["out_dir"])
        values["model"] = Path(values["model"]) if values.get("model") else None
        values["constraints"] = Constraints(**(values.get("constraints") or {}))
        raw = values.get("preprocessing")
        values["preprocessing"] = Preprocessing.model_validate(raw) if raw else None
        return cls(**values)

    @property
    def ordered_techniques(self) -> list[str]:
        chosen = set(self.techniques) if self.techniques else set(catalog.TECHNIQUE_NAMES)
        return [name for name in catalog.TECHNIQUE_NAMES if name in chosen]


def _check_choice(field_name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InvalidInput(f"Unknown {field_name} {value!r}; choose one of: {', '.join(allowed)}.", field=field_name)


@dataclass
class Measured:
    accuracy: float
    size_bytes: int
    compressed_size_bytes: int
    params: int
    flops: int
    sparsity: float
    latency: LatencyStats
    estimates: dict[str, Any]
    runtime_note: str = ""  # the board runtime cannot run the artifact its usual way (``runtime_note``)


def measure_output(
    backend: FrameworkBackend,
    loaded: LoadedModel,
    output: TechniqueOutput,
    data: Dataset,
    settings: Settings,
    reporter: StageReporter | None = None,
) -> Measured:
    """Measure a deployable artifact the way it will run on the board: in its runtime, on the test split."""
    from edgeopt import measure
    from edgeopt.estimate.estimator import estimate_all
    from edgeopt.estimate.graph import ModelProfile

    artifact = Path(output.artifact)
    if reporter:
        reporter.stage("Loading the artifact in its board runtime", 0.05)
    predict = backend.artifact_predictor(artifact, output)
    if reporter:
        reporter.stage("Evaluating accuracy on the test split", 0.2)
    accuracy = measure.accuracy(predict, data.x_test, data.y_test)
    if reporter:
        reporter.stage("Timing inference (batch 1)", 0.7)
    sample = data.x_test[:1]
    latency = measure.measure_latency(lambda: predict(sample), min_seconds=settings.latency_seconds)
    if reporter:
        reporter.stage("Estimating on the boards", 0.9)
    stats = backend.model_stats(loaded, output)
    profile = ModelProfile.from_dict(stats["profile"])
    estimates = estimate_all(profile, output.precision, runtime="xnnpack", threads=None)
    return Measured(
        accuracy=accuracy,
        size_bytes=measure.file_size(artifact),
        compressed_size_bytes=measure.gzip_size(artifact),
        params=int(stats["params"]),
        flops=int(stats["flops"]),
        sparsity=float(stats["sparsity"]),
        latency=latency,
        estimates={name: est.model_dump() for name, est in estimates.items()},
        runtime_note=backend.runtime_note(artifact),
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _readable_error(technique: str, exc: BaseException) -> str:
    """An EdgeOpt error's own sentence; for anything else one without the exception's text (that goes to the log)."""
    if isinstance(exc, EdgeOptError):
        return str(exc)
    return (
        f"{technique} stopped with an internal error EdgeOpt does not yet handle; EdgeOpt's log has the details. "
        "Start it again, and if it happens again please report it with the model's architecture."
    )


def _technique_error(technique: str, exc: BaseException) -> str:
    """A failed run's message: the technique's own sentence, or for an unexpected exception one that says what
    happened and what to do; the traceback goes to the log, never to the user."""
    if isinstance(exc, EdgeOptError):
        return str(exc)
    return (
        f"{technique} could not transform this model: EdgeOpt hit an internal error it does not yet handle (the "
        "details are in EdgeOpt's log). This is an EdgeOpt bug, not a fault of the model: please report it with the "
        "model's architecture. The other techniques' results are unaffected; use one of them."
    )


def check_baseline(accuracy: float, num_classes: int, dataset: str) -> None:
    """Stops an experiment whose original model is no better than chance: compressing it would be meaningless."""
    chance = 1.0 / max(1, num_classes)
    limit = CHANCE_FACTOR * chance
    if num_classes < 2 or accuracy > limit:
        return
    raise InvalidInput(
        f"The original model scores {accuracy:.1%} on the test split of {dataset}, no better than chance "
        f"({chance:.1%} for {num_classes} classes; EdgeOpt needs more than {limit:.1%}), so no technique was run. "
        "Likely causes: preprocessing that differs from training (input size, channel order, 0..1 versus 0..255 "
        "values, mean/std normalization), a class order that differs from the dataset's labels, or BatchNorm "
        "running statistics that were never learned (a model trained too briefly or exported in training mode). "
        "Check the model on this data, fix the cause and start again.",
        field="model",
    )


def write_report(report: Report, out_dir: Path) -> Path:
    """Atomic write: a reader never sees half a report."""
    path = out_dir / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report.model_dump(mode="json"), indent=2))
    os.replace(tmp, path)
    return path


def load_inputs(backend: FrameworkBackend, spec: ExperimentSpec, settings: Settings) -> tuple[Dataset, LoadedModel]:
    """The model and the dataset adapted to its input, exactly as every measurement of the experiment sees them."""
    from edgeopt.data import adapt, load_dataset

    dataset = load_dataset(spec.dataset, settings, seed=spec.seed)
    declared = spec.preprocessing
    source = ModelSource(
        path=Path(spec.model) if spec.model else None,
        arch=spec.arch,
        num_classes=dataset.num_classes,
        input_size=tuple(declared.input_size) if declared is not None and declared.input_size and spec.arch else None,
        random_init=spec.random_init or settings.allow_random_init,
    )
    loaded = backend.load(source, dataset)
    if loaded.num_classes != dataset.num_classes:
        raise InvalidInput(
            f"The model predicts {loaded.num_classes} classes but dataset {spec.dataset!r} has "
            f"{dataset.num_classes}; choose the dataset the model was trained for.",
            field="dataset",
        )
    height, width, channels = loaded.input_shape
    if declared is None:
        data = adapt(dataset, height, width, channels, normalization=loaded.info.get("normalization"))
        return data, loaded
    _check_declared(declared, height, width, channels)
    data = adapt(
        dataset,
        height,
        width,
        channels,
        normalization=declared.normalization(),
        value_scale=VALUE_SCALE[declared.value_range],
        channel_order=declared.channel_order,
    )
    return data, loaded


def _check_declared(declared: Preprocessing, height: int, width: int, channels: int) -> None:
    """A declared convention the model cannot take is the user's to fix: say which part and what the model takes."""
    if declared.input_size is not None and tuple(declared.input_size) != (height, width):
        raise InvalidInput(
            f"The model takes {height}x{width} images, but the declared input size is "
            f"{declared.input_size[0]}x{declared.input_size[1]}; declare {height}x{width} or leave the size empty.",
            field="preprocessing.input_size",
        )
    normalization = declared.normalization()
    if normalization is not None and len(normalization[0]) not in (1, channels):
        raise InvalidInput(
            f"The normalization has {len(normalization[0])} values per statistic but the model takes {channels} "
            f"input channel{'s' if channels != 1 else ''}; give {channels} mean and std values.",
            field="preprocessing.mean",
        )


class Pipeline:
    """Runs one ``ExperimentSpec``; ``previous_runs`` lets a restarted experiment keep what already completed."""

    def __init__(
        self,
        spec: ExperimentSpec,
        *,
        on_progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
        settings: Settings | None = None,
        previous_runs: Sequence[RunResult] = (),
        previous_baseline: BaselineResult | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings or get_settings()
        self._emit = on_progress or (lambda _event: None)
        self._cancelled = cancelled or (lambda: False)
        self._previous = {run.technique: run for run in previous_runs if run.status == "completed"}
        self._previous_baseline = previous_baseline
        self._unit_s: float | None = None  # seconds the baseline's export and measurement took (the ETA's unit)
        self._search_left_s: float | None = spec.time_budget_s
        self._searching: list[str] = []  # techniques of this run that search their strength, in order
        self._started: float | None = None

    def _event(self, kind: str, technique: str | None, index: int, total: int, **payload: Any) -> None:
        self._emit(
            ProgressEvent(
                kind=kind,  # type: ignore[arg-type]
                technique=technique,
                fraction=1.0 if kind.endswith(("completed", "failed")) else 0.0,
                technique_index=index,
                total_techniques=total,
                payload=payload,
            )
        )

    def run(self) -> Report:
        """Run to the end; a cancellation or a fatal error is announced as an event, then raised to the caller."""
        try:
            return self._run()
        except Cancelled:
            self._event("experiment_cancelled", None, 0, 0)
            raise
        except Exception as exc:
            self._event("experiment_failed", None, 0, 0, error=_readable_error("The experiment", exc))
            raise

    def _run(self) -> Report:
        report, backend, loaded, data = self._begin()
        techniques = self.spec.ordered_techniques
        total = len(techniques)
        out_dir = Path(self.spec.out_dir)
        self._plan_searches()
        for index, name in enumerate(techniques):
            if name in self._previous:
                report.runs.append(self._previous[name])
                self._event("technique_completed", name, index, total, run=self._previous[name].model_dump(mode="json"))
                continue
            run = self._technique(backend, loaded, data, report.baseline, name, index, total, out_dir)
            report.runs.append(run)
            write_report(report, out_dir)
        return self._end(report, data)

    # -- the three phases, also run one by one: the Celery worker runs each technique as its own task

    def measure_baseline(self) -> Report:
        """Load, export and measure the original model; the report holds the baseline and no runs yet."""
        try:
            return self._begin()[0]
        except Cancelled:
            self._event("experiment_cancelled", None, 0, 0)
            raise
        except Exception as exc:
            self._event("experiment_failed", None, 0, 0, error=_readable_error("The experiment", exc))
            raise

    def run_technique(self, name: str, baseline: BaselineResult) -> RunResult:
        """One technique against an already measured baseline (its failure is a failed run, never raised)."""
        spec = self.spec
        spec.validate()
        techniques = spec.ordered_techniques
        backend = get_backend(spec.framework)
        data, loaded = self._load(backend)
        out_dir = Path(spec.out_dir)
        self._plan_searches()
        return self._technique(backend, loaded, data, baseline, name, techniques.index(name), len(techniques), out_dir)

    def finish(self, report: Report) -> Report:
        """Re-time every artifact side by side and recommend; ``report`` holds the baseline and all runs."""
        spec = self.spec
        backend = get_backend(spec.framework)
        data, _loaded = self._load(backend)
        order = {name: i for i, name in enumerate(catalog.TECHNIQUE_NAMES)}
        report.runs.sort(key=lambda run: order.get(run.technique, len(order)))
        return self._end(report, data)

    def _begin(self) -> tuple[Report, FrameworkBackend, LoadedModel, Dataset]:
        spec = self.spec
        spec.validate()
        out_dir = Path(spec.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        techniques = spec.ordered_techniques
        total = len(techniques)
        self._started = time.perf_counter()
        self._event("experiment_started", None, 0, total, techniques=techniques)

        backend = get_backend(spec.framework)
        base_reporter = StageReporter(BASELINE, 0, total, self._emit, self._cancelled)
        base_reporter.stage("Loading the dataset", 0.0)
        data, loaded = self._load(backend)

        report = Report(
            experiment=spec.info(),
            baseline=None,
            lineage=self._lineage(loaded, data),
        )
        baseline_started = time.perf_counter()
        report.baseline = self._baseline(backend, loaded, data, out_dir, base_reporter)
        self._unit_s = time.perf_counter() - baseline_started
        write_report(report, out_dir)
        self._event(
            "baseline_measured",
            BASELINE,
            0,
            total,
            baseline=report.baseline.model_dump(mode="json"),
            lineage=report.lineage,
        )
        if spec.check_baseline:
            check_baseline(report.baseline.accuracy, data.num_classes, report.experiment.dataset)
        return report, backend, loaded, data

    def _technique(
        self,
        backend: FrameworkBackend,
        loaded: LoadedModel,
        data: Dataset,
        baseline: BaselineResult,
        name: str,
        index: int,
        total: int,
        out_dir: Path,
    ) -> RunResult:
        run = self._run_technique(backend, loaded, data, baseline, name, index, total, out_dir)
        kind = "technique_completed" if run.status != "failed" else "technique_failed"
        self._event(kind, name, index, total, run=run.model_dump(mode="json"))
        return run

    def _plan_searches(self) -> None:
        """Which techniques of this run search their strength: they share a user's time budget in that order."""
        self._searching = [
            name for name in self.spec.ordered_techniques if name not in self._previous and self._searches(name)
        ]

    def _end(self, report: Report, data: Dataset) -> Report:
        out_dir = Path(self.spec.out_dir)
        total = len(self.spec.ordered_techniques)
        self._retime(report, data, out_dir)
        report.recommendation = self._recommend(report)
        write_report(report, out_dir)
        if self._started is not None:
            log.info("experiment %s finished in %.1f s", self.spec.experiment_id, time.perf_counter() - self._started)
        self._event("experiment_completed", None, total, total)
        return report

    def _searches(self, name: str) -> bool:
        """Whether ``name`` searches its strength: it has a knob, its implementation searches, the user set none."""
        from edgeopt.strength_search import KNOBS

        knob = KNOBS.get(name)
        if knob is None or knob.field in self.spec.technique_configs.get(name, {}):
            return False
        try:
            technique = get_technique(name, self.spec.framework)
        except Exception:  # noqa: BLE001 - the run itself reports a technique that cannot be loaded
            return False
        return bool(getattr(technique, "searches_strength", False))

    def _search_context(self, name: str, data: Dataset) -> tuple[Dataset, Any]:
        """The technique's data (train minus validation) and its ``SearchContext``, or (data, None) if fixed."""
        from edgeopt import eta
        from edgeopt.strength_search import DEFAULT_MIN_TRIALS, SearchContext, carve_validation

        if name not in self._searching:
            return data, None
        remaining = self._searching[self._searching.index(name) :]
        if self._search_left_s is not None:
            budget = max(self._search_left_s, 0.0) / len(remaining)
        else:
            model = eta.EtaModel(
                techniques=[name],
                epochs={name: self.spec.epochs} if self.spec.epochs is not None else {},
                framework=self.spec.framework,
                unit_s=self._unit_s or eta.prior_unit_seconds(self.spec.framework, None),
            )
            budget = model.predicted_seconds(name)
        trimmed, x_val, y_val = carve_validation(data, self.spec.seed)
        search = SearchContext.from_constraints(self.spec.constraints, x_val, y_val, budget)
        search.min_trials = DEFAULT_MIN_TRIALS if self.spec.time_budget_s is None else 0
        return trimmed, search

    def _retime(self, report: Report, data: Dataset, out_dir: Path) -> None:
        """Host latencies re-timed side by side (``edgeopt.host_timing``) so the report's figures compare."""
        from edgeopt import host_timing

        if self._cancelled():
            raise Cancelled("The experiment was cancelled.")
        if self.settings.host_timing == "fresh_process":
            timer = host_timing.in_fresh_process(self.spec.framework, data.x_test[:1], self.settings.threads)
        else:
            timer = host_timing.in_this_process(get_backend(self.spec.framework), data.x_test[:1])
        noisy = host_timing.retime(report, out_dir, timer, self.settings.latency_seconds)
        for run in report.runs:
            if run.technique in noisy and run.latency_ms is not None:
                spread = run.latency_ms.host_p90 / max(run.latency_ms.host, 1e-9)
                rough = f"Host latency varied widely while timed (p90 {spread:.1f}x the median); treat it as rough."
                run.notes = f"{run.notes} {rough}".strip()

    def _load(self, backend: FrameworkBackend) -> tuple[Dataset, LoadedModel]:
        return load_inputs(backend, self.spec, self.settings)

    def _lineage(self, loaded: LoadedModel, data: Dataset) -> dict[str, Any]:
        spec = self.spec
        source: dict[str, Any] = {"kind": loaded.kind, "arch": spec.arch}
        if spec.model:
            source.update(file=Path(spec.model).name, sha256=file_sha256(Path(spec.model)))
        return {
            "model": source,
            "input_shape": list(loaded.input_shape),
            "dataset": data.info,
            "seed": spec.seed,
            "epochs": spec.epochs,
            "libraries": library_versions(),
            "host": {"machine": platform.machine(), "threads": self.settings.threads},
        }

    def _baseline(
        self,
        backend: FrameworkBackend,
        loaded: LoadedModel,
        data: Dataset,
        out_dir: Path,
        reporter: StageReporter,
    ) -> BaselineResult:
        if self._previous_baseline is not None and (out_dir / self._previous_baseline.artifact).is_file():
            return self._previous_baseline
        reporter.stage("Exporting the original model to the board runtime", 0.0)
        output = backend.export_baseline(loaded, data, out_dir)
        measured = measure_output(backend, loaded, output, data, self.settings, reporter.sub(0.3, 1.0))
        return BaselineResult(
            accuracy=measured.accuracy,
            size_bytes=measured.size_bytes,
            compressed_size_bytes=measured.compressed_size_bytes,
            params=measured.params,
            flops=measured.flops,
            sparsity=measured.sparsity,
            latency_ms=measured.latency,
            artifact=Path(output.artifact).name,
            estimates=measured.estimates,
            precision=output.precision,
            notes=output.notes + measured.runtime_note,
        )

    def _run_technique(
        self,
        backend: FrameworkBackend,
        loaded: LoadedModel,
        data: Dataset,
        baseline: BaselineResult,
        name: str,
        index: int,
        total: int,
        out_dir: Path,
    ) -> RunResult:
        spec = self.spec
        reporter = StageReporter(name, index, total, self._emit, self._cancelled)
        self._event("technique_started", name, index, total)
        started = time.perf_counter()
        config = make_config(name, spec.technique_configs.get(name), spec.epochs, seed=spec.seed)
        config_dump = config.model_dump(mode="json")
        try:
            reporter.stage("Starting", 0.0)
            technique = get_technique(name, spec.framework)
            check_applicable(technique, loaded)
            technique_data, search = self._search_context(name, data)
            ctx = TechniqueContext(
                model=loaded,
                data=technique_data,
                work_dir=out_dir,
                reporter=reporter.sub(0.0, MEASURE_START),
                seed=spec.seed,
                search=search,
            )
            output = technique.apply(ctx, config)
            if self._search_left_s is not None and output.search is not None:
                self._search_left_s -= output.search.seconds
            if output.search is not None:
                config_dump[output.search.knob] = output.search.chosen
            measured = measure_output(backend, loaded, output, data, self.settings, reporter.sub(MEASURE_START, 1.0))
            expected = EXPECTATIONS[spec.framework].get(name)
            notes = output.notes + measured.runtime_note + shortfall_sentence(shortfalls(expected, baseline, measured))
        except Cancelled:
            raise
        except Unsupported as exc:
            return RunResult(
                technique=name,
                status="skipped",
                error=str(exc),
                config=config_dump,
                duration_s=time.perf_counter() - started,
            )
        except Exception as exc:  # noqa: BLE001 - one technique failing must not stop the others
            log.warning("technique %s failed:\n%s", name, traceback.format_exc())
            return RunResult(
                technique=name,
                status="failed",
                error=_technique_error(name, exc),
                config=config_dump,
                duration_s=time.perf_counter() - started,
            )
        return RunResult(
            technique=name,
            status="completed",
            accuracy=measured.accuracy,
            accuracy_drop=baseline.accuracy - measured.accuracy,
            size_bytes=measured.size_bytes,
            compressed_size_bytes=measured.compressed_size_bytes,
            compression_ratio=baseline.size_bytes / measured.size_bytes if measured.size_bytes else None,
            params=measured.params,
            flops=measured.flops,
            sparsity=measured.sparsity,
            latency_ms=measured.latency,
            estimates=measured.estimates,
            artifact=Path(output.artifact).name,
            formats={fmt: Path(path).name for fmt, path in output.formats.items()},
            precision=output.precision,
            duration_s=time.perf_counter() - started,
            config=config_dump,
            notes=notes,
            search=output.search,
        )

    def _recommend(self, report: Report) -> Any:
        from edgeopt.recommend import recommend

        return recommend(report, goal=self.spec.goal, constraints=self.spec.constraints, device=self.spec.device)


def optimize(
    model: str | Path | None = None,
    *,
    framework: str,
    dataset: str,
    device: str,
    out_dir: str | Path,
    goal: str = "balanced",
    techniques: Sequence[str] | None = None,
    constraints: Constraints | dict[str, float] | None = None,
    arch: str | None = None,
    epochs: int | None = None,
    technique_configs: dict[str, dict[str, Any]] | None = None,
    random_init: bool = False,
    seed: int = 0,
    preprocessing: Preprocessing | dict[str, Any] | None = None,
    time_budget_s: float | None = None,
    on_progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    settings: Settings | None = None,
) -> Report:
    """The Python API: run an experiment and return its report (also written to ``out_dir/report.json``).

    ``time_budget_s`` bounds the seconds all strength searches may take together (None: about each searching
    technique's own duration); a technique whose strength knob is set in ``technique_configs`` runs no search.
    """
    if isinstance(constraints, dict):
        try:
            constraints = Constraints(**constraints)
        except ValueError as exc:
            raise InvalidInput(f"Invalid constraints: {exc}", field="constraints") from exc
    if isinstance(preprocessing, dict):
        try:
            preprocessing = Preprocessing(**preprocessing)
        except ValueError as exc:
            raise InvalidInput(f"Invalid preprocessing: {exc}", field="preprocessing") from exc
    spec = ExperimentSpec(
        framework=framework,
        dataset=dataset,
        device=device,
        out_dir=Path(out_dir),
        model=Path(model) if model is not None else None,
        arch=arch,
        goal=goal,
        techniques=techniques,
        constraints=constraints or Constraints(),
        epochs=epochs,
        technique_configs=technique_configs or {},
        random_init=random_init,
        seed=seed,
        preprocessing=preprocessing,
        time_budget_s=time_budget_s,
    )
    return run_experiment(spec, on_progress=on_progress, cancelled=cancelled, settings=settings)


def run_experiment(
    spec: ExperimentSpec,
    *,
    on_progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    settings: Settings | None = None,
    previous_runs: Sequence[RunResult] = (),
    previous_baseline: BaselineResult | None = None,
) -> Report:
    """Run one experiment in this process: what ``optimize``, the CLI and the service's worker process call."""
    return Pipeline(
        spec,
        on_progress=on_progress,
        cancelled=cancelled,
        settings=settings,
        previous_runs=previous_runs,
        previous_baseline=previous_baseline,
    ).run()


__all__ = [
    "BASELINE",
    "ExperimentSpec",
    "Pipeline",
    "TechniqueFailed",
    "measure_output",
    "optimize",
    "run_experiment",
    "write_report",
]
