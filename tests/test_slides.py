"""The live slideshow: RISE (jupyterlab-rise) shows each notebook as reveal.js slides, offline.

`make toc` writes each cell's slide type (a new slide at the title and at each `##` section);
RISE renders them inside JupyterLab (View > Render as Reveal Slideshow, Alt+R) with reveal.js
bundled in the extension, so the slideshow needs no network. The slow test starts a real
JupyterLab server and opens a notebook's slideshow in headless Chromium with every request that
leaves the machine refused (needs Debian's chromium, as tests/test_ui.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from mlflow_series import config, nbtools, toc

import nbformat
import pytest
import requests
from test_proxy import Jupyter
from test_ui import CHROMIUM_FLAGS, UI_TIMEOUT, find_chromium

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported as a skip
    sync_playwright = None

NOTEBOOKS = nbtools.notebooks()
#: reveal.js's "simple" theme, RISE's default, asks Google Fonts for its fonts; refused, the
#: slides use the browser's own fonts. Nothing else may leave the machine.
FONT_HOSTS = ("https://fonts.googleapis.com/", "https://fonts.gstatic.com/")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_has_its_slide_types(path: Path):
    nb = nbformat.read(path, as_version=4)
    types = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    assert types.count("slide") >= 3, "slide metadata missing: run `make toc`"
    assert types == [toc.slide_type(c) for c in nb.cells], "run `make toc`"


def test_rise_is_pinned_installed_and_enabled():
    """The server part (it serves /rise/<notebook>) and JupyterLab's part (the command)."""
    import jupyterlab_rise

    assert "jupyterlab-rise==" in (config.REPO_ROOT / "requirements.txt").read_text()
    enabled = Path(sys.prefix, "etc/jupyter/jupyter_server_config.d/jupyterlab_rise.json")
    assert json.loads(enabled.read_text())["ServerApp"]["jpserver_extensions"] == {
        "jupyterlab_rise": True
    }
    lab = Path(sys.prefix, "share/jupyter/labextensions/jupyterlab-rise")
    settings = json.loads((lab / "schemas/jupyterlab-rise/plugin.json").read_text())
    shortcuts = {s["command"]: s["keys"] for s in settings["jupyter.lab.shortcuts"]}
    assert shortcuts["RISE:preview"] == ["Alt R"], "README and docs/presenting.md name Alt+R"
    assert jupyterlab_rise.__version__ == json.loads((lab / "package.json").read_text())["version"]


def test_the_static_decks_are_gone():
    """`make slides` opens JupyterLab for RISE: no deck that loads reveal.js from a CDN."""
    makefile = (config.REPO_ROOT / "Makefile").read_text()
    assert "--to slides" not in makefile


@pytest.mark.slow
@pytest.mark.browser
def test_the_slideshow_renders_with_the_network_cut(tmp_path: Path):
    """JupyterLab lists RISE as enabled; a notebook's slideshow (/rise/<notebook>, what the
    "Open as Reveal Slideshow" command opens) renders its title slide and moves to the next
    slide, while every request to another host is refused."""
    chromium = find_chromium()
    if sync_playwright is None or chromium is None:
        pytest.skip("needs playwright and Debian's chromium (see tests/test_ui.py)")
    notebook = config.REPO_ROOT / "notebooks" / "00_welcome.ipynb"
    shutil.copy2(notebook, tmp_path / notebook.name)  # a copy: the server may save it
    nb = nbformat.read(notebook, as_version=4)
    first, second = _first_slides(nb)
    server = Jupyter(tmp_path, "/", dict(os.environ))
    outside: list[str] = []

    def only_this_machine(route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        server.wait_ready()
        extensions = requests.get(f"{server.url}lab/api/extensions", headers=server.headers)
        rise = [e for e in extensions.json() if e["name"] == "jupyterlab-rise"]
        assert rise and rise[0]["enabled"] and rise[0]["status"] == "ok", rise
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.set_default_timeout(UI_TIMEOUT)
                page.route("**/*", only_this_machine)
                page.goto(f"{server.url}rise/{notebook.name}?token={server.token}")
                present = page.locator(".reveal .slides > section.present")
                expect(present.get_by_role("heading", name=first)).to_be_visible(timeout=UI_TIMEOUT)
                slides = page.locator(".reveal .slides > section").count()
                assert slides >= 3, f"{slides} slides"
                page.locator(".reveal .controls .navigate-right").click()
                expect(present.get_by_role("heading", name=second)).to_be_visible(
                    timeout=UI_TIMEOUT
                )
            finally:
                browser.close()
    finally:
        server.stop()
    assert [url for url in outside if not url.startswith(FONT_HOSTS)] == []


def _first_slides(nb: nbformat.NotebookNode) -> tuple[str, str]:
    """The headings of the first two slides of a notebook (its title and its first section)."""
    headings = [
        c.source.splitlines()[0].lstrip("#").strip()
        for c in nb.cells
        if c.metadata.get("slideshow", {}).get("slide_type") == "slide"
    ]
    return headings[0], headings[1]
