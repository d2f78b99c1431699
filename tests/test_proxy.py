"""The MLflow UI through a Jupyter server's proxy (JupyterHub, Binder, JupyterLab).

Under a Jupyter server with jupyter-server-proxy, a browser reaches a server's port at
``<base url>proxy/<port>/``. The unit tests set the variables a hub or a kernel has; the slow tests
start a real Jupyter server with jupyter-server-proxy, start an MLflow server from one of its
kernels through the helpers, and open the URL the helpers print in headless Chromium: the
experiment's runs table must render (needs Debian's chromium, as tests/test_ui.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow_series import config, servers
from mlflow_series.servers import hosts

import pytest
import requests
from test_servers import cleanup_workspace, free_port
from test_ui import CHROMIUM_FLAGS, UI_SETTINGS, UI_TIMEOUT, find_chromium

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported as a skip
    sync_playwright = None

HUB_VARS = ("JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_PUBLIC_URL")
CODESPACE_VARS = ("CODESPACES", "CODESPACE_NAME", "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN")
EXPERIMENT = "house-prices-proxy"
RUNS = ("ridge-baseline", "gradient-boosting")
#: The prefix JupyterHub gives a user's server (Binder's look the same).
HUB_PREFIX = "/user/attendee-1a2b3c/"


@pytest.fixture(autouse=True)
def _plain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub, codespace or kernel variables of the machine running the tests."""
    for var in (*HUB_VARS, *CODESPACE_VARS, "JPY_PARENT_PID", config.REMOTE_URI_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))


# --------------------------------------------------------------------------- unit tests


def test_outside_jupyter_the_url_is_the_servers_own():
    assert hosts.jupyter_base_url() is None
    assert hosts.browser_url("http://127.0.0.1:5051", 5051) == "http://127.0.0.1:5051"


