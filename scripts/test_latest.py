"""Run the unit tests and every notebook on the newest release of each direct dependency.

    python scripts/test_latest.py                 # what `make test-latest` runs
    python scripts/test_latest.py --skip-tests    # install and run the notebooks only
    python scripts/test_latest.py notebooks/01_local_tracking.ipynb   # only those notebooks

requirements.txt pins the direct dependencies; this script asks the package index (`pip index
versions`) for the newest release of each, then lets uv install the newest set that installs
together (each at its pin or newer; their own dependencies float) into a throwaway venv,
.latest/venv (git-ignored, rebuilt on every run). A release that is listed but cannot be installed,
such as an MLflow whose matching mlflow-skinny is not published, is reported with uv's reason, and
the newest one that installs is used instead.

In that venv it runs the unit tests (tests/, as `make test-unit` does: a failed test fails the run,
the warnings pytest collects are listed) and executes every notebook from a fresh kernel, cell by
cell, in a workspace of its own (.latest/workspace). An error, a warning or a traceback in any
cell fails the run. Outputs that differ from the committed ones
(after tests/sanitize.cfg's rules, as strict nbval compares them) are only reported: numbers may
move with newer releases. The notebooks on disk are never changed.

It ends with a table: package, pinned version, newest listed, newest tried, result; then what the
tests and each notebook gave. Exits with 1 when anything failed. Not part of `make test` or CI's
run: a weekly job of the public repository runs it (.github/workflows/latest.yml).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import lock  # noqa: E402  (scripts/lock.py: reads requirements.txt's pins)

LATEST = REPO_ROOT / ".latest"
VENV = LATEST / "venv"
SANITIZE = REPO_ROOT / "tests" / "sanitize.cfg"
#: What strict nbval leaves out of a comparison (nbval's own list, plus the figures' bytes).
SKIP_COMPARE = {
    "metadata",
    "traceback",
    "prompt_number",
    "output_type",
    "name",
    "execution_count",
    "application/vnd.jupyter.widget-view+json",
    "image/png",
    "image/jpeg",
}
CELL_TIMEOUT = 180
#: Notebooks executed at once (each starts servers of its own, on free ports).
PARALLEL_NOTEBOOKS = 2


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its text output, without raising on failure."""
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


# --- which releases ------------------------------------------------------------------------------


def listed_versions(name: str) -> list[str]:
    """Releases of a project the index lists for this Python, newest first ([] if none)."""
    result = run([sys.executable, "-m", "pip", "index", "versions", name])
    return parse_listed(result.stdout)


def parse_listed(pip_output: str) -> list[str]:
    """The versions in `pip index versions` output, in its order (newest first)."""
    match = re.search(r"^Available versions: (.+)$", pip_output, re.MULTILINE)
    return [v.strip() for v in match.group(1).split(",")] if match else []


def uv_reason(stderr: str) -> str:
    """uv's explanation of a failed resolution, on one line: its first "Because ..." sentence."""
    text = " ".join(stderr.split())
    match = re.search(r"(Because .+?)\.(?:\s|$)", text)
    return match.group(1) if match else (text[-300:] or "uv gave no reason")


def newest_requirements(direct: dict[str, tuple[str, str]]) -> list[str]:
    """Each direct dependency at its pin or newer: the resolver picks the newest that fit."""
    return [f"{written}>={pinned}" for written, pinned in direct.values()]


def unresolvable(uv: str, python: Path, requirements: list[str]) -> str | None:
    """uv's reason why requirements do not install together on this Python (None if they do)."""
    command = [uv, "pip", "compile", "--quiet", "--python", str(python), "-"]
    result = run(command, input="\n".join(requirements) + "\n")
    return None if result.returncode == 0 else uv_reason(result.stderr)


def skipped(
    uv: str, python: Path, direct: dict[str, tuple[str, str]], name: str, newer: list[str]
) -> list[tuple[str, str, str]]:
    """Why each listed release newer than the one installed was not: (version, kind, reason).

    The kind is "not installable" when the release does not install even alone (e.g. a
    dependency of it is not published), "held back by the other pins" when it does alone but
    not with the other direct dependencies at their pins or newer.
    """
    written = direct[name][0]
    others = [r for key, r in zip(direct, newest_requirements(direct), strict=True) if key != name]
    found = []
    for version in newer:
        wanted = f"{written}=={version}"
        if reason := unresolvable(uv, python, [wanted]):
            found.append((version, "not installable", reason))
        else:
            reason = unresolvable(uv, python, [*others, wanted]) or "uv did not pick it"
            found.append((version, "held back by the other pins", reason))
    return found


