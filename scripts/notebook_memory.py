"""The peak memory of each notebook, kernel and servers together: does it fit on Binder (2 GB)?

    .venv/bin/python scripts/notebook_memory.py                  # every notebook, one after another
    .venv/bin/python scripts/notebook_memory.py notebooks/03_remote_style_server.ipynb

Runs each notebook as `make notebooks` does (Restart & Run All, with nbclient) in a throwaway
workspace, without saving it, and samples every 0.2 s the memory of the kernel and of every
process it started (the servers, PostgreSQL, the S3 store, scripts). It reports the peak of the
proportional set size summed over them (PSS: a page shared by n processes counts 1/n in each, so
the sum is what a container's memory limit sees) and, as an upper bound, of the resident sizes
(RSS). A Jupyter server adds about 0.1 GB to either. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
GB = 1024**3


class Sampler(threading.Thread):
    """Samples the memory of a process and of all its descendants until stopped."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.every = psutil.Process(pid), every
        self.peak_pss = self.peak_rss = 0
        self.halt = threading.Event()

    def sample(self) -> None:
        pss = rss = 0
        with contextlib.suppress(psutil.Error):
            for proc in [self.root, *self.root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    info = proc.memory_full_info()
                    pss += getattr(info, "pss", info.rss)
                    rss += info.rss
        self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)

    def run(self) -> None:
        while not self.halt.is_set():
            self.sample()
            time.sleep(self.every)


def measure(path: Path) -> tuple[int, int, int]:
    """Run one notebook; return its peak PSS and RSS in bytes, and how many cells failed."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,  # measure the whole notebook; the failures are counted
        resources={"metadata": {"path": str(REPO / "notebooks")}},
    )
    with client.setup_kernel():
        sampler = Sampler(client.km.provisioner.process.pid)
        sampler.start()
        try:
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
        finally:
            sampler.sample()
            sampler.halt.set()
            sampler.join()
    failed = sum(
        any(output.get("output_type") == "error" for output in cell.get("outputs", []))
        for cell in notebook.cells
    )
    return sampler.peak_pss, sampler.peak_rss, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    from mlflow_series import nbtools

    paths = args.notebooks or nbtools.notebooks()  # the catch-up first, then 00-06
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlflow-series-memory-") as root:
        os.environ["MLFLOW_SERIES_WORKSPACE"] = root  # the kernels inherit it
        os.environ.pop("MLFLOW_SERIES_TRACKING_URI", None)
        for path in paths:
            print(f"running {path.name} ...", file=sys.stderr, flush=True)
            pss, rss, failed = measure(path.resolve())
            rows.append(f"| {path.stem} | {pss / GB:.2f} GB | {rss / GB:.2f} GB | {failed} |")
        from mlflow_series import servers

        servers.stop_all(Path(root))
    print("| Notebook | Peak memory (PSS) | Peak RSS (upper bound) | Failed cells |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
