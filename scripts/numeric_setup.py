"""Run a command under another numeric setup than this machine's: `make test-numeric` uses it.

A committed notebook output must come out the same on any machine, whatever BLAS kernel its CPU
picks, however many threads it has and whichever SIMD extensions numpy dispatches to. This script
picks a setup that differs from this machine's default on all three points:

- OpenBLAS's kernel: the first of CANDIDATE_KERNELS (OPENBLAS_CORETYPE) that differs from the
  default and that this machine runs correctly (a product of two matrices checked against a sum
  computed without BLAS), in both numpy's and scipy's OpenBLAS;
- the thread count of BLAS and OpenMP: 1 if the default is more, else 2;
- numpy's SIMD level: every extension numpy found on this CPU switched off
  (NPY_DISABLE_CPU_FEATURES), so numpy runs its baseline code.

It checks, in a fresh process and with threadpoolctl, that the setup is in force, prints both
views, exports the setup (and MLFLOW_SERIES_NUMERIC_SETUP, the expected view, which
tests/test_numeric.py compares with what the test processes see) and replaces itself with the
command. Child processes inherit the setup through their environment.

    python scripts/numeric_setup.py [--show] [COMMAND ...]

Exits with status 1, naming the problem, when no other setup can be had on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from typing import Any

#: OpenBLAS kernels to try, by machine type: old ones, which every current CPU of that type runs.
CANDIDATE_KERNELS = {
    "x86_64": ("Sandybridge", "Nehalem", "Haswell"),
    "AMD64": ("Sandybridge", "Nehalem", "Haswell"),
    "aarch64": ("ARMV8", "CORTEXA57", "NEOVERSEN1"),
    "arm64": ("ARMV8", "CORTEXA57", "NEOVERSEN1"),
}
#: The variable through which the expected setup reaches tests/test_numeric.py.
EXPECTED_VAR = "MLFLOW_SERIES_NUMERIC_SETUP"
PROBE = """
import json
import numpy as np
import scipy.linalg.blas
from mlflow_series import modeling
rng = np.random.default_rng(0)
a, b = rng.standard_normal((120, 80)), rng.standard_normal((80, 60))
reference = (a[:, :, None] * b[None, :, :]).sum(axis=1)  # without BLAS
numpy_ok = np.allclose(a @ b, reference)
scipy_ok = np.allclose(scipy.linalg.blas.dgemm(1.0, a, b), reference)
correct = numpy_ok and scipy_ok
simd = np.show_config(mode="dicts")["SIMD Extensions"].get("found", [])
print(json.dumps({"setup": modeling.numeric_setup(), "correct": bool(correct), "simd_found": simd}))
"""


def probe(env: dict[str, str]) -> dict[str, Any] | None:
    """What a fresh Python process started with `env` computes with; None if it failed."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.splitlines()[-1])


def kernels(view: dict[str, Any]) -> set[str]:
    """The OpenBLAS kernels of a probe's view, lower-cased."""
    return {str(pool["kernel"]).lower() for pool in view["setup"]["blas"]}


def threads(view: dict[str, Any]) -> int:
    """The largest BLAS thread count of a probe's view."""
    return max(pool["threads"] for pool in view["setup"]["blas"])


def other_setup(default: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """Settings that differ from the default view on every point, and the view they give."""
    count = "1" if threads(default) > 1 else "2"
    settings = {"OMP_NUM_THREADS": count, "OPENBLAS_NUM_THREADS": count}
    if default["simd_found"]:
        disabled = os.environ.get("NPY_DISABLE_CPU_FEATURES", "").split()
        settings["NPY_DISABLE_CPU_FEATURES"] = " ".join(disabled + default["simd_found"])
    machine = platform.machine()
    for kernel in CANDIDATE_KERNELS.get(machine, ()):
        if kernel.lower() in kernels(default):
            continue
        candidate = settings | {"OPENBLAS_CORETYPE": kernel}
        view = probe(os.environ | candidate)
        if view and view["correct"] and kernels(view) == {kernel.lower()}:
            return candidate, view
    sys.exit(
        f"No other OpenBLAS kernel runs correctly on this {machine} machine (tried "
        f"{CANDIDATE_KERNELS.get(machine, 'none')}); add one to CANDIDATE_KERNELS in "
        f"{os.path.relpath(__file__)}."
    )


def describe(view: dict[str, Any]) -> list[str]:
    """The lines of the table for one view: kernels, BLAS threads, numpy's SIMD level."""
    pools = view["setup"]["blas"]
    return [
        ", ".join(sorted({str(pool["kernel"]) for pool in pools})),
        ", ".join(sorted({str(pool["threads"]) for pool in pools})),
        view["setup"]["numpy_simd"],
    ]


def report(default: dict[str, Any], chosen: dict[str, Any], settings: dict[str, str]) -> str:
    """A table of both views, as threadpoolctl and numpy report them, and the settings."""
    rows = ["OpenBLAS kernel", "BLAS threads", "numpy exp(float64) SIMD"]
    lines = [f"{'numeric setup':24} {'this machine':16} this run", "-" * 56]
    for row, old, new in zip(rows, describe(default), describe(chosen), strict=True):
        lines.append(f"{row:24} {old:16} {new}")
    lines.append("set: " + " ".join(f"{key}='{value}'" for key, value in sorted(settings.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Pick, check and print the other setup, then run the command under it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print the setup, run nothing")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run")
    args = parser.parse_args(argv)
    if not args.show and not args.command:
        parser.error("give a command to run, or --show")
    default = probe(dict(os.environ))
    if default is None:
        sys.exit("The probe of this machine's numeric setup failed: run `make setup`.")
    settings, chosen = other_setup(default)
    print(report(default, chosen, settings), flush=True)
    points = ["kernel", "threads", "SIMD"] if default["simd_found"] else ["kernel", "threads"]
    same = [
        point
        for point, old, new in zip(points, describe(default), describe(chosen), strict=False)
        if old == new
    ]
    if len(same) == len(points):
        sys.exit("The setup did not change at all: it is not a test of anything.")
    if same:  # e.g. numpy has no SIMD variant to switch off on this CPU (arm64, older x86)
        print(f"Unchanged on this machine: {', '.join(same)}.", flush=True)
    if args.show:
        return 0
    os.environ.update(settings)
    os.environ[EXPECTED_VAR] = json.dumps(chosen["setup"])
    os.execvp(args.command[0], args.command)
    return 1  # not reached: execvp replaces this process


if __name__ == "__main__":
    sys.exit(main())
