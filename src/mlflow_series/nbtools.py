"""Keep the committed notebooks honest: execute them, normalise their metadata, check them.

``python -m mlflow_series.nbtools run [NOTEBOOK ...]``  execute in place (Restart & Run All),
                                                        record cell timings, then clean
``python -m mlflow_series.nbtools clean [NOTEBOOK ...]``  normalise metadata, keep outputs
``python -m mlflow_series.nbtools check [NOTEBOOK ...]``  list what would fail the tests
``python -m mlflow_series.nbtools twice [NOTEBOOK ...]``  run each code cell twice in a row
                                                        (1, 1, 2, 2, ...); list what broke
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from mlflow_series import config

import nbformat

NOTEBOOK_DIR = config.REPO_ROOT / "notebooks"
TIMINGS_FILE = NOTEBOOK_DIR / "timings.json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
#: Cell metadata worth keeping: nbval/slide tags, collapsed solutions, slide types.
KEEP_CELL_METADATA = ("tags", "jupyter", "slideshow")
MACHINE_PATH = re.compile(
    r"(/root/|/home/\w+/|/Users/\w+/|/work/|/tmp/|/private/var/|[A-Z]:\\\\Users)"
)
WARNING_TEXT = re.compile(r"(\w*Warning\b|Traceback \(most recent call last\))")
IGNORE_MARKER = "# NBVAL_IGNORE_OUTPUT"
SOLUTION_MARKER = "# Solution"
#: An exercise's solution: tagged, its code and its outputs folded until the attendee opens them.
SOLUTION_METADATA = {
    "tags": ["solution"],
    "jupyter": {"source_hidden": True, "outputs_hidden": True},
}
#: A cell measured slower than this needs a "**Heads-up**" line in the markdown cell before it.
HEADS_UP_SECONDS = 10.0
#: What a re-run must not print: a warning (``FutureWarning``, a logged ``WARNING``) or a traceback.
RERUN_TROUBLE = re.compile(r"(\w*Warning\b|\bWARNING\b|Traceback \(most recent call last\))")


#: The 40-minute catch-up notebook: the whole story in one notebook, listed before 00.
CATCH_UP = "catch_up.ipynb"


def notebooks(paths: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The notebooks named, or every notebook of the series in `folder` (default notebooks/).

    The series' order: the catch-up notebook first (when it exists), then the numbered
    notebooks (NN_name.ipynb) in order.
    """
    if paths:
        return [Path(p) for p in paths]
    folder = NOTEBOOK_DIR if folder is None else folder
    catch_up = [folder / CATCH_UP] if (folder / CATCH_UP).is_file() else []
    return catch_up + sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def clean(nb: Any) -> Any:
    """Drop execution noise (metadata, not outputs) so diffs show only what a reader sees."""
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA}
        if cell.cell_type == "code":
            for output in cell.outputs:
                output.get("metadata", {}).pop("execution", None)
    return nb


def dumps(nb: Any) -> str:
    """The canonical text of a notebook."""
    return nbformat.writes(nb) + "\n"


def problems(path: Path) -> list[str]:
    """Everything in a committed notebook that strict tests and readers would trip on."""
    text = path.read_text()
    nb = nbformat.reads(text, as_version=4)
    found = []
    if dumps(clean(nbformat.reads(text, as_version=4))) != text:
        found.append("not clean: run `make notebooks` (or python -m mlflow_series.nbtools clean)")
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    if any(n is None for n in counts):
        found.append("cells without outputs: run `make notebooks`")
    elif counts != list(range(1, len(code) + 1)):
        found.append("cells executed out of order: run `make notebooks` (Restart & Run All)")
    found += _missing_heads_ups(path, nb)
    for index, cell in enumerate(code, start=1):
        where = f"code cell {index}"
        lines = cell.source.splitlines()
        if lines and lines[0].strip() == SOLUTION_MARKER:
            found += _solution_problems(where, cell)
        if IGNORE_MARKER in lines:
            after = lines[lines.index(IGNORE_MARKER) + 1 :]
            if not after or not after[0].startswith("#"):
                found.append(
                    f"{where}: {IGNORE_MARKER} needs a comment line saying why, right after it"
                )
        for output in cell.outputs:
            data = {k: v for k, v in output.get("data", {}).items() if not k.startswith("image/")}
            body = output.get("text", "") + json.dumps(data)
            if output.output_type == "error":
                found.append(f"{where}: an error output ({output.ename})")
            if output.get("name") == "stderr" and WARNING_TEXT.search(body):
                found.append(f"{where}: a warning or traceback: {body.strip()[:120]}")
            if match := MACHINE_PATH.search(body):
                found.append(f"{where}: a machine's absolute path in an output ({match.group(0)})")
    return found


def _solution_problems(where: str, cell: Any) -> list[str]:
    """What a solution cell lacks to stay folded (code and outputs) until an attendee opens it."""
    found = []
    if "solution" not in cell.metadata.get("tags", []):
        found.append(f"{where}: a solution cell needs the tag `solution`")
    folded = cell.metadata.get("jupyter", {})
    missing = [key for key in SOLUTION_METADATA["jupyter"] if not folded.get(key)]
    if missing:
        found.append(
            f"{where}: a solution cell needs metadata "
            + " and ".join(f"jupyter.{key} = true" for key in missing)
            + " (its answer stays folded until opened)"
        )
    return found


