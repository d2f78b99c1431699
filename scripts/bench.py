"""Measure the series' MLflow setups on this machine and print one markdown table.

    .venv/bin/python scripts/bench.py        # what `make bench` runs (about 4-5 minutes)
    .venv/bin/python scripts/bench.py --startup 3   # server start-up only, 3 times each

What it measures, each in a throwaway workspace, tuned (the helper in mlflow_series.servers)
and with MLflow's defaults side by side:

- how long until /health answers: local (SQLite) and remote (PostgreSQL + S3 store), on a fresh
  and on an existing workspace. "Defaults" is a plain `mlflow server --backend-store-uri ...
  --artifacts-destination ...` (4 uvicorn workers, job runner and huey consumers), in its own
  process group; for the remote row it runs against the helper's PostgreSQL and S3 store.
- the peak resident memory of each setup: RSS summed over all its processes, sampled while a
  small workload runs (RSS counts shared pages once per process, so the sum is an upper bound);
- `mlflow.sklearn.log_model` with explicit `pip_requirements` and with inferred requirements;
- logging 100 runs (5 params and 3 metrics each) one call per value, batched
  (log_params/log_metrics), and with MLflow's asynchronous logging (`synchronous=False`).

With `--startup N` it measures only how long each server takes to answer, N times each, and
prints the range: on a busy machine the lowest value is the closest to a quiet one.

Progress goes to stderr as each result comes in; the table goes to stdout and to
bench-results/bench.md. Everything started is stopped, even on errors or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mlflow_series import config, servers
from mlflow_series.servers import process, team

import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench-results" / "bench.md"
RUNS = 100
GOALS = {
    ("ready-existing", "local"): ("≤ 6 s", lambda v: v <= 6),
    ("ready-existing", "remote"): ("≤ 10 s", lambda v: v <= 10),
    ("rss", "remote"): ("< 1 GB", lambda v: v < 1024**3),
}


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((servers.HOST, 0))
        return sock.getsockname()[1]


def fmt_s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f} s"


def fmt_mem(peak: tuple[int, int] | None) -> str:
    if peak is None:
        return "—"
    rss, count = peak
    return f"{rss / 1024**3:.2f} GB ({count} processes)"


# --------------------------------------------------------------------------- processes and memory


def tree(pid: int) -> list[psutil.Process]:
    """A server's process group plus all its descendants (PostgreSQL's have groups of their own)."""
    procs = {proc.pid: proc for proc in servers.group_members(pid)}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            procs.setdefault(child.pid, child)
    return list(procs.values())


class PeakMemory:
    """Samples the summed RSS of a set of processes in a thread; keeps the peak."""

    def __init__(self, processes: Callable[[], list[psutil.Process]], every: float = 0.2):
        self.processes = processes
        self.every = every
        self.peak = (0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        total, count = 0, 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
                count += 1
        if total > self.peak[0]:
            self.peak = (total, count)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1.0)  # let the servers settle after the last request
        self._stop.set()
        self._thread.join()
        self._sample()


# --------------------------------------------------------------------------- MLflow with defaults


class DefaultServer:
    """`mlflow server` with MLflow's defaults, in its own process group; killed on exit."""

    def __init__(self, backend: str, artifacts: str, cwd: Path, log: Path, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://{servers.HOST}:{self.port}"
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
        cmd += [
            "--artifacts-destination",
            artifacts,
            "--host",
            servers.HOST,
            "--port",
            str(self.port),
        ]
        env = dict(env)
        env.pop("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", None)  # the default: jobs on
        self.started = time.perf_counter()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.log = log

    def wait_ready(self, timeout: float = 180) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process._http_ok(f"{self.url}/health"):
                return time.perf_counter() - self.started
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise servers.ServerError(f"default server failed:\n{servers.log_tail(self.log)}")

    def processes(self) -> list[psutil.Process]:
        return tree(self.proc.pid)

    def stop(self) -> None:
        servers.stop_group(self.proc.pid, signal.SIGTERM, grace=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- workloads


def small_workload(uri: str, tag: str, ws: Path) -> None:
    """What a notebook does: a few runs with params, metrics and an artifact, then a search."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment(f"bench-memory-{tag}")
    for i in range(10):
        run = client.create_run(exp_id)
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            params=[mlflow.entities.Param(f"p{j}", str(i * j)) for j in range(5)],
            metrics=[
                mlflow.entities.Metric(f"m{j}", i + j / 10, int(time.time() * 1000), 0)
                for j in range(3)
            ],
        )
        client.log_text(run_id, "x" * 50_000, f"notes/run{i}.txt")
        client.set_terminated(run_id)
    runs = client.search_runs([exp_id], order_by=["metrics.m0 DESC"], max_results=100)
    assert len(runs) == 10
    client.download_artifacts(runs[0].info.run_id, "notes", tempfile.mkdtemp(dir=ws))


STYLES = {
    "per value": "one call per value",
    "batched": "batched (`log_params`/`log_metrics`)",
    "async": "async (`synchronous=False`)",
    "async buffered": "async + `MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=1`",
}


def log_runs(uri: str, style: str) -> float:
    """Seconds to log RUNS runs of 5 params and 3 metrics each, in one of the STYLES."""
    if style == "async buffered":  # the queue then merges calls and ends runs without waiting
        os.environ["MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"] = "1"
        try:
            return log_runs(uri, "async")
        finally:
            del os.environ["MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"]
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment(f"bench-{style.replace(' ', '-')}-{time.time_ns()}")
    started = time.perf_counter()
    for i in range(RUNS):
        params = {f"param_{j}": i * j for j in range(5)}
        metrics = {f"metric_{j}": i / 7 + j for j in range(3)}
        with mlflow.start_run(experiment_id=exp_id):
            if style == "batched":
                mlflow.log_params(params)
                mlflow.log_metrics(metrics)
            else:
                sync = style != "async"
                for key, value in params.items():
                    mlflow.log_param(key, value, synchronous=sync)
                for key, value in metrics.items():
                    mlflow.log_metric(key, value, synchronous=sync)
    if style == "async":
        mlflow.flush_async_logging()
    elapsed = time.perf_counter() - started
    runs = client.search_runs([exp_id], max_results=RUNS + 10)
    complete = [r for r in runs if len(r.data.params) == 5 and len(r.data.metrics) == 3]
    if len(complete) != RUNS:
        raise RuntimeError(f"{style}: only {len(complete)} of {RUNS} runs were fully logged")
    return elapsed


def log_model_times(uri: str) -> tuple[float, float]:
    """Seconds for mlflow.sklearn.log_model with explicit pip_requirements, and with inference."""
    import mlflow
    import numpy as np
    import sklearn
    from sklearn.linear_model import Ridge

    mlflow.set_tracking_uri(uri)
    exp_id = mlflow.MlflowClient(uri).create_experiment("bench-log-model")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    model = Ridge().fit(X, X @ np.arange(5.0))
    pins = [f"scikit-learn=={sklearn.__version__}"]
    with mlflow.start_run(experiment_id=exp_id):
        mlflow.sklearn.log_model(model, name="warm-up", pip_requirements=pins)  # imports, caches
        started = time.perf_counter()
        mlflow.sklearn.log_model(model, name="explicit", pip_requirements=pins)
        explicit = time.perf_counter() - started
        started = time.perf_counter()
        mlflow.sklearn.log_model(model, name="inferred")
        inferred = time.perf_counter() - started
    return explicit, inferred


# --------------------------------------------------------------------------- the benchmark


def measure_stack(start: Callable[[], servers.Stack]) -> tuple[servers.Stack, float]:
    started = time.perf_counter()
    stack = start()
    return stack, time.perf_counter() - started


def bench(ws: Path, results: dict) -> None:
    import mlflow  # noqa: F401  (imported once, before any timing)

    # ---- local, tuned
    stack, seconds = measure_stack(lambda: servers.start_local(ws / "tuned"))
    results["ready-fresh", "local", "tuned"] = seconds
    progress(f"local tuned, fresh workspace: ready in {seconds:.1f} s")
    try:
        with PeakMemory(lambda: stack.processes) as peak:
            small_workload(stack.tracking_uri, "local-tuned", ws)
        results["rss", "local", "tuned"] = peak.peak
        progress(f"local tuned: peak RSS {fmt_mem(peak.peak)}")
        explicit, inferred = log_model_times(stack.tracking_uri)
        results["log_model", "explicit"], results["log_model", "inferred"] = explicit, inferred
        progress(f"log_model: {explicit:.2f} s with pip_requirements, {inferred:.2f} s inferred")
        for style in STYLES:
            seconds = log_runs(stack.tracking_uri, style)
            results["runs", "local", style] = seconds
            progress(f"local: {RUNS} runs logged {style}: {seconds:.1f} s")
    finally:
        stack.stop()
    stack, seconds = measure_stack(lambda: servers.start_local(ws / "tuned"))
    stack.stop()
    results["ready-existing", "local", "tuned"] = seconds
    progress(f"local tuned, existing workspace: ready in {seconds:.1f} s")

    # ---- local, MLflow defaults
    folder = ws / "defaults-local"
    folder.mkdir()
    env = servers.server_env()
    for kind in ("fresh", "existing"):
        server = DefaultServer(
            f"sqlite:///{folder / 'mlflow.db'}",
            str(folder / "artifacts"),
            folder,
            folder / "mlflow.log",
            env,
        )
        try:
            seconds = server.wait_ready()
            results[f"ready-{kind}", "local", "defaults"] = seconds
            progress(f"local defaults, {kind} workspace: ready in {seconds:.1f} s")
            if kind == "fresh":
                with PeakMemory(server.processes) as peak:
                    small_workload(server.url, "local-defaults", ws)
                results["rss", "local", "defaults"] = peak.peak
                progress(f"local defaults: peak RSS {fmt_mem(peak.peak)}")
        finally:
            server.stop()

    # ---- remote, tuned
    stack, seconds = measure_stack(lambda: servers.start_remote(ws / "tuned"))
    results["ready-fresh", "remote", "tuned"] = seconds
    progress(f"remote tuned, fresh workspace: ready in {seconds:.1f} s")
    try:
        with PeakMemory(lambda: stack.processes) as peak:
            small_workload(stack.tracking_uri, "remote-tuned", ws)
        results["rss", "remote", "tuned"] = peak.peak
        progress(f"remote tuned: peak RSS {fmt_mem(peak.peak)}")
        for style in STYLES:
            seconds = log_runs(stack.tracking_uri, style)
            results["runs", "remote", style] = seconds
            progress(f"remote: {RUNS} runs logged {style}: {seconds:.1f} s")
    finally:
        stack.stop()
    stack, seconds = measure_stack(lambda: servers.start_remote(ws / "tuned"))
    results["ready-existing", "remote", "tuned"] = seconds
    progress(f"remote tuned, existing workspace: ready in {seconds:.1f} s")

    # ---- remote, MLflow defaults: against the helper's PostgreSQL and S3 store
    try:
        team._pg_create_db(stack.ports["postgres"], "mlflow_defaults")
        backend = f"postgresql+psycopg2://postgres@{servers.HOST}:{stack.ports['postgres']}"
        s3_url = f"http://{servers.HOST}:{stack.ports['s3']}"
        env = servers.server_env({**servers.S3_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_url})
        folder = ws / "defaults-remote"
        folder.mkdir()
        storage = [stack.pids["postgres"], stack.pids["s3"]]
        for kind in ("fresh", "existing"):
            server = DefaultServer(
                f"{backend}/mlflow_defaults",
                f"s3://{servers.BUCKET}/defaults",
                folder,
                folder / "mlflow.log",
                env,
            )
            try:
                seconds = server.wait_ready()
                results[f"ready-{kind}", "remote", "defaults"] = seconds
                progress(f"remote defaults, {kind} database: mlflow ready in {seconds:.1f} s")
                if kind == "fresh":

                    def procs(server=server) -> list[psutil.Process]:
                        return server.processes() + [p for pid in storage for p in tree(pid)]

                    with PeakMemory(procs) as peak:
                        small_workload(server.url, "remote-defaults", ws)
                    results["rss", "remote", "defaults"] = peak.peak
                    progress(f"remote defaults: peak RSS {fmt_mem(peak.peak)}")
            finally:
                server.stop()
    finally:
        stack.stop()


def table(results: dict) -> str:
    def goal(key: tuple[str, str], value) -> str:
        if key not in GOALS:
            return ""
        text, check = GOALS[key]
        if value is None:
            return text
        number = value[0] if isinstance(value, tuple) else value
        return f"{text} {'✅' if check(number) else '❌'}"

    rows = [
        "| Measure | Setup | Helper (tuned) | MLflow defaults | Goal |",
        "|---|---|---|---|---|",
    ]
    for setup, label in (("local", "local (SQLite)"), ("remote", "remote (PostgreSQL + S3)")):
        for kind, what in (("fresh", "fresh workspace"), ("existing", "existing workspace")):
            tuned = results.get((f"ready-{kind}", setup, "tuned"))
            default = results.get((f"ready-{kind}", setup, "defaults"))
            note = " (mlflow only)" if setup == "remote" and default is not None else ""
            rows.append(
                f"| Server ready ({what}) | {label} | {fmt_s(tuned)} | {fmt_s(default)}{note} | "
                f"{goal((f'ready-{kind}', setup), tuned)} |"
            )
    for setup, label in (("local", "local (SQLite)"), ("remote", "remote (PostgreSQL + S3)")):
        tuned = results.get(("rss", setup, "tuned"))
        default = results.get(("rss", setup, "defaults"))
        rows.append(
            f"| Peak RSS, all processes, small workload | {label} | {fmt_mem(tuned)} | "
            f"{fmt_mem(default)} | {goal(('rss', setup), tuned)} |"
        )
    rows.append(
        "| `mlflow.sklearn.log_model`, explicit `pip_requirements` | local (SQLite) | "
        f"{fmt_s(results.get(('log_model', 'explicit')))} |  |  |"
    )
    rows.append(
        "| `mlflow.sklearn.log_model`, requirements inferred | local (SQLite) | "
        f"{fmt_s(results.get(('log_model', 'inferred')))} |  |  |"
    )
    for setup, label in (("local", "local (SQLite)"), ("remote", "remote (PostgreSQL + S3)")):
        for style, what in STYLES.items():
            rows.append(
                f"| Log {RUNS} runs × (5 params + 3 metrics), {what} | {label} | "
                f"{fmt_s(results.get(('runs', setup, style)))} |  |  |"
            )
    return "\n".join(rows)


NOTES = """\
Notes: "MLflow defaults" is `mlflow server` without `--workers 1` and with the job runner on
(4 uvicorn workers, huey consumers); for the remote rows it runs against the helper's PostgreSQL
(a fresh database, then the same one again) and S3 store, so its ready time covers MLflow only.
RSS is summed over every process (shared pages count once per process: an upper bound).
Plain async logging is slow for many short runs: ending a run waits for the logging thread, which
polls its queue once a second; with a buffering interval set, ending a run does not wait."""


def startup(ws: Path, results: dict, repeat: int) -> None:
    """Only the ready times: the tuned local and remote setups and a local server with MLflow's
    defaults, each on a fresh and then an existing workspace, `repeat` times (lists of seconds)."""
    import mlflow  # noqa: F401  (imported once, before any timing)

    def add(key: tuple[str, str, str], seconds: float) -> None:
        results.setdefault(key, []).append(seconds)
        progress(f"{key[1]} {key[2]}, {key[0].removeprefix('ready-')} workspace: {seconds:.1f} s")

    for attempt in range(repeat):
        folder = ws / f"startup-{attempt}"
        for setup, start in (("local", servers.start_local), ("remote", servers.start_remote)):
            for kind in ("fresh", "existing"):
                stack, seconds = measure_stack(lambda start=start, folder=folder: start(folder))
                stack.stop()
                add((f"ready-{kind}", setup, "tuned"), seconds)
        defaults = folder / "defaults-local"
        defaults.mkdir()
        for kind in ("fresh", "existing"):
            server = DefaultServer(
                f"sqlite:///{defaults / 'mlflow.db'}",
                str(defaults / "artifacts"),
                defaults,
                defaults / "mlflow.log",
                servers.server_env(),
            )
            try:
                add((f"ready-{kind}", "local", "defaults"), server.wait_ready())
            finally:
                server.stop()


def fmt_range(seconds: list[float] | None) -> str:
    if not seconds:
        return "—"
    low, high = min(seconds), max(seconds)
    return f"{low:.1f}-{high:.1f} s ({len(seconds)} runs)" if len(seconds) > 1 else fmt_s(low)


def startup_table(results: dict) -> str:
    rows = [
        "| Server ready | Setup | Helper (tuned) | MLflow defaults |",
        "|---|---|---|---|",
    ]
    for setup, label in (("local", "local (SQLite)"), ("remote", "remote (PostgreSQL + S3)")):
        for kind in ("fresh", "existing"):
            tuned = results.get((f"ready-{kind}", setup, "tuned"))
            default = results.get((f"ready-{kind}", setup, "defaults"))
            rows.append(
                f"| {kind} workspace | {label} | {fmt_range(tuned)} | "
                f"{fmt_range(default) if setup == 'local' else ''} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--startup", type=int, metavar="N", help="measure only server start-up, N times each"
    )
    args = parser.parse_args(argv)
    config.apply_quiet_env()
    # keep off the default ports: a developer's servers may hold them
    taken: set[int] = set()
    for key in servers.PORTS:
        servers.PORTS[key] = servers.pick_port(free_port(), taken)
        taken.add(servers.PORTS[key])
    os.environ.pop(config.REMOTE_URI_VAR, None)  # measure this machine, not a remote server
    results: dict = {}
    ws = Path(tempfile.mkdtemp(prefix="mlflow-series-bench-"))
    started = time.monotonic()
    load = os.getloadavg()[0]
    progress(f"workspace {ws}; load average {load:.1f} on {os.cpu_count()} cores")
    if load > (os.cpu_count() or 1) / 2:
        progress("warning: the machine is busy; timings will be slower and noisier than usual")
    failed = None
    try:
        if args.startup:
            startup(ws, results, args.startup)
        else:
            bench(ws, results)
    except (Exception, KeyboardInterrupt) as exc:  # still print what was measured
        failed = exc
        progress(f"stopped early: {type(exc).__name__}: {exc}")
    finally:
        for folder in [ws / "tuned", *ws.glob("startup-*")]:
            for setup in ("local", "remote"):
                with contextlib.suppress(Exception):
                    servers.reset(setup, folder)
        shutil.rmtree(ws, ignore_errors=True)
    import mlflow

    caption = (
        f"MLflow {mlflow.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at start and "
        f"{os.getloadavg()[0]:.1f} at the end; {time.strftime('%Y-%m-%d')}, "
        f"{time.monotonic() - started:.0f} s in all."
    )
    if args.startup:
        text = f"{caption}\n\n{startup_table(results)}\n"
        print(text)
        return 1 if failed else 0
    text = f"{caption}\n\n{table(results)}\n\n{NOTES}\n"
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    progress(f"written to {RESULTS.relative_to(REPO)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
