"""Fill a tracking server with runs, metrics, params, artifacts and a registered model version.

Run by the OLDER MLflow release's python (tests/upgrade/test_upgrade.py builds that venv), so
every row and file is written by that release's own server and client, as a store kept from an
older pin would be. Uses only APIs that MLflow 2.3 and later share. Writes what it logged, as
JSON, to the path given second; the test compares the pinned MLflow's view with it.

Usage: python old_release_store.py TRACKING_URL MANIFEST.json
"""

import json
import sys

import mlflow
from mlflow import MlflowClient

EXPERIMENT = "upgrade-check"
MODEL = "upgrade-model"


def main(url: str, manifest: str) -> None:
    mlflow.set_tracking_uri(url)
    client = MlflowClient()
    experiment_id = mlflow.set_experiment(EXPERIMENT).experiment_id
    runs = {}
    for i in range(3):
        with mlflow.start_run(run_name=f"run-{i}") as run:
            mlflow.log_params({"alpha": str(0.1 * (i + 1)), "solver": "auto"})
            for step in range(5):
                mlflow.log_metric("rmse", round(1.0 / (step + i + 1), 6), step=step)
            mlflow.set_tag("kind", "upgrade-check")
            mlflow.log_text(f"notes of run {i}\n", "notes/readme.txt")
            runs[run.info.run_id] = {
                "name": f"run-{i}",
                "params": {"alpha": str(0.1 * (i + 1)), "solver": "auto"},
                "rmse": [round(1.0 / (step + i + 1), 6) for step in range(5)],
                "artifact": f"notes of run {i}\n",
            }
    first = next(iter(runs))
    client.create_registered_model(MODEL, description="written by the older release")
    source = f"{client.get_run(first).info.artifact_uri}/notes"
    version = client.create_model_version(MODEL, source, run_id=first)
    client.set_registered_model_alias(MODEL, "champion", version.version)
    client.set_model_version_tag(MODEL, version.version, "origin", "older-release")
    with open(manifest, "w") as out:
        json.dump(
            {
                "mlflow_version": mlflow.__version__,
                "experiment": EXPERIMENT,
                "experiment_id": experiment_id,
                "model": MODEL,
                "version": str(version.version),
                "version_run_id": first,
                "runs": runs,
            },
            out,
            indent=1,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
