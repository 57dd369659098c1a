"""Several gateway processes on PostgreSQL and Redis against one on SQLite: what scaling out costs.

The answer to outgrowing one process is several gateway processes on PostgreSQL, with rate limits
shared in Redis: the same code and the same guarantees. This prints, side by side in one run,
requests/s and latency through ``creditgate serve --workers N`` (the full service, gateway
included, uvicorn workers sharing one port) on SQLite with in-process limits, and on PostgreSQL
with Redis limits for 1, 2 and 3 workers. Every request holds and settles credits of one
organization (the hardest case: every write contends for one organization's row), and on Redis
the key's rate limits are set (high enough never to refuse) so that each request pays its Redis
admission. After each run the ledger is checked: no hold left, spent credits equal the usage
records' credits, ``creditgate verify`` passes.

Run:  .venv/bin/python benchmarks/bench_gateway_processes.py [--duration 10] [--workers 1,2,3]
Needs PostgreSQL at CREDITGATE_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/postgres)
and Redis at CREDITGATE_BENCH_REDIS (default redis://127.0.0.1:6379/15, flushed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gateway as bench

POSTGRES = os.environ.get("CREDITGATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("CREDITGATE_BENCH_REDIS", "redis://127.0.0.1:6379/15")
GRANTED = "1000000"  # what bench_gateway.setup_creditgate grants
CREDITGATE = str(Path(sys.executable).parent / "creditgate")


def create_postgres_database() -> str:
    import psycopg

    name = f"creditgate_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def prepare(database_url: str, upstream: str, shared_limits: bool) -> str:
    """An organization with plenty of credits and its key (the secret); with ``shared_limits``,
    rate limits for every key (never reached) so that each request is admitted through Redis."""
    secret = bench.setup_creditgate(database_url, upstream)
    if shared_limits:
        from creditgate.bootstrap import bootstrap
        from creditgate.gateway.limit_store import LimitStore

        services = bootstrap(database_url)
        try:
            LimitStore(services.database, services.clock).put(
                "default", {"requests_per_min": 1_000_000_000, "tokens_per_min": 1_000_000_000_000,
                            "concurrent_max": 100_000})
        finally:
            services.close()
    return secret


def check_ledger(database_url: str) -> str:
    """No hold left behind, the credits spent equal the usage records' credits, the journal
    verifies."""
    from sqlalchemy import func, select

    from creditgate.bootstrap import bootstrap
    from creditgate.ledger.credits import parse_amount
    from creditgate.ledger.verify import verify
    from creditgate.storage.schema import orgs
    from creditgate.storage.tables_api import usage_records

    services = bootstrap(database_url, migrate=False)
    try:
        with services.database.read() as connection:
            org_id = connection.execute(select(orgs.c.id)).scalar_one()
            charged, records = connection.execute(select(func.coalesce(func.sum(usage_records.c.credits), 0),
                                                         func.count()).select_from(usage_records)).one()
        balance = services.ledger.balance(org_id)
        spent = parse_amount(GRANTED) - balance.available
        report = verify(services.database)
        if balance.pending == 0 and spent == int(charged) and report.ok:
            return f"ok: {records:,} usage records, pending 0, spent = charged = {spent:,} µcredits, verify ok"
        return f"FAILED: pending {balance.pending}, spent {spent}, charged {charged}, verify {report.ok}"
    finally:
        services.close()


def run_one(label: str, database_url: str, workers: int, upstream: str, env: dict[str, str],
            duration_s: int) -> list[dict[str, Any]]:
    shared = database_url.startswith("postgresql")
    secret = prepare(database_url, upstream, shared)
    port = bench.free_port()
    server_env = {**env, "CREDITGATE_DATABASE_URL": database_url}
    if shared:
        server_env["CREDITGATE_REDIS_URL"] = REDIS
    server = subprocess.Popen([CREDITGATE, "serve", "--port", str(port), "--workers", str(workers),
                               "--log-level", "warning"], env=server_env,
                              stdout=subprocess.DEVNULL)  # its warnings go to this stderr
    rows = []
    try:
        bench.wait_ready(bench.chat_url(port), {"authorization": f"Bearer {secret}"})
        bench.wrk(bench.chat_url(port), secret, 32, 2)  # warm every worker
        for connections in (1, 32):
            result = bench.wrk(bench.chat_url(port), secret, connections, duration_s)
            rows.append({"label": label, "workers": workers, "connections": connections, **result})
    finally:
        bench.stop([server])  # type: ignore[list-item]
    check = check_ledger(database_url)
    for row in rows:
        row["ledger"] = check
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", default="1,2,3", help="PostgreSQL worker counts")
    arguments = parser.parse_args()
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    env = {**os.environ, "PYTHONPATH": f"{bench.ROOT}:{bench.ROOT / 'src'}"}
    upstream_port = bench.free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    processes = [subprocess.Popen(bench.upstream_command(upstream_port), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            rows += run_one("SQLite, in-process limits", f"sqlite:///{folder}/bench.db", 1, upstream, env,
                            arguments.duration)
        for workers in (int(each) for each in arguments.workers.split(",")):
            url = create_postgres_database()
            try:
                rows += run_one("PostgreSQL + Redis limits", sqlalchemy_url(url), workers, upstream, env,
                                arguments.duration)
            finally:
                drop_postgres_database(url)
                redis.Redis.from_url(REDIS).flushdb()
    finally:
        bench.stop(processes)
    print("\n| storage | workers | connections | p50 ms | p99 ms | req/s | non-2xx | ledger after the run |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['label']} | {row['workers']} | {row['connections']} | {row['p50']:.2f} | {row['p99']:.2f} "
              f"| {row['rps']:,.0f} | {row['errors']:.0f} | {row['ledger']} |")


if __name__ == "__main__":
    main()
