"""Refresh the MLflow UI screenshots in docs/images/ from the series' own runs, as readers see them.

    python scripts/screenshots.py           # what `make screenshots` runs

1. Starts the servers a presenter keeps (`make server`: the local tracking server; `make
   remote-up`: the team stack, PostgreSQL + S3 store + server) in a workspace root of its own,
   workspace/screenshots-series/ (MLFLOW_SERIES_WORKSPACE), so that neither a presenter's servers
   nor the notebooks' own workspaces are touched.
2. Executes notebooks 02, 03 and 05 there with nbclient, as `make notebooks` does, but in memory
   (the notebook files are not changed): they reuse those servers and leave them running.
3. Drives headless Chromium through the MLflow UI (1280x800, the "Model training" view, the
   Assistant panel closed) and finds what it shows by the names in mlflow_series.config, not by
   run ids:
   - ui_runs.png: notebook 02's search experiment, its parent run unfolded to show the trials;
   - ui_run.png: the page of that parent run (best values, the logged and registered model);
   - ui_figure.png: a figure logged in notebook 03's team experiment, served from the S3 store;
   - ui_model.png: notebook 05's registered model, with its `champion` alias.
4. Stops the servers it started, and copies the screenshots into docs/images/ only if every step
   worked. A failing step saves failed_<name>.png in the workspace root and stops.

Needs Debian's Chromium (`apt-get install chromium`; set CHROMIUM for another binary) and the
playwright package. Runtime: 5-10 min, most of it the three notebooks.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mlflow_series import config

# the browser settings of the UI test, so the screenshots show the UI as the test checks it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_ui import (  # noqa: E402
    CHROMIUM_FLAGS,
    UI_SETTINGS,
    UI_TIMEOUT,
    VIEWPORT,
    find_chromium,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO_ROOT / "notebooks"
DOCS_IMAGES = REPO_ROOT / "docs" / "images"
#: The workspace root of this script's servers and notebook runs (beside the notebooks' own).
ROOT_NAME = "screenshots-series"
#: The notebooks to execute, in order: each reuses the servers started beforehand.
RUN = ("02_tracking_server.ipynb", "03_remote_style_server.ipynb", "05_model_registry.ipynb")
NOTEBOOK_TIMEOUT = 600  # seconds per cell, generous on a busy machine


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, read from its header."""
    with path.open("rb") as handle:
        header = handle.read(24)
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    return struct.unpack(">II", header[16:24])


def servers_cli(*args: str) -> None:
    """`python -m mlflow_series.servers ...` in this script's workspace root (os.environ)."""
    cmd = [sys.executable, "-m", "mlflow_series.servers", *args]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def execute(path: Path) -> None:
    """Execute a notebook from a fresh kernel in its folder, in memory (the file is unchanged)."""
    from mlflow_series import nbtools

    import nbformat

    started = time.monotonic()
    print(f"executing {path.relative_to(REPO_ROOT)} ...", flush=True)
    nb = nbformat.read(path, as_version=4)
    client = nbtools.notebook_client(nb, path, NOTEBOOK_TIMEOUT)
    try:
        client.execute()
    except Exception as error:
        print(str(error)[-3000:])
        raise SystemExit(
            f"error: {path.name} failed (its error is above); no screenshot copied. Run it in "
            "JupyterLab (`make lab`) to see the failing cell in context."
        ) from None
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)


