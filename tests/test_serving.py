"""The model server's environment: a login for the real server only, never for our own servers.

`make test-external` proves it end to end (notebook 04 serves a model from a server with basic
auth); these tests pin the rule in milliseconds.
"""

from __future__ import annotations

from mlflow_series import config
from mlflow_series.servers.serving import model_server_env

import pytest

REAL = "https://mlflow.example.com"
LOGIN = {
    "MLFLOW_TRACKING_USERNAME": "ana",
    "MLFLOW_TRACKING_PASSWORD": "a-long-password",
    "MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/ssl/team-ca.pem",
}


@pytest.fixture
def logged_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session set up for a real server, as the README says."""
    monkeypatch.setenv(config.REMOTE_URI_VAR, REAL)
    for key, value in LOGIN.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("uri", [REAL, f"{REAL}/"])
def test_a_model_server_of_the_real_server_gets_the_login(logged_in, uri):
    env = model_server_env(uri)
    assert env["MLFLOW_TRACKING_URI"] == uri
    assert {key: env.get(key) for key in LOGIN} == LOGIN


def test_a_model_server_of_our_own_server_gets_no_login(logged_in):
    env = model_server_env("http://127.0.0.1:5051")
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5051"
    assert not set(LOGIN) & set(env)


def test_without_a_real_server_no_login_is_passed_on(logged_in, monkeypatch):
    monkeypatch.delenv(config.REMOTE_URI_VAR)
    env = model_server_env(REAL)
    assert not set(LOGIN) & set(env)
