"""Calibrates the board estimator on published measurements and writes its error report into docs/estimator.md.

Fits the free parameters on every ``fit`` row of ``src/edgeopt/estimate/calibration.csv`` (stored in
``fitted.toml``), validates leave-one-model-out against a FLOPs-only baseline, evaluates the ``check`` and
``bound`` rows, and replaces the generated block of docs/estimator.md. No framework is imported: the network
profiles come from the cached ``calibration_layers.csv``. Run from the repository root:

    .venv/bin/python -m benchmarks.estimator_calibration            # fit, validate, write fitted.toml + docs
    .venv/bin/python -m benchmarks.estimator_calibration --no-write # print only
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeopt.catalog import DEVICE_NAMES
from edgeopt.estimate import calibrate
from edgeopt.estimate.estimator import Params, estimate_on_board, get_board

DOC = Path(__file__).resolve().parents[1] / "docs" / "estimator.md"
START, END = "<!-- calibration:start -->", "<!-- calibration:end -->"


def _source_key(source: str) -> str:
    """One measurement campaign: one board measured by one author with one runtime build."""
    if source.startswith("Tencent/ncnn"):
        return "ncnn-zero2w" if "Zero" in source else "ncnn-rpi4"
    if source.startswith("Q-engineering"):
        return "qeng"
    if source.startswith("google/XNNPACK"):
        return "xnnpack-rpi4"
    if source.startswith("nnn112358/"):
        return "nnn-zero2w" if "Zero" in source else "nnn-rpi5"
    return "pytorch-tut"


def _fmt_summary(label: str, summary: dict[str, float]) -> str:
    return (
        f"| {label} | {int(summary['rows'])} | x{summary['median_factor']:.2f} | x{summary['worst_factor']:.2f} | "
        f"{summary['median_ratio']:.2f} | {100 * summary['within_1_5']:.0f} % | {100 * summary['within_2']:.0f} % |"
    )


def _table_header() -> list[str]:
    return [
        "| model | rows | median error | worst error | median estimate/measured | within 1.5x | within 2x |",
        "|---|---|---|---|---|---|---|",
    ]


def _pair_header(first: str) -> list[str]:
    return [
        f"| {first} | rows | per-layer median | per-layer worst | FLOPs-only median | FLOPs-only worst "
        "| per-layer no worse |",
        "|---|---|---|---|---|---|---|",
    ]


def _pair_row(label: str, group: Sequence[calibrate.SourceValidation]) -> tuple[str, bool]:
    ours = calibrate.error_summary([v.ratio for v in group])
    flops = calibrate.error_summary([v.flops_ratio for v in group])
    fallback = " (FLOPs share from other boards)" if any(v.flops_fallback for v in group) else ""
    ok = ours["median_factor"] <= flops["median_factor"] and ours["worst_factor"] <= flops["worst_factor"]
    return (
        f"| {label}{fallback} | {len(group)} | x{ours['median_factor']:.2f} | x{ours['worst_factor']:.2f} | "
        f"x{flops['median_factor']:.2f} | x{flops['worst_factor']:.2f} | {'yes' if ok else 'NO'} |"
    ), ok


def _pi5_coverage(rows: Sequence[calibrate.SourceValidation]) -> str:
    """What the fitted rows say about the Pi 5, stated from the data rather than assumed."""
    pi5 = [v for v in rows if v.measurement.board == "rpi5"]
    if not pi5:
        return "No Raspberry Pi 5 row is fitted, so nothing here validates the Pi 5."
    runtimes = sorted({v.measurement.runtime for v in pi5})
    campaigns = sorted({v.held_out for v in pi5})
    verdict = (
        "so the Pi 5 XNNPACK estimate is validated only through another runtime on the same cores"
        if "xnnpack" not in runtimes
        else "including XNNPACK rows"
    )
    return (
        f"Raspberry Pi 5: {len(pi5)} fitted rows from {len(campaigns)} campaign(s) ({', '.join(campaigns)}), runtime "
        f"{', '.join(runtimes)}, {verdict}. Held out, they are predicted within "
        f"x{max(max(v.ratio, 1 / v.ratio) for v in pi5):.2f} (median "
        f"x{calibrate.error_summary([v.ratio for v in pi5])['median_factor']:.2f})."
    )


def _disagreement_section(measurements: Sequence[calibrate.Measurement]) -> list[str]:
    """Rows two campaigns measured under the same stated conditions (network, board, clock, threads, precision): how
    far apart they are bounds what any board-level model can reach when one of them is held out."""
    by_key: dict[tuple[str, str, float, int, str], dict[str, float]] = {}
    for m in measurements:
        if m.use == "fit":
            key = (m.network, m.board, m.clock_ghz, m.threads, m.precision)
            by_key.setdefault(key, {})[_source_key(m.source)] = m.latency_ms
    pairs: dict[tuple[str, str], list[float]] = {}
    for found in by_key.values():
        names = sorted(found)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                pairs.setdefault((first, second), []).append(found[second] / found[first])
    if not pairs:
        return []
    lines = [
        "",
        "### Where two campaigns measured the same thing",
        "",
        "Same network, board, clock, threads and precision, measured by two campaigns; the ratio is the second "
        "campaign's latency over the first's. A board-level model cannot tell them apart: fitted on one, it misses "
        "the other by this factor; fitted on both, it misses each by about its square root.",
        "",
        "| campaigns | rows | median ratio | range |",
        "|---|---|---|---|",
    ]
    for (first, second), ratios in sorted(pairs.items()):
        lines.append(
            f"| `{second}` / `{first}` | {len(ratios)} | {float(np.median(ratios)):.2f} | "
            f"{min(ratios):.2f} .. {max(ratios):.2f} |"
        )
    return lines


def _source_section(
    by_section: Sequence[calibrate.SourceValidation], by_document: Sequence[calibrate.SourceValidation]
) -> list[str]:
    """Leave-one-source-out (issue 16): whole measurement campaigns held out, against a FLOPs-only baseline fitted
    per board and precision on the same training rows."""
    lines = [
        "",
        "### Leave-one-source-out",
        "",
        "Each source's rows are predicted by parameters fitted on the other sources only; the FLOPs-only baseline is "
        "fitted on the same rows, one share of peak per board and precision (one share over all other rows where the "
        "held-out source is the only one for that board and precision). A campaign is one board measured by one "
        f"author with one runtime build ({', '.join(f'`{k}`' for k in sorted({v.held_out for v in by_section}))}: "
        "see Sources); a document is one URL (the ncnn README holds two campaigns).",
        "",
    ]
    lines += _pair_header("held out")
    for label, group in (("one campaign at a time (all rows)", by_section), ("one document at a time", by_document)):
        lines.append(_pair_row(label, group)[0])
    for source in sorted({v.held_out for v in by_section}):
        lines.append(_pair_row(f"campaign `{source}`", [v for v in by_section if v.held_out == source])[0])
    lines += ["", "By board and precision (one campaign held out at a time):", ""]
    lines += _pair_header("board, precision")
    verdicts = []
    for board, precision in sorted({(v.measurement.board, v.measurement.precision) for v in by_section}):
        group = [v for v in by_section if (v.measurement.board, v.measurement.precision) == (board, precision)]
        line, ok = _pair_row(f"{board} {precision}", group)
        lines.append(line)
        verdicts.append(ok)
    summary = calibrate.error_summary([v.ratio for v in by_section])
    median, worst = summary["median_factor"], summary["worst_factor"]
    lines += [
        "",
        f"**Targets (leave-one-source-out, one campaign at a time):** median within 1.25x: "
        f"**{'met' if median <= 1.25 else 'MISSED'}** (x{median:.2f}); every row "
        f"within 2x: **{'met' if worst <= 2.0 else 'MISSED'}** (worst x{worst:.2f}); "
        f"no worse than the FLOPs-only baseline on every board and precision: "
        f"**{'met' if all(verdicts) else 'MISSED'}**.",
        "",
        _pi5_coverage(by_section),
    ]
    return lines


def report(write: bool) -> str:
    started = time.monotonic()
    measurements = calibrate.load_measurements()
    profiles = calibrate.load_profiles()
    fit_rows = calibrate.prepare([m for m in measurements if m.use == "fit"], profiles)
    params = calibrate.fit(fit_rows)
    in_sample = [row.estimate(params) / row.measurement.latency_ms for row in fit_rows]
    flops_share = calibrate.fit_flops(fit_rows)
    in_sample_flops = [row.flops_unit() / flops_share / row.measurement.latency_ms for row in fit_rows]
    validation = calibrate.leave_one_model_out(fit_rows)
    by_section = calibrate.leave_one_source_out(fit_rows, key=lambda m: _source_key(m.source))
    by_document = calibrate.leave_one_source_out(fit_rows, key=lambda m: m.url)
    lomo = calibrate.error_summary([v.ratio for v in validation])
    lomo_flops = calibrate.error_summary([v.flops_ratio for v in validation])
    if write:
        note = (
            f"Leave-one-model-out on {len(validation)} rows: median error x{lomo['median_factor']:.3f}, "
            f"worst x{lomo['worst_factor']:.2f}"
        )
        calibrate.write_fitted(params, note)

    lines: list[str] = [
        START,
        "",
        "_Generated by `python -m benchmarks.estimator_calibration`; do not edit by hand._",
        "",
    ]
    lines += ["### Error on the published measurements", ""]
    lines += _table_header()
    lines.append(_fmt_summary("per-layer model, leave-one-model-out", lomo))
    lines.append(_fmt_summary("FLOPs-only baseline, leave-one-model-out", lomo_flops))
    lines.append(_fmt_summary("per-layer model, in-sample (all rows fitted)", calibrate.error_summary(in_sample)))
    lines.append(_fmt_summary("FLOPs-only baseline, in-sample", calibrate.error_summary(in_sample_flops)))
    median_ok = lomo["median_factor"] <= 1.25
    worst_ok = lomo["worst_factor"] <= 2.0
    lines += [
        "",
        f"**Targets (leave-one-model-out):** median error within 1.25x: **{'met' if median_ok else 'MISSED'}** "
        f"(x{lomo['median_factor']:.2f}); every row within 2x: **{'met' if worst_ok else 'MISSED'}** "
        f"(worst x{lomo['worst_factor']:.2f}). The FLOPs-only baseline: x{lomo_flops['median_factor']:.2f} median, "
        f"x{lomo_flops['worst_factor']:.2f} worst.",
    ]
    lines += _source_section(by_section, by_document)
    lines += _disagreement_section(measurements)
    lines += [
        "",
        "Error factor = max(estimate/measured, measured/estimate). By board and runtime (leave-one-model-out):",
        "",
    ]
    lines += _table_header()
    groups: dict[str, list[float]] = {}
    for v in validation:
        m = v.measurement
        groups.setdefault(f"{m.board} {m.clock_ghz:g} GHz, {m.runtime}", []).append(v.ratio)
    for label, ratios in sorted(groups.items()):
        lines.append(_fmt_summary(label, calibrate.error_summary(ratios)))

    lines += ["", "### Fitted parameters", "", "| parameter | value | bounds |", "|---|---|---|"]
    for name in Params.names():
        low, high = calibrate.BOUNDS.get(name, (float("nan"), float("nan")))
        at_bound = (
            " (at bound)"
            if abs(getattr(params, name) / low - 1) < 1e-3 or abs(getattr(params, name) / high - 1) < 1e-3
            else ""
        )
        lines.append(f"| `{name}` | {getattr(params, name):.4g}{at_bound} | {low:g} .. {high:g} |")

    lines += [
        "",
        "### Every calibration row (leave-one-model-out estimate)",
        "",
        "| network | board | GHz | threads | precision | runtime | measured ms | estimate ms | ratio "
        "| FLOPs-only ratio | source |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in sorted(
        validation,
        key=lambda v: (
            v.measurement.network,
            v.measurement.board,
            -v.measurement.clock_ghz,
            v.measurement.threads,
            v.measurement.precision,
        ),
    ):
        m = v.measurement
        lines.append(
            f"| {m.network} | {m.board} | {m.clock_ghz:g} | {m.threads} | {m.precision} | {m.runtime} | "
            f"{m.latency_ms:.1f} | {v.estimate_ms:.1f} | {v.ratio:.2f} | {v.flops_ratio:.2f} | "
            f"{_source_key(m.source)} |"
        )

    others = calibrate.prepare([m for m in measurements if m.use != "fit"], profiles)
    lines += [
        "",
        "### Rows not fitted (final parameters)",
        "",
        "`check`: another runtime class or an unstated clock, compared but never fitted. `bound`: an end-to-end "
        "figure (camera, preprocessing and model); the model's own time must be below it.",
        "",
        "| use | network | board | GHz | threads | precision | runtime | published ms | estimate ms | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in others:
        m = row.measurement
        estimate = row.estimate(params)
        lines.append(
            f"| {m.use} | {m.network} | {m.board} | {m.clock_ghz:g} | {m.threads} | {m.precision} | {m.runtime} | "
            f"{m.latency_ms:.1f} | {estimate:.1f} | {estimate / m.latency_ms:.2f} |"
        )

    lines += [
        "",
        "### What the fitted model predicts for XNNPACK (4 threads)",
        "",
        "| network | precision | "
        + " | ".join(f"{d} ms" for d in DEVICE_NAMES)
        + " | "
        + " | ".join(f"{d} MB" for d in DEVICE_NAMES)
        + " |",
        "|---|---|" + "---|" * (2 * len(DEVICE_NAMES)),
    ]
    for network in ("mobilenet_v2", "resnet18", "resnet50", "vgg16"):
        for precision in ("fp32", "int8"):
            est = [estimate_on_board(profiles[network], get_board(d), precision, params=params) for d in DEVICE_NAMES]
            lines.append(
                f"| {network} | {precision} | "
                + " | ".join(f"{e.latency_ms:.1f}" for e in est)
                + " | "
                + " | ".join(f"{e.memory_mb:.0f}" + ("" if e.fits else " (does not fit)") for e in est)
                + " |"
            )

    sources = sorted({(_source_key(m.source), m.source, m.url) for m in measurements})
    lines += ["", "### Sources", ""]
    for key, source, url in sources:
        lines.append(f"- `{key}`: {source}. <{url}>")
    lines += ["", f"Fit and validation took {time.monotonic() - started:.0f} s.", "", END]
    block = "\n".join(lines)
    if write:
        text = DOC.read_text(encoding="utf-8")
        if START not in text or END not in text:
            raise SystemExit(f"{DOC} has no {START} ... {END} block to replace.")
        DOC.write_text(
            re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S), encoding="utf-8"
        )
    print(_table_header()[0])
    print(_fmt_summary("per-layer, leave-one-model-out", lomo))
    print(_fmt_summary("FLOPs-only, leave-one-model-out", lomo_flops))
    print(params)
    return block


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="print the summary; leave fitted.toml and docs alone")
    args = parser.parse_args(argv)
    report(write=not args.no_write)


if __name__ == "__main__":
    main()
