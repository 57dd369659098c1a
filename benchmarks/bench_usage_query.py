"""Usage queries on an organization with 1M usage records (SQLite): time per query.

Loads the records through ``insert_usage`` (so the hourly rollups are maintained as in
production), spread over 30 days, 4 models, 3 projects, 3 keys and 3 purposes, then times
the usage query for several groupings over the whole 30 days.

    .venv/bin/python benchmarks/bench_usage_query.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from creditgate.bootstrap import bootstrap
from creditgate.usage.queries import DAY_US, UsageQuery, run_query
from creditgate.usage.records import UsageRow, insert_usage

LOAD_BATCH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        services = bootstrap(f"sqlite:///{folder}/usage.db")
        org = services.ledger.create_org("big")
        start_us = services.clock.now_us() - 30 * DAY_US
        step_us = 30 * DAY_US // args.records
        loading = time.perf_counter()
        for first in range(0, args.records, LOAD_BATCH):
            rows = [UsageRow(org_id=org.id, model=f"model-{n % 4}", credits=1_000 + n % 7,
                             meters={"input_tokens": 1_000 + n % 100, "output_tokens": 200},
                             at_us=start_us + n * step_us, project_id=f"prj_{n % 3}",
                             key_id=f"key_{n % 3}", tags={"purpose": ("support", "search", "agent")[n % 3]})
                    for n in range(first, min(first + LOAD_BATCH, args.records))]
            with services.database.write() as connection:
                insert_usage(connection, rows)
        print(f"loaded {args.records:,} records in {time.perf_counter() - loading:.1f} s")
        end_us = start_us + 30 * DAY_US
        for bucket, group_by in (("day", ()), ("day", ("model",)), ("hour", ("tag:purpose",)),
                                 ("month", ("project", "meter")), ("day", ("key",))):
            query = UsageQuery(org.id, start_us, end_us, bucket=bucket, group_by=group_by)
            timings = []
            for _ in range(5):
                began = time.perf_counter()
                rows = run_query(services.database, query)
                timings.append((time.perf_counter() - began) * 1000)
            print(f"bucket={bucket:<5} group_by={','.join(group_by) or '-':<14} rows={len(rows):>6} "
                  f"median {statistics.median(timings):6.1f} ms  max {max(timings):6.1f} ms")
        services.close()


if __name__ == "__main__":
    main()
