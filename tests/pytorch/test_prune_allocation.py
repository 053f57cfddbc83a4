"""Structured pruning's global allocation: channels are ranked across layers, capped per layer (issue 14).

``prune_channels`` ranks every channel group's channels together (batch-norm scale when the network has batch
norms, else L2 magnitude, each LAMP-normalised within its group) so a layer whose channels count less loses more; no
layer loses more than ``MAX_LAYER_RATIO`` of its channels. Uniform per-layer removal would take the same share from
every layer and fail the first test.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeopt.frameworks.pytorch.export import export_program
from edgeopt.frameworks.pytorch.graph_modules import editable_module
from edgeopt.frameworks.pytorch.pruning import MAX_LAYER_RATIO, channel_ranking, prune_channels, removes_channels

EXAMPLE = torch.rand(1, 1, 12, 12)


class ThreeConvs(nn.Module):
    """Three 16-channel convolutions, each with or without a batch norm, then the classifier."""

    def __init__(self, norm: bool = True) -> None:
        super().__init__()

        def block(c_in: int) -> nn.Sequential:
            if norm:
                return nn.Sequential(nn.Conv2d(c_in, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            return nn.Sequential(nn.Conv2d(c_in, 16, 3, padding=1), nn.ReLU())

        self.a, self.b, self.c = block(1), block(16), block(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c(self.b(self.a(x))).mean(dim=(2, 3)))


def _widths(module: nn.Module) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]


def _pruned(eager: nn.Module, ratio: float) -> tuple[nn.Module, object]:
    module = editable_module(export_program(eager.eval(), EXAMPLE))
    summary = prune_channels(module, EXAMPLE, ratio=ratio, technique="prune_structured")
    assert module(torch.rand(3, 1, 12, 12)).shape == (3, 10)
    return module, summary


def _quiet_middle_layer() -> ThreeConvs:
    """Batch-norm scales between 0.5 and 1.5, except 12 of the middle layer's 16, a thousand times smaller."""
    torch.manual_seed(0)
    net = ThreeConvs()
    with torch.no_grad():
        for block in (net.a, net.b, net.c):
            block[1].weight.uniform_(0.5, 1.5)
        net.b[1].weight[:12].mul_(1e-3)
    return net


def test_the_layer_with_most_small_batch_norm_scales_loses_the_most_but_no_more_than_the_cap() -> None:
    module, summary = _pruned(_quiet_middle_layer(), 0.3)
    a, b, c = _widths(module)
    assert b == 16 - int(16 * MAX_LAYER_RATIO), "the quiet layer loses up to the cap, and no more"
    assert b < min(a, c) and min(a, c) >= 14
    assert (16 - a) + (16 - b) + (16 - c) == 48 - int(48 * 0.7), "30 % of all the channels, not of each layer"
    assert summary.ranking == "batch-norm scale"


def test_a_ratio_beyond_the_cap_still_leaves_every_layer_a_channel() -> None:
    module, _ = _pruned(_quiet_middle_layer(), 0.9)
    assert min(_widths(module)) >= 1
    assert sum(_widths(module)) < 0.2 * 48


def test_untrained_batch_norms_all_at_one_still_remove_the_ratio_asked() -> None:
    """Every scale is 1: ties are broken by weight magnitude instead of the threshold taking every tied channel."""
    torch.manual_seed(0)
    module, _ = _pruned(ThreeConvs(), 0.5)
    assert sum(16 - w for w in _widths(module)) == 24
    assert min(_widths(module)) >= 16 - int(16 * MAX_LAYER_RATIO)


def test_without_batch_norms_the_layer_with_most_small_filters_loses_the_most() -> None:
    torch.manual_seed(0)
    net = ThreeConvs(norm=False)
    with torch.no_grad():
        # 12 of the middle layer's 16 channels hardly matter: small filters, read by small weights of the next layer
        # (torch-pruning's group magnitude averages both sides of a channel)
        net.b[0].weight[:12].mul_(1e-3)
        net.c[0].weight[:, :12].mul_(1e-3)
    assert channel_ranking(net) == "magnitude"
    module, summary = _pruned(net, 0.25)
    a, b, c = _widths(module)
    assert b == 4 and min(a, c) >= 14
    assert summary.ranking == "L2 magnitude"


