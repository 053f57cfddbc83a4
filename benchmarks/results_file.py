"""Benchmarks append dated sections to ``benchmarks/results/*.md``, so earlier runs stay for comparison."""

from __future__ import annotations

from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


def append_section(name: str, title: str, lines: list[str]) -> str:
    """Print the section and append it to ``results/<name>.md`` (created with ``title`` as its heading)."""
    text = "\n".join(lines)
    print(text)
    path = RESULTS_DIR / f"{name}.md"
    previous = path.read_text() if path.exists() else f"# {title}\n\n"
    path.write_text(previous + text + "\n")
    return text
