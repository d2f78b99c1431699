"""Refresh the MLflow UI screenshots in docs/images/ by running the browser test.

    python scripts/screenshots.py           # what `make screenshots` runs
    python scripts/screenshots.py -x -v     # extra arguments go to pytest

Runs tests/test_ui.py (it starts the remote-style stack, logs the case study, drives headless
Chromium through the MLflow UI and saves a 1280x800 screenshot per step in
workspace/screenshots/), then copies the screenshots that run wrote into docs/images/ and prints
what it wrote. Fails, copying nothing, if the test fails or is skipped (no Chromium: install
Debian's `chromium`; no Playwright: `make setup`).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

from mlflow_series import config

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST = REPO_ROOT / "tests" / "test_ui.py"
#: Where tests/test_ui.py saves its screenshots (it uses the same expression).
SCREENSHOTS = config.workspace_root() / "screenshots"
DOCS_IMAGES = REPO_ROOT / "docs" / "images"
PATTERN = "ui_*.png"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, read from its header."""
    with path.open("rb") as handle:
        header = handle.read(24)
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    return struct.unpack(">II", header[16:24])


def main(pytest_args: list[str]) -> int:
    started = time.time()
    cmd = [sys.executable, "-m", "pytest", str(TEST.relative_to(REPO_ROOT)), "-rs", *pytest_args]
    print("$", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=REPO_ROOT)
    if code != 0:
        print(f"error: the UI test failed (pytest exit code {code}); nothing copied.")
        return code
    fresh = sorted(
        path for path in SCREENSHOTS.glob(PATTERN) if path.stat().st_mtime >= started - 1
    )
    if not fresh:
        print(
            f"error: the UI test wrote no screenshot in {SCREENSHOTS} (was it skipped? see the "
            "reason above); nothing copied."
        )
        return 1
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    print(f"Wrote {len(fresh)} screenshots:")
    for path in fresh:
        target = DOCS_IMAGES / path.name
        shutil.copyfile(path, target)
        width, height = png_size(target)
        size_kb = target.stat().st_size / 1024
        print(f"  {target.relative_to(REPO_ROOT)}  ({width}x{height}, {size_kb:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
