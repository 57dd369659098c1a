"""How much slower the same work runs after the process has been idle, on this machine.

bench_gateway.py's paced runs send each request after a pause (at 25 req/s over 32
connections, about 40 ms), so every request starts with cold CPU caches. This measures that
effect alone, with no network and no creditgate code: a fixed piece of Python (JSON, a hash, a
dict) and a one-row SQLite commit (WAL, ``synchronous=NORMAL``, as creditgate uses it), each
timed back to back and after idle gaps of 2 ms and 40 ms. The ratio to back to back is what
every step of a request pays when requests arrive one at a time.

A third row is one HTTP round trip to the benchmarks' fast test upstream (its own process), with
the gateway's HTTP client (aiohttp on uvloop, one kept-alive connection): what any proxy on this
stack pays at least once per request, before it does anything of its own.

Each row runs twice: with the CPU idle states as the machine has them, and with
``/dev/cpu_dma_latency`` held at 0 (root only), so that an idle CPU polls instead of halting. The
difference is what waking from idle costs; what remains after 40 ms even then is cache and
other-tenant effects.

Run:  .venv/bin/python benchmarks/bench_cold_cpu.py [--samples 300]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

from bench_gateway import (
    BODY,
    ROOT,
    chat_url,
    free_port,
    shallow_cpu_idle,
    stop,
    upstream_command,
    wait_ready,
)

GAPS_S = (0.0, 0.002, 0.04)


def python_work() -> Callable[[], object]:
    data = [{"a": i, "b": str(i) * 5} for i in range(50)]

    def work() -> object:
        text = json.dumps(data)
        table = {str(i): i * 2 for i in range(200)}
        return hashlib.sha256(text.encode()).hexdigest(), len(table)
    return work


def sqlite_commit(folder: Path) -> Callable[[], object]:
    connection = sqlite3.connect(folder / "cold.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, value INTEGER, note TEXT)")
    connection.execute("CREATE TABLE total (id INTEGER PRIMARY KEY, value INTEGER)")
    connection.execute("INSERT INTO total VALUES (1, 0)")

    def commit() -> object:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO rows (value, note) VALUES (1, ?)", ("x" * 200,))
        connection.execute("UPDATE total SET value = value + 1 WHERE id = 1")
        return connection.execute("COMMIT")
    return commit


@contextmanager
def http_round_trip() -> Iterator[Callable[[], object]]:
    import uvloop

    port = free_port()
    upstream = subprocess.Popen(upstream_command(port), env={**os.environ, "PYTHONPATH": str(ROOT)})
    loop = uvloop.new_event_loop()
    try:
        wait_ready(chat_url(port), {})
        session = loop.run_until_complete(_session())

        async def post() -> bytes:
            async with session.post(chat_url(port), data=BODY,
                                    headers={"content-type": "application/json"}) as response:
                return await response.read()

        yield lambda: loop.run_until_complete(post())
        loop.run_until_complete(session.close())
    finally:
        loop.close()
        stop([upstream])


async def _session() -> Any:
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))


def timed(work: Callable[[], object], gap_s: float, samples: int) -> float:
    """Median microseconds of ``work`` when each run follows ``gap_s`` of sleep."""
    for _ in range(100):  # warm: the upstream's first answers are slower
        work()
    times = []
    for _ in range(samples):
        if gap_s:
            time.sleep(gap_s)
        started = time.perf_counter_ns()
        work()
        times.append(time.perf_counter_ns() - started)
    return median(times) / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, http_round_trip() as round_trip:
        works = {"Python (JSON, SHA-256, dict)": python_work(), "SQLite one-row commit": sqlite_commit(Path(folder)),
                 "HTTP round trip to the upstream (aiohttp)": round_trip}
        rows = []
        for shallow in (False, True):
            with shallow_cpu_idle(shallow):
                for name, work in works.items():
                    warm, short, long = (timed(work, gap, arguments.samples) for gap in GAPS_S)
                    rows.append(f"| {name} | {'held shallow' if shallow else 'as set up'} | {warm:.0f} | "
                                f"{short:.0f} | {long:.0f} | {long / warm:.1f}× |")
        print("| work | CPU idle | back to back µs | after 2 ms idle µs | after 40 ms idle µs | "
              "40 ms ÷ back to back |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
