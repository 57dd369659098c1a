"""Usage-event ingestion through the HTTP API: events/s with batches of 1,000 and dedup on.

Starts a real server (uvicorn, one worker, in a subprocess) on a free loopback port, creates an
organization with credits, then posts batches of 1,000 distinct CloudEvents from concurrent
clients and reports accepted events per second. Every event is priced, claimed in the dedup table,
debited and recorded; the figure includes HTTP, JSON and the database commit.

    .venv/bin/python benchmarks/bench_ingest.py                 # SQLite and PostgreSQL
    .venv/bin/python benchmarks/bench_ingest.py --only sqlite --batches 40
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson

POSTGRES_ADMIN_URL = os.environ.get("CREDITGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
BATCH_EVENTS = 1_000


def serve(url: str, port: int) -> None:
    import uvicorn

    from creditgate.api.app import create_app
    from creditgate.bootstrap import bootstrap
    from creditgate.pricing.rate_cards import ModelRate, RateCard, RateCardVersion
    from creditgate.pricing.rating import PricingEngine
    from creditgate.pricing.unit_price import UnitPrice

    services = bootstrap(url)
    models = {f"model-{n}": ModelRate(f"model-{n}", {
        "input_tokens": UnitPrice(Decimal(2), 1_000_000), "output_tokens": UnitPrice(Decimal(8), 1_000_000)})
        for n in range(4)}
    services.extras["pricing"] = PricingEngine(RateCard.create("bench", [RateCardVersion(1, 0, models)]))
    uvicorn.run(create_app(services, close_services_on_shutdown=True), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def _batch(org_id: str, start: int, now_iso: str) -> bytes:
    return orjson.dumps([{
        "specversion": "1.0", "type": "creditgate.usage", "id": f"evt-{start + n}", "source": "bench",
        "subject": org_id, "time": now_iso,
        "data": {"model": f"model-{n % 4}", "meters": {"input_tokens": 1200 + n, "output_tokens": 300},
                 "tags": {"purpose": ("support", "search", "agent")[n % 3]}}}
        for n in range(BATCH_EVENTS)])


def run(url: str, batches: int, clients: int) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CREDITGATE_ADMIN_KEY": ADMIN_KEY}
    server = subprocess.Popen([sys.executable, __file__, "--serve", url, str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as admin:
            for _ in range(300):
                try:
                    if admin.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            org_id = admin.post("/api/v1/orgs", json={"name": f"bench-{time.time_ns()}"}).json()["id"]
            admin.post(f"/api/v1/orgs/{org_id}/grants", json={"credits": "1000000000"})
            key = admin.post(f"/api/v1/orgs/{org_id}/keys", json={"name": "b", "scopes": ["inference"]}).json()["key"]
        now_iso = datetime.now(UTC).isoformat()
        bodies = [_batch(org_id, i * BATCH_EVENTS, now_iso) for i in range(batches + 2)]
        accepted = [0]
        lock = threading.Lock()

        def worker(mine: list[bytes]) -> None:
            with httpx.Client(base_url=base, timeout=120, headers={
                    "Authorization": f"Bearer {key}", "content-type": "application/json"}) as client:
                for body in mine:
                    answer = client.post("/api/v1/events", content=body)
                    assert answer.status_code == 200, answer.text[:300]
                    with lock:
                        accepted[0] += answer.json()["accepted"]

        worker(bodies[:2])  # warm-up: compile the rate card, fill the pools
        accepted[0] = 0
        timed = bodies[2:]
        threads = [threading.Thread(target=worker, args=(timed[n::clients],)) for n in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        assert accepted[0] == batches * BATCH_EVENTS, accepted[0]
        with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
            duplicate = client.post("/api/v1/events", content=bodies[2]).json()
            assert duplicate["duplicates"] == BATCH_EVENTS, duplicate["accepted"]
        return batches * BATCH_EVENTS / elapsed
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"))
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    results: dict[str, Any] = {}
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as folder:
            results["sqlite"] = run(f"sqlite:///{folder}/bench.db", args.batches, args.clients)
    if args.only in (None, "postgres"):
        import psycopg

        name = f"creditgate_bench_{time.time_ns()}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            results["postgres"] = run(f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}", args.batches, args.clients)
        finally:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for backend, rate in results.items():
        print(f"{backend:>8}: {rate:,.0f} events/s (batches of {BATCH_EVENTS}, dedup on, "
              f"{args.batches} batches, {args.clients} clients)")


if __name__ == "__main__":
    main()
