"""Benchmarks append dated sections to ``benchmarks/results/*.md``, so earlier runs stay for comparison."""

from __future__ import annotations

import re
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


def replace_section(path: Path, heading: str, lines: list[str], title: str) -> None:
    """Replace the ``## heading`` section of ``path`` (up to the next ``## ``), or add it; other sections stay.

    Several benchmarks share one results file (coverage.md: one section per framework); each rewrites only its own.
    """
    text = path.read_text() if path.exists() else f"# {title}\n\n"
    body = "\n".join([heading, *lines]).rstrip() + "\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: body, text) if pattern.search(text) else text.rstrip() + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
