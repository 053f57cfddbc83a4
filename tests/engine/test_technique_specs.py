"""The technique specs (edgeopt.technique_specs): each fact is usable where it is read, and every view agrees.

The import check is the fast half of "every (technique, framework) pair in the catalog imports and runs": the
technique contract (tests/techniques_template.py, run by tests/pytorch and tests/tensorflow on the demo models)
runs every pair, parametrized from the same specs (``implemented(framework)``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeopt import catalog
from edgeopt.estimate.estimator import PRECISIONS
from edgeopt.technique_docs import rewrite
from edgeopt.technique_specs import SPECS
from edgeopt.techniques import get_technique, make_config
from tests.techniques_template import implemented

DOC = Path(__file__).resolve().parents[2] / "docs" / "techniques.md"
LIBRARY = {"pytorch": "torch", "tensorflow": "tensorflow"}


@pytest.mark.parametrize("framework", catalog.FRAMEWORKS)
def test_every_pair_in_the_catalog_imports_and_is_the_technique_it_claims(framework: str) -> None:
    pytest.importorskip(LIBRARY[framework])
    offered = [info.name for info in catalog.TECHNIQUES if framework in info.frameworks]
    assert offered == list(implemented(framework)), "the technique contract must run every pair the catalog offers"
    for name in offered:
        technique = get_technique(name, framework)
        assert type(technique).name == name, f"{type(technique).__qualname__} is registered for {name}"
        assert callable(getattr(technique, "apply", None))
        # The spec holds these: an implementation that restated them would be a second place for one fact.
        assert not hasattr(technique, "framework") and not hasattr(technique, "config_class")


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_a_spec_holds_only_facts_its_readers_can_use(spec) -> None:  # noqa: ANN001 - parametrized TechniqueSpec
    assert set(spec.implementations) <= set(catalog.FRAMEWORKS)
    assert spec.precision in PRECISIONS, "the estimator must know the precision the board runs"
    assert isinstance(make_config(spec.name), spec.config_class)
    if spec.knob is not None:
        # Every setting the search may choose, and the fixed default, is one a user could also set by hand.
        for value in spec.knob.ladder:
            spec.config_class(**{spec.knob.field: value})
        assert spec.knob.describe(spec.fixed_strength() or 0.0)
        assert "{span}" not in spec.catalog_summary()


def test_the_techniques_doc_shows_what_the_specs_say() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert rewrite(text) == text, "docs/techniques.md is stale: run `python -m edgeopt.technique_docs`"
