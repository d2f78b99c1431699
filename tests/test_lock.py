"""requirements.lock is current with respect to requirements.txt, and scripts/lock.py says when not.

Offline and fast: the checks read the two files; nothing is resolved or installed.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from mlflow_series import config

import pytest

LOCK_SCRIPT = config.REPO_ROOT / "scripts" / "lock.py"


def load_script(name: str, path: Path) -> ModuleType:
    """A script of scripts/ imported as module `name` (they are not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lock() -> ModuleType:
    return load_script("lock", LOCK_SCRIPT)


@pytest.fixture()
def copies(tmp_path: Path, lock: ModuleType) -> tuple[Path, Path]:
    """Copies of the committed requirements.txt and requirements.lock, to spoil."""
    requirements, locked = tmp_path / "requirements.txt", tmp_path / "requirements.lock"
    requirements.write_text(lock.REQUIREMENTS.read_text())
    locked.write_text(lock.LOCK.read_text())
    return requirements, locked


def test_the_committed_lock_is_current(lock: ModuleType) -> None:
    problems = lock.check()
    assert problems == [], "\n".join(problems)


def test_every_direct_pin_is_locked_at_its_version(lock: ModuleType) -> None:
    wanted = lock.pins(lock.REQUIREMENTS.read_text())
    locked = lock.locked_versions(lock.LOCK.read_text())
    assert {"mlflow", "scikit-learn", "pandas", "uv"} <= wanted.keys()
    assert {name: {version} for name, (_, version) in wanted.items()} == {
        name: locked.get(name) for name in wanted
    }
    assert len(locked) > 3 * len(wanted)  # indirect packages are pinned too


def test_a_changed_requirement_makes_the_lock_stale(
    lock: ModuleType, copies: tuple[Path, Path]
) -> None:
    requirements, locked = copies
    text = requirements.read_text()
    requirements.write_text(re.sub(r"^pandas==\S+", "pandas==3.0.0", text, flags=re.MULTILINE))
    problems = lock.check(requirements, locked)
    assert any("changed after requirements.lock was made: run `make lock`" in p for p in problems)
    assert "pandas==3.0.0 is pinned, but requirements.lock has " in "\n".join(problems)


def test_an_added_requirement_is_missing_from_the_lock(
    lock: ModuleType, copies: tuple[Path, Path]
) -> None:
    requirements, locked = copies
    requirements.write_text(requirements.read_text() + "not-a-real-package==1.0\n")
    assert "not-a-real-package==1.0 is pinned, but requirements.lock has absent" in lock.check(
        requirements, locked
    )


def test_a_lock_edited_by_hand_is_caught(lock: ModuleType, copies: tuple[Path, Path]) -> None:
    requirements, locked = copies
    mlflow = lock.pins(requirements.read_text())["mlflow"][1]
    locked.write_text(locked.read_text().replace(f"\nmlflow=={mlflow}\n", "\nmlflow==9.9.9\n"))
    assert lock.check(requirements, locked) == [
        f"mlflow[auth]=={mlflow} is pinned, but requirements.lock has 9.9.9"
    ]


def test_comments_do_not_make_the_lock_stale(lock: ModuleType, copies: tuple[Path, Path]) -> None:
    requirements, locked = copies
    requirements.write_text("# a new comment\n\n" + requirements.read_text() + "# the end\n")
    assert lock.check(requirements, locked) == []


def test_missing_lock_or_header(lock: ModuleType, copies: tuple[Path, Path]) -> None:
    requirements, locked = copies
    text = locked.read_text()
    locked.write_text("\n".join(ln for ln in text.splitlines() if "sha256" not in ln) + "\n")
    assert "has no line '# requirements.txt sha256: ...': run `make lock`" in "\n".join(
        lock.check(requirements, locked)
    )
    locked.unlink()
    assert lock.check(requirements, locked) == ["requirements.lock is missing: run `make lock`"]


def test_an_unpinned_requirement_is_refused(lock: ModuleType) -> None:
    with pytest.raises(ValueError, match="not pinned with ==: 'pandas>=3'"):
        lock.pins("numpy==2.4.6\npandas>=3\n")
    assert lock.pins("mlflow[auth]==3.17.2  # the server\n") == {
        "mlflow": ("mlflow[auth]", "3.17.2")
    }


def test_locked_versions_keep_every_marker_branch(lock: ModuleType) -> None:
    text = (
        "contourpy==1.3.3 ; python_full_version < '3.12'\n    # via matplotlib\n"
        "contourpy==1.4.0 ; python_full_version >= '3.12'\nJinja2==3.1.6\n"
    )
    assert lock.locked_versions(text) == {"contourpy": {"1.3.3", "1.4.0"}, "jinja2": {"3.1.6"}}


def test_make_setup_installs_from_the_lock() -> None:
    makefile = (config.REPO_ROOT / "Makefile").read_text()
    stamp = makefile.split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert "scripts/lock.py --check" in stamp
    assert "--no-deps -r requirements.lock" in stamp
    assert "-r requirements.txt" not in stamp


# --- scripts/test_latest.py (`make test-latest`): its offline parts ----------------------------

LATEST_SCRIPT = config.REPO_ROOT / "scripts" / "test_latest.py"


@pytest.fixture(scope="module")
def latest() -> ModuleType:
    return load_script("test_latest_script", LATEST_SCRIPT)


def test_latest_stays_out_of_ci_and_make_test() -> None:
    ci = (config.REPO_ROOT / ".ci" / "run").read_text()
    makefile = (config.REPO_ROOT / "Makefile").read_text()
    hold = next(line for line in makefile.splitlines() if line.startswith("test-hold:"))
    assert "test-latest" not in ci
    assert "test-latest" not in hold
    assert "test-latest:" in makefile


def test_latest_reads_the_listed_releases(latest: ModuleType) -> None:
    output = "mlflow (3.18.0)\nAvailable versions: 3.18.0, 3.17.2, 3.17.1\n  INSTALLED: 3.17.2\n"
    assert latest.parse_listed(output) == ["3.18.0", "3.17.2", "3.17.1"]
    assert latest.parse_listed("ERROR: No matching distribution found for nothing\n") == []


def test_latest_keeps_uvs_first_reason(latest: ModuleType) -> None:
    stderr = (
        "  × No solution found when resolving dependencies:\n  ╰─▶ Because there is no version"
        " of mlflow-skinny==3.18.0 and mlflow>=3.18.0 depends on\n      mlflow-skinny==3.18.0,"
        " we can conclude that mlflow>=3.18.0 cannot be used.\n      And because you require"
        " mlflow[auth]==3.18.0, we can conclude that your requirements are unsatisfiable.\n"
    )
    assert latest.uv_reason(stderr) == (
        "Because there is no version of mlflow-skinny==3.18.0 and mlflow>=3.18.0 depends on "
        "mlflow-skinny==3.18.0, we can conclude that mlflow>=3.18.0 cannot be used"
    )


def test_latest_result_column_and_notes(latest: ModuleType) -> None:
    notes: list[str] = []
    assert latest.release_result("pandas", "3.1.1", "3.1.1", [], notes) == (
        "the pin is the newest release"
    )
    assert latest.release_result("ruff", "0.17.5", "0.17.6", [], notes) == "newer than the pin"
    skips = [
        ("3.19.0", "held back by the other pins", "Because pandas ..."),
        ("3.18.1", "not installable", "Because there is no version of mlflow-skinny==3.18.1"),
        ("3.18.0", "not installable", "Because there is no version of mlflow-skinny==3.18.0"),
    ]
    assert latest.release_result("mlflow[auth]", "3.17.2", "3.17.2", skips, notes) == (
        "3.19.0 held back by the other pins [1]; 3.18.0 to 3.18.1 not installable [2]"
    )
    assert notes == [
        "mlflow[auth] 3.19.0: Because pandas ...",
        "mlflow[auth] 3.18.0 to 3.18.1: Because there is no version of mlflow-skinny==3.18.1",
    ]
    assert latest.release_result("numpy", "2.4.6", None, [], notes) == "not installed"


def test_latest_compares_outputs_as_strict_nbval(latest: ModuleType) -> None:
    rules = latest.sanitize_rules()
    committed = [
        {"output_type": "stream", "name": "stdout", "text": "server at http://127.0.0.1:5051\n"},
        {"output_type": "stream", "name": "stdout", "text": "RMSE 0.12\n"},
        {"output_type": "display_data", "data": {"image/png": "AAAA", "text/plain": "<Figure>"}},
    ]
    same = [
        {"output_type": "stream", "name": "stdout", "text": "server at http://127.0.0.1:6001\n"},
        {"output_type": "stream", "name": "stdout", "text": "RMSE 0.12\n"},
        {"output_type": "display_data", "data": {"image/png": "BBBB", "text/plain": "<Figure>"}},
    ]
    assert latest.comparable(committed, rules) == latest.comparable(same, rules)
    moved = [*same[:1], {"output_type": "stream", "name": "stdout", "text": "RMSE 0.13\n"}]
    moved.append(same[2])
    old, new = latest.comparable(committed, rules), latest.comparable(moved, rules)
    assert old != new
    assert latest.first_difference(old, new) == "stdout: 'RMSE 0.12' -> 'RMSE 0.13'"


def test_latest_table(latest: ModuleType) -> None:
    text = latest.table([["package", "pinned", "result"], ["uv", "0.13.8", "newer than the pin"]])
    assert text.splitlines() == [
        "package  pinned  result",
        "-------  ------  ------",
        "uv       0.13.8  newer than the pin",
    ]
