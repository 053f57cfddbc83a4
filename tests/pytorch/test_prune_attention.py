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
