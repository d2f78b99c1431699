"""The table of contents, the navigation links and the times are generated and up to date."""

from __future__ import annotations

import json
import math

from mlflow_series import nbtools, toc

import nbformat
import pytest


def test_links_tables_and_times_are_up_to_date():
    assert toc.update(write=False) == [], "run `make toc` and commit the result"


def _write(tmp_path, name, title="# Title: more", subtitle="> What it is.", extra=""):
    cells = [
        nbformat.v4.new_markdown_cell(f"{title}\n\n{subtitle}\n\n{extra}"),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    path = tmp_path / name
    path.write_text(nbtools.dumps(nbformat.v4.new_notebook(cells=cells)))
    return path


def test_entry_reads_title_subtitle_and_measured_time(tmp_path):
    path = _write(tmp_path, "03_demo.ipynb", extra="word " * 130)
    item = toc.entry(path, {"03_demo.ipynb": {"total_s": 30.0}})
    assert (item.number, item.short, item.subtitle) == ("03", "Title", "What it is.")
    # 136 words at 130 per minute (63 s) + one code cell (15 s) + a 30 s run: 2 minutes
    assert item.run_s == 30.0 and item.present_min == 2


def test_entry_without_a_title_is_a_clear_error(tmp_path):
    path = _write(tmp_path, "04_bad.ipynb", title="no title here")
    with pytest.raises(ValueError, match="04_bad.ipynb: needs an H1 title"):
        toc.entry(path, {})


def test_navigation_links_neighbours_and_contents(tmp_path):
    items = [toc.entry(_write(tmp_path, f"0{i}_n{i}.ipynb"), {}) for i in range(3)]
    first, middle, last = (toc.navigation(items, i) for i in range(3))
    assert "←" not in first and "[01 Title →](01_n1.ipynb)" in first
    assert "[← 00 Title](00_n0.ipynb)" in middle and "[02 Title →](02_n2.ipynb)" in middle
    assert "→" not in last and "[Contents](../README.md#the-notebooks)" in last


def test_table_lists_every_notebook_with_minutes(tmp_path):
    items = [
        toc.entry(_write(tmp_path, f"0{i}_n{i}.ipynb"), {"00_n0.ipynb": {"total_s": 4}})
        for i in range(2)
    ]
    table = toc.table(items, "notebooks/")
    assert "| 00 | [Title](notebooks/00_n0.ipynb) | What it is. | 4 s |" in table
    assert "not measured" in table and "**Total**" in table


# --------------------------------------------------------------------------- the catch-up


def test_the_catch_up_comes_first_when_it_exists(tmp_path):
    for name in ("01_b.ipynb", "00_a.ipynb"):
        _write(tmp_path, name)
    assert [p.name for p in nbtools.notebooks(folder=tmp_path)] == ["00_a.ipynb", "01_b.ipynb"]
    _write(tmp_path, nbtools.CATCH_UP)
    names = [p.name for p in nbtools.notebooks(folder=tmp_path)]
    assert names == [nbtools.CATCH_UP, "00_a.ipynb", "01_b.ipynb"]


def test_the_catch_up_has_its_own_row_and_navigation(tmp_path):
    _write(tmp_path, nbtools.CATCH_UP, title="# Catch-up: all of it")
    for i in range(2):
        _write(tmp_path, f"0{i}_n{i}.ipynb")
    items = toc.entries(tmp_path)
    assert [item.number for item in items] == ["", "00", "01"]
    catch_up, first, second = (toc.navigation(items, i) for i in range(3))
    assert catch_up.endswith(
        "[Contents](../README.md#the-notebooks) | [Full series: 00 Title →](00_n0.ipynb)"
    )
    assert "←" not in first and "Catch-up" not in first  # 00 has no Prev: the chain skips it
    assert "[← 00 Title](00_n0.ipynb)" in second and "→" not in second
    table = toc.table(items, "notebooks/")
    assert "| — | [Catch-up](notebooks/catch_up.ipynb) |" in table
    total = sum(item.present_min for item in items[1:])
    assert f"| | **Total, 00-01** | | | **{total} min** |" in table  # the catch-up retells


# --------------------------------------------------------------------------- sections and paths


def _series(tmp_path):
    """Two small notebooks with sections, exercises and measured cell times."""
    numbered = nbformat.v4.new_markdown_cell(
        "## 1. First\n\nOne two three.\n\n```\n## not a heading, inside a fence\n```"
    )
    solution = nbformat.v4.new_code_cell("# Solution\nx = 2")
    solution.metadata["tags"] = ["solution"]
    second_solution = nbformat.v4.new_code_cell("# Solution\nx = 3")
    second_solution.metadata["tags"] = ["solution"]
    cells = [
        nbformat.v4.new_markdown_cell("# Demo: a demo\n\n> What it is."),
        nbformat.v4.new_markdown_cell("## Overview\n\nGoals.\n\n## Setup\n\nImports:"),
        nbformat.v4.new_code_cell("import os"),
        numbered,
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell(""),  # introduced (15 s), never timed
        nbformat.v4.new_markdown_cell("## 2. Second\n\nFour five:"),
        nbformat.v4.new_code_cell("y = 1"),
        nbformat.v4.new_markdown_cell("## Exercises\n\n1. _Task one._"),
        solution,
        nbformat.v4.new_markdown_cell("2. _Task two._"),
        second_solution,
        nbformat.v4.new_markdown_cell("## Summary\n\nDone."),
    ]
    path = tmp_path / "01_demo.ipynb"
    path.write_text(nbtools.dumps(nbformat.v4.new_notebook(cells=cells)))
    _write(tmp_path, "00_intro.ipynb")
    cells_s = [1.0, 2.0, 30.0, 4.0, 5.0]  # the non-empty code cells, in order
    timings = {"01_demo.ipynb": {"total_s": 50.0, "cells_s": cells_s}}
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    return path


def test_sections_split_at_level_two_headings_with_their_words_cells_and_times(tmp_path):
    item = toc.entry(_series(tmp_path), json.loads((tmp_path / "timings.json").read_text()))
    keys = [part.key for part in item.sections]
    assert keys == ["", "Overview", "Setup", "1", "2", "Exercises", "Summary"]
    title, overview, setup, first, second, exercises, summary = item.sections
    assert (title.words, title.run_s) == (6, 8.0)  # 50 s in all - 42 s of cells: the kernel
    assert (setup.words, setup.code_cells, setup.run_s) == (2, 1, 1.0)
    # the fence's "## not a heading" stays in section 1; the empty cell counts, untimed
    assert (first.words, first.code_cells, first.run_s) == (11, 2, 2.0)
    assert first.seconds == pytest.approx(11 / 130 * 60 + 2 * 15 + 2.0)
    assert [part.optional for part in item.sections] == [0, 0, 0, 1, 1, 1, 0]
    assert [(e.words, e.code_cells, e.run_s) for e in exercises.exercises] == [
        (5, 1, 4.0),  # "Exercises", "1", "_Task", "one", "_": as \w+ counts them
        (4, 1, 5.0),
    ]
    total = sum(part.seconds for part in item.sections)
    assert item.present_min == math.ceil(total / 60)  # the sections add up to the notebook


def test_a_path_counts_what_it_presents_what_only_runs_and_the_exercises(tmp_path):
    _series(tmp_path)
    items = toc.entries(tmp_path)
    demo = items[1]
    by_key = {part.key: part for part in demo.sections}
    short = toc.SeriesPath("Short", "", {"01_demo.ipynb": ("2",)}, {"01_demo.ipynb": (2,)})
    [stop] = toc.stops(short, items)
    ex1, ex2 = by_key["Exercises"].exercises
    expected = (
        sum(by_key[key].seconds for key in ("", "Overview", "Setup", "2", "Summary"))
        + by_key["1"].run_s  # skipped: not presented, but its cells run
        + ex1.run_s
        + ex2.seconds
        + toc.EXERCISE_HANDS_ON_MIN * 60
    )
    assert stop.seconds == pytest.approx(expected)
    assert [part.key for part in stop.run_only] == ["1"]
    assert toc.path_minutes(short, items) == math.ceil(expected / 60)
    whole = toc.SeriesPath("Whole", "", None)
    assert toc.path_minutes(whole, items) == sum(item.present_min for item in items)
    # a whole notebook of which attendees do one exercise: everything else is presented
    hands_on = toc.SeriesPath("Hands-on", "", {"01_demo.ipynb": None}, {"01_demo.ipynb": (1,)})
    [stop] = toc.stops(hands_on, items)
    presented = sum(part.seconds for part in demo.sections if part.key != "Exercises")
    expected = presented + ex1.seconds + toc.EXERCISE_HANDS_ON_MIN * 60 + ex2.run_s
    assert stop.run_only == [] and stop.seconds == pytest.approx(expected)


def test_a_path_naming_a_missing_section_or_exercise_is_a_clear_error(tmp_path):
    _series(tmp_path)
    items = toc.entries(tmp_path)
    renumbered = toc.SeriesPath("Short", "", {"01_demo.ipynb": ("3",)})
    with pytest.raises(ValueError, match=r"01_demo.ipynb: no section 3 .*1, 2, Exercises"):
        toc.stops(renumbered, items)
    too_many = toc.SeriesPath("Short", "", {"01_demo.ipynb": ()}, {"01_demo.ipynb": (3,)})
    with pytest.raises(ValueError, match="exercises 1-2, not"):
        toc.stops(too_many, items)
    gone = toc.SeriesPath("Short", "", {"09_gone.ipynb": None})
    with pytest.raises(ValueError, match="no notebook 09_gone.ipynb"):
        toc.stops(gone, items)


def test_apportioned_minutes_add_up_to_the_total():
    assert toc.apportion([100, 80, 30], 4) == [2, 1, 1]
    assert sum(toc.apportion([61, 29, 200, 5], 5)) == 5


def test_update_writes_markers_and_tables_once_and_replaces_them(tmp_path, monkeypatch):
    path = _series(tmp_path)
    docs = {name: tmp_path / name for name in ("README.md", "presenting.md")}
    for doc in docs.values():
        doc.write_text(
            "# Doc\n\n<!-- toc:start -->\n<!-- toc:end -->\n\n"
            "<!-- paths:start -->\n<!-- paths:end -->\n"
        )
    short = toc.SeriesPath(
        "Short", "The short one.", {"01_demo.ipynb": ("2",)}, {"01_demo.ipynb": (1,)}, budget_min=9
    )
    monkeypatch.setattr(toc, "PATHS", (short, toc.SeriesPath("Full", "All.", None)))
    where = {"folder": tmp_path, "readme": docs["README.md"], "presenting": docs["presenting.md"]}
    assert len(toc.update(write=True, **where)) == 4
    assert toc.update(write=False, **where) == []  # idempotent
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    assert "## 1. First\n\n*Short path: skip this section (1 min): run its cells" in text
    assert "## Exercises\n\n*Short path: attendees do exercise 1 here (5 min hands-on)" in text
    assert "## 2. Second\n\nFour five:" in text  # presented: no marker
    readme = docs["README.md"].read_text()
    assert "| **Short** | The short one. |" in readme and "(at most 9)" in readme
    assert "| [01 Demo](notebooks/01_demo.ipynb) | Title, Overview, Setup |" in readme
    assert "(../notebooks/01_demo.ipynb)" in docs["presenting.md"].read_text()
    # the path changes: section 1 is presented now, its marker goes
    longer = toc.SeriesPath("Short", "The short one.", {"01_demo.ipynb": ("1", "2")})
    monkeypatch.setattr(toc, "PATHS", (longer,))
    assert toc.update(write=True, **where)
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    assert "## 1. First\n\nOne two three." in text
    assert text.count("*Short path:") == 1  # the exercises, skipped now
    assert "## Exercises\n\n*Short path: skip this section" in text


# --------------------------------------------------------------------------- the real paths


def test_the_paths_fit_their_budgets():
    """The workshop in at most 90 minutes and the catch-up in at most 40, as measured."""
    items = toc.entries()
    budgets = {path.name: path.budget_min for path in toc.PATHS}
    assert budgets["Workshop"] == 90 and budgets["Catch-up"] == 40
    for path in toc.PATHS:
        stops = toc.stops(path, items)
        if path.budget_min is None or not stops:
            continue
        unmeasured = [s.entry.path.name for s in stops if s.entry.run_s is None]
        assert not unmeasured, f"run `make notebooks NB=notebooks/{unmeasured[0]}` first"
        minutes = sum(stop.minutes for stop in stops)
        assert minutes <= path.budget_min, f"{path.name}: {minutes} min"
