"""``creditgate demo --upstream URL`` sends its chat request through the gateway to a real
OpenAI-compatible server (the test upstream on loopback, standing in for Ollama or vLLM)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.openai_upstream import create_upstream_app
from tests.support.servers import serve

DEMO_TIMEOUT_S = 300


def test_demo_charges_a_chat_completion_through_the_given_upstream(tmp_path: Path) -> None:
    with serve(create_upstream_app()) as upstream:
        done = subprocess.run(
            [sys.executable, "-m", "creditgate.cli.main", "demo", "--db-path", str(tmp_path / "demo.db"),
             "--upstream", f"{upstream}/v1", "--upstream-model", "mock-llama"],
            capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False, cwd=tmp_path,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    chat = re.search(r"chat via (\S+): '([^']*)', cost ([\d.]+), balance ([\d.]+)", done.stdout)
    assert chat, done.stdout
    assert chat.group(1) == f"{upstream}/v1"
    assert chat.group(2).startswith("tok0")  # the upstream's own answer came back
    # The upstream counts 5 words + 3 = 8 prompt tokens and answers 5 tokens: at 15 and 60 credits
    # per 1M tokens that is 8 * 15 + 5 * 60 = 420 micro-credits, charged exactly.
    assert chat.group(3) == "0.00042"
    assert "creditgate verify: ok" in done.stdout
