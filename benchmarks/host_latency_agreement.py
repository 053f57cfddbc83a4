"""Does the report's host latency agree with an independent re-measurement? (issue 16: within 15 %)

Takes the artifacts of finished experiments (the work folders ``benchmarks/pytorch_techniques.py`` leaves, one per
model, each with its ``report.json``) and times every artifact two ways, alternately, ``--repeats`` times:

- **report**: the engine's own method, ``host_timing.retime`` with ``host_timing.in_fresh_process`` (a fresh Python
  that loads only the artifacts and times them side by side), exactly as an experiment's last step does;
- **independent**: this process loads each ``.pte`` with ``load_pte`` and times them with
  ``measure.interleaved_latency`` on a random input, as ``pytorch_techniques.py`` does for its speed-ups.

Per artifact it reports the median over the repeats of each method, their ratio, and how often the engine marked
the figure ``noisy``. Timing depends on the host's load: the load average is recorded with the figures.

    .venv/bin/python benchmarks/host_latency_agreement.py --work-dir /tmp/lat_work --models demo,resnet18

Appends a section to ``benchmarks/results/host_latency.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import sys
from pathlib import Path

import torch._dynamo  # noqa: F401 - before anything that might import TensorFlow (docs/library-notes.md)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pytorch_techniques import interleaved  # noqa: E402
from benchmarks.results_file import append_section  # noqa: E402

TOLERANCE = 0.15


def engine_figures(work: Path) -> tuple[dict[str, float], set[str]]:
    """Median ms per artifact by the engine's own re-timing, and the names it marked noisy."""
    import numpy as np

    from edgeopt import host_timing
    from edgeopt.report import Report

    report = Report.model_validate_json((work / "report.json").read_text())
    channels = 1 if work.name == "demo" else 3
    sample = np.random.default_rng(0).random((1, 32, 32, channels), dtype=np.float32)  # NHWC, as the pipeline feeds
    noisy = set(host_timing.retime(report, work, host_timing.in_fresh_process("pytorch", sample, threads=1)))
    assert report.baseline is not None
    figures = {"baseline": report.baseline.latency_ms.host}
    figures |= {run.technique: run.latency_ms.host for run in report.runs if run.latency_ms is not None}
    return figures, noisy


def compare(model: str, work: Path, repeats: int) -> list[str]:
    from edgeopt.report import Report

    report = Report.model_validate_json((work / "report.json").read_text())
    engine: dict[str, list[float]] = {}
    independent: dict[str, list[float]] = {}
    flagged: dict[str, int] = {}
    for _ in range(repeats):
        figures, noisy = engine_figures(work)
        for name, ms in figures.items():
            engine.setdefault(name, []).append(ms)
            flagged[name] = flagged.get(name, 0) + (name in noisy)
        for name, ms in interleaved(model, report, work).items():
            independent.setdefault(name, []).append(ms)
    lines = [
        f"### {model}",
        "",
        "| artifact | report method ms (median of repeats) | independent ms | ratio | within 15 % | marked noisy |",
        "|---|---|---|---|---|---|",
    ]
    for name in engine:
        ours, theirs = statistics.median(engine[name]), statistics.median(independent[name])
        ratio = ours / theirs
        ok = "yes" if abs(ratio - 1.0) <= TOLERANCE else "NO"
        lines.append(f"| {name} | {ours:.3f} | {theirs:.3f} | {ratio:.2f} | {ok} | {flagged[name]} of {repeats} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="pytorch_techniques.py's --work-dir")
    parser.add_argument("--models", default="demo,resnet18")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    command = "python benchmarks/host_latency_agreement.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    load_before = os.getloadavg()
    sections = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        sections += compare(model, args.work_dir / model, args.repeats)
    load_after = os.getloadavg()
    header = [
        f"## Host latency agreement, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`. Load average (1 / 5 / 15 min) {' / '.join(f'{v:.1f}' for v in load_before)} "
        f"before, {' / '.join(f'{v:.1f}' for v in load_after)} after. Ratio = report method / independent; "
        "the issue's target is every ratio within 15 % and no figure with p90 above 1.5x its median left unmarked.",
        "",
    ]
    append_section(
        "host_latency", "Host latency: the report's method against an independent re-measurement", header + sections
    )


if __name__ == "__main__":
    main()