def release_result(
    written: str,
    pinned: str,
    tried: str | None,
    skips: list[tuple[str, str, str]],
    notes: list[str],
) -> str:
    """The result column of one package; appends a numbered note per reason to `notes`."""
    if tried is None:
        return "not installed"
    if not skips:
        return "the pin is the newest release" if tried == pinned else "newer than the pin"
    parts = []
    for kind in dict.fromkeys(k for _, k, _ in skips):
        versions = [v for v, k, _ in skips if k == kind]
        span = versions[0] if len(versions) == 1 else f"{versions[-1]} to {versions[0]}"
        notes.append(f"{written} {span}: {next(r for _, k, r in skips if k == kind)}")
        parts.append(f"{span} {kind} [{len(notes)}]")
    return "; ".join(parts)


# --- the throwaway venv --------------------------------------------------------------------------


def build_venv(uv: str, requirements: list[str]) -> tuple[dict[str, str] | None, str]:
    """A fresh .latest/venv with the newest releases and the helper package (from src/).

    Returns the installed versions by normalized name (None when the install failed), and what
    uv says: why the install failed, or what `uv pip check` finds broken ("" when nothing).
    """
    shutil.rmtree(VENV, ignore_errors=True)
    LATEST.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    python = VENV / "bin" / "python"
    wanted = LATEST / "requirements-newest.txt"
    wanted.write_text("\n".join(requirements) + "\n")
    result = run([uv, "pip", "install", "--python", str(python), "-r", str(wanted)])
    if result.returncode != 0:
        return None, result.stderr
    # The helper package, as `pip install -e .` would put it: its source folder on the path.
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    (Path(site.stdout.strip()) / "mlflow_series_src.pth").write_text(str(REPO_ROOT / "src") + "\n")
    frozen = run([uv, "pip", "freeze", "--python", str(python)]).stdout
    versions = {}
    for line in frozen.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            versions[lock.normalize(name)] = version.strip()
    check = run([uv, "pip", "check", "--python", str(python)])
    broken = check.stdout + check.stderr if check.returncode else ""
    return versions, broken


