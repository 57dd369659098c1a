"""Two or more gateway versions side by side, taking turns, with the same wrk load as bench_gateway.

This machine's speed drifts from hour to hour, so a figure from yesterday's run says little about
today's change. Each variant here is a git revision (checked out into a temporary worktree) or
this working tree (``.``), optionally with environment settings; every round runs every variant
at every load in turn, and the added p50 of each round is printed.

Run:  .venv/bin/python benchmarks/ab_gateway.py before=3e392e4 after=. [--rounds 3] [--duration 4]
      .venv/bin/python benchmarks/ab_gateway.py loop=. thread=.:CREDITGATE_LEDGER_COMMITS=thread
      .venv/bin/python benchmarks/ab_gateway.py floor=bare now=.     (bare_proxy.py, no credits)
      .venv/bin/python benchmarks/ab_gateway.py floor=bare bound=nowrites now=.
                        (this tree without its ledger writes: gateway_without_writes.py)
      .venv/bin/python benchmarks/ab_gateway.py gateway=. service=serve
                        (this tree's `creditgate serve`, the whole service, beside the gateway alone)

Loads: ``0`` is one connection back to back, ``-1`` is 32 connections closed loop (max req/s),
any other number is 32 connections paced to that many requests/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import (
    BODY,
    PYTHON,
    ROOT,
    bare_proxy_command,
    chat_url,
    chat_url_of,
    free_port,
    gateway_command,
    setup_creditgate,
    shallow_cpu_idle,
    stop,
    upstream_command,
    wait_ready,
    wrk,
)


def source_of(revision: str, scratch: Path) -> Path:
    if revision in (".", "nowrites", "serve"):
        return ROOT
    folder = scratch / revision
    if not folder.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision],
                       check=True, capture_output=True)
    return folder


def revision_gateway(name: str, revision: str, scratch: Path, upstream: str,
                     worktrees: list[Path]) -> tuple[list[str], str, str, str]:
    """creditgate's gateway at ``revision`` ready to start, on a SQLite database of its own under
    ``scratch`` with the benchmark's organization and deployment: its command line, PYTHONPATH,
    chat URL and org key. A worktree it checks out is added to ``worktrees``."""
    source = source_of(revision, scratch)
    if source != ROOT:
        worktrees.append(source)
    database_url = f"sqlite:///{scratch}/{name}.db"
    secret = setup_creditgate(database_url, upstream)
    port = free_port()
    command = gateway_command(port, database_url)
    if revision == "nowrites":
        command = [PYTHON, str(ROOT / "benchmarks" / "gateway_without_writes.py"), str(port), database_url]
    elif revision == "serve":  # the whole service, as deployed: REST API, gateway, background jobs
        command = [str(Path(PYTHON).parent / "creditgate"), "serve", "--db", database_url, "--port", str(port),
                   "--log-level", "warning"]
    return command, f"{source / 'src'}:{ROOT}", chat_url(port), secret


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="+", help="name=revision[:ENV=value[:ENV=value]]")
    parser.add_argument("--loads", default="0,25,250,1000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--shallow-idle", action="store_true", help="hold /dev/cpu_dma_latency at 0")
    arguments = parser.parse_args()
    with shallow_cpu_idle(arguments.shallow_idle):
        run(arguments)


def run(arguments: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="creditgate-ab-"))
    processes: list[subprocess.Popen[bytes]] = []
    worktrees: list[Path] = []
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    try:
        upstream_port = free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        processes.append(subprocess.Popen(upstream_command(upstream_port), env=env))
        targets = {"upstream direct": (chat_url_of(upstream), "none")}
        for variant in arguments.variants:
            name, _, spec = variant.partition("=")
            revision, *settings = spec.split(":")
            if revision == "bare":
                port = free_port()
                processes.append(subprocess.Popen(bare_proxy_command(port, upstream), env=env))
                targets[name] = (chat_url(port), "none")
                continue
            command, python_path, url, secret = revision_gateway(name, revision, scratch, upstream, worktrees)
            extra = dict(setting.split("=", 1) for setting in settings)
            processes.append(subprocess.Popen(command, env={**env, "PYTHONPATH": python_path, **extra}))
            targets[name] = (url, secret)
        for url, key in targets.values():
            wait_ready(url, {"authorization": f"Bearer {key}"})
            wrk(url, key, 1, 1)
        loads = [int(load) for load in arguments.loads.split(",")]
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(arguments.rounds):
            for load in loads:
                for name, (url, key) in targets.items():
                    connections = 1 if load == 0 else 32
                    runs.setdefault((name, load), []).append(
                        wrk(url, key, connections, arguments.duration, rate=max(load, 0)))
        print(f"request: {BODY}\n")
        print("| variant | load | added p50 ms, each round | added p99 ms (median) | req/s (median) |")
        print("|---|---|---|---|---|")
        for load in loads:
            base = runs[("upstream direct", load)]
            label = {0: "1 connection", -1: "32 connections, closed loop"}.get(load, f"{load} req/s")
            for name in targets:
                if name == "upstream direct":
                    continue
                mine = runs[(name, load)]
                added = " ".join(f"{r['p50'] - b['p50']:.2f}" for r, b in zip(mine, base, strict=True))
                p99 = median(r["p99"] for r in mine) - median(b["p99"] for b in base)
                print(f"| {name} | {label} | {added} | {p99:.2f} | {median(r['rps'] for r in mine):.0f} |")
    finally:
        stop(processes)
        remove_worktrees(worktrees)


def remove_worktrees(worktrees: list[Path]) -> None:
    """Remove the worktrees that source_of checked out."""
    for folder in worktrees:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)],
                       capture_output=True, check=False)


if __name__ == "__main__":
    main()
