"""The MLflow UI in a real browser: runs, metrics, a logged figure and a model alias are visible.

Starts the remote-style stack (PostgreSQL + S3 store + tracking server) in a temporary
workspace, logs a small version of the case study (two runs; the better one registers its model
with the alias ``champion``), then drives headless Chromium through the UI with Playwright:

- the experiment's runs page lists both runs by name (and their ``val_rmse``);
- a run page shows its metrics, and its Artifacts tab shows the logged figure;
- the registered model's page shows the ``champion`` alias;
- which view a fresh browser opens an experiment in (with no logged model yet): the link the
  notebooks print (``Stack.experiment_url``) lands on the runs table ("Model training"), while a
  bare experiment URL opens MLflow 3.17.2's GenAI pages whatever the experiment's
  ``mlflow.experimentKind`` tag says, until the reader picks *Model training* once.

Each step saves a screenshot (1280x800) in ``workspace/screenshots/`` (ui_runs.png, ui_run.png,
ui_figure.png, ui_model.png), to look at; the screenshots in ``docs/images/`` come from the
notebooks' own runs instead (``make screenshots``: scripts/screenshots.py). A failing step saves
``failed_<name>.png`` there instead.

Needs Debian's Chromium (``apt-get install chromium``; Playwright cannot download its own
browser here) and the ``playwright`` package; without either the tests are skipped. Set
``CHROMIUM`` to use another Chromium binary. Runtime: 20-35 s here, most of it the servers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from mlflow_series import config, data, modeling, plots, servers

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported as a skip by the `chromium` fixture
    sync_playwright = None

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.slow, pytest.mark.browser]

EXPERIMENT = "house-prices-ui"
#: An experiment made like the notebooks' ones, with a run but no logged model yet.
EMPTY_EXPERIMENT = "house-prices-ui-no-model"
ALIAS = "champion"
FIGURE = "predicted_vs_actual.png"
VIEWPORT = {"width": 1280, "height": 800}
#: Milliseconds to wait for anything in the UI: it is slow on a busy 2-core machine.
UI_TIMEOUT = 60_000
#: Flags that work on these machines as root, with no network but loopback.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Settings the UI keeps in localStorage, set before its first load: the MLflow Assistant panel
#: closed (it would take a third of the screenshots).
ASSISTANT_CLOSED = {
    "mlflow.assistant.panelOpen_v1": "false",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
}
#: ... and the "Model training" navigation (not the GenAI one): what the UI stores once a reader
#: picks *Model training* at the top left. MLflow 3.17.2's UI decides the view from this browser
#: setting (default: GenAI), not from the experiment's mlflow.experimentKind tag.
UI_SETTINGS = {"mlflow.workflowType_v1": '"machine_learning"', **ASSISTANT_CLOSED}
SCREENSHOT_NAMES = ("ui_runs.png", "ui_run.png", "ui_figure.png", "ui_model.png")
SCREENSHOTS = config.workspace_root() / "screenshots"


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, else chromium (Debian) or chromium-browser on the PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def visible(locator: Locator) -> Locator:
    """Wait (generously) until the locator shows, and return it."""
    expect(locator).to_be_visible(timeout=UI_TIMEOUT)
    return locator


@contextlib.contextmanager
def step(page: Page, name: str) -> Iterator[None]:
    """Run one step of a test; save a screenshot of the page if it fails."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=SCREENSHOTS / f"failed_{name}")
        raise


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary to drive; skips the module (before any server starts) without it."""
    if sync_playwright is None:
        pytest.skip("playwright not installed: run `make setup` (it installs requirements.lock)")
    path = find_chromium()
    if path is None:
        pytest.skip(
            "Chromium not found: install Debian's chromium (apt-get install chromium) "
            "to run the MLflow UI test"
        )
    return path


@pytest.fixture(scope="module")
def stack(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Stack]:
    """The remote-style stack in its own workspace, on free ports; stopped and deleted after."""
    workspace = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as mp:
        # keep off the default ports: notebooks run in parallel may hold them
        for key in servers.PORTS:
            mp.setitem(servers.PORTS, key, free_port())
        mp.delenv(config.REMOTE_URI_VAR, raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        try:
            yield servers.start_remote(workspace)
        finally:
            servers.reset("remote", workspace)  # stops it, deletes its data (PostgreSQL's too)


@pytest.fixture(scope="module")
def case_study(stack: servers.Stack) -> Iterator[dict[str, Any]]:
    """Two runs of the case study logged on the stack; the better one registers the model."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    split = data.split_data(data.load_ames())
    candidates = {
        "ridge-baseline": (modeling.make_linear_baseline(), {"model": "ridge", "alpha": 1.0}),
        "gradient-boosting": (
            modeling.make_gradient_boosting(),
            {"model": "hist_gradient_boosting", **modeling.GRADIENT_BOOSTING_DEFAULTS},
        ),
    }
    metrics = {}
    for name, (model, _) in candidates.items():
        model.fit(split.X_train, split.y_train)
        metrics[name] = modeling.evaluate(model, split.X_val, split.y_val)
    best = min(metrics, key=lambda name: metrics[name]["rmse"])
    requirements = [
        f"{package}=={version(package)}"
        for package in ("mlflow", "scikit-learn", "pandas", "numpy", "skops")
    ]

    mlflow.set_tracking_uri(stack.tracking_uri)
    try:
        client = MlflowClient()
        experiment_id = mlflow.set_experiment(EXPERIMENT).experiment_id
        run_ids = {}
        for name, (model, params) in candidates.items():
            predicted = model.predict(split.X_val)
            # the Source column would say "pytest" or "__main__.py": name the test instead
            source = {"mlflow.source.name": "tests/test_ui.py"}
            with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=source) as run:
                mlflow.log_params(params)
                mlflow.log_metrics({f"val_{key}": value for key, value in metrics[name].items()})
                mlflow.log_figure(plots.predicted_vs_actual(split.y_val, predicted), FIGURE)
                if name == best:
                    info = mlflow.sklearn.log_model(
                        model,
                        name="model",
                        signature=infer_signature(split.X_val, predicted),
                        pip_requirements=requirements,
                        skops_trusted_types=(
                            modeling.SKOPS_TRUSTED_TYPES if name == "gradient-boosting" else None
                        ),
                        registered_model_name=config.MODEL_NAME,
                    )
            run_ids[name] = run.info.run_id
        model_version = str(info.registered_model_version)
        client.set_registered_model_alias(config.MODEL_NAME, ALIAS, model_version)
        # an experiment with a run but no logged model yet, as at the start of a notebook
        empty_id = mlflow.set_experiment(EMPTY_EXPERIMENT).experiment_id
        with mlflow.start_run(run_name="first-run", tags=source):
            mlflow.log_metric("val_rmse", 1.0)
        yield {
            "experiment_id": experiment_id,
            "empty_experiment_id": empty_id,
            "run_ids": run_ids,
            "metrics": metrics,
            "best": best,
            "model_version": model_version,
        }
    finally:
        mlflow.set_tracking_uri(None)  # also unsets MLFLOW_TRACKING_URI, which it had set


