"""The coverage benchmark's documented commands parse: `benchmarks/coverage.py --framework tensorflow` hands its
whole command line to the Keras runner, which used to refuse its own `--framework` option."""

from __future__ import annotations

from pathlib import Path

from benchmarks import coverage


def test_the_tensorflow_coverage_command_reaches_the_keras_runner(tmp_path: Path) -> None:
    table = tmp_path / "coverage.md"
    assert coverage.main(["--framework", "tensorflow", "--rewrite", "--out", str(table)]) == 0
    assert "## TensorFlow / Keras" in table.read_text()
