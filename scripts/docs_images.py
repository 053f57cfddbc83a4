"""Turn a few of the end-to-end tests' screenshots into the small images of docs/user-guide.md.

The e2e run (``cd frontend && E2E_ALL_TECHNIQUES=1 npm run e2e``: every technique, the full tables) saves a
full-page screenshot of every page it checks, at 1280 px and, for phone shots, at 390 px, in
``frontend/test-results/e2e/screenshots/``. This script scales the chosen ones down and reduces them to a 64-colour
palette (Pillow), so the guide shows what the tests saw without megabytes in git.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "frontend" / "test-results" / "e2e" / "screenshots"
OUT = REPO / "docs" / "images"

# screenshot -> (image in docs/images, width in px, height kept from the top in px of the scaled image or None)
CHOSEN: dict[str, tuple[str, int, int | None]] = {
    "setup.png": ("setup.png", 800, 1100),
    "progress-pytorch.png": ("progress.png", 800, None),
    "results-pytorch.png": ("results.png", 800, None),
    "results-pytorch-phone.png": ("results-phone.png", 390, 1400),
    "home-phone.png": ("home-phone.png", 390, None),
}


def shrink(source: Path, target: Path, width: int, height: int | None) -> None:
    with Image.open(source) as image:
        rgb = image.convert("RGB")
        scaled = rgb.resize((width, round(rgb.height * width / rgb.width)), Image.Resampling.LANCZOS)
        if height is not None and scaled.height > height:
            scaled = scaled.crop((0, 0, width, height))
        scaled.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=Path, default=SHOTS, help=f"the e2e screenshots (default {SHOTS})")
    args = parser.parse_args(argv)
    missing = [name for name in CHOSEN if not (args.shots / name).is_file()]
    if missing:
        print(f"missing in {args.shots}: {', '.join(missing)}; run `cd frontend && npm run e2e` first", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (target, width, height) in CHOSEN.items():
        shrink(args.shots / name, OUT / target, width, height)
        print(f"{OUT / target}: {(OUT / target).stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
