"""Reserve+post pairs per second through the ledger, with p50/p99 per operation.

Each process runs one group-commit writer and CONCURRENCY asyncio tasks that each loop
reserve -> post, the way the gateway uses the ledger. Figures are printed, not asserted.

    .venv/bin/python benchmarks/bench_ledger.py                     # the whole matrix
    .venv/bin/python benchmarks/bench_ledger.py --backend sqlite --processes 1 --orgs 1
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from typing import Any

from creditgate.clock import SystemClock
from creditgate.ledger.operations import Post
from creditgate.ledger.service import Ledger
from creditgate.storage.database import Database
from creditgate.storage.migrate import upgrade

POSTGRES_ADMIN = os.environ.get("CREDITGATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def prepare(url: str, org_count: int) -> list[str]:
    database = Database(url)
    upgrade(database)
    ledger = Ledger(database, SystemClock())
    org_ids = [ledger.create_org(f"bench-{index}").id for index in range(org_count)]
    futures = []
    for org_id in org_ids:
        futures.append(ledger.writer.submit(ledger_grant_operation(ledger, org_id)))
    for future in futures:
        future.result()
    ledger.close()
    database.dispose()
    return org_ids


def ledger_grant_operation(ledger: Ledger, org_id: str) -> Any:
    from creditgate.ledger.book import GrantSpec
    from creditgate.ledger.operations import CreateGrant

    now = ledger.clock.now_us()
    return CreateGrant(org_id, None, spec=GrantSpec(amount=10**9 * 1_000_000, kind="purchase", scope="any",
                                                     priority=10, effective_at_us=now - 1, expires_at_us=None))


def worker(url: str, org_ids: list[str], seconds: float, concurrency: int, start_at: float,
           outbox: Any) -> None:
    database = Database(url)
    ledger = Ledger(database, SystemClock())
    latencies: list[float] = []
    pairs = 0

    async def loop(seed: int) -> None:
        nonlocal pairs
        rng = random.Random(seed)
        deadline = start_at + seconds
        while time.time() < deadline:
            org_id = org_ids[rng.randrange(len(org_ids))]
            began = time.perf_counter()
            hold = await ledger.execute_async(ledger.reserve_operation(org_id, 2_000_000))
            middle = time.perf_counter()
            await ledger.execute_async(Post(org_id, None, hold_id=hold["hold_id"], actual=1_000_000))
            ended = time.perf_counter()
            latencies.append(middle - began)
            latencies.append(ended - middle)
            pairs += 1

    async def main() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(loop(seed) for seed in range(concurrency)))

    asyncio.run(main())
    ledger.close()
    database.dispose()
    outbox.put((pairs, latencies))


def run(backend: str, processes: int, org_count: int, seconds: float, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        admin = None
        if backend == "sqlite":
            url = f"sqlite:///{folder}/bench.db"
        else:
            import psycopg

            name = f"creditgate_bench_{os.getpid()}_{processes}_{org_count}"
            admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True)
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
            url = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        org_ids = prepare(url, org_count)
        context = multiprocessing.get_context("spawn")
        outbox = context.Queue()
        start_at = time.time() + 3.0  # every process imported and connected before the clock starts
        workers = [context.Process(target=worker, args=(url, org_ids, seconds, concurrency, start_at, outbox))
                   for _ in range(processes)]
        for process in workers:
            process.start()
        results = [outbox.get() for _ in workers]
        for process in workers:
            process.join()
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
    pairs = sum(count for count, _ in results)
    latencies = sorted(value for _, values in results for value in values)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [0.0] * 99
    return {"backend": backend, "processes": processes, "orgs": org_count,
            "pairs_per_s": pairs / seconds, "p50_ms": quantiles[49] * 1000, "p99_ms": quantiles[98] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--processes", type=int, action="append")
    parser.add_argument("--orgs", type=int, action="append")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=256, help="asyncio tasks per process")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.seconds:.0f} s per cell; {args.concurrency} tasks per process")
    print(f"{'backend':<9}{'procs':>6}{'orgs':>7}{'pairs/s':>10}{'p50 ms/op':>11}{'p99 ms/op':>11}")
    for backend in args.backend or ["sqlite", "postgres"]:
        for processes in args.processes or [1, 4]:
            for org_count in args.orgs or [1, 10_000]:
                row = run(backend, processes, org_count, args.seconds, args.concurrency)
                print(f"{row['backend']:<9}{row['processes']:>6}{row['orgs']:>7}{row['pairs_per_s']:>10.0f}"
                      f"{row['p50_ms']:>11.2f}{row['p99_ms']:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
