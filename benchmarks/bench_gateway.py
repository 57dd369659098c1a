"""Added latency and throughput of one gateway worker, side by side with the upstream alone and
with LiteLLM's proxy (one worker, no database), all driven by ``wrk`` with the same request.

Run:  .venv/bin/python benchmarks/bench_gateway.py [--duration 10] [--litellm /tmp/litellm-venv/bin/litellm]

Two measurements, each for all three targets in one run:

1. **Maximum requests/s**: ``wrk`` closed loop, 1 and 32 connections, as fast as answers come.
   At saturation every server's latency is its queue (Little's law: 32 connections / throughput),
   so this run gives throughput, not added latency.
2. **Added latency at 32 connections**: the same 32 connections paced to a fixed offered rate
   (each connection waits a random 0..2x its share of the interval between requests, so arrivals
   come in bursts), below each target's saturation. Added = through the target minus directly to
   the upstream at the same rate. A target whose maximum is below a rate is reported as saturated.

Each server is its own process: the fast test upstream (uvicorn + uvloop + httptools), creditgate
(``python -m creditgate.gateway`` on SQLite, credits reserved and settled on every request),
LiteLLM (``LITELLM_LOCAL_MODEL_COST_MAP=True``), and ``bare_proxy.py``: the same server and HTTP
client stack as creditgate's gateway with nothing else in between, the floor that any gateway
written on it adds. Results print as Markdown tables.

The paced runs go ``--rounds`` times (default 3), the targets taking turns within each round, and
print each cell's median: on a shared VM one run of a cell can be 30% off the next. With ``--pin``
the proxies (creditgate, LiteLLM, the bare proxy) run on CPU 0 and the upstream and ``wrk`` on
CPU 1, as if the upstream were its own machine (off by default: measured here it did not help).

``--shallow-idle`` holds ``/dev/cpu_dma_latency`` at 0 for the whole run (root only), as
latency-tuned hosts do (tuned's latency-performance profile): the CPUs then poll instead of
halting when idle, for every target alike. It shows how much of the added latency at low rates is
this VM waking from idle (see bench_cold_cpu.py) rather than work the gateway does. The README's
headline figures are without it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LITELLM_KEY = "sk-creditgate-bench-0123456789abcdef"
BODY = '{"model": "mock-gpt", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}'


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, headers: dict[str, str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.post(url, content=BODY, headers={"content-type": "application/json", **headers},
                                  timeout=5)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


PROXY_CPUS: list[str] = []  # taskset prefixes, set by main() from --pin
CLIENT_CPUS: list[str] = []


def wrk(url: str, key: str, connections: int, duration_s: int, rate: int = 0) -> dict[str, float]:
    """``rate`` > 0 paces the connections to about ``rate`` requests/s in all."""
    lua = (f'wrk.method = "POST"\nwrk.body = \'{BODY}\'\n'
           f'wrk.headers["Content-Type"] = "application/json"\n'
           f'wrk.headers["Authorization"] = "Bearer {key}"\n')
    if rate:
        mean_delay_ms = connections * 1000 // rate
        lua += f"function delay() return math.random(0, {2 * mean_delay_ms}) end\n"
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "request.lua"
        script.write_text(lua)
        output = subprocess.run([*CLIENT_CPUS, "wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency",
                                 "-s", str(script), url], capture_output=True, text=True, check=True).stdout

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"p50": millis("50%"), "p99": millis("99%"), "rps": rps,
            "errors": float(errors.group(1)) if errors else 0.0}


@contextlib.contextmanager
def shallow_cpu_idle(enabled: bool) -> Iterator[None]:
    """While open, ask the kernel for 0 µs wake-up latency from idle (PM QoS): no CPU halts."""
    if not enabled:
        print("CPU idle: as the machine is set up")
        yield
        return
    descriptor = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
    try:
        os.write(descriptor, struct.pack("i", 0))
        print("CPU idle: held shallow (/dev/cpu_dma_latency = 0) while this runs (every target alike)")
        yield
    finally:
        os.close(descriptor)  # the request lasts as long as the file is open


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def chat_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1/chat/completions"


def gateway_command(port: int, database_url: str) -> list[str]:
    """creditgate's gateway alone, one worker (``python -m creditgate.gateway``)."""
    return [PYTHON, "-m", "creditgate.gateway", "--port", str(port), "--database-url", database_url]


def bare_proxy_command(port: int, upstream: str) -> list[str]:
    """The floor: bare_proxy.py in front of ``upstream`` (a base URL)."""
    return [PYTHON, str(ROOT / "benchmarks" / "bare_proxy.py"), str(port), chat_url_of(upstream)]


def chat_url_of(base: str) -> str:
    return f"{base}/v1/chat/completions"


def upstream_command(port: int) -> list[str]:
    """The fast test upstream (uvicorn + uvloop + httptools) on ``port``."""
    return [PYTHON, "-m", "uvicorn", "--factory", "tests.support.openai_upstream:create_upstream_app",
            "--port", str(port), "--log-level", "warning", "--no-access-log", "--loop", "uvloop",
            "--http", "httptools"]


