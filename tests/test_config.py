"""A stray MLflow setting in the shell never moves the tutorial's runs, models or traces.

Each variable of ``config.STRAY_ENV`` gets one test: a fresh Python, started in an empty folder
with that variable set to a hostile value, imports ``mlflow_series`` (as each notebook's setup
cell does) and then does what the notebooks do with MLflow; the test checks that the result is
the one the notebooks show. Without the series' cleanup, every one of these results changes
(another experiment, another registry, a failed run, traces in the wrong place...).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from mlflow_series import config

import pytest

#: One step of the tutorial, run after `import mlflow_series`; it prints a JSON result.
SCRIPT = textwrap.dedent(
    '''
    import json
    import os
    import sys
    from pathlib import Path

    import mlflow_series  # noqa: F401  (a notebook's setup cell starts with this import)

    import mlflow

    STORE = f"sqlite:///{Path.cwd() / 'mlflow.db'}"


    def short(uri):
        """A store URI with the working folder written <cwd>, to compare across machines."""
        return uri.replace(str(Path.cwd()), "<cwd>")


    def first_run():
        """Notebook 01: no tracking URI set, a first run in the default store of the folder."""
        with mlflow.start_run(run_name="hello") as run:
            mlflow.log_param("greeting", "hello")
        experiment = mlflow.get_experiment(run.info.experiment_id)
        return {"store": short(mlflow.get_tracking_uri()), "experiment": experiment.name}


    def metrics():
        """Notebook 01: metrics logged in a run, then the active model seen by MLflow."""
        mlflow.set_tracking_uri(STORE)
        mlflow.set_experiment("house-prices-local")
        with mlflow.start_run(run_name="ridge-baseline") as run:
            mlflow.log_metrics({"val_rmse": 23329.0, "val_r2": 0.903})
        history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_rmse")
        return {"metric_model_ids": [m.model_id for m in history],
                "active_model": mlflow.get_active_model_id()}


    def register():
        """Notebook 05: log a model in a run and register it; where did the version go?"""
        from sklearn.linear_model import LinearRegression

        mlflow.set_tracking_uri(STORE)
        mlflow.set_experiment("house-prices-registry")
        model = LinearRegression().fit([[1.0], [2.0], [3.0]], [1.0, 2.0, 3.0])
        with mlflow.start_run(run_name="ridge"):
            mlflow.sklearn.log_model(
                model, name="model", pip_requirements=["scikit-learn"],
                registered_model_name="ames-house-prices",
            )
        in_store = mlflow.MlflowClient(registry_uri=STORE).search_model_versions(
            "name = 'ames-house-prices'"
        )
        return {"registry": short(mlflow.get_registry_uri()), "versions_in_store": len(in_store)}


    def trace():
        """A traced call while a notebook's experiment is active: is the trace in it?"""
        mlflow.set_tracking_uri(STORE)
        experiment = mlflow.set_experiment("house-prices-traces")

        @mlflow.trace
        def predict(x):
            return 2 * x

        predict(21)
        mlflow.flush_trace_async_logging()
        found = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
        return {"traces_in_experiment": len(found)}


    def server():
        """What `mlflow server` would use for the series' local server, started in the
        environment the series gives it (servers.server_env): the command's own checks and
        defaults (mlflow/cli/__init__.py), without starting it."""
        from mlflow_series.servers import server_env

        from mlflow.cli import server as command
        from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
        from mlflow.utils.server_cli_utils import (
            assert_server_workspace_env_unset,
            resolve_default_artifact_root,
        )

        env = server_env()
        os.environ.clear()
        os.environ.update(env)
        args = ["--backend-store-uri", STORE, "--artifacts-destination", "artifacts"]
        params = command.make_context("server", args).params
        assert_server_workspace_env_unset()
        backend = params["backend_store_uri"]
        return {
            "registry": short(params["registry_store_uri"] or backend),
            "read_replica": params["read_replica_backend_store_uri"],
            "artifact_root": resolve_default_artifact_root(
                params["serve_artifacts"], params["default_artifact_root"], backend
            ),
            "artifacts_destination": params["artifacts_destination"],
            "workspaces": MLFLOW_ENABLE_WORKSPACES.get(),
        }


    try:
        result = globals()[sys.argv[1]]()
    except Exception as error:  # the changed result is an error: show it in the test's diff
        result = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    print(json.dumps(result))
    '''
)

#: What each step gives in the notebooks, with no stray setting.
EXPECTED = {
    "first_run": {"store": "sqlite:///<cwd>/mlflow.db", "experiment": "Default"},
    "metrics": {"metric_model_ids": [None], "active_model": None},
    "register": {"registry": "sqlite:///<cwd>/mlflow.db", "versions_in_store": 1},
    "trace": {"traces_in_experiment": 1},
    "server": {
        "registry": "sqlite:///<cwd>/mlflow.db",
        "read_replica": None,
        "artifact_root": "mlflow-artifacts:/",  # clients upload through the server
        "artifacts_destination": "artifacts",
        "workspaces": False,
    },
}

#: For each variable of config.STRAY_ENV: the step it would change and a hostile value
#: ({tmp} is the test's folder). Each value is one a shell might really hold.
HOSTILE = {
    "MLFLOW_TRACKING_URI": ("first_run", "sqlite:///{tmp}/team.db"),
    "MLFLOW_EXPERIMENT_NAME": ("first_run", "team-churn-model"),
    "MLFLOW_EXPERIMENT_ID": ("first_run", "424242"),
    "MLFLOW_RUN_ID": ("first_run", "0123456789abcdef0123456789abcdef"),
    "MLFLOW_ENABLE_WORKSPACES": ("first_run", "true"),
    "MLFLOW_WORKSPACE": ("server", "team-churn"),
    "MLFLOW_ACTIVE_MODEL_ID": ("metrics", "m-0123456789abcdef0123456789abcdef"),
    "_MLFLOW_ACTIVE_MODEL_ID": ("metrics", "m-0123456789abcdef0123456789abcdef"),
    "MLFLOW_REGISTRY_URI": ("register", "sqlite:///{tmp}/team-registry.db"),
    "MLFLOW_TRACING_DESTINATION": ("trace", "424242"),
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ("trace", "http://127.0.0.1:4318/v1/traces"),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("trace", "http://127.0.0.1:4318"),
    "MLFLOW_REGISTRY_STORE_URI": ("server", "sqlite:///{tmp}/team-registry.db"),
    "MLFLOW_READ_REPLICA_BACKEND_STORE_URI": ("server", "sqlite:///{tmp}/team-replica.db"),
    "MLFLOW_DEFAULT_ARTIFACT_ROOT": ("server", "s3://team-bucket/mlflow"),
    "MLFLOW_SERVE_ARTIFACTS": ("server", "false"),
}

#: Settings the series keeps on purpose (a real server may need them); they are harmless to the
#: series' own stores and servers.
KEPT = {
    "MLFLOW_TRACKING_USERNAME": "alice",
    "MLFLOW_TRACKING_PASSWORD": "not-a-real-password",
    "MLFLOW_TRACKING_TOKEN": "not-a-real-token",
    "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
}


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow database, created once: each test copies it (creating one takes seconds)."""
    folder = tmp_path_factory.mktemp("template")
    code = "import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]); mlflow.search_experiments()"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    subprocess.run([sys.executable, "-c", code, uri], check=True, capture_output=True, timeout=120)
    return folder / "mlflow.db"


def run_step(step: str, folder: Path, template: Path, extra_env: dict[str, str]) -> dict:
    """Run one step of SCRIPT in a fresh Python in `folder`, with `extra_env` set; its result."""
    shutil.copy(template, folder / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if k not in config.STRAY_ENV}
    env.pop(config.REMOTE_URI_VAR, None)
    env.update(extra_env)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, step],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_stray_variable_has_a_test() -> None:
    assert set(HOSTILE) == set(config.STRAY_ENV)
    assert not set(KEPT) & set(config.STRAY_ENV)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_stray_variable_changes_nothing(name: str, tmp_path: Path, template_db: Path) -> None:
    step, value = HOSTILE[name]
    result = run_step(step, tmp_path, template_db, {name: value.format(tmp=tmp_path)})
    assert result == EXPECTED[step]


def test_the_kept_variables_change_nothing(tmp_path: Path, template_db: Path) -> None:
    assert run_step("register", tmp_path, template_db, KEPT) == EXPECTED["register"]


def set_hostile(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> dict[str, str]:
    """Set each variable to its hostile value (and clear the others); the values set."""
    for name in config.STRAY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    values = {name: HOSTILE[name][1].format(tmp="/tmp/elsewhere") for name in names}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_one_warning_names_every_variable_found(monkeypatch: pytest.MonkeyPatch) -> None:
    values = set_hostile(monkeypatch, list(HOSTILE))
    for name, value in KEPT.items():
        monkeypatch.setenv(name, value)
    with pytest.warns(UserWarning) as caught:
        config.apply_quiet_env()
    assert len(caught) == 1
    message = str(caught[0].message)
    lines = message.splitlines()
    for name, value in values.items():
        assert sum(line.startswith(f"- {name}={value}: ") for line in lines) == 1, name
        assert name not in os.environ
    for name, value in KEPT.items():
        assert name not in message
        assert os.environ[name] == value
    assert f"set {config.REMOTE_URI_VAR}={values['MLFLOW_TRACKING_URI']}" in message


def test_the_warning_names_only_what_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    set_hostile(monkeypatch, ["MLFLOW_EXPERIMENT_NAME"])
    with pytest.warns(UserWarning) as caught:
        config.apply_quiet_env()
    assert len(caught) == 1
    names = [line.split("=")[0] for line in str(caught[0].message).splitlines()[1:]]
    assert names == ["- MLFLOW_EXPERIMENT_NAME"]


def test_no_stray_variable_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    set_hostile(monkeypatch, [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config.apply_quiet_env()


def test_the_series_own_tracking_uri_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    set_hostile(monkeypatch, [])
    monkeypatch.setenv(config.REMOTE_URI_VAR, "https://mlflow.example.com")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config.apply_quiet_env()
    assert os.environ["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"


def test_a_password_in_a_uri_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    set_hostile(monkeypatch, [])
    uri = "postgresql://mlflow:s3cret@db.example.com/mlflow"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    with pytest.warns(UserWarning) as caught:
        config.apply_quiet_env()
    message = str(caught[0].message)
    assert "s3cret" not in message
    assert "postgresql://mlflow:***@db.example.com/mlflow" in message


def test_an_empty_variable_is_removed_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    set_hostile(monkeypatch, [])
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "")  # MLflow raises on an empty boolean
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config.apply_quiet_env()
    assert "MLFLOW_ENABLE_WORKSPACES" not in os.environ
