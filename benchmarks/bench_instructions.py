"""CPU instructions per gateway request, counted by callgrind: a figure this machine's drift does
not move.

bench_gateway.py times requests, and on this VM the same code times 3-4x apart from one day to
the next. Instructions are the work itself: the same code and the same request give the same
count whatever else the host is doing, so a change to the request path can be judged from one
run, and the count is what the time scales with (a cold CPU runs each instruction slower, but
runs all of them).

Run:  .venv/bin/python benchmarks/bench_instructions.py [--requests 300] [name=revision ...]

1. **Whole requests.** Each target runs under ``valgrind --tool=callgrind`` (the upstream and
   the client do not); after 100 warm-up requests the counters are zeroed, ``--requests``
   requests are sent one after another on one connection, and the counters are dumped. Targets:
   the bare proxy (the floor: uvicorn + aiohttp and nothing else) and creditgate's gateway from
   this tree, plus any ``name=revision`` given (a git revision, checked out into a temporary
   worktree). Every count includes the process's background threads (usage roll-ups, WAL
   checkpoints) at their share per request.
2. **The ledger writes alone** (the gateway's two per request, as it commits them on its event
   loop): a hold then its settlement in two transactions, against both in one (ReserveAndSettle,
   what the gateway does when the upstream answered before the hold's commit started).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_gateway import remove_worktrees, revision_gateway
from bench_gateway import (
    BODY,
    PYTHON,
    ROOT,
    bare_proxy_command,
    chat_url,
    chat_url_of,
    free_port,
    stop,
    upstream_command,
    wait_ready,
)

WARM_UP_REQUESTS = 100


def callgrind(command: list[str], output: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}", "--dump-instr=no", *command]


def dumped_instructions(output: Path) -> int:
    """The instructions of the dump that callgrind_control -d wrote (``output``.1)."""
    for line in Path(f"{output}.1").read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {output}.1")


def per_request(command: list[str], env: dict[str, str], url: str, key: str, requests: int,
                output: Path) -> float:
    import httpx

    process = subprocess.Popen(callgrind(command, output), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        wait_ready(url, headers, timeout_s=600)
        with httpx.Client(timeout=120) as client:
            for _ in range(WARM_UP_REQUESTS):
                assert client.post(url, content=BODY, headers=headers).status_code == 200
            subprocess.run(["callgrind_control", "-z", str(process.pid)], check=True, capture_output=True)
            for _ in range(requests):
                assert client.post(url, content=BODY, headers=headers).status_code == 200
            subprocess.run(["callgrind_control", "-d", str(process.pid)], check=True, capture_output=True)
        return dumped_instructions(output) / requests
    finally:
        stop([process])


def ledger_child(mode: str, pairs: int) -> None:
    """Run under callgrind: ``pairs`` requests' ledger writes, counted between zero and dump."""
    from creditgate.bootstrap import bootstrap
    from creditgate.gateway.settlement import ReserveAndSettle, ReserveForRequest, settle_operation
    from creditgate.gateway.usage import UsageRecord, write_usage_rows
    from creditgate.ledger.credits import parse_amount
    from creditgate.ledger.group_commit import NOT_INLINE

    services = bootstrap(f"sqlite:///{tempfile.mkdtemp()}/ledger.db")
    org = services.ledger.create_org("bench")
    services.ledger.grant(org.id, parse_amount("1000000"))
    writer = services.ledger.writer
    writer.add_side_writer(_Rows(write_usage_rows), takes_operation_riders=True)

    def usage(result: dict[str, object]) -> UsageRecord:
        return UsageRecord(org_id=org.id, key_id="key_1", project_id=None, deployment="dep_1", model="mock-gpt",
                           meters={"input_tokens": 10, "output_tokens": 5, "requests": 1}, tags={}, latency_ms=1,
                           credits=4500, at_us=services.clock.now_us())

    def commit(operation: object) -> dict[str, object]:
        outcomes = writer.try_inline_batch([operation])  # type: ignore[list-item]
        assert outcomes is not NOT_INLINE
        assert isinstance(outcomes[0], dict), outcomes[0]
        return outcomes[0]

    def request() -> None:
        hold = ReserveForRequest(org.id, None, amount=16_500, scope="inference", ttl_us=600_000_000,
                                 subjects=("mock-gpt",), model="mock-gpt", budget_subjects=("key:key_1",))
        if mode == "joined":
            commit(ReserveAndSettle(org.id, None, reserve=hold, cost=4500, usage=usage))
            return
        held = commit(hold)
        commit(settle_operation(org.id, str(held["hold_id"]), cost=4500, held=16_500, scope="inference",
                                subjects=("mock-gpt",), usage=usage))

    for _ in range(WARM_UP_REQUESTS):
        request()
    subprocess.run(["callgrind_control", "-z", str(os.getpid())], check=True, capture_output=True)
    for _ in range(pairs):
        request()
    subprocess.run(["callgrind_control", "-d", str(os.getpid())], check=True, capture_output=True)
    os._exit(0)  # the counts are dumped; skip the interpreter's teardown


class _Rows:
    """Stores the riders (usage records) as the gateway's recorder does, without its thread."""

    def __init__(self, write_rows: object) -> None:
        self._write_rows = write_rows

    def drain(self) -> list[object]:
        return []

    def write(self, connection: object, items: list[object]) -> None:
        self._write_rows(connection, items)  # type: ignore[operator]

    def restore(self, items: list[object]) -> None:
        pass

    def committed(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="*", help="name=revision: more gateways to count")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--ledger-child", nargs=2, metavar=("MODE", "PAIRS"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.ledger_child:
        ledger_child(arguments.ledger_child[0], int(arguments.ledger_child[1]))
        return
    folder = Path(tempfile.mkdtemp(prefix="creditgate-instructions-"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    upstream_port = free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    processes = [subprocess.Popen(upstream_command(upstream_port), env=env)]
    worktrees: list[Path] = []
    rows: list[tuple[str, float]] = []
    try:
        wait_ready(chat_url_of(upstream), {})
        port = free_port()
        rows.append(("bare proxy (floor)", per_request(bare_proxy_command(port, upstream), env, chat_url(port),
                                                       "none", arguments.requests, folder / "bare.out")))
        for variant in ["creditgate=.", *arguments.variants]:
            name, _, revision = variant.partition("=")
            command, python_path, url, secret = revision_gateway(name, revision, folder, upstream, worktrees)
            rows.append((name, per_request(command, {**env, "PYTHONPATH": python_path}, url, secret,
                                           arguments.requests, folder / f"{name}.out")))
        print(f"\n**Whole requests** ({arguments.requests} one after another, one connection; "
              f"request: {BODY})\n")
        print("| target | instructions per request | × floor |")
        print("|---|---|---|")
        floor = rows[0][1]
        for name, count in rows:
            print(f"| {name} | {count / 1000:,.0f} k | {count / floor:.2f} |")
        print("\n**The ledger writes of one request** (SQLite, committed on the caller's thread)\n")
        print("| writes | transactions | instructions per request |")
        print("|---|---|---|")
        for mode, label, transactions in (("two", "hold, then settlement with usage record", 2),
                                          ("joined", "hold and settlement with usage record (joined)", 1)):
            output = folder / f"ledger-{mode}.out"
            subprocess.run(callgrind([PYTHON, __file__, "--ledger-child", mode, str(arguments.requests)], output),
                           env=env, check=True, capture_output=True)
            print(f"| {label} | {transactions} | {dumped_instructions(output) / arguments.requests / 1000:,.0f} k |")
    finally:
        stop(processes)
        remove_worktrees(worktrees)


if __name__ == "__main__":
    main()
