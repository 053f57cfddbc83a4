"""Breadth check of the step that breaks most often on unseen models: channel removal, over the whole torchvision zoo.

``benchmarks/coverage.py`` runs every technique end to end, a quarter of an hour per architecture on two cores, so a
session covers a handful. This sweep isolates the fragile step and covers the zoo in minutes: each architecture (10
classes, the smallest input in ``coverage.SIZES`` it accepts, random initialisation) is exported the way users
export (``torch.export.export(model, (x[:1],))``, static batch 1), rebuilt into editable layers as an upload is
(``graph_modules.editable_module``), and ``prune_channels`` removes 30 % of the channels both ways
(``ALLOCATIONS``). A cell passes when the pruned network runs a batch of 4 and still gives (4, 10) logits, or when
pruning refuses with EdgeOpt's own sentence (``Unsupported``/``TechniqueFailed``: what the user sees, named layers);
any other exception is a bug. Architectures over ``--max-params``, or that need an input over ``--max-input``, are
left out: the export alone takes minutes, and MaxViT at 224x224 took over 16 GB in torch-pruning's dependency graph.

    .venv/bin/python -m benchmarks.pruning_sweep [--models a,b] [--max-params 40e6] [--max-input 160]
        [--out benchmarks/results/pruning_sweep.md]

``--framework tensorflow`` does the same over the keras.applications families of
``benchmarks/coverage_tensorflow.py`` (random initialisation at their sizes there) with the Keras rebuild
(``filter_pruning.prune_filters``, protected as the techniques call it): the rebuilt model must predict (4, 10).
Results go to ``benchmarks/results/pruning_sweep_tensorflow.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def sweep_one(arch: str, max_params: float, max_input: int) -> dict[str, str]:
    import torch

    from benchmarks.coverage import build_at_smallest_size
    from edgeopt.frameworks.pytorch.graph_modules import editable_module
    from edgeopt.frameworks.pytorch.pruning import ALLOCATIONS, prune_channels

    torch.manual_seed(0)
    model, size = build_at_smallest_size(arch)
    params = sum(p.numel() for p in model.parameters())
    row = {"input": f"{size}x{size}", "params": f"{params / 1e6:.1f}M"}
    if params > max_params or size > max_input:
        return {**row, **{a: "left out (size)" for a in ALLOCATIONS}}
    example = torch.rand(1, 3, size, size)
    program = torch.export.export(model, (example,))

    def attempt(allocation: str) -> str:
        module = editable_module(program)
        summary = prune_channels(module, example, 0.3, "prune_structured", allocation=allocation)
        with torch.no_grad():
            out = module(torch.rand(4, 3, size, size))
        if tuple(out.shape) != (4, 10):
            return f"BUG: logits {tuple(out.shape)}"
        return f"ok, {summary.macs_before / max(summary.macs_after, 1):.2f}x fewer MACs"

    return {**row, **{allocation: _cell(attempt, allocation) for allocation in ALLOCATIONS}}


def _cell(attempt: Callable[[str], str], allocation: str) -> str:
    """``attempt(allocation)``'s verdict; EdgeOpt's own refusal is a result, any other exception a bug."""
    from edgeopt.errors import EdgeOptError

    try:
        return attempt(allocation)
    except EdgeOptError as exc:
        return f"refused: {str(exc)[:160]}"
    except Exception as exc:  # noqa: BLE001 - recorded: an internal error is the bug this sweep looks for
        traceback.print_exc()
        return f"BUG: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def sweep_one_keras(key: str) -> dict[str, str]:
    import numpy as np

    from benchmarks.coverage_tensorflow import FAMILIES
    from edgeopt.frameworks.tensorflow.filter_pruning import ALLOCATIONS, prune_filters

    family = FAMILIES[key]
    model = family.build((family.size, family.size, 3), 10)
    row = {"input": f"{family.size}x{family.size}", "params": f"{model.count_params() / 1e6:.1f}M"}

    def attempt(allocation: str) -> str:
        pruned = prune_filters(model, 0.3, protect=True, allocation=allocation)
        out = pruned.model.predict(np.random.rand(4, family.size, family.size, 3).astype("float32"), verbose=0)
        if tuple(out.shape) != (4, 10):
            return f"BUG: logits {out.shape}"
        return f"ok, filters {pruned.filters_before} -> {pruned.filters_after}"

    return {**row, **{allocation: _cell(attempt, allocation) for allocation in ALLOCATIONS}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=("pytorch", "tensorflow"), default="pytorch")
    parser.add_argument("--models", help="comma-separated architectures (default: the whole zoo)")
    parser.add_argument("--max-params", type=float, default=40e6)
    parser.add_argument("--max-input", type=int, default=160, help="largest input side tried (MaxViT needs 224)")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/pruning_sweep[_tensorflow].md")
    args = parser.parse_args(argv)
    keras = args.framework == "tensorflow"
    args.out = args.out or RESULTS / ("pruning_sweep_tensorflow.md" if keras else "pruning_sweep.md")
    if keras:
        from benchmarks.coverage_tensorflow import FAMILIES

        zoo = [key for key in FAMILIES if key != "subclassed_savedmodel"]  # a serving graph: nothing to rebuild
    else:
        import torchvision

        zoo = list(torchvision.models.list_models(module=torchvision.models))
    models = args.models.split(",") if args.models else zoo
    command = "python -m benchmarks.pruning_sweep " + shlex.join(argv if argv is not None else sys.argv[1:])
    rows: dict[str, dict[str, str]] = {}
    started = time.perf_counter()
    for arch in models:
        t0 = time.perf_counter()
        try:
            rows[arch] = sweep_one_keras(arch) if keras else sweep_one(arch, args.max_params, args.max_input)
        except Exception as exc:  # noqa: BLE001 - the model did not build or export: not pruning's fault
            rows[arch] = {"input": "-", "params": "-", "global": f"not exported: {type(exc).__name__}"}
        print(f"{arch} ({time.perf_counter() - t0:.0f} s): {rows[arch]}", flush=True)
        write(rows, command, args.out, time.perf_counter() - started, keras)
    return 0


def write(rows: dict[str, dict[str, str]], command: str, out: Path, seconds: float, keras: bool = False) -> None:
    bugs = sum("BUG" in cell for row in rows.values() for cell in row.values())
    how = (
        "Random initialisation, the Keras rebuild with residual streams and bottlenecks protected as the techniques "
        "do, 30 % of the free channels removed each way; `ok` means the rebuilt model gave (4, 10) logits."
        if keras
        else "Random initialisation, static batch 1 export, rebuilt as an upload is, 30 % of the channels removed each "
        "way; `ok` means the pruned network ran a batch of 4 and gave (4, 10) logits."
    )
    lines = [
        f"# Structured pruning over the {'keras.applications families' if keras else 'torchvision zoo'} "
        "(channel removal alone)",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s: `{command}`",
        "",
        how + " See the docstring of `benchmarks/pruning_sweep.py`.",
        "",
        f"{len(rows)} architectures, {bugs} cells with an internal error or wrong logits.",
        "",
        "| architecture | input | params | global | uniform |",
        "|---|---|---|---|---|",
    ]
    for arch, row in rows.items():
        cells = [row.get(k, "-").replace("|", "/").replace("\n", " ") for k in ("input", "params", "global", "uniform")]
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
