"""Structured pruning on attention and LayerNorm models exported at batch 1 (tiny stand-ins, no lowering).

Swin's patch merging concatenates four strided slices along the last dimension; torch-pruning maps that
concatenation's channel indices wrongly, and one group it could not rank used to stop the whole technique with an
IndexError. Now such groups are left whole (and named), the rest is pruned, and the pruned network still runs.
"""

from __future__ import annotations

import pytest
import torch

from edgeopt.frameworks.pytorch.graph_modules import editable_module
from edgeopt.frameworks.pytorch.pruning import prune_channels
from tests.pytorch.test_batch_free import _tiny


@pytest.mark.parametrize("family", ["swin", "convnext"])
def test_structured_pruning_removes_channels_and_the_network_still_runs(family: str) -> None:
    program = torch.export.export(_tiny(family), (torch.rand(1, 3, 32, 32),))
    module = editable_module(program)
    summary = prune_channels(module, torch.rand(1, 3, 32, 32), 0.5, "prune_structured")
    assert summary.params_after < summary.params_before
    with torch.no_grad():
        assert module.eval()(torch.rand(4, 3, 32, 32)).shape == (4, 10)


def test_pruning_that_keeps_breaking_the_network_is_skipped_with_the_layers_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When keeping layers whole never makes the pruned copy run, the run is a skip naming them, not a failure."""
    from edgeopt.errors import Unsupported
    from edgeopt.frameworks.pytorch import pruning

    program = torch.export.export(_tiny("convnext"), (torch.rand(1, 3, 32, 32),))
    module = editable_module(program)
    calls: list[int] = []

    def always_broken(pruned: torch.nn.Module, example: torch.Tensor) -> list[torch.nn.Module]:
        calls.append(1)  # a new layer each time, so only the attempt limit stops the retries
        layers = [m for m in pruned.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        return [layers[len(calls) % len(layers)]]

    monkeypatch.setattr(pruning, "_layers_breaking", always_broken)
    with pytest.raises(Unsupported, match="cannot remove channels from this model consistently") as caught:
        prune_channels(module, torch.rand(1, 3, 32, 32), 0.5, "prune_structured")
    assert len(calls) == pruning.MAX_PRUNING_ATTEMPTS
    assert "prune_unstructured" in str(caught.value)
    assert "Error" not in str(caught.value)  # no exception class name reaches the user