@pytest.fixture(scope="module")
def browser(chromium: str, stack: servers.Stack) -> Iterator[Any]:
    """Headless Chromium; removes the screenshots of an earlier session first."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for stale in [*SCREENSHOT_NAMES, *(f"failed_{name}" for name in SCREENSHOT_NAMES)]:
        (SCREENSHOTS / stale).unlink(missing_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, settings: dict[str, str]) -> Page:
    """A page (1280x800) in a new browser context (an empty profile: no cookies, no
    localStorage), with `settings` put in localStorage before the UI's first load."""
    context = browser.new_context(
        viewport=VIEWPORT, locale="en-US", timezone_id="UTC", color_scheme="light"
    )
    script = "".join(
        f"localStorage.setItem({key!r}, {value!r});" for key, value in settings.items()
    )
    context.add_init_script(script)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT)
    page.set_default_navigation_timeout(UI_TIMEOUT)
    return page


@pytest.fixture(scope="module")
def page(browser: Any) -> Page:
    """A page with the UI settings applied: the "Model training" view, the Assistant closed."""
    return new_page(browser, UI_SETTINGS)


# --------------------------------------------------------------------------- tests


def test_runs_page_lists_both_runs(page: Page, stack: servers.Stack, case_study) -> None:
    experiment_id, metrics = case_study["experiment_id"], case_study["metrics"]
    with step(page, "ui_runs.png"):
        page.goto(f"{stack.ui_url}/#/experiments/{experiment_id}/runs")
        for name in case_study["run_ids"]:
            visible(page.get_by_role("link", name=name, exact=True))
        # with the Columns picker (a popover dialog), as a reader would: show the val_rmse
        # column, and hide the empty Dataset column so that val_rmse fits on the screen
        page.get_by_role("button", name="Columns").click()
        picker = visible(page.get_by_role("dialog"))
        picker.get_by_text("val_rmse", exact=True).click()
        picker.get_by_text("Dataset", exact=True).click()
        page.keyboard.press("Escape")
        expect(picker).to_be_hidden(timeout=UI_TIMEOUT)
        for values in metrics.values():
            cell = visible(page.get_by_text(str(values["rmse"]), exact=True).first)
            expect(cell).to_be_in_viewport(timeout=UI_TIMEOUT)
        visible(page.get_by_text(f"{len(metrics)} matching runs"))
        page.screenshot(path=SCREENSHOTS / "ui_runs.png")


