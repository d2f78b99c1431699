"""Host names other than 127.0.0.1: extra allowed hosts, codespaces, and the README's team command.

MLflow 3 answers 403 ("Invalid Host header") to a Host it was not told about while ``/health``
stays 200. These tests send requests with the Host header a browser would send through a
forwarded port or a reverse proxy, and check the API and the UI page answer.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlflow_series import config, servers
from mlflow_series.servers import core, hosts, team

import psycopg2
import pytest
import requests
from test_servers import cleanup_workspace, fresh_ports, log_content

README = config.REPO_ROOT / "README.md"
CODESPACE = {
    "CODESPACES": "true",
    "CODESPACE_NAME": "fluffy-space-abc123",
    "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev",
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch):
    for key, port in fresh_ports().items():
        monkeypatch.setitem(servers.PORTS, key, port)
    for var in (config.REMOTE_URI_VAR, "MLFLOW_TRACKING_URI", hosts.ALLOWED_HOSTS_VAR, *CODESPACE):
        monkeypatch.delenv(var, raising=False)


def call(url: str, host: str | None = None, path: str = core.API_PROBE, **kw) -> int:
    headers = {"Host": host} if host else {}
    return requests.get(url + path, headers=headers, timeout=10, **kw).status_code


# --------------------------------------------------------------------------- unit tests


def test_extra_hosts_come_from_the_argument_the_variable_and_a_codespace(monkeypatch):
    assert hosts.extra_hosts(5051) == []
    monkeypatch.setenv(hosts.ALLOWED_HOSTS_VAR, " mlflow.example.com, ,*.corp.example ")
    for key, value in CODESPACE.items():
        monkeypatch.setenv(key, value)
    assert hosts.extra_hosts(5051, ["a.example", "mlflow.example.com"]) == [
        "a.example",
        "mlflow.example.com",
        "*.corp.example",
        "fluffy-space-abc123-5051.app.github.dev",
    ]


def test_a_url_given_as_host_name_is_a_clear_error():
    with pytest.raises(ValueError, match="bare host name"):
        hosts.extra_hosts(5051, ["https://mlflow.example.com/"])


def test_allowed_hosts_keep_mlflows_defaults_and_add_each_name_with_any_port():
    assert hosts.allowed_hosts_arg([]) == []
    flag, value = hosts.allowed_hosts_arg(["mlflow.example.com", "proxy.example:8443"])
    patterns = value.split(",")
    assert flag == "--allowed-hosts"
    for kept in ("localhost", "127.0.0.1", "127.0.0.1:*", "localhost:*"):
        assert kept in patterns
    assert {"mlflow.example.com", "mlflow.example.com:*", "proxy.example:8443"} <= set(patterns)


def test_the_browser_url_is_the_forwarded_one_in_a_codespace(monkeypatch):
    assert hosts.browser_url("http://127.0.0.1:5051", 5051) == "http://127.0.0.1:5051"
    for key, value in CODESPACE.items():
        monkeypatch.setenv(key, value)
    assert (
        hosts.browser_url("http://127.0.0.1:5051", 5051)
        == "https://fluffy-space-abc123-5051.app.github.dev"
    )


# --------------------------------------------------------------------------- real servers


@pytest.mark.slow
def test_a_codespace_forwarded_host_reaches_the_runs_and_the_ui(tmp_path, monkeypatch):
    for key, value in CODESPACE.items():
        monkeypatch.setenv(key, value)
    try:
        with servers.start_local(tmp_path, allowed_hosts=["mlflow.example.com"]) as stack:
            port = stack.ports["mlflow"]
            forwarded = f"fluffy-space-abc123-{port}.app.github.dev"
            assert stack.ui_url == f"https://{forwarded}"
            assert stack.tracking_uri == f"http://127.0.0.1:{port}"
            assert f"MLflow UI: https://{forwarded}" in str(stack)
            ids = log_content(stack.tracking_uri, "hosts", "hosts-model")
            for host in (forwarded, "mlflow.example.com", "mlflow.example.com:443", None):
                search = requests.post(
                    f"{stack.tracking_uri}/api/2.0/mlflow/runs/search",
                    json={"experiment_ids": [ids["experiment_id"]]},
                    headers={"Host": host} if host else {},
                    timeout=10,
                )
                assert search.status_code == 200, host
                assert [r["info"]["run_id"] for r in search.json()["runs"]] == [ids["run_id"]]
                assert call(stack.tracking_uri, host, "/") == 200, host  # the UI page
            assert call(stack.tracking_uri, "evil.example") == 403
    finally:
        cleanup_workspace(tmp_path)


@pytest.mark.slow
def test_a_refused_host_fails_the_start_instead_of_reporting_started(tmp_path, monkeypatch):
    """A server that answers /health but refuses the name it must serve is not "started"."""
    monkeypatch.setattr(hosts, "allowed_hosts_arg", lambda extra: [])  # the flag is lost
    monkeypatch.setattr(core, "allowed_hosts_arg", lambda extra: [])
    try:
        with pytest.raises(servers.ServerError, match=r"answers 403 .*'mlflow\.example\.com'"):
            servers.start_local(tmp_path, allowed_hosts=["mlflow.example.com"])
        assert servers.running("local", tmp_path) is None
    finally:
        cleanup_workspace(tmp_path)


# ---- the README's team command, started as written


def readme_team_blocks() -> tuple[str, str]:
    """The basic_auth.ini and the shell commands of the README's team deployment."""
    text = README.read_text()
    section = text[
        text.index("<!-- team-server:start -->") : text.index("<!-- team-server:end -->")
    ]
    ini = re.search(r"```ini\n(.*?)```", section, re.S).group(1)
    bash = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return ini, bash


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_the_readme_team_command_serves_every_name_it_lists(tmp_path_factory):
    """The README's commands, with the cloud's database and bucket replaced by local ones."""
    import mlflow

    ws = tmp_path_factory.mktemp("team")
    etc = tmp_path_factory.mktemp("etc")
    try:
        stack = servers.start_remote(ws, bucket="my-team-mlflow")  # PostgreSQL + S3 store
        pg, s3 = stack.ports["postgres"], f"http://127.0.0.1:{stack.ports['s3']}"
        conn = psycopg2.connect(host="127.0.0.1", port=pg, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("DROP ROLE IF EXISTS mlflow")
            cur.execute("CREATE ROLE mlflow LOGIN PASSWORD 'db-pass-123' CREATEDB")
            cur.execute("CREATE DATABASE mlflow_vm OWNER mlflow")
            cur.execute("CREATE DATABASE mlflow_auth OWNER mlflow")
        conn.close()
        port = free_port()
        ini, bash = readme_team_blocks()

        def local(text: str) -> str:
            text = text.replace("/etc/mlflow/", f"{etc}/").replace("5000", str(port))
            text = text.replace("mlflow-db.internal:5432", f"127.0.0.1:{pg}")
            return text.replace(f'127.0.0.1:{pg}/mlflow"', f'127.0.0.1:{pg}/mlflow_vm"')

        (etc / "basic_auth.ini").write_text(local(ini).replace("CHANGE-ME", "db-pass-123"))
        (etc / "db-password").write_text("db-pass-123\n")
        (etc / "flask-secret-key").write_text("a-long-random-flask-secret\n")
        (etc / "admin-password").write_text("admin-password-of-the-team\n")
        # The VM reaches the bucket with its instance role; here, the local store's keys.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
        env.update(team.S3_CREDENTIALS, MLFLOW_S3_ENDPOINT_URL=s3, **config.QUIET_ENV)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        log = open(ws / "vm-server.log", "wb")  # noqa: SIM115 - closed in finally
        server = subprocess.Popen(
            ["bash", "-c", local(bash)],
            cwd=ws,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            ready = False
            while not ready and time.monotonic() < deadline and server.poll() is None:
                with contextlib.suppress(requests.RequestException):
                    ready = requests.get(f"{url}/health", timeout=2).status_code == 200
                time.sleep(0.3)
            assert ready, (ws / "vm-server.log").read_text()[-3000:]
            admin = ("admin", "admin-password-of-the-team")
            # the browser through the proxy, with and without the port; the VM's own clients
            for host in ("mlflow.example.com", "mlflow.example.com:443", None):
                assert call(url, host, auth=admin) == 200, host
                assert call(url, host, "/", auth=admin) == 200, host
            assert call(f"http://localhost:{port}", None, auth=admin) == 200
            assert call(url, "mlflow.example.com") == 401  # a login is asked for
            assert call(url, "evil.example", auth=admin) == 403
            # an MLflow client on the VM logs a run with an artifact, through the server
            os.environ.update(MLFLOW_TRACKING_USERNAME=admin[0], MLFLOW_TRACKING_PASSWORD=admin[1])
            try:
                ids = log_content(url, "vm-check", "vm-model")
                text = mlflow.artifacts.load_text(f"runs:/{ids['run_id']}/notes/hello.txt")
                assert text == "durable notes\n"
            finally:
                os.environ.pop("MLFLOW_TRACKING_USERNAME")
                os.environ.pop("MLFLOW_TRACKING_PASSWORD")
                mlflow.set_tracking_uri(None)
            keys = team._boto_s3(s3).list_objects_v2(Bucket="my-team-mlflow")["Contents"]
            assert any(k["Key"].endswith("notes/hello.txt") for k in keys)
        finally:
            servers.stop_group(server.pid)
            log.close()
    finally:
        cleanup_workspace(ws)


def test_an_experiment_link_opens_the_training_view_under_any_base_url():
    """The link the notebooks print: the runs table, whatever the UI's address looks like."""
    from mlflow_series.servers.core import Stack

    query = "runs?workflowType=machine_learning"
    local = Stack("local", Path("."), "http://127.0.0.1:5000", "http://127.0.0.1:5000")
    assert local.experiment_url("3") == f"http://127.0.0.1:5000/#/experiments/3/{query}"
    proxied = Stack("remote", Path("."), "http://127.0.0.1:5001", "/user/ana/proxy/5001/")
    assert proxied.experiment_url("1") == f"/user/ana/proxy/5001/#/experiments/1/{query}"
    served = Stack("serve", Path("."), "http://127.0.0.1:5002", "http://127.0.0.1:5002")
    with pytest.raises(ValueError, match="no MLflow UI"):
        served.experiment_url("1")
