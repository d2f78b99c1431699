"""Build the read-along site: `make site` (output in build/site/html, git-ignored).

Stages the committed notebooks and the documents they link to (README, docs/presenting.md and its
images, CONTRIBUTING.md, data/README.md) into build/site/source, keeping their relative paths so
that every link between them resolves (exercise solutions folded, as in JupyterLab), then runs
sphinx-build with site/conf.py. Warnings are errors: a broken link between pages fails the build.
Needs no network.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "site"
OUT = REPO / "build" / "site"
#: What the site holds, relative to the repository (globs).
PAGES = (
    "notebooks/catch_up.ipynb",
    "notebooks/[0-9][0-9]_*.ipynb",
    "README.md",
    "CONTRIBUTING.md",
    "docs/presenting.md",
    "docs/images/*.png",
    "data/README.md",
)


def fold_solutions(notebook: dict) -> dict:
    """Exercise solutions folded on the site as in JupyterLab: a "solution" cell gets MyST-NB's
    `hide-cell` tag (a button shows its code and output)."""
    for cell in notebook["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "solution" in tags and "hide-cell" not in tags:
            cell["metadata"]["tags"] = [*tags, "hide-cell"]
    return notebook


def stage(source: Path) -> list[Path]:
    """Copy the pages into `source` (emptied first); returns what was copied."""
    if source.exists():
        shutil.rmtree(source)
    copied = []
    for pattern in PAGES:
        for path in sorted(REPO.glob(pattern)):
            target = source / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".ipynb":
                target.write_text(json.dumps(fold_solutions(json.loads(path.read_text()))))
            else:
                shutil.copy2(path, target)
            copied.append(target)
    shutil.copy2(SITE / "index.md", source / "index.md")
    return copied


def build(out: Path = OUT, quiet: bool = True) -> Path:
    """Stage and build the site; returns the folder of its HTML (index.html inside)."""
    source, html = out / "source", out / "html"
    stage(source)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(SITE), "-W", "--keep-going"]
    cmd += ["-d", str(out / "doctrees"), *(["-q"] if quiet else []), str(source), str(html)]
    subprocess.run(cmd, check=True)
    return html


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default build/site)")
    args = parser.parse_args()
    try:
        html = build(args.out)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    print(f"Site built: {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
