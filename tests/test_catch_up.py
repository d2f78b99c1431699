"""The catch-up notebook's helpers: a setup started in the background, its own names.

servers.start_in_background runs start_local or start_remote in a thread; most tests swap the
start function for a fake one (fast, no server), and one starts a real local server in its own
temporary workspace on a free port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from mlflow_series import config, servers
from mlflow_series.servers import background, kept

import pytest
import requests


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeStack:
    """What a start returns, as far as start_in_background looks at it."""

    def __init__(self, running: bool = True) -> None:
        self.running = running

    def is_running(self) -> bool:
        return self.running


@pytest.fixture(autouse=True)
def _forget_starts() -> Iterator[None]:
    """Each test starts with no start remembered, and leaves none behind."""
    background._STARTS.clear()
    yield
    background._STARTS.clear()


def fake_start(monkeypatch: pytest.MonkeyPatch, setup: str, behaviour) -> list[tuple]:
    """Replace a setup's start function; returns the list of the calls it received."""
    calls: list[tuple] = []

    def start(workspace, **options):
        calls.append((workspace, options))
        return behaviour()

    monkeypatch.setitem(background.BACKGROUND_STARTS, setup, start)
    return calls


def test_returns_at_once_and_wait_hands_over_the_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    release = threading.Event()
    stack = FakeStack()
    calls = fake_start(monkeypatch, "local", lambda: release.wait(5) and stack)
    began = time.monotonic()
    start = servers.start_in_background("local", tmp_path, port=1234)
    assert time.monotonic() - began < 1
    assert start.state() == "starting" and not start.done()
    assert str(start) == f"{background.TITLES['local']}: starting (in the background)"
    release.set()
    assert start.wait(timeout=5) is stack
    assert start.done() and start.state() == "ready"
    assert calls == [(tmp_path, {"port": 1234})]
    assert start.folder == tmp_path / "local"


def test_a_second_call_returns_the_same_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    release = threading.Event()
    calls = fake_start(monkeypatch, "remote", lambda: release.wait(5) and FakeStack())
    first = servers.start_in_background("remote", tmp_path)
    assert servers.start_in_background("remote", tmp_path) is first  # still starting
    release.set()
    first.wait(timeout=5)
    assert servers.start_in_background("remote", tmp_path) is first  # ready and running
    assert len(calls) == 1


def test_starts_again_after_a_stop_or_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = FakeStack()
    calls = fake_start(monkeypatch, "local", lambda: stack)
    first = servers.start_in_background("local", tmp_path)
    first.wait(timeout=5)
    stack.running = False  # stopped since
    second = servers.start_in_background("local", tmp_path)
    assert second is not first
    second.wait(timeout=5)
    assert len(calls) == 2

    def fail():
        raise servers.ServerError("mlflow exited with code 1 while starting")

    fake_start(monkeypatch, "remote", fail)
    failed = servers.start_in_background("remote", tmp_path)
    with pytest.raises(servers.ServerError, match="exited with code 1"):
        failed.wait(timeout=5)
    assert failed.state() == "failed: mlflow exited with code 1 while starting"
    assert servers.start_in_background("remote", tmp_path) is not failed


def test_other_workspaces_and_setups_start_apart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    local_calls = fake_start(monkeypatch, "local", FakeStack)
    remote_calls = fake_start(monkeypatch, "remote", FakeStack)
    starts = [
        servers.start_in_background("local", tmp_path / "a"),
        servers.start_in_background("local", tmp_path / "b"),
        servers.start_in_background("remote", tmp_path / "a"),
    ]
    for start in starts:
        start.wait(timeout=5)
    assert len({id(start) for start in starts}) == 3
    assert len(local_calls) == 2 and len(remote_calls) == 1


def test_wait_times_out_with_the_logs_to_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    release = threading.Event()
    fake_start(monkeypatch, "remote", lambda: release.wait(5) and FakeStack())
    start = servers.start_in_background("remote", tmp_path)
    try:
        with pytest.raises(servers.ServerError, match=r"still starting after 0 s.*logs"):
            start.wait(timeout=0.1)
    finally:
        release.set()
    start.wait(timeout=5)  # a later wait still gets the stack


def test_refuses_a_setup_it_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="cannot start in the background: use one of local, remote"
    ):
        servers.start_in_background("auth", tmp_path)


def test_the_catch_up_has_names_of_its_own() -> None:
    """Its experiments and model are apart from the numbered notebooks', and a kept server
    clears exactly them (never a numbered notebook's experiment, nor theirs)."""
    mine = [config.EXPERIMENTS[key] for key in ("catch_up", "catch_up_search", "catch_up_team")]
    prefixes, models = kept.NOTEBOOK_ITEMS["catch_up"]
    assert all(kept._owned(name, prefixes) for name in mine)
    assert (
        models == (config.CATCH_UP_MODEL_NAME,) and config.CATCH_UP_MODEL_NAME != config.MODEL_NAME
    )
    for notebook, (others, _) in kept.NOTEBOOK_ITEMS.items():
        if notebook != "catch_up":
            assert not any(kept._owned(name, others) for name in mine), notebook
            theirs = [name for name in config.EXPERIMENTS.values() if kept._owned(name, others)]
            assert not any(kept._owned(name, prefixes) for name in theirs), notebook


@pytest.mark.slow
def test_a_real_local_server_starts_in_the_background(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    monkeypatch.setitem(servers.PORTS, "local", free_port())
    start = servers.start_in_background("local", tmp_path)
    try:
        stack = start.wait(timeout=120)
        assert requests.get(f"{stack.tracking_uri}/health", timeout=5).text == "OK"
        assert servers.start_in_background("local", tmp_path) is start
        assert servers.running("local", tmp_path) is not None
    finally:
        servers.stop("local", tmp_path)
    assert servers.running("local", tmp_path) is None