def test_run_page_shows_metrics_and_figure(page: Page, stack: servers.Stack, case_study) -> None:
    best = case_study["best"]
    run_id, metrics = case_study["run_ids"][best], case_study["metrics"][best]
    with step(page, "ui_run.png"):
        page.goto(f"{stack.ui_url}/#/experiments/{case_study['experiment_id']}/runs/{run_id}")
        visible(page.get_by_text(best, exact=True).first)
        for key, value in metrics.items():
            row = page.get_by_role("row").filter(has_text=f"val_{key}")
            expect(row).to_contain_text(str(value), timeout=UI_TIMEOUT)
        visible(page.get_by_text(config.MODEL_NAME).first)  # "Registered models" of the run
        page.screenshot(path=SCREENSHOTS / "ui_run.png")
    with step(page, "ui_figure.png"):
        page.get_by_role("tab", name="Artifacts").click()
        visible(page.get_by_text(FIGURE, exact=True).first).click()
        image = visible(page.get_by_role("img", name=FIGURE))
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0",
            arg=image.element_handle(),
            timeout=UI_TIMEOUT,
        )
        width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        # plots.FIGSIZE (inches) at matplotlib's 100 dpi
        assert (width, height) == tuple(round(side * 100) for side in plots.FIGSIZE)
        page.screenshot(path=SCREENSHOTS / "ui_figure.png")


def test_model_page_shows_the_alias(page: Page, stack: servers.Stack, case_study) -> None:
    with step(page, "ui_model.png"):
        page.goto(f"{stack.ui_url}/#/models/{config.MODEL_NAME}")
        visible(page.get_by_text(config.MODEL_NAME, exact=True).first)
        row = page.get_by_role("row").filter(has_text=f"Version {case_study['model_version']}")
        expect(row).to_contain_text(ALIAS, timeout=UI_TIMEOUT)
        page.screenshot(path=SCREENSHOTS / "ui_model.png")


def runs_table(page: Page, run_name: str) -> Locator:
    """The link to run `run_name` in the runs table, once the table shows it."""
    return visible(page.get_by_role("link", name=run_name, exact=True))


def dismiss_tips(page: Page) -> None:
    """Close the GenAI pages' first-visit tip ("Detect Issues", a modal popover) if it shows."""
    got_it = page.get_by_role("button", name="Got it", exact=True)
    with contextlib.suppress(Exception):  # it may not show at all
        got_it.wait_for(state="visible", timeout=10_000)
        got_it.click()
        expect(got_it).to_be_hidden(timeout=UI_TIMEOUT)


def genai_pages(page: Page) -> Locator:
    """The GenAI navigation's *Judges* link, once the GenAI pages show.

    Found even while the first-visit tip (a modal popover) hides the rest of the page from the
    accessibility tree: it may open at any moment after the page loads.
    """
    judges = page.get_by_role("link", name="Judges", exact=True, include_hidden=True)
    return visible(judges.first)


def test_the_printed_experiment_link_opens_the_runs_table(
    browser: Any, stack: servers.Stack, case_study
):
    """The link the notebooks print (Stack.experiment_url) lands a first visit on the runs table.

    MLflow 3.17.2's UI decides between its GenAI pages and its runs table from a browser setting
    (its GenAI | Model training switch, default GenAI), not from the experiment: the code that
    would read the experiment's ``mlflow.experimentKind`` tag is switched off in its bundle. A
    bare experiment URL therefore opens the GenAI pages on a first visit, even with that tag set;
    the printed link carries ``workflowType=machine_learning``, and picking *Model training*
    once is remembered by the browser (what the notebooks say for pages reached by clicking).
    If the first check fails, a newer UI decides otherwise: revisit the notebooks' advice.
    """
    from mlflow import MlflowClient

    experiment_id = case_study["empty_experiment_id"]
    MlflowClient(stack.tracking_uri).set_experiment_tag(
        experiment_id, "mlflow.experimentKind", "custom_model_development"
    )
    bare = f"{stack.ui_url}/#/experiments/{experiment_id}"
    page = new_page(browser, ASSISTANT_CLOSED)  # a first visit: no view picked yet
    try:
        with step(page, "view_bare_url.png"):
            page.goto(bare)
            genai_pages(page)
            expect(page.get_by_role("link", name="first-run", exact=True)).to_have_count(0)
    finally:
        page.context.close()
    page = new_page(browser, ASSISTANT_CLOSED)
    try:
        with step(page, "view_printed_link.png"):
            page.goto(stack.experiment_url(experiment_id))
            runs_table(page, "first-run")
        with step(page, "view_switch.png"):
            page.goto(bare)  # reached by clicking: the browser's choice decides again
            genai_pages(page)
            dismiss_tips(page)
            page.get_by_text("Model training", exact=True).first.click()
            runs_table(page, "first-run")
            page.goto(f"{stack.ui_url}/#/experiments")
            page.goto(bare)
            runs_table(page, "first-run")  # remembered
    finally:
        page.context.close()