def _missing_heads_ups(path: Path, nb: Any) -> list[str]:
    """Slow cells (by the timings `make notebooks` measured) without a heads-up before them."""
    timings = json.loads(TIMINGS_FILE.read_text()) if TIMINGS_FILE.exists() else {}
    seconds = timings.get(path.name, {}).get("cells_s", [])
    found, index, previous = [], 0, ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            previous = cell.source
        elif cell.source.strip():
            took = seconds[index] if index < len(seconds) else None
            index += 1
            if took is not None and took > HEADS_UP_SECONDS and "**Heads-up**" not in previous:
                found.append(
                    f"code cell {index} took {took:.0f} s: put a **Heads-up** line before it"
                )
    return found


def _cell_seconds(cell: Any) -> float | None:
    """Execution time of one executed cell, from the timing metadata nbclient records."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def notebook_client(nb: Any, path: Path, timeout: int) -> Any:
    """An nbclient NotebookClient on the `python3` kernel, working in the notebook's folder."""
    from nbclient import NotebookClient

    return NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )


def run(path: Path, timeout: int = 300) -> dict[str, Any]:
    """Execute a notebook from a fresh kernel in its folder, save it clean; returns its timings."""
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    notebook_client(nb, path, timeout).execute()
    cells = [_cell_seconds(c) for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    timings = {
        "total_s": round(time.monotonic() - started, 1),
        "cells_s": [round(s, 2) if s is not None else None for s in cells],
    }
    path.write_text(dumps(clean(nb)))
    return timings


def _code_cells(nb: Any) -> list[tuple[int, Any]]:
    """The non-empty code cells of a notebook, with their index in `nb.cells`."""
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]


def _printed_tail(cell: Any, lines: int = 12) -> str:
    """The last lines a failing cell printed, indented, to show why it failed ("" if none)."""
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    tail = printed.strip().splitlines()[-lines:]
    return "".join(f"\n    {line}" for line in tail)


def rerun_trouble(cell: Any) -> list[str]:
    """Error outputs, tracebacks and warnings among the outputs of one executed code cell.

    Only these count: a cell run twice may print other values the second time (a new run id, an
    "Overwriting" instead of a "Writing"), so outputs are never compared with the committed ones.
    """
    found = []
    for output in cell.outputs:
        if output.output_type == "error":
            found.append(f"an error output ({output.ename}: {output.evalue})")
            continue
        data = {k: v for k, v in output.get("data", {}).items() if not k.startswith("image/")}
        body = output.get("text", "") + "".join(str(v) for v in data.values())
        match = RERUN_TROUBLE.search(body)
        is_traceback = match and match.group(0).startswith("Traceback")
        if match and (output.get("name") == "stderr" or is_traceback):
            line = next(ln for ln in body.splitlines() if match.group(0) in ln)
            found.append(f"a warning or traceback: {line.strip()[:160]}")
    return found


def run_twice(path: Path, timeout: int = 300) -> list[str]:
    """Execute every code cell twice in a row (1, 1, 2, 2, ...) in one fresh kernel.

    Checks CONTRIBUTING's promise that every cell is safe to run twice (presenters often run a
    cell again). The kernel and working directory are those of `run` (the `python3` kernel, in
    the notebook's folder); the notebook file is not changed.

    Returns one line per problem, naming the notebook, the cell (its index in the notebook's
    cells, then its number among the code cells, as `check` counts them), the run (1 or 2) and
    what went wrong (for an exception, followed by the last lines the cell printed, indented);
    [] when every cell survived its re-run. The first cell that raises, times out (after
    `timeout` seconds) or kills the kernel ends the run: later cells would only fail because
    of it.
    """
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    client = notebook_client(nb, path, timeout)
    found: list[str] = []
    with client.setup_kernel():
        for number, (index, cell) in enumerate(_code_cells(nb), start=1):
            for attempt in (1, 2):
                where = f"{path.name}: cell {index} (code cell {number}), run {attempt}"
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as error:
                    message = (error.evalue or "").strip().splitlines()
                    summary = f"{where}: {error.ename}: {message[0] if message else ''}"
                    return [*found, summary + _printed_tail(cell)]
                except CellTimeoutError:
                    return [*found, f"{where}: timed out after {timeout} s"]
                except DeadKernelError:
                    return [*found, f"{where}: the kernel died"]
                found += [f"{where}: {problem}" for problem in rerun_trouble(cell)]
    return found


def save_timings(new: dict[str, dict[str, Any]]) -> None:
    """Merge fresh timings into notebooks/timings.json."""
    data = json.loads(TIMINGS_FILE.read_text()) if TIMINGS_FILE.exists() else {}
    data.update(new)
    TIMINGS_FILE.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m mlflow_series.nbtools", description=__doc__)
    parser.add_argument("action", choices=["run", "clean", "check", "twice"])
    parser.add_argument(
        "paths", nargs="*", help="notebooks (default: every notebook of the series)"
    )
    args = parser.parse_args(argv)
    status = 0
    for path in notebooks(args.paths):
        if args.action == "run":
            timings = run(path)
            save_timings({path.name: timings})
            slowest = max((s for s in timings["cells_s"] if s is not None), default=0)
            print(f"{path.name}: {timings['total_s']} s, slowest cell {slowest} s")
        elif args.action == "twice":
            for problem in run_twice(path):
                print(problem)
                status = 1
        elif args.action == "clean":
            nb = nbformat.read(path, as_version=4)
            path.write_text(dumps(clean(nb)))
        else:
            for problem in problems(path):
                print(f"{path.name}: {problem}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
