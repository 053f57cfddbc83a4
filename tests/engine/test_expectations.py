"""Shortfalls against a technique's usual outcome: the phrases a user reads in a result's notes."""

from __future__ import annotations

from types import SimpleNamespace

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.expectations import EXPECTATIONS, shortfall_sentence, shortfalls

BASE = SimpleNamespace(
    accuracy=0.98, size_bytes=8_000_000, compressed_size_bytes=7_000_000, sparsity=0.0, flops=10_000, params=1000
)


def result(**changes: float) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(BASE), **changes})


def test_every_technique_has_an_expectation_on_both_frameworks() -> None:
    for framework in ("pytorch", "tensorflow"):
        assert tuple(EXPECTATIONS[framework]) == TECHNIQUE_NAMES


def test_a_result_as_good_as_usual_has_no_shortfall() -> None:
    int8 = result(size_bytes=2_000_000, compressed_size_bytes=1_800_000, accuracy=0.978)
    assert shortfalls(EXPECTATIONS["pytorch"]["ptq_int8"], BASE, int8) == []
    assert shortfall_sentence([]) == ""


def test_size_and_accuracy_shortfalls_are_named_with_the_usual_figure() -> None:
    int8 = result(size_bytes=2_200_000, accuracy=0.96)  # 3.64x smaller, 2 points down
    found = shortfalls(EXPECTATIONS["pytorch"]["ptq_int8"], BASE, int8)
    assert found == [
        "the file is 3.64x smaller (usually at least 3.8x)",
        "accuracy drops 2.00 points (usually at most 0.5)",
    ]
    sentence = shortfall_sentence(found)
    assert sentence.startswith(" Below this technique's usual outcome on this model: the file is 3.64x")
    # A .tflite is compared against an FP32 .tflite: 3.5x is that framework's usual INT8 ratio.
    assert shortfalls(EXPECTATIONS["tensorflow"]["ptq_int8"], BASE, result(size_bytes=2_200_000)) == []


def test_unstructured_pruning_checks_sparsity_gzip_and_a_dense_file() -> None:
    expected = EXPECTATIONS["pytorch"]["prune_unstructured"]
    good = result(sparsity=0.5, compressed_size_bytes=4_000_000)
    assert shortfalls(expected, BASE, good) == []
    bad = result(sparsity=0.2, compressed_size_bytes=6_000_000, size_bytes=4_000_000)
    assert shortfalls(expected, BASE, bad) == [
        "the file changed size 2.00x although zeros are stored densely",
        "the gzip size is 1.17x smaller (usually at least 1.2x)",
        "20.0% of the weights are zero (expected 30%-95%)",
    ]


def test_structural_shortfalls_name_flops_and_params() -> None:
    pruned = result(size_bytes=2_000_000, flops=8_000, params=800)
    assert "it needs 1.25x fewer FLOPs (usually at least 1.5x)" in shortfalls(
        EXPECTATIONS["pytorch"]["prune_structured"], BASE, pruned
    )
    assert shortfalls(EXPECTATIONS["pytorch"]["distillation"], BASE, pruned) == [
        "it keeps 80% of the parameters (usually at most 60%)"
    ]