def experiment_id(client: Any, name: str) -> str:
    """The id of the experiment `name`; a clear error if the notebook made none by that name."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise SystemExit(
            f"error: the notebooks made no experiment {name!r}: did config.EXPERIMENTS change?"
        )
    return experiment.experiment_id


def search_parent(client: Any, experiment: str) -> tuple[str, str, list[str]]:
    """The run with the most nested runs in `experiment`: (run id, its name, its children's
    names sorted)."""
    runs = client.search_runs([experiment], max_results=1000)
    parents = Counter(
        r.data.tags["mlflow.parentRunId"] for r in runs if "mlflow.parentRunId" in r.data.tags
    )
    if not parents:
        raise SystemExit(f"error: experiment {experiment} has no nested runs")
    parent_id = parents.most_common(1)[0][0]
    children = sorted(
        r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id
    )
    return parent_id, client.get_run(parent_id).info.run_name, children


def figure_run(client: Any, experiment: str) -> tuple[str, str, str]:
    """The last run by name in `experiment` that logged a PNG at the top of its artifacts:
    (run id, run name, the PNG's path)."""
    runs = client.search_runs([experiment], order_by=["attributes.run_name DESC"])
    for run in runs:
        pngs = [a.path for a in client.list_artifacts(run.info.run_id) if a.path.endswith(".png")]
        if pngs:
            return run.info.run_id, run.info.run_name, sorted(pngs)[0]
    raise SystemExit(f"error: no run of experiment {experiment} logged a PNG figure")


class Browser:
    """One headless Chromium page on the MLflow UI; each shot is saved in `folder`."""

    def __init__(self, playwright: Any, chromium: str, folder: Path) -> None:
        self.browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        self.folder = folder
        self.page: Any = None

    def new_page(self) -> Any:
        """A page in a new browser context (a first visit, with UI_SETTINGS in localStorage)."""
        if self.page is not None:
            self.page.context.close()
        context = self.browser.new_context(
            viewport=VIEWPORT, locale="en-US", timezone_id="UTC", color_scheme="light"
        )
        context.add_init_script(
            "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in UI_SETTINGS.items())
        )
        self.page = context.new_page()
        self.page.set_default_timeout(UI_TIMEOUT)
        self.page.set_default_navigation_timeout(UI_TIMEOUT)
        return self.page

    def visible(self, locator: Any) -> Any:
        from playwright.sync_api import expect

        expect(locator).to_be_visible(timeout=UI_TIMEOUT)
        return locator

    def shoot(self, name: str, steps: Any) -> Path:
        """Run `steps(page)` on a new page, then save it as `name`; on failure save failed_<name>
        and raise."""
        self.new_page()
        try:
            steps(self.page)
        except BaseException:
            self.page.screenshot(path=self.folder / f"failed_{name}")
            print(f"error: the step {name} failed; see {self.folder / ('failed_' + name)}")
            raise
        self.page.wait_for_timeout(1000)  # let the last repaint settle
        path = self.folder / name
        self.page.screenshot(path=path)
        return path


def capture(stacks: dict[str, Any], folder: Path, chromium: str) -> list[Path]:
    """Take the four screenshots; `stacks` maps "local" and "remote" to the running servers."""
    from mlflow import MlflowClient
    from playwright.sync_api import expect, sync_playwright

    ui = {setup: stack.ui_url for setup, stack in stacks.items()}
    local = MlflowClient(stacks["local"].tracking_uri)
    remote = MlflowClient(stacks["remote"].tracking_uri)
    search = experiment_id(local, config.EXPERIMENTS["search"])
    parent_id, parent_name, children = search_parent(local, search)
    team = experiment_id(remote, config.EXPERIMENTS["team"])
    figure_id, figure_name, figure = figure_run(remote, team)
    champion = remote.get_model_version_by_alias(config.MODEL_NAME, "champion").version

    def runs_table(page: Any) -> None:
        page.goto(f"{ui['local']}/#/experiments/{search}/runs")
        parent = b.visible(page.get_by_role("link", name=parent_name, exact=True))
        row = page.get_by_role("row").filter(has=parent)
        row.get_by_role("button").first.click()  # the "+" that unfolds the nested runs
        b.visible(page.get_by_role("link", name=children[0], exact=True))
        # show the val_rmse column, hide the (empty) Dataset column, as in tests/test_ui.py
        page.get_by_role("button", name="Columns").click()
        picker = b.visible(page.get_by_role("dialog"))
        picker.get_by_text("val_rmse", exact=True).first.click()
        if picker.get_by_text("Dataset", exact=True).count():
            picker.get_by_text("Dataset", exact=True).click()
        page.keyboard.press("Escape")
        expect(picker).to_be_hidden(timeout=UI_TIMEOUT)

    def run_page(page: Any) -> None:
        page.goto(f"{ui['local']}/#/experiments/{search}/runs/{parent_id}")
        b.visible(page.get_by_text(parent_name, exact=True).first)
        b.visible(page.get_by_text(config.MODEL_NAME).first)  # its registered model

    def figure_page(page: Any) -> None:
        page.goto(f"{ui['remote']}/#/experiments/{team}/runs/{figure_id}")
        b.visible(page.get_by_text(figure_name, exact=True).first)
        page.get_by_role("tab", name="Artifacts").click()
        b.visible(page.get_by_text(figure, exact=True).first).click()
        image = b.visible(page.get_by_role("img", name=figure))
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0",
            arg=image.element_handle(),
            timeout=UI_TIMEOUT,
        )

    def model_page(page: Any) -> None:
        page.goto(f"{ui['remote']}/#/models/{config.MODEL_NAME}")
        b.visible(page.get_by_text(config.MODEL_NAME, exact=True).first)
        row = page.get_by_role("row").filter(has_text=f"Version {champion}")
        expect(row).to_contain_text("champion", timeout=UI_TIMEOUT)

    with sync_playwright() as playwright:
        b = Browser(playwright, chromium, folder)
        try:
            return [
                b.shoot("ui_runs.png", runs_table),
                b.shoot("ui_run.png", run_page),
                b.shoot("ui_figure.png", figure_page),
                b.shoot("ui_model.png", model_page),
            ]
        finally:
            b.browser.close()


def main() -> int:
    chromium = find_chromium()
    if chromium is None:
        print("error: Chromium not found: install Debian's chromium (apt-get install chromium)")
        return 1
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("error: playwright not installed: run `make setup` (it installs requirements.lock)")
        return 1
    root = config.workspace_root() / ROOT_NAME
    os.environ[config.WORKSPACE_VAR] = str(root)  # the servers, the kernels and this process
    for name in (config.REMOTE_URI_VAR, "MLFLOW_TRACKING_URI"):
        os.environ.pop(name, None)  # the series' own servers, not a real one
    servers_cli("down", "all")  # left over from an interrupted session
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        servers_cli("up", "local")
        servers_cli("up", "remote")
        for name in RUN:
            execute(NOTEBOOKS / name)
        from mlflow_series import servers

        stacks = {setup: servers.running(setup) for setup in ("local", "remote")}
        for setup, stack in stacks.items():
            if stack is None:
                print(f"error: the {setup} server stopped while the notebooks ran")
                return 1
        shots = capture(stacks, root, chromium)
    finally:
        servers_cli("down", "all")
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    print(f"Wrote {len(shots)} screenshots:")
    for path in shots:
        target = DOCS_IMAGES / path.name
        shutil.copyfile(path, target)
        width, height = png_size(target)
        size_kb = target.stat().st_size / 1024
        print(f"  {target.relative_to(REPO_ROOT)}  ({width}x{height}, {size_kb:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
