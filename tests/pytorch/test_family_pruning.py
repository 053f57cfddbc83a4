"""Channel removal on one stock torchvision architecture per family users deploy, exported as users export them.

Structured pruning is the step unseen architectures break most often, and the end-to-end family test
(``tests/pytorch/test_families.py``) can afford only ShuffleNet in ``make test``. Here each family of issue 12 gets
the fragile step alone, in seconds: random initialisation at 32x32, ``torch.export`` at static batch 1, rebuilt
into layers as an upload is, 30 % of the channels removed by the ranking across layers (the allocation with the
most machinery of its own, ``_GuardedImportance``; ShuffleNet's channel shuffle is covered end to end there). The
pruned network must run a batch of 4 and still give one logit per class, and must have lost work.
``benchmarks/pruning_sweep.py`` runs the same check, both ways, over the whole zoo
(``benchmarks/results/pruning_sweep.md``).
"""

from __future__ import annotations

import pytest
import torch

from edgeopt.frameworks.pytorch.graph_modules import editable_module
from edgeopt.frameworks.pytorch.pruning import prune_channels

pytestmark = pytest.mark.slow

FAMILIES = {
    "mobilenet_v3_small": "squeeze-and-excite, hard-swish",
    "regnet_y_400mf": "grouped convolutions, squeeze-and-excite",
    "densenet121": "dense concatenation",
    "mnasnet0_5": "inverted residuals",
    "convnext_tiny": "LayerNorm, GELU, 7x7 depthwise",
    "googlenet": "parallel branches concatenated",
    "squeezenet1_1": "a convolution as classifier",
}


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_pruned_network_still_gives_one_logit_per_class(arch: str) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=10).eval()
    module = editable_module(torch.export.export(model, (torch.rand(1, 3, 32, 32),)))
    summary = prune_channels(module, torch.rand(1, 3, 32, 32), 0.3, "prune_structured", allocation="global")
    assert summary.macs_after < summary.macs_before
    with torch.no_grad():
        assert module.eval()(torch.rand(4, 3, 32, 32)).shape == (4, 10)
