"""The table of contents, the navigation links and the times are generated and up to date."""

from __future__ import annotations

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
