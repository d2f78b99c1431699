"""A presenter's server started beforehand: notebooks reuse it, clear only what they made there
in an earlier session (once per fresh workspace), and leave it running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mlflow_series import config, servers
from mlflow_series.servers import core

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from test_servers import cleanup_workspace, fresh_ports


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, servers.Stack]]:
    """A workspace root holding a kept local server, started as `make server` starts it."""
    root = tmp_path_factory.mktemp("root")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(config.WORKSPACE_VAR, str(root))
        patch.delenv(config.REMOTE_URI_VAR, raising=False)
        patch.setitem(servers.PORTS, "local", fresh_ports()["local"])
        stack = servers.START["local"](None, watch=False)  # the CLI's `up local`
        try:
            yield root, stack
        finally:
            cleanup_workspace(root / core.KEPT_WORKSPACE)
            mlflow.set_tracking_uri(None)


@pytest.fixture
def root(kept: tuple[Path, servers.Stack], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(config.WORKSPACE_VAR, str(kept[0]))
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    return kept[0]


def make_items(client: MlflowClient, experiments: list[str]) -> None:
    """Experiments with a run each, and the case study's registered model."""
    for name in experiments:
        run = client.create_run(client.create_experiment(name))
        client.set_terminated(run.info.run_id)
    client.create_registered_model(config.MODEL_NAME)


def active_names(client: MlflowClient) -> set[str]:
    return {experiment.name for experiment in client.search_experiments()}


def test_a_notebook_reuses_the_kept_server_and_clears_only_its_own(root, kept):
    kept_stack = kept[1]
    client = MlflowClient(kept_stack.tracking_uri)
    search = config.EXPERIMENTS["search"]
    make_items(client, [search, f"{search}-workers", config.EXPERIMENTS["team"], "a-colleague"])

    workspace = servers.fresh_workspace("02_tracking_server")
    stack = servers.start_local(workspace)

    assert stack.kept and stack.tracking_uri == kept_stack.tracking_uri
    assert stack.pids == kept_stack.pids
    assert "reused (started beforehand with `make server`)" in str(stack)
    names = active_names(client)
    assert search not in names and f"{search}-workers" not in names  # notebook 02's: cleared
    assert {config.EXPERIMENTS["team"], "a-colleague"} <= names  # another's: kept
    with pytest.raises(MlflowException, match="not found|RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(config.MODEL_NAME)
    # the notebook can create its experiment again under the same name
    assert client.get_experiment(client.create_experiment(search)).name == search


def test_a_second_start_in_the_same_session_keeps_the_runs(root, kept):
    client = MlflowClient(kept[1].tracking_uri)
    workspace = servers.fresh_workspace("03_remote_style_server")  # any notebook of the series
    servers.start_local(workspace)
    team = config.EXPERIMENTS["team"]
    experiment_id = client.create_experiment(team) if team not in active_names(client) else None
    servers.start_local(workspace)  # e.g. a restart to show the data stays
    assert team in active_names(client)
    if experiment_id:
        assert client.get_experiment_by_name(team).experiment_id == experiment_id


def test_a_notebook_leaves_the_kept_server_running(root, kept):
    stack = servers.start_local(servers.fresh_workspace("04_models"))
    assert stack.stop() == "left running: started beforehand (`make server-down` stops it)"
    assert stack.is_running()
    assert servers.running("local", core.KEPT_WORKSPACE) is not None


def test_the_kept_server_is_not_reused_for_its_own_workspace(root, kept):
    stack = servers.start_local(None)  # `make server` a second time
    assert stack.reused and not stack.kept


def test_a_workspace_elsewhere_starts_its_own_server(root, kept, tmp_path):
    stack = servers.start_local(tmp_path / "elsewhere")  # e.g. a test's own workspace
    try:
        assert not stack.kept and not stack.reused
        assert stack.tracking_uri != kept[1].tracking_uri
    finally:
        stack.stop()