def venv_env() -> dict[str, str]:
    """The environment of everything run in the throwaway venv, with a workspace of its own."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env["MLFLOW_SERIES_WORKSPACE"] = str(LATEST / "workspace")
    # the venv holds releases newer than the pins on purpose: the environment check accepts them
    env["MLFLOW_SERIES_NEWER_OK"] = "1"
    env.pop("PYTHONHOME", None)
    return env


# --- the checks ----------------------------------------------------------------------------------


def unit_tests() -> tuple[bool, str, list[str]]:
    """Run tests/ in the venv (as `make test-unit`), its output going to .latest/unit-tests.log.

    Returns whether they passed (pytest's verdict, as in `make test`: the warnings it collects
    from libraries are listed, not failed), pytest's closing line, and the lines worth reading:
    the failed tests and the warnings, once each.
    """
    log = LATEST / "unit-tests.log"
    command = [str(VENV / "bin" / "python"), "-m", "pytest", "-n", "2", "--dist", "loadfile"]
    command += ["-p", "no:cacheprovider", "-q", "-rfE", "tests"]
    with log.open("w") as out:
        code = subprocess.run(
            command, cwd=REPO_ROOT, env=venv_env(), stdout=out, stderr=out
        ).returncode
    text = log.read_text()
    lines = [ln.strip("= ") for ln in text.splitlines() if ln.strip()]
    closing = re.sub(r" in [\d.]+s( \(.*\))?$", "", lines[-1]) if lines else "no output"
    notable = [ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    notable += [ln for ln in lines if re.match(r"^\S+:\d+: \w*Warning: ", ln)]
    notable = [ln.replace(f"{REPO_ROOT}/", "") for ln in notable]
    passed = code == 0
    return passed, f"{closing} (log: {log.relative_to(REPO_ROOT)})", list(dict.fromkeys(notable))


def notebook_report(path: Path) -> dict[str, Any]:
    """Execute one notebook in the venv (this script's --notebook mode); what it found."""
    out = LATEST / f"{path.stem}.json"
    out.unlink(missing_ok=True)
    command = [str(VENV / "bin" / "python"), __file__, "--notebook", str(path), "--json", str(out)]
    result = run(command, cwd=REPO_ROOT, env=venv_env())
    if not out.exists():
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        return {"problems": ["the run ended early: " + " | ".join(tail)], "changed": []}
    return json.loads(out.read_text())


def sanitize_rules(path: Path = SANITIZE) -> list[tuple[re.Pattern[str], str]]:
    """The regex/replace pairs of tests/sanitize.cfg, in order."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def comparable(outputs: list[Any], rules: list[tuple[re.Pattern[str], str]]) -> dict[str, list]:
    """A cell's outputs as strict nbval compares them: streams merged by name, figures and
    metadata left out, every text sanitized; keyed by field (`stdout`, `text/plain`, ...)."""
    merged: list[dict[str, Any]] = []
    streams: dict[str, dict[str, Any]] = {}
    for output in outputs:
        if output.get("output_type") == "stream":
            if output["name"] in streams:
                streams[output["name"]]["text"] += output["text"]
                continue
            streams[output["name"]] = {"output_type": "stream", "name": output["name"]}
            streams[output["name"]]["text"] = output["text"]
            merged.append(streams[output["name"]])
        else:
            merged.append(dict(output))
    fields: dict[str, list] = {}
    for output in merged:
        flat = dict(output.get("data", {}))
        if output.get("output_type") == "stream":
            flat = {output["name"]: output["text"]}
        else:
            flat.update({k: v for k, v in output.items() if k != "data"})
        for key, value in flat.items():
            if key in SKIP_COMPARE:
                continue
            if isinstance(value, list):
                value = "".join(value)
            if isinstance(value, str):
                for regex, replace in rules:
                    value = regex.sub(replace, value)
            fields.setdefault(key, []).append(value)
    return fields


def first_difference(old: dict[str, list], new: dict[str, list]) -> str:
    """One line saying where two comparable outputs first differ."""
    for key in sorted(set(old) | set(new)):
        before = "\n".join(map(str, old.get(key, []))).splitlines()
        after = "\n".join(map(str, new.get(key, []))).splitlines()
        for i in range(max(len(before), len(after))):
            a = before[i] if i < len(before) else "(nothing)"
            b = after[i] if i < len(after) else "(nothing)"
            if a != b:
                return f"{key}: {a.strip()[:70]!r} -> {b.strip()[:70]!r}"
    return "outputs differ"


def execute_notebook(path: Path) -> dict[str, Any]:
    """Run a notebook's code cells in order in a fresh kernel (in this venv); never saves it.

    Returns "problems" (errors, warnings, tracebacks: these fail) and "changed" (code cells whose
    outputs differ from the committed ones under strict nbval's rules: only reported).
    """
    from mlflow_series import nbtools

    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    committed = nbformat.read(path, as_version=4)
    # The workspace is .latest/workspace here: read it as the committed outputs' workspace/.
    rules = [(re.compile(r"\.latest/workspace\b"), "workspace"), *sanitize_rules()]
    client = nbtools.notebook_client(nb, path, CELL_TIMEOUT)
    report: dict[str, Any] = {"problems": [], "changed": []}
    with client.setup_kernel():
        for number, (index, cell) in enumerate(nbtools._code_cells(nb), start=1):
            before = committed.cells[index].outputs
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as error:
                message = (error.evalue or "").strip().splitlines()
                summary = f"{error.ename}: {message[0] if message else ''}"
                report["problems"].append(f"code cell {number}: {summary}")
                break
            except (CellTimeoutError, DeadKernelError) as error:
                report["problems"].append(f"code cell {number}: {type(error).__name__}")
                break
            report["problems"] += [f"code cell {number}: {p}" for p in nbtools.rerun_trouble(cell)]
            lines = cell.source.splitlines()
            if {"# NBVAL_IGNORE_OUTPUT", "# NBVAL_SKIP"} & {ln.strip() for ln in lines}:
                continue
            old, new = comparable(before, rules), comparable(cell.outputs, rules)
            if old != new:
                report["changed"].append(f"code cell {number}: {first_difference(old, new)}")
    return report


# --- the report ----------------------------------------------------------------------------------


def table(rows: list[list[str]]) -> str:
    """Rows as a plain-text table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * len(rows[0][-1]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-tests", action="store_true", help="do not run the unit tests")
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: every one)")
    parser.add_argument("--notebook", type=Path, help=argparse.SUPPRESS)  # run in the venv
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.notebook:
        args.json.write_text(json.dumps(execute_notebook(args.notebook.resolve()), indent=1))
        return 0

    sys.stdout.reconfigure(line_buffering=True)  # progress lines show at once in a CI log
    uv = str(lock.uv_executable())
    direct = lock.pins(lock.REQUIREMENTS.read_text())
    print(f"Asking the package index for the releases of {len(direct)} direct dependencies")
    with ThreadPoolExecutor(max_workers=4) as pool:
        listed = dict(zip(direct, pool.map(listed_versions, direct), strict=True))
    print(
        f"Installing the newest releases that install together into {VENV.relative_to(REPO_ROOT)}"
    )
    installed, uv_output = build_venv(uv, newest_requirements(direct))
    if installed is None:
        print(f"uv could not install them: {uv_reason(uv_output)}")
        print("\nFAILED: make test-latest")
        return 1
    rows = [["package", "pinned", "newest listed", "newest tried", "result"]]
    notes: list[str] = []
    for name, (written, pinned) in direct.items():
        tried, versions = installed.get(name), listed[name]
        newer = versions[: versions.index(tried)] if tried in versions else []
        skips = skipped(uv, VENV / "bin" / "python", direct, name, newer)
        result = release_result(written, pinned, tried, skips, notes)
        if not versions:
            result = "the index listed no release (pip index versions failed)"
        rows.append([written, pinned, versions[0] if versions else "?", tried or "-", result])
    failed = bool(uv_output)

    checks = [["check", "result"]]
    test_lines: list[str] = []
    if uv_output:
        checks.append(["uv pip check", uv_output.strip().splitlines()[-1]])
    if not args.skip_tests:
        print("Running the unit tests (tests/) in the venv")
        passed, closing, notable = unit_tests()
        checks.append(["unit tests", ("passed: " if passed else "FAILED: ") + closing])
        failed |= not passed
        test_lines = [f"  {line[:300]}" for line in notable]
    # the series' notebooks as every other target lists them (the catch-up first, then 00-06)
    from mlflow_series import nbtools

    notebooks = [p.resolve() for p in args.paths] or nbtools.notebooks()
    print(f"Executing {len(notebooks)} notebooks in the venv, {PARALLEL_NOTEBOOKS} at a time")
    with ThreadPoolExecutor(max_workers=PARALLEL_NOTEBOOKS) as pool:
        reports = dict(zip(notebooks, pool.map(notebook_report, notebooks), strict=True))
    details = []
    for path, report in reports.items():
        problems, changed = report["problems"], report["changed"]
        verdict = "FAILED: " + "; ".join(problems) if problems else "ran without error or warning"
        if changed and not problems:
            cells = f"{len(changed)} code cell" + ("s" if len(changed) > 1 else "")
            verdict += f"; outputs changed in {cells} (listed below)"
        elif not problems:
            verdict += "; outputs as committed"
        checks.append([path.stem, verdict])
        details += [f"  {path.stem}, {line}" for line in changed]
        failed |= bool(problems)

    print("\nThe newest release of each direct dependency (requirements.txt):\n")
    print(table(rows))
    for number, note in enumerate(notes, start=1):
        print(f"[{number}] {note}")
    print("\nIn that environment:\n")
    print(table(checks))
    if test_lines:
        print("\nFrom the unit tests' log (failed tests, warnings):")
        print("\n".join(test_lines))
    if details:
        print("\nOutputs that differ from the committed ones (reported, not failed):")
        print("\n".join(details))
    print("\n" + ("FAILED" if failed else "PASSED") + ": make test-latest")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