def setup_creditgate(database_url: str, upstream: str) -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from creditgate.api import keystore
    from creditgate.bootstrap import bootstrap
    from creditgate.gateway.deployment_store import DeploymentStore
    from creditgate.ledger.credits import parse_amount

    services = bootstrap(database_url)
    org = services.ledger.create_org("bench")
    services.ledger.grant(org.id, parse_amount("1000000"))
    _, secret = keystore.create_key(services, kind="org", name="bench", org_id=org.id, scopes=["inference"])
    DeploymentStore(services.database, services.clock).create({
        "name": "mock-gpt", "backend": "openai", "base_url": f"{upstream}/v1", "upstream_model": "mock-gpt",
        "prices": {"input_tokens": "150", "output_tokens": "600", "per": 1000000}})
    services.close()
    return secret


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--litellm", default="/tmp/litellm-venv/bin/litellm")
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--rates", default="25,250,500,1000", help="offered req/s for the added-latency runs")
    parser.add_argument("--paced-connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="paced runs per cell; the median is printed")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--shallow-idle", action="store_true", help="hold /dev/cpu_dma_latency at 0")
    arguments = parser.parse_args()
    with shallow_cpu_idle(arguments.shallow_idle):
        run(arguments)


def run(arguments: argparse.Namespace) -> None:
    if arguments.pin:
        PROXY_CPUS[:] = ["taskset", "-c", "0"]
        CLIENT_CPUS[:] = ["taskset", "-c", "1"]
    folder = Path(tempfile.mkdtemp(prefix="creditgate-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    try:
        upstream_port, gateway_port, litellm_port, bare_port = free_port(), free_port(), free_port(), free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        processes.append(subprocess.Popen([*CLIENT_CPUS, *upstream_command(upstream_port)], env=env))
        database_url = f"sqlite:///{folder}/bench.db"
        secret = setup_creditgate(database_url, upstream)
        processes.append(subprocess.Popen([*PROXY_CPUS, *gateway_command(gateway_port, database_url)], env=env))
        processes.append(subprocess.Popen([*PROXY_CPUS, *bare_proxy_command(bare_port, upstream)], env=env))
        targets = {"upstream direct": (chat_url_of(upstream), "none"),
                   "bare proxy (floor)": (chat_url(bare_port), "none"),
                   "creditgate": (chat_url(gateway_port), secret)}
        if Path(arguments.litellm).exists():
            config = folder / "litellm.yaml"
            config.write_text(f"model_list:\n  - model_name: mock-gpt\n    litellm_params:\n"
                              f"      model: openai/mock-gpt\n      api_base: {upstream}/v1\n      api_key: none\n")
            processes.append(subprocess.Popen(
                [*PROXY_CPUS, arguments.litellm, "--config", str(config), "--port", str(litellm_port), "--num_workers", "1"],
                # A master key is required to start; no database is configured, so none is used.
                env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": LITELLM_KEY},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            targets["litellm proxy"] = (chat_url(litellm_port), LITELLM_KEY)
        for url, key in targets.values():
            wait_ready(url, {"authorization": f"Bearer {key}"})
        results: dict[tuple[str, int], dict[str, float]] = {}
        for connections in [int(c) for c in arguments.connections.split(",")]:
            for name, (url, key) in targets.items():
                wrk(url, key, connections, 2)  # warm up
                results[(name, connections)] = wrk(url, key, connections, arguments.duration)
        litellm_best = max((r["rps"] for (n, _), r in results.items() if n == "litellm proxy"), default=0.0)
        print("\n**Maximum requests/s** (closed loop; latency here is queueing)\n")
        print("| target | connections | p50 ms | p99 ms | req/s | × LiteLLM | non-2xx |")
        print("|---|---|---|---|---|---|---|")
        for (name, connections), result in results.items():
            ratio = f"{result['rps'] / litellm_best:.1f}×" if litellm_best else "–"
            print(f"| {name} | {connections} | {result['p50']:.2f} | {result['p99']:.2f} | "
                  f"{result['rps']:.0f} | {ratio} | {result['errors']:.0f} |")
        connections = arguments.paced_connections
        rates = [int(r) for r in arguments.rates.split(",")]
        paced: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(arguments.rounds):
            for rate in rates:
                for name, (url, key) in targets.items():
                    best = max(r["rps"] for (n, _), r in results.items() if n == name)
                    if best < rate * 1.1:
                        continue  # saturated: latency there is queueing, not added latency
                    paced.setdefault((name, rate), []).append(wrk(url, key, connections, arguments.duration,
                                                                  rate=rate))
        print(f"\n**Added latency at {connections} connections**, paced to an offered rate; medians of "
              f"{arguments.rounds} rounds (range of added p50 in brackets)\n")
        print("| target | offered req/s | served req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for rate in rates:
            base = paced.get(("upstream direct", rate))
            for name in targets:
                runs = paced.get((name, rate))
                if runs is None or base is None:
                    print(f"| {name} | {rate} | saturated | | | | |")
                    continue
                p50, p99 = median(r["p50"] for r in runs), median(r["p99"] for r in runs)
                base_p50, base_p99 = median(r["p50"] for r in base), median(r["p99"] for r in base)
                added = sorted(r["p50"] - b["p50"] for r, b in zip(runs, base, strict=True))
                print(f"| {name} | {rate} | {median(r['rps'] for r in runs):.0f} | {p50:.2f} | {p99:.2f} | "
                      f"{p50 - base_p50:.2f} [{added[0]:.2f}–{added[-1]:.2f}] | {p99 - base_p99:.2f} |")
    finally:
        stop(processes)


if __name__ == "__main__":
    main()
