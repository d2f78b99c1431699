"""The read-along site (`make site`): the committed notebooks as web pages, built offline.

Builds the site into a temporary folder (as `make site` does into build/site) and checks that
every notebook has its page in the series' order, that solutions are folded, then opens two pages
in headless Chromium with every request outside the site refused: a table (notebook 00's first
rows of the data) and a figure (notebook 02's search) must render. Needs Debian's chromium for
the browser part, as tests/test_ui.py. About 10-20 s.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from mlflow_series import config

import pytest
from test_ui import CHROMIUM_FLAGS, UI_TIMEOUT, find_chromium

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported as a skip
    sync_playwright = None

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted(
    path.stem for path in (config.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
)


def load_builder():
    """site/build.py, loaded as a module (site/ is no package)."""
    spec = importlib.util.spec_from_file_location("site_build", config.REPO_ROOT / "site/build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for the module (warnings fail the build)."""
    return load_builder().build(tmp_path_factory.mktemp("site"))


def test_every_notebook_has_its_page_in_the_series_order(site: Path):
    index = (site / "index.html").read_text()
    links = re.findall(r'href="(notebooks/[0-9][0-9]_[a-z_]+)\.html"', index)
    assert list(dict.fromkeys(links)) == [f"notebooks/{name}" for name in NOTEBOOKS]
    for name in NOTEBOOKS:
        page = (site / "notebooks" / f"{name}.html").read_text()
        assert 'class="cell_output' in page, name  # the committed outputs are there
        assert f"{name}.ipynb" in page, name  # the download button offers the notebook


def test_links_between_pages_resolve(site: Path):
    """The notebooks' Contents link goes to the README's table; images are copied."""
    page = (site / "notebooks" / f"{NOTEBOOKS[1]}.html").read_text()
    assert 'href="../README.html#the-notebooks"' in page
    readme = (site / "README.html").read_text()
    assert 'id="the-notebooks"' in readme
    for image in re.findall(r'<img [^>]*src="([^"]+)"', page):
        assert (site / "notebooks" / image).resolve().is_file(), image


def test_solutions_are_folded_as_in_jupyterlab():
    builder = load_builder()
    notebook = json.loads((config.REPO_ROOT / "notebooks" / f"{NOTEBOOKS[1]}.ipynb").read_text())
    solutions = [c for c in notebook["cells"] if "solution" in c["metadata"].get("tags", [])]
    assert solutions, "notebook 01 has exercise solutions"
    folded = builder.fold_solutions(notebook)
    for cell in folded["cells"]:
        if "solution" in cell["metadata"].get("tags", []):
            assert "hide-cell" in cell["metadata"]["tags"]


@pytest.mark.browser
def test_a_table_and_a_figure_render_offline(site: Path):
    chromium = find_chromium()
    if sync_playwright is None or chromium is None:
        pytest.skip("needs playwright and Debian's chromium (see tests/test_ui.py)")
    outside: list[str] = []

    def only_the_site(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(UI_TIMEOUT)
            page.route("**/*", only_the_site)
            page.goto((site / "notebooks" / "00_welcome.html").as_uri())
            table = page.locator(".cell_output table").filter(has_text="Sale_Price").first
            expect(table).to_be_visible(timeout=UI_TIMEOUT)
            assert table.locator("tbody tr").count() >= 5
            expect(page.locator("nav").get_by_text("Local tracking").first).to_be_visible()

            page.goto((site / "notebooks" / "02_tracking_server.html").as_uri())
            figure = page.locator(".cell_output img").first
            figure.scroll_into_view_if_needed()
            expect(figure).to_be_visible(timeout=UI_TIMEOUT)
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=figure.element_handle()
            )
            assert figure.evaluate("img => img.naturalWidth") >= 600
        finally:
            browser.close()
    assert outside == [], "the pages must need nothing from the network"
