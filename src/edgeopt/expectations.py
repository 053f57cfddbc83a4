"""What each technique normally achieves, and the check that tells a user when their result falls short of it.

These are the targets of the techniques' acceptance table (size ratio, accuracy drop, gzip ratio, sparsity, FLOPs,
params), set in each technique's spec (``TechniqueSpec.expected``). The pipeline appends every shortfall to the
result's notes, so a user sees "this INT8 file is only 3.6x smaller, usually at least 3.8x" next to the figure
instead of having to know the table; the technique tests and the benchmarks check the same numbers with the same
function.
"""

from __future__ import annotations

from typing import Protocol

from edgeopt.catalog import FRAMEWORKS
from edgeopt.technique_specs import SPECS, Expectation

# Per framework and technique, from the specs (edgeopt.technique_specs), where each technique's usual outcome is set.
EXPECTATIONS: dict[str, dict[str, Expectation]] = {
    framework: {spec.name: spec.expected[framework] for spec in SPECS if framework in spec.expected}
    for framework in FRAMEWORKS
}


class Measurement(Protocol):
    """The measured fields compared (``pipeline.Measured``, ``report.BaselineResult`` and ``RunResult`` have them)."""

    @property
    def accuracy(self) -> float | None: ...
    @property
    def size_bytes(self) -> int | None: ...
    @property
    def compressed_size_bytes(self) -> int | None: ...
    @property
    def sparsity(self) -> float | None: ...
    @property
    def flops(self) -> int | None: ...
    @property
    def params(self) -> int | None: ...


def shortfalls(expected: Expectation | None, baseline: Measurement, result: Measurement) -> list[str]:
    """Each way ``result`` falls short of ``expected`` (see ``EXPECTATIONS``), as a phrase a user understands."""
    if expected is None:
        return []
    found: list[str] = []
    size_ratio = _ratio(baseline.size_bytes, result.size_bytes)
    if expected.min_compression is not None and size_ratio < expected.min_compression:
        found.append(f"the file is {size_ratio:.2f}x smaller (usually at least {expected.min_compression:g}x)")
    if expected.dense_file and not 0.9 <= size_ratio <= 1.1:
        found.append(f"the file changed size {size_ratio:.2f}x although zeros are stored densely")
    drop = 100.0 * ((baseline.accuracy or 0.0) - (result.accuracy or 0.0))
    if expected.max_drop_points is not None and drop > expected.max_drop_points:
        found.append(f"accuracy drops {drop:.2f} points (usually at most {expected.max_drop_points:g})")
    gzip_ratio = _ratio(baseline.compressed_size_bytes, result.compressed_size_bytes)
    if expected.min_gzip_ratio is not None and gzip_ratio < expected.min_gzip_ratio:
        found.append(f"the gzip size is {gzip_ratio:.2f}x smaller (usually at least {expected.min_gzip_ratio:g}x)")
    sparsity = result.sparsity or 0.0
    if expected.sparsity is not None and not expected.sparsity[0] <= sparsity <= expected.sparsity[1]:
        low, high = expected.sparsity
        found.append(f"{sparsity:.1%} of the weights are zero (expected {low:.0%}-{high:.0%})")
    flops_ratio = _ratio(baseline.flops, result.flops)
    if expected.min_flops_ratio is not None and flops_ratio < expected.min_flops_ratio:
        found.append(f"it needs {flops_ratio:.2f}x fewer FLOPs (usually at least {expected.min_flops_ratio:g}x)")
    params_fraction = (result.params or 0) / max(1, baseline.params or 0)
    if expected.max_params_fraction is not None and params_fraction > expected.max_params_fraction:
        found.append(
            f"it keeps {params_fraction:.0%} of the parameters (usually at most {expected.max_params_fraction:.0%})"
        )
    return found


def shortfall_sentence(found: list[str]) -> str:
    """The sentence appended to a result's notes; empty when the result is as good as usual."""
    if not found:
        return ""
    return " Below this technique's usual outcome on this model: " + "; ".join(found) + "."


def _ratio(before: int | None, after: int | None) -> float:
    return (before or 0) / max(1, after or 0)
