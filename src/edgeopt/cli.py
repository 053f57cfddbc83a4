"""The ``edgeopt`` command (docs/architecture.md section 4).

Exit codes are part of the contract: 0 the work ran (failed techniques are in the report), 2 bad input with one
line on stderr saying what to fix, 1 an unexpected failure.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from edgeopt import catalog
from edgeopt.errors import Cancelled, InvalidInput
from edgeopt.library_output import library_output_to
from edgeopt.service.cli import db_app

if TYPE_CHECKING:
    from edgeopt.pipeline import ExperimentSpec

app = typer.Typer(
    name="edgeopt",
    help="Fit a trained image classifier onto a Raspberry Pi: quantize, prune, distil, measure, recommend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")

F = TypeVar("F", bound=Callable[..., Any])


def _fail(code: int, message: str) -> None:
    typer.echo(f"edgeopt: {message}", err=True)
    raise typer.Exit(code)


def user_errors(func: F) -> F:
    """Turn the engine's errors into the documented exit codes and one line on stderr."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except InvalidInput as exc:
            _fail(2, str(exc).splitlines()[0] if str(exc) else "invalid input")
        except Cancelled:
            _fail(1, "cancelled")
        except KeyboardInterrupt:
            _fail(130, "interrupted")
        except Exception:  # noqa: BLE001 - last resort: one readable line, exit 1; the stack only with --verbose
            if "--verbose" in sys.argv:
                traceback.print_exc()
            _fail(
                1,
                "unexpected failure: EdgeOpt hit an internal error it does not yet handle. Run the command again "
                "with --verbose to see the details, and please report them.",
            )

    return wrapper  # type: ignore[return-value]


def _split_csv(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_accuracy(option: str, value: str | None) -> float | None:
    """An accuracy figure as the web form means it: ``2%`` is two percentage points; a plain number is a fraction.

    A plain number of 1 or more is refused rather than guessed: ``--max-accuracy-drop 1`` could mean one point or a
    hundred, and reading it the wrong way lets every result through.
    """
    if value is None:
        return None
    text = value.strip()
    percent = text.endswith("%")
    try:
        number = float(text.rstrip("%").strip())
    except ValueError as exc:
        raise InvalidInput(f"{option} takes a percentage like 2% or a fraction like 0.02, not {value!r}.") from exc
    if number < 0 or number != number:
        raise InvalidInput(f"{option} cannot be negative: {value!r}.")
    if percent:
        if number > 100:
            raise InvalidInput(f"{option} is a percentage of the test split and cannot exceed 100%: {value!r}.")
        return number / 100.0
    if number >= 1:
        raise InvalidInput(
            f"{option} {value} is ambiguous: a plain number is a fraction (0.02 = 2 points); "
            f"write {number:g}% for {number:g} percentage points."
        )
    return number


def parse_duration(option: str, value: str | None) -> float | None:
    """Seconds from ``300``, ``300s``, ``5m`` or ``1h``; a non-positive or unreadable figure is refused."""
    if value is None:
        return None
    text = value.strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(text[-1:])
    try:
        number = float(text[:-1] if scale else text) * (scale or 1.0)
    except ValueError as exc:
        raise InvalidInput(f"{option} takes seconds like 300, 300s or 5m, not {value!r}.") from exc
    if not number > 0 or number == float("inf"):
        raise InvalidInput(f"{option} must be a positive time like 300s or 5m, not {value!r}.")
    return number


def parse_preprocessing(
    preset: str | None,
    input_size: str | None,
    channel_order: str | None,
    value_range: str | None,
    mean: str | None,
    std: str | None,
) -> Any:
    """The declared input convention from the CLI's options; None when none of them was given."""
    from edgeopt.preprocessing import Preprocessing

    given = (preset, input_size, channel_order, value_range, mean, std)
    if all(value is None for value in given):
        return None
    values: dict[str, Any] = {}
    if input_size is not None:
        parts = input_size.lower().replace(",", "x").split("x")
        if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
            raise InvalidInput(f"--input-size takes HEIGHTxWIDTH like 224x224, not {input_size!r}.")
        values["input_size"] = [int(parts[0]), int(parts[1])]
    for name, text in (("mean", mean), ("std", std)):
        if text is not None:
            try:
                values[name] = [float(part) for part in text.split(",")]
            except ValueError as exc:
                raise InvalidInput(f"--{name} takes comma-separated numbers like 0.5,0.5,0.5, not {text!r}.") from exc
    if preset is None and (mean is not None or std is not None):
        preset = "custom"  # giving mean and std is asking for them
    for name, value in (("preset", preset), ("channel_order", channel_order), ("value_range", value_range)):
        if value is not None:
            values[name] = value.lower()
    try:
        return Preprocessing(**values)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else None  # type: ignore[attr-defined]
        if first is None:
            raise InvalidInput(f"Invalid preprocessing: {exc}") from exc
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "preprocessing"
        option = "--preprocessing" if option == "--preset" else option
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"{option}: {message}") from exc


