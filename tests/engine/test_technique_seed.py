"""One experiment seed reaches every technique's config, so one --seed reproduces every result."""

from __future__ import annotations

import pytest

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.errors import InvalidInput
from edgeopt.techniques import make_config


@pytest.mark.parametrize("technique", TECHNIQUE_NAMES)
def test_every_technique_gets_the_experiment_seed(technique: str) -> None:
    assert make_config(technique, None, None, seed=7).seed == 7
    assert make_config(technique, {"seed": 7}, 1, seed=7).seed == 7


def test_a_technique_seed_that_disagrees_is_refused() -> None:
    with pytest.raises(InvalidInput, match="differs from the experiment's seed 3"):
        make_config("qat_int8", {"seed": 5}, None, seed=3)