def test_on_a_hub_the_url_keeps_the_hubs_prefix(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", HUB_PREFIX)
    assert hosts.browser_url("http://127.0.0.1:5051", 5051) == f"{HUB_PREFIX}proxy/5051/"
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", "https://hub.example.org/user/attendee-1a2b3c/")
    assert (
        hosts.browser_url("http://127.0.0.1:5051", 5051)
        == "https://hub.example.org/user/attendee-1a2b3c/proxy/5051/"
    )
    # a model server is called from the kernel: its URL stays the plain one
    assert hosts.browser_url("http://127.0.0.1:5056", 5056, proxied=False).startswith("http://127")


def test_a_kernel_of_a_jupyter_server_gets_that_servers_proxy_url(monkeypatch, tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "jpserver-4242.json").write_text(json.dumps({"url": "http://localhost:8888/lab1/"}))
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    monkeypatch.setattr(hosts, "_is_jupyter", lambda pid: pid == 4242)
    assert hosts.proxy_url(5051) == "http://localhost:8888/lab1/proxy/5051/"
    # a kernel started by nbclient or nbval: its parent is no Jupyter server
    monkeypatch.setenv("JPY_PARENT_PID", "4243")
    assert hosts.proxy_url(5051) is None


def test_a_stale_runtime_file_whose_pid_was_reused_counts_for_nothing(monkeypatch, tmp_path):
    """A killed Jupyter server leaves its runtime file; this process may have its pid now."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / f"jpserver-{os.getpid()}.json").write_text(json.dumps({"url": "http://x:8888/"}))
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))
    assert not hosts._is_jupyter(os.getpid())  # pytest
    assert hosts.proxy_url(5051) is None


def test_a_codespace_comes_before_the_proxy(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", HUB_PREFIX)
    for key, value in zip(CODESPACE_VARS, ("true", "fluffy", "app.github.dev"), strict=True):
        monkeypatch.setenv(key, value)
    assert hosts.browser_url("http://127.0.0.1:5051", 5051) == "https://fluffy-5051.app.github.dev"


def test_without_jupyter_server_proxy_nothing_changes(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", HUB_PREFIX)
    monkeypatch.setattr(hosts.importlib.util, "find_spec", lambda name: None)
    assert hosts.proxy_url(5051) is None


# --------------------------------------------------------------------------- a real Jupyter server


class Jupyter:
    """A Jupyter server (with jupyter-server-proxy) and one kernel of it that runs code."""

    def __init__(self, root: Path, base_url: str, env: dict[str, str]) -> None:
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base_url, self.runtime = base_url, root / "runtime"
        self.url = f"http://127.0.0.1:{self.port}{base_url}"
        self.headers = {"Authorization": f"token {self.token}"}
        cmd = [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root"]
        cmd += [f"--ServerApp.{key}={value}" for key, value in self.settings(root).items()]
        cmd += [f"--IdentityProvider.token={self.token}"]
        env = {**env, "JUPYTER_RUNTIME_DIR": str(self.runtime)}
        self.log = open(root / "jupyter.log", "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.client: Any = None

    def settings(self, root: Path) -> dict[str, str]:
        return {
            "ip": "127.0.0.1",
            "port": str(self.port),
            "port_retries": "0",
            "base_url": self.base_url,
            "root_dir": str(root),
        }

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the Jupyter server exited while starting"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}api/status", headers=self.headers, timeout=3).ok:
                    return
            time.sleep(0.2)
        raise AssertionError("the Jupyter server did not answer")

    def start_kernel(self) -> None:
        """A kernel started as JupyterLab starts one: through a session for a notebook."""
        from jupyter_client import BlockingKernelClient

        body = {"path": "proxy.ipynb", "type": "notebook", "kernel": {"name": "python3"}}
        reply = requests.post(
            f"{self.url}api/sessions", json=body, headers=self.headers, timeout=60
        )
        reply.raise_for_status()
        kernel_id = reply.json()["kernel"]["id"]
        self.client = BlockingKernelClient(
            connection_file=str(self.runtime / f"kernel-{kernel_id}.json")
        )
        self.client.load_connection_file()
        # no heartbeat: on a busy machine a starting kernel misses its beats and counts as dead
        self.client.start_channels(hb=False)
        self.client.wait_for_ready(timeout=180)

    def run(self, code: str, timeout: float = 180) -> str:
        """Run code in the kernel; returns what it printed, or fails with the error."""
        printed: list[str] = []

        def hook(msg: dict) -> None:
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                printed.append(msg["content"]["text"])
            elif kind == "error":
                printed.append("\n".join(msg["content"]["traceback"]))

        reply = self.client.execute_interactive(
            textwrap.dedent(code), timeout=timeout, output_hook=hook
        )
        assert reply["content"]["status"] == "ok", "".join(printed)
        return "".join(printed)

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.run("stack.stop()", timeout=60)
            self.client.stop_channels()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


@contextlib.contextmanager
def jupyter(root: Path, base_url: str = "/", **env: str) -> Iterator[Jupyter]:
    """A Jupyter server and a kernel; the series' workspace root is the test's own, so that no
    presenter's server (`make server`) is reused."""
    env = {**os.environ, config.WORKSPACE_VAR: str(root / "workspace"), **env}
    server = Jupyter(root, base_url, env)
    try:
        server.wait_ready()
        server.start_kernel()
        yield server
    finally:
        server.stop()


def start_and_log(server: Jupyter, workspace: Path) -> dict[str, str]:
    """In the kernel: start the local tracking server through the helpers, log two runs."""
    printed = server.run(
        f"""
        import json
        from pathlib import Path

        from mlflow_series import servers

        import mlflow

        stack = servers.start_local(Path({str(workspace)!r}), port={free_port()})
        print(stack)
        mlflow.set_tracking_uri(stack.tracking_uri)
        experiment = mlflow.set_experiment({EXPERIMENT!r})
        for name in {RUNS!r}:
            with mlflow.start_run(run_name=name):
                mlflow.log_metric("val_rmse", 0.1)
        print(json.dumps({{"ui_url": stack.ui_url, "experiment_id": experiment.experiment_id}}))
        """
    )
    lines = printed.strip().splitlines()
    return {"printed": "\n".join(lines[:-1]), **json.loads(lines[-1])}


def open_runs_table(url: str, headers: dict[str, str]) -> None:
    """Open an experiment's runs page in headless Chromium; fail unless both runs show."""
    chromium = find_chromium()
    if sync_playwright is None or chromium is None:
        pytest.skip("needs playwright and Debian's chromium (see tests/test_ui.py)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            context = browser.new_context(extra_http_headers=headers)
            settings = "".join(
                f"localStorage.setItem({key!r}, {value!r});" for key, value in UI_SETTINGS.items()
            )
            context.add_init_script(settings)  # the runs table, not the GenAI view
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT)
            page.goto(url)
            for name in RUNS:
                link = page.get_by_role("link", name=name, exact=True)
                expect(link).to_be_visible(timeout=UI_TIMEOUT)
            matching = page.get_by_text(f"{len(RUNS)} matching runs")
            expect(matching).to_be_visible(timeout=UI_TIMEOUT)
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.browser
def test_the_mlflow_ui_renders_the_runs_through_the_jupyter_proxy(tmp_path):
    """A Jupyter server under a hub-style prefix (Binder's shape): a kernel starts the local
    server through the helpers, which print the proxy URL (prefix included); Chromium opens it
    and the experiment's runs table renders. With the variable a hub sets, the same port's URL
    is the prefix's path, to open on the hub's address."""
    try:
        with jupyter(tmp_path, HUB_PREFIX) as server:
            started = start_and_log(server, tmp_path / "ws")
            port = server.run("print(stack.ports['mlflow'])").strip()
            proxied = f"{server.url}proxy/{port}/"
            assert server.url == f"http://127.0.0.1:{server.port}{HUB_PREFIX}"
            assert started["ui_url"] == proxied
            assert f"MLflow UI: {proxied}" in started["printed"]
            assert f"tracking URI: http://127.0.0.1:{port}" in started["printed"]
            on_hub = server.run(
                f"""
                import os
                from mlflow_series.servers import hosts
                os.environ["JUPYTERHUB_SERVICE_PREFIX"] = {HUB_PREFIX!r}
                print(hosts.browser_url(stack.tracking_uri, stack.ports["mlflow"]))
                del os.environ["JUPYTERHUB_SERVICE_PREFIX"]
                """
            )
            assert on_hub.strip() == f"{HUB_PREFIX}proxy/{port}/"
            page = requests.get(proxied, headers=server.headers, timeout=30)
            assert page.status_code == 200 and "<html" in page.text.lower()
            open_runs_table(
                f"{proxied}#/experiments/{started['experiment_id']}/runs", server.headers
            )
    finally:
        cleanup_workspace(tmp_path / "ws")


def test_the_proxy_is_installed_and_enabled():
    """jupyter-server-proxy is pinned and enables itself in the environment's Jupyter config."""
    import jupyter_server_proxy  # noqa: F401

    enabled = Path(sys.prefix, "etc/jupyter/jupyter_server_config.d/jupyter-server-proxy.json")
    assert json.loads(enabled.read_text())["ServerApp"]["jpserver_extensions"] == {
        "jupyter_server_proxy": True
    }
    assert "jupyter-server-proxy==" in (config.REPO_ROOT / "requirements.txt").read_text()
    assert servers.HOST == "127.0.0.1"  # the proxy reaches the servers on loopback
