"""Every notebook builds into a reveal.js deck with one slide per title and ## section."""

from __future__ import annotations

from pathlib import Path

from mlflow_series import nbtools

import nbformat
import pytest
from nbconvert import SlidesExporter

NOTEBOOKS = nbtools.notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_builds_a_deck(path: Path, tmp_path: Path):
    nb = nbformat.read(path, as_version=4)
    html, _ = SlidesExporter().from_notebook_node(nb)
    slides = sum(
        1 for c in nb.cells if c.metadata.get("slideshow", {}).get("slide_type") == "slide"
    )
    assert slides >= 3, "slide metadata missing: run `make toc`"
    assert "Reveal.initialize" in html
    assert html.count("<section") >= slides
