"""The numeric setup (BLAS kernel, threads, numpy's SIMD level) reaches every process.

`make test-numeric` runs the notebooks under another setup than the one that recorded them
(scripts/numeric_setup.py); the committed outputs must not change. That proves something only if
the setup is in force in the test processes and in the processes they start, which
`test_the_other_setup_is_in_force` checks when that target runs it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

from mlflow_series import config, modeling

import nbformat
import pytest

NOTEBOOK_03 = config.REPO_ROOT / "notebooks" / "03_remote_style_server.ipynb"
EXPECTED = os.environ.get("MLFLOW_SERIES_NUMERIC_SETUP")
#: An OpenBLAS kernel every CPU of the machine type runs, and few pick by default.
OLD_KERNEL = {"x86_64": "Nehalem", "aarch64": "ARMV8"}.get(platform.machine())
SETUP_OF_A_CHILD = (
    "import json; from mlflow_series import modeling; print(json.dumps(modeling.numeric_setup()))"
)


def setup_of_a_child(env: dict[str, str]) -> dict:
    """modeling.numeric_setup() as a process started with `env` sees it."""
    result = subprocess.run(
        [sys.executable, "-c", SETUP_OF_A_CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def teammate_env(environ: dict[str, str]) -> dict[str, str]:
    """The environment notebook 03 gives its teammates' processes, run from its own cell."""
    notebook = nbformat.read(NOTEBOOK_03, as_version=4)
    [cell] = [c for c in notebook.cells if c.cell_type == "code" and "laptop_env =" in c.source]
    namespace = {"os": os, "modeling": modeling, "print": lambda *args: None}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", environ)
        exec(cell.source, namespace)  # noqa: S102 - the committed cell itself is under test
    return namespace["laptop_env"]


def test_numeric_env_keeps_the_numeric_settings_only() -> None:
    environ = {
        "OPENBLAS_CORETYPE": "Haswell",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:1",
        "PATH": "/usr/bin",
    }
    assert modeling.numeric_env(environ) == {
        "OPENBLAS_CORETYPE": "Haswell",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4",
    }
    assert modeling.numeric_env({"HOME": "/root"}) == {}


def test_numeric_setup_names_the_blas_kernels_and_the_simd_level() -> None:
    setup = modeling.numeric_setup()
    assert len(setup["blas"]) >= 1, "numpy's BLAS is not loaded"
    for pool in setup["blas"]:
        assert pool["kernel"] and pool["threads"] >= 1 and pool["library"]
    assert setup["numpy_simd"]


def test_teammates_in_notebook_03_get_the_numeric_settings_but_no_storage_key() -> None:
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": "/home/ana",
        "OPENBLAS_CORETYPE": "Sandybridge",
        "OPENBLAS_L2_SIZE": "1048576",
        "OMP_NUM_THREADS": "1",
        "AWS_ACCESS_KEY_ID": "key",
        "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:1",
    }
    env = teammate_env(environ)
    assert env == {key: environ[key] for key in ("PATH", "HOME")} | modeling.numeric_env(environ)
    assert not [key for key in env if key.startswith("AWS_") or key == "MLFLOW_S3_ENDPOINT_URL"]


@pytest.mark.skipif(OLD_KERNEL is None, reason=f"no known OpenBLAS kernel for {platform.machine()}")
def test_a_teammate_process_computes_with_the_notebook_s_blas_kernel() -> None:
    if OLD_KERNEL in {pool["kernel"] for pool in modeling.numeric_setup()["blas"]}:
        pytest.skip(f"{OLD_KERNEL} is already this machine's kernel: nothing would change")
    environ = dict(os.environ) | {"OPENBLAS_CORETYPE": OLD_KERNEL}
    kernels = {pool["kernel"] for pool in setup_of_a_child(teammate_env(environ))["blas"]}
    assert kernels == {OLD_KERNEL}


@pytest.mark.skipif(EXPECTED is None, reason="run by `make test-numeric` only")
def test_the_other_setup_is_in_force() -> None:
    expected = json.loads(EXPECTED or "{}")
    assert modeling.numeric_setup() == expected, "this test process"
    assert setup_of_a_child(dict(os.environ)) == expected, "a child with this environment"
    teammate = teammate_env(dict(os.environ))
    assert setup_of_a_child(teammate) == expected, "a teammate's process in notebook 03"