@pytest.mark.parametrize(("ratio", "expected"), [(0.01, False), (0.03, True)])
def test_a_setting_counts_when_it_removes_one_channel_of_the_whole_network(ratio: float, expected: bool) -> None:
    assert removes_channels(ThreeConvs(), ratio) is expected  # 48 prunable channels: 0.48 and 1.44


def test_prune_scored_keeps_the_allocation_that_scores_better_and_the_fewer_multiply_adds_on_a_tie() -> None:
    """Both ways are pruned from fresh copies and scored; labels taken from one way's own predictions make it win.
    With a label neither can get right, they tie and the one with fewer multiply-adds wins."""
    import numpy as np

    from edgeopt.frameworks.pytorch.layout import iterate_batches
    from edgeopt.frameworks.pytorch.pruning import prune_scored, recalibrate_batch_norm

    source = editable_module(export_program(_quiet_middle_layer().eval(), EXAMPLE))
    x = np.random.default_rng(0).random((64, 12, 12, 1), dtype=np.float32)

    def fresh() -> nn.Module:
        import copy

        return copy.deepcopy(source)

    for favoured in ("global", "uniform"):
        reference = fresh()
        prune_channels(reference, EXAMPLE, 0.3, "prune_structured", allocation=favoured)
        recalibrate_batch_norm(reference, x)
        with torch.no_grad():
            (batch, _), *_ = list(iterate_batches(x, np.zeros(len(x), dtype=np.int64), batch_size=len(x)))
            labels = reference.eval()(batch).argmax(dim=1).numpy()
        chosen = prune_scored(fresh, EXAMPLE, 0.3, "prune_structured", x, (x, labels))
        assert chosen.summary.allocation == favoured and chosen.accuracy == 1.0
        assert _widths(chosen.module) == _widths(reference)
    macs = {}
    for allocation in ("global", "uniform"):
        module = fresh()
        macs[allocation] = prune_channels(module, EXAMPLE, 0.3, "prune_structured", allocation=allocation).macs_after
    chosen = prune_scored(fresh, EXAMPLE, 0.3, "prune_structured", x, (x[:1], np.array([-1])))  # nobody is right
    assert chosen.summary.macs_after == min(macs.values())


def test_prune_scored_with_a_floor_keeps_the_fewer_multiply_adds_among_those_within_the_budget() -> None:
    """Within the user's budget, the stronger compression: both reach a floor of 0, the fewer multiply-adds wins; a
    floor only the better one reaches keeps that one."""
    import copy

    import numpy as np

    from edgeopt.frameworks.pytorch.pruning import prune_scored

    source = editable_module(export_program(_quiet_middle_layer().eval(), EXAMPLE))
    x = np.random.default_rng(0).random((64, 12, 12, 1), dtype=np.float32)
    labels = np.zeros(len(x), dtype=np.int64)
    macs = {
        a: prune_channels(copy.deepcopy(source), EXAMPLE, 0.3, "p", allocation=a).macs_after
        for a in ("global", "uniform")
    }
    fewer = min(macs, key=macs.__getitem__)
    chosen = prune_scored(lambda: copy.deepcopy(source), EXAMPLE, 0.3, "p", x, (x, labels), floor=0.0)
    assert chosen.summary.allocation == fewer
    unreachable = prune_scored(lambda: copy.deepcopy(source), EXAMPLE, 0.3, "p", x, (x, labels), floor=2.0)
    plain = prune_scored(lambda: copy.deepcopy(source), EXAMPLE, 0.3, "p", x, (x, labels))
    assert unreachable.summary.allocation == plain.summary.allocation  # no one reaches it: as without a floor