def _progress_printer(
    spec: ExperimentSpec, model_bytes: int | None, stream: Any
) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A live display on ``stream`` (the terminal's stderr) driven by the engine's events: which technique of how
    many, its stage, elapsed time and the same ETA model the web app shows. stdout stays clean for ``--json``."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeopt.eta import EtaModel

    techniques = spec.ordered_techniques
    eta = EtaModel.for_experiment(spec.to_payload(), techniques, model_bytes)
    progress = Progress(
        TextColumn("[bold]{task.fields[position]}"),
        BarColumn(bar_width=16),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        TextColumn("[dim]{task.fields[stage]}"),
        console=Console(file=stream),
        transient=True,
        # Rich would otherwise print what libraries write to sys.stdout/sys.stderr above the bar, on the terminal;
        # those writes belong in the log file that library_output_to points the descriptors at.
        redirect_stdout=False,
        redirect_stderr=False,
    )
    task = progress.add_task("experiment", total=100.0, position="Measuring the original model", stage="", eta="")
    progress.start()

    def on_event(event: Any) -> None:
        eta.observe(event)
        total = max(event.total_techniques, 1)
        done = event.technique_index + (event.fraction if event.kind == "progress" else 0.0)
        if event.kind in ("technique_completed", "technique_failed"):
            done = event.technique_index + 1
            run = event.payload.get("run", {})
            line = f"  [{event.technique_index + 1}/{total}] {catalog.technique_info(event.technique).title}: "
            progress.console.print(line + str(run.get("status", "")))
        if event.kind == "experiment_completed":
            done = total
        if event.technique in (None, "baseline"):
            position = "Measuring the original model"
            done = 0.0
        else:
            title = catalog.technique_info(event.technique).title
            position = f"[{event.technique_index + 1}/{total}] {title}"
        left = eta.overall_eta()
        progress.update(
            task,
            completed=100.0 * done / total,
            position=position,
            stage=event.stage or event.kind.replace("_", " "),
            eta=f"~{_duration(left)} left" if left is not None else "",
        )

    return on_event, progress.stop


def _duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@app.command()
@user_errors
def optimize(
    model: Annotated[Path | None, typer.Argument(help="Model file (.pt2, .pt, state dict, .keras, .h5, .zip)")] = None,
    *,
    framework: Annotated[str, typer.Option(help="pytorch or tensorflow")],
    dataset: Annotated[str, typer.Option(help="Preset name or path to a custom .zip/.npz")],
    device: Annotated[str, typer.Option(help="rpi4, rpi5 or rpi_zero_2w")],
    arch: Annotated[str | None, typer.Option(help="Named architecture (with MODEL as its weights, or alone)")] = None,
    goal: Annotated[str, typer.Option(help=", ".join(catalog.GOAL_NAMES))] = "balanced",
    techniques: Annotated[str | None, typer.Option(help="Comma-separated subset; default all seven")] = None,
    min_accuracy: Annotated[str | None, typer.Option(help="Test accuracy to keep: 90% or 0.9")] = None,
    max_size_mb: Annotated[float | None, typer.Option(help="MB = 10^6 bytes of the artifact")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Estimated on the target board")] = None,
    max_accuracy_drop: Annotated[
        str | None, typer.Option(help="Points you can lose against the original: 2% or 0.02")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs for techniques that train")] = None,
    out: Annotated[Path, typer.Option(help="Folder for report.json and the artifacts")] = Path("edgeopt-out"),
    random_init: Annotated[bool, typer.Option(help="Named architectures: random weights if none are cached")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report on stdout")] = False,
    verbose: Annotated[
        bool, typer.Option(help="Show the frameworks' own log lines instead of writing them to OUT/edgeopt.log")
    ] = False,
    preprocessing: Annotated[
        str | None, typer.Option(help="Normalization the model expects: none, imagenet, cifar or custom")
    ] = None,
    input_size: Annotated[str | None, typer.Option(help="HEIGHTxWIDTH the model takes, e.g. 224x224")] = None,
    channel_order: Annotated[str | None, typer.Option(help="rgb or bgr")] = None,
    value_range: Annotated[str | None, typer.Option(help="0-1 or 0-255: pixel values the model was trained on")] = None,
    mean: Annotated[str | None, typer.Option(help="Custom per-channel mean, e.g. 0.5,0.5,0.5")] = None,
    std: Annotated[str | None, typer.Option(help="Custom per-channel std, e.g. 0.25,0.25,0.25")] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(help="Time all strength searches may take together: 300, 300s or 5m (default: about 2x in all)"),
    ] = None,
) -> None:
    """Run every chosen technique on MODEL, measure each result, and recommend the best for the board."""
    from edgeopt.pipeline import ExperimentSpec, run_experiment
    from edgeopt.report import Constraints

    try:
        constraints = Constraints(
            min_accuracy=parse_accuracy("--min-accuracy", min_accuracy),
            max_size_mb=max_size_mb,
            max_latency_ms=max_latency_ms,
            max_accuracy_drop=parse_accuracy("--max-accuracy-drop", max_accuracy_drop),
        )
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else None  # type: ignore[attr-defined]
        where = f"--{str(first['loc'][0]).replace('_', '-')}: " if first else ""
        raise InvalidInput(f"{where}{first['msg'] if first else exc}") from exc
    declared = parse_preprocessing(preprocessing, input_size, channel_order, value_range, mean, std)
    spec = ExperimentSpec(
        preprocessing=declared,
        framework=framework,
        dataset=dataset,
        device=device,
        out_dir=out,
        model=model,
        arch=arch,
        goal=goal,
        techniques=_split_csv(techniques),
        constraints=constraints,
        epochs=epochs,
        random_init=random_init,
        seed=seed,
        time_budget_s=parse_duration("--time-budget", time_budget),
    )
    spec.validate()  # bad input fails before the progress bar draws anything
    log_path = None if verbose else out / "edgeopt.log"
    with library_output_to(log_path) as terminal:
        model_bytes = Path(spec.model).stat().st_size if spec.model else None
        on_event, stop = _progress_printer(spec, model_bytes, terminal)
        try:
            report = run_experiment(spec, on_progress=on_event)
        finally:
            stop()
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        _print_summary(report, spec.device, out)


def _print_summary(report: Any, device: str, out: Path) -> None:
    """The results as a table on stdout, then the recommendation and where the files are."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="Results (accuracy on the test split)", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1)
    )
    for header in ("Technique", "Status", "Accuracy", "Change", "Size", "Smaller", f"{device} est."):
        left = header in ("Technique", "Status")
        table.add_column(header, justify="left" if left else "right", no_wrap=True)
    baseline = report.baseline
    if baseline is not None:
        board = baseline.estimates.get(device)
        table.add_row(
            "Original model",
            "measured",
            f"{100 * baseline.accuracy:.1f} %",
            "",
            f"{baseline.size_bytes / 1e6:.2f} MB",
            "1.0x",
            f"{board.latency_ms:.1f} ms" if board else "",
        )
    for run in report.runs:
        title = catalog.technique_info(run.technique).title
        if run.status != "completed":
            table.add_row(title, run.status, "", "", "", "", "")
            continue
        change = -100 * (run.accuracy_drop or 0.0)
        board = run.estimates.get(device)
        table.add_row(
            title,
            run.status,
            f"{100 * (run.accuracy or 0.0):.1f} %",
            f"{change:+.1f} pt" if abs(change) >= 0.05 else "same",
            f"{(run.size_bytes or 0) / 1e6:.2f} MB",
            f"{run.compression_ratio or 0:.1f}x",
            f"{board.latency_ms:.1f} ms" if board else "",
        )
    declared = report.experiment.preprocessing
    if declared is not None:
        table.caption = f"Input as declared: {declared.describe()}"
        table.caption_justify = "left"
    # A pipe or a log file gets the full width instead of rich's 80-column default, so rows never wrap.
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    console.print(table)
    rec = report.recommendation
    if rec is not None and rec.technique is not None:
        console.print(f"Recommended: {catalog.technique_info(rec.technique).title}. {rec.reasoning}")
    elif rec is not None:
        console.print(rec.reasoning)
    console.print(f"Report and files: {out}")


def _parse_input_shape(value: str | None, framework: str) -> tuple[int, int] | None:
    """``1,3,224,224`` (PyTorch, NCHW) or ``1,224,224,3`` (Keras, NHWC) -> (height, width)."""
    if not value:
        return None
    try:
        dims = [int(part) for part in value.split(",")]
    except ValueError as exc:
        raise InvalidInput(f"--input-shape must be four integers like 1,3,224,224, not {value!r}.") from exc
    if len(dims) != 4 or min(dims) < 1:
        raise InvalidInput(f"--input-shape must be four positive integers like 1,3,224,224, not {value!r}.")
    if framework == "pytorch":
        return dims[2], dims[3]
    return dims[1], dims[2]


@app.command()
@user_errors
def estimate(
    model: Annotated[Path | None, typer.Argument(help="Model file; or use --arch")] = None,
    *,
    framework: Annotated[str, typer.Option(help="pytorch or tensorflow")],
    arch: Annotated[str | None, typer.Option(help="Named architecture, e.g. resnet18")] = None,
    input_shape: Annotated[str | None, typer.Option(help="e.g. 1,3,224,224")] = None,
    device: Annotated[str, typer.Option(help="rpi4, rpi5, rpi_zero_2w or all")] = "all",
    precision: Annotated[str, typer.Option(help="fp32, int8 or int4")] = "fp32",
    threads: Annotated[int | None, typer.Option(help="Threads on the board (default: all cores)")] = None,
    num_classes: Annotated[int, typer.Option(help="Head size for named architectures")] = 1000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Estimate latency, memory and power of a model on the boards, without the hardware."""
    from edgeopt.estimate.estimator import estimate_device
    from edgeopt.estimate.graph import ModelProfile
    from edgeopt.frameworks import ModelSource, get_backend
    from edgeopt.techniques import TechniqueOutput

    if device != "all" and device not in catalog.DEVICE_NAMES:
        raise InvalidInput(f"Unknown device {device!r}; choose one of: all, {', '.join(catalog.DEVICE_NAMES)}.")
    if precision not in ("fp32", "int8", "int4"):
        raise InvalidInput(f"Unknown precision {precision!r}; choose fp32, int8 or int4.")
    if model is None and arch is None:
        raise InvalidInput("Give a model file, or a named architecture with --arch.")
    if model is not None and not model.is_file():
        raise InvalidInput(f"Model file {model} does not exist.")
    backend = get_backend(framework)
    input_size = _parse_input_shape(input_shape, framework)
    if input_size is None and arch is not None:
        # The architecture's own input (224x224 for the catalog's), the same for both frameworks.
        default = next((a.default_input for a in catalog.ARCHITECTURES if a.name == arch.lower()), None)
        input_size = default[:2] if default else None
    source = ModelSource(
        path=model,
        arch=arch,
        num_classes=num_classes,
        input_size=input_size,
        random_init=model is None,  # an estimate needs the graph, not trained weights
    )
    loaded = backend.load(source, None)
    stats = backend.model_stats(loaded, TechniqueOutput(artifact=model or Path(), precision=precision))
    profile = ModelProfile.from_dict(stats["profile"])
    devices = catalog.DEVICE_NAMES if device == "all" else (device,)
    estimates = {name: estimate_device(profile, name, precision, "xnnpack", threads).model_dump() for name in devices}
    result = {
        "model": {"params": stats["params"], "flops": stats["flops"], "input_shape": [1, *profile.input_shape]},
        "estimates": estimates,
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    height, width, channels = profile.input_shape
    typer.echo(
        f"params {stats['params']:,}  flops {stats['flops']:,}  input 1x{height}x{width}x{channels} (batch, height, "
        f"width, channels)  {precision}  runtime XNNPACK"
    )
    for name, est in estimates.items():
        fits = "fits" if est["fits"] else "DOES NOT FIT"
        typer.echo(
            f"{name:<12} {est['latency_ms']:9.2f} ms  {est['memory_mb']:8.1f} MB  "
            f"{est['power_w']:5.2f} W  {est['energy_mj']:8.2f} mJ  {est['threads']} threads  {fits}"
        )


@app.command("demo-model")
@user_errors
def demo_model(
    framework: Annotated[str, typer.Option(help="pytorch or tensorflow")],
    out: Annotated[Path, typer.Option(help="Where to write the model file")],
    seed: Annotated[int, typer.Option()] = 0,
    tiny: Annotated[
        bool,
        typer.Option(
            "--tiny",
            help="Train a CNN with an eighth of the channels instead (6.5 k weights in PyTorch, 1.8 k in Keras): "
            "compression costs it accuracy, so the results show trade-offs (docs/user-guide.md)",
        ),
    ] = False,
) -> None:
    """Train the demo CNN on the bundled digits data and save it (measured on 2 cores busy with other work: about 3
    minutes for the PyTorch demo, 80 s with --tiny; less on a quiet machine)."""
    from edgeopt.frameworks import get_backend

    path = get_backend(framework).demo_model(out, seed=seed, tiny=tiny)
    typer.echo(str(path))


@app.command()
@user_errors
def bench(
    artifact: Annotated[Path, typer.Argument(help="A .pte (ExecuTorch) or .tflite (LiteRT) artifact")],
    *,
    threads: Annotated[
        int | None, typer.Option(help="Threads the runtime may use (default: EDGEOPT_THREADS, as the report's host)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON on stdout")] = False,
) -> None:
    """Time an artifact on this machine (a Raspberry Pi, say) by the rules of the report's host latency."""
    from edgeopt.bench import bench as run_bench
    from edgeopt.settings import get_settings

    result = run_bench(artifact, threads=threads if threads is not None else get_settings().threads)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    stats = result.latency_ms
    noisy = "  NOISY: p90 above 1.5x the median after a re-measurement" if stats.noisy else ""
    typer.echo(
        f"{result.artifact}: median {stats.host:.3f} ms  p90 {stats.host_p90:.3f} ms  ({result.runtime}, "
        f"{result.threads} thread{'s' if result.threads != 1 else ''}, input {'x'.join(map(str, result.input_shape))})"
        f"{noisy}"
    )
    typer.echo(f"on {result.board.name}")


@app.command()
@user_errors
def agent(
    server: Annotated[str, typer.Option(help="EdgeOpt service URL, e.g. http://192.168.1.10:8000")],
    api_key: Annotated[str | None, typer.Option(help="The service's API key (or EDGEOPT_AGENT_API_KEY)")] = None,
    threads: Annotated[
        int | None, typer.Option(help="Threads per measurement (default: those the board estimate assumed)")
    ] = None,
    accept_any_device: Annotated[
        bool, typer.Option(help="Also measure experiments that target another board (a test host, a Pi 3)")
    ] = False,
    poll_seconds: Annotated[float, typer.Option(help="Wait between polls when there is no job")] = 5.0,
) -> None:
    """Register this board with a service and measure its experiments' artifacts here, until stopped."""
    import os

    from edgeopt.agent import Agent

    key = api_key or os.environ.get("EDGEOPT_AGENT_API_KEY")
    Agent(server, key, threads=threads, accept_any_device=accept_any_device, poll_seconds=poll_seconds).run()


@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Start the API and the web app (migrates the database first)."""
    from edgeopt.service.cli import serve as run_server

    run_server(host=host, port=port)


@app.command()
@user_errors
def worker(
    concurrency: Annotated[int, typer.Option(help="Techniques this worker runs at once (one process each)")] = 1,
    hostname: Annotated[str | None, typer.Option(help="Celery node name (default: edgeopt@<host>-<pid>)")] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Run techniques from the broker in EDGEOPT_BROKER_URL (a Celery worker); start as many as you like."""
    from edgeopt.service.cli import worker as run_worker

    run_worker(concurrency=concurrency, hostname=hostname, loglevel=loglevel)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
