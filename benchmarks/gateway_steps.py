"""Where one gateway request's time goes, step by step, at a paced rate.

bench_gateway.py gives the added latency; this splits it. The gateway runs as
``python -m creditgate.gateway`` would, in a child process, with timing wrappers put around the
pipeline's steps before the app is built (nothing in the gateway's own code changes). Each
request records the wall clock (``perf_counter_ns``) and its thread's CPU time
(``thread_time_ns``) at each step's end; the table gives, for each pair of consecutive steps, the
median of both over the requests measured. Wall much above CPU means the event loop's thread was
waiting (for the upstream, or for a CPU). The hold is committed while the upstream works, so
"reserved" and "answered" come in either order; each order is its own row.

Run:  .venv/bin/python benchmarks/gateway_steps.py [--rates 25,1000] [--duration 10] [--postgres]
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gateway_processes as processes_bench
from bench_gateway import (
    PYTHON,
    ROOT,
    chat_url,
    free_port,
    setup_creditgate,
    stop,
    upstream_command,
    wait_ready,
    wrk,
)

DUMP_EVERY = 20

_current: contextvars.ContextVar[list[tuple[str, int, int]] | None] = contextvars.ContextVar(
    "steps", default=None)


def _mark(name: str) -> None:
    steps = _current.get()
    if steps is not None:
        steps.append((name, time.perf_counter_ns(), time.thread_time_ns()))


def _after(function: Any, name: str) -> Any:
    @functools.wraps(function)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return await function(*args, **kwargs)
        finally:
            _mark(name)
    return wrapped


def serve_instrumented(port: int, database_url: str, output: Path) -> None:
    """The child: the gateway with its steps timed; every DUMP_EVERY requests their steps are
    appended to ``output``, one JSON line per request."""
    from creditgate.gateway import pipeline, upstream
    from creditgate.gateway.__main__ import serve

    done: list[list[tuple[str, int, int]]] = []
    sink = output.open("a")
    original_request = pipeline.Pipeline.openai_request

    async def openai_request(self: Any, request: Any, endpoint: str) -> Any:
        steps = [("start", time.perf_counter_ns(), time.thread_time_ns())]
        _current.set(steps)  # copied into the tasks the request starts (the upstream call)
        try:
            return await original_request(self, request, endpoint)
        finally:
            _mark("built")
            done.append(steps)
            if len(done) == DUMP_EVERY:
                sink.write("".join(json.dumps(each) + "\n" for each in done))
                sink.flush()
                done.clear()

    pipeline.Pipeline.openai_request = openai_request  # type: ignore[method-assign]
    for method, name in (("estimate", "priced"), ("limit", "limited"), ("reserve", "reserved"),
                         ("_post", "answered"), ("settle", "settled")):
        setattr(pipeline.Pipeline, method, _after(getattr(pipeline.Pipeline, method), name))
    write = upstream._SentPayload.write_with_length

    async def write_with_length(self: Any, writer: Any, content_length: int | None) -> None:
        _mark("request built")
        await write(self, writer, content_length)
        _mark("request written")

    upstream._SentPayload.write_with_length = write_with_length  # type: ignore[method-assign]
    serve(database_url, "127.0.0.1", port)


def table(requests: list[list[list[Any]]]) -> str:
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    offsets: dict[str, list[float]] = defaultdict(list)
    for steps in requests:
        steps = sorted(steps, key=lambda step: step[1])
        start_ns = steps[0][1]
        for (a, a_ns, a_cpu), (b, b_ns, b_cpu) in itertools.pairwise(steps):
            label = f"{a} → {b}"
            wall[label].append((b_ns - a_ns) / 1000)
            cpu[label].append((b_cpu - a_cpu) / 1000)
            offsets[label].append((a_ns - start_ns) / 1000)
        wall["whole request (in the handler)"].append((steps[-1][1] - start_ns) / 1000)
        cpu["whole request (in the handler)"].append((steps[-1][2] - steps[0][2]) / 1000)
    order = {label: median(values) for label, values in offsets.items()}
    order["whole request (in the handler)"] = float("inf")
    lines = ["| step | requests | wall µs | CPU µs |", "|---|---|---|---|"]
    for label in sorted(wall, key=lambda label: order[label]):
        if len(wall[label]) * 20 < len(requests):
            continue  # a rare order of events
        lines.append(f"| {label} | {len(wall[label])} | {median(wall[label]):.0f} | {median(cpu[label]):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="25,1000")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgres", action="store_true",
                        help="PostgreSQL and Redis limits (see bench_gateway_processes.py) instead of SQLite")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "DATABASE_URL", "OUTPUT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        port, database_url, output = arguments.serve
        serve_instrumented(int(port), database_url, Path(output))
        return
    folder = Path(tempfile.mkdtemp(prefix="creditgate-steps-"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    if arguments.postgres:
        env["CREDITGATE_REDIS_URL"] = processes_bench.REDIS  # the key's limits are shared there
    processes: list[subprocess.Popen[bytes]] = []
    databases: list[str] = []
    try:
        upstream_port = free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        processes.append(subprocess.Popen(upstream_command(upstream_port), env=env))
        for rate in [int(rate) for rate in arguments.rates.split(",")]:
            # A fresh gateway per rate, so that each table counts only its own requests.
            if arguments.postgres:
                # PostgreSQL with the key's limits in Redis, as several processes would run.
                created = processes_bench.create_postgres_database()
                databases.append(created)
                database_url = processes_bench.sqlalchemy_url(created)
                secret = processes_bench.prepare(database_url, upstream, shared_limits=True)
            else:
                database_url = f"sqlite:///{folder}/steps-{rate}.db"
                secret = setup_creditgate(database_url, upstream)
            port, output = free_port(), folder / f"steps-{rate}.json"
            gateway = subprocess.Popen([PYTHON, __file__, "--serve", str(port), database_url, str(output)],
                                       env=env)
            processes.append(gateway)
            url = chat_url(port)
            wait_ready(url, {"authorization": f"Bearer {secret}"})
            wrk(url, secret, arguments.connections, 2, rate=rate)  # warm up: not counted
            warm_up = len(output.read_text().splitlines()) if output.exists() else 0
            result = wrk(url, secret, arguments.connections, arguments.duration, rate=rate)
            gateway.terminate()
            gateway.wait(timeout=30)
            requests = [json.loads(line) for line in output.read_text().splitlines()[warm_up + DUMP_EVERY:]]
            print(f"\n**{rate} req/s offered, {arguments.connections} connections** (served {result['rps']:.0f} "
                  f"req/s, client p50 {result['p50']:.2f} ms; medians of {len(requests)} requests)\n")
            print(table(requests))
    finally:
        stop(processes)
        for created in databases:
            processes_bench.drop_postgres_database(created)


if __name__ == "__main__":
    main()
