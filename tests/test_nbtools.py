"""The committed notebooks are clean, executed in order, without errors, warnings or paths."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow_series import nbtools

import nbformat
import pytest

NOTEBOOKS = nbtools.notebooks()
#: Every notebook but the welcome (00), which has no exercises.
EXERCISED = [p for p in NOTEBOOKS if p.name != "00_welcome.ipynb"]


def test_the_series_has_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_name.ipynb found"
    assert NOTEBOOKS[0].name == nbtools.CATCH_UP, "the catch-up is listed first"
    for path in NOTEBOOKS[1:]:
        assert path.stem[:2].isdigit() and path.stem[2] == "_" and path.stem == path.stem.lower()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_has_no_problems(path: Path):
    assert nbtools.problems(path) == []


def _notebook(tmp_path: Path, cells: list, metadata: dict | None = None) -> Path:
    nb = nbformat.v4.new_notebook(cells=cells, metadata=metadata or {})
    path = tmp_path / "01_example.ipynb"
    path.write_text(nbtools.dumps(nbtools.clean(nb)))
    return path


def _code(source: str, count: int | None, outputs: list | None = None):
    cell = nbformat.v4.new_code_cell(source, execution_count=count, outputs=outputs or [])
    return cell


def test_a_clean_executed_notebook_passes(tmp_path):
    out = nbformat.v4.new_output("stream", name="stdout", text="hello\n")
    path = _notebook(tmp_path, [_code("print('hello')", 1, [out]), _code("1 + 1", 2)])
    assert nbtools.problems(path) == []


def test_metadata_noise_makes_a_notebook_unclean_and_clean_fixes_it(tmp_path):
    path = _notebook(tmp_path, [_code("x = 1", 1)])
    nb = json.loads(path.read_text())
    nb["metadata"]["language_info"]["version"] = "3.11.7"
    nb["cells"][0]["metadata"]["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    path.write_text(json.dumps(nb))
    assert any("not clean" in p for p in nbtools.problems(path))
    assert nbtools.main(["clean", str(path)]) == 0
    assert nbtools.problems(path) == []
    cleaned = json.loads(path.read_text())
    assert "version" not in cleaned["metadata"]["language_info"]
    assert cleaned["cells"][0]["metadata"] == {}


def test_tags_survive_cleaning(tmp_path):
    cell = _code("x = 1", 1)
    cell.metadata = {"tags": ["solution"], "jupyter": {"source_hidden": True}, "collapsed": True}
    nb = nbtools.clean(nbformat.v4.new_notebook(cells=[cell]))
    assert nb.cells[0].metadata == {"tags": ["solution"], "jupyter": {"source_hidden": True}}


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ([_code("x = 1", None)], "cells without outputs"),
        ([_code("x = 1", 2), _code("y = 2", 1)], "out of order"),
        (
            [
                _code(
                    "1 / 0",
                    1,
                    [
                        nbformat.v4.new_output(
                            "error", ename="ZeroDivisionError", evalue="", traceback=[]
                        )
                    ],
                )
            ],
            "an error output (ZeroDivisionError)",
        ),
        (
            [
                _code(
                    "import warnings",
                    1,
                    [nbformat.v4.new_output("stream", name="stderr", text="FutureWarning: soon\n")],
                )
            ],
            "a warning or traceback",
        ),
        (
            [
                _code(
                    "print(path)",
                    1,
                    [nbformat.v4.new_output("stream", name="stdout", text="/home/alice/x.csv\n")],
                )
            ],
            "absolute path",
        ),
        ([_code("# NBVAL_IGNORE_OUTPUT\nprint(1)", 1)], "needs a comment line saying why"),
    ],
    ids=["unexecuted", "out-of-order", "error", "warning", "machine-path", "ignore-without-reason"],
)
def test_problems_are_found(tmp_path, cells, expected):
    path = _notebook(tmp_path, cells)
    found = nbtools.problems(path)
    assert any(expected in p for p in found), found


def test_ignore_marker_with_a_reason_is_fine(tmp_path):
    source = "# NBVAL_IGNORE_OUTPUT\n# timings differ on every machine\nprint(1)"
    path = _notebook(tmp_path, [_code(source, 1)])
    assert nbtools.problems(path) == []


def test_check_command_reports_and_fails(tmp_path, capsys):
    path = _notebook(tmp_path, [_code("x = 1", None)])
    assert nbtools.main(["check", str(path)]) == 1
    assert "cells without outputs" in capsys.readouterr().out


def test_a_slow_cell_needs_a_heads_up(tmp_path, monkeypatch):
    timings = tmp_path / "timings.json"
    monkeypatch.setattr(nbtools, "TIMINGS_FILE", timings)
    lead_in = nbformat.v4.new_markdown_cell("Start the server:")
    path = _notebook(tmp_path, [lead_in, _code("start()", 1)])
    timings.write_text(json.dumps({path.name: {"cells_s": [12.5]}}))
    assert any("took 12 s: put a **Heads-up**" in p for p in nbtools.problems(path))
    lead_in.source = "**Heads-up**: this cell takes about 12 s:"
    path = _notebook(tmp_path, [lead_in, _code("start()", 1)])
    assert nbtools.problems(path) == []


@pytest.mark.parametrize("path", EXERCISED, ids=[p.name for p in EXERCISED])
def test_notebook_has_exercises_with_collapsed_solutions(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert any(c.source.startswith("## Exercises") for c in nb.cells)
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert 2 <= len(solutions) <= 4
    for cell in solutions:
        assert cell.cell_type == "code" and cell.source.startswith("# Solution")
        folded = cell.metadata.get("jupyter", {})
        assert folded.get("source_hidden") is True and folded.get("outputs_hidden") is True
    # at least one task is done in the MLflow UI, not only in code
    start = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Exercises"))
    tasks = [c.source for c in nb.cells[start:] if c.cell_type == "markdown"]
    assert any("UI" in task for task in tasks), "no exercise uses the MLflow UI"


def _twice(tmp_path: Path, *sources: str) -> list[str]:
    """What nbtools.run_twice finds in a notebook of these code cells."""
    return nbtools.run_twice(_notebook(tmp_path, [_code(source, None) for source in sources]))


def test_cells_safe_to_run_twice_pass_the_twice_run(tmp_path):
    found = _twice(tmp_path, "runs = []", "runs.append(1)\nnewest = runs[-1]", "print(newest)")
    assert found == []


def test_a_cell_that_fails_on_its_second_run_is_reported(tmp_path):
    # the pattern of the bug: unpacking a search that each run of the cell makes longer
    search = "models.append('m')\nprint(len(models), 'found')\n[model] = models"
    found = _twice(tmp_path, "models = []", search, "x = 1")
    assert len(found) == 1, found
    summary, printed = found[0].splitlines()
    assert summary.startswith("01_example.ipynb: cell 1 (code cell 2), run 2: ValueError: ")
    assert "too many values to unpack" in summary
    assert printed == "    2 found"  # what the cell printed, to show why it failed


def test_a_warning_on_the_second_run_is_reported(tmp_path):
    source = (
        "import warnings\nif 'seen' in dir():\n    warnings.warn('again', FutureWarning)\nseen = 1"
    )
    found = _twice(tmp_path, source)
    assert len(found) == 1, found
    assert found[0].startswith("01_example.ipynb: cell 0 (code cell 1), run 2: a warning")
    assert "FutureWarning: again" in found[0]


def test_the_twice_command_runs_in_the_notebooks_folder_and_fails(tmp_path, capsys):
    source = "from pathlib import Path\nPath('marker.txt').touch(exist_ok=False)"
    path = _notebook(tmp_path, [_code(source, None)])
    assert nbtools.main(["twice", str(path)]) == 1
    assert (tmp_path / "marker.txt").is_file()
    out = capsys.readouterr().out
    assert out.startswith("01_example.ipynb: cell 0 (code cell 1), run 2: FileExistsError: "), out
