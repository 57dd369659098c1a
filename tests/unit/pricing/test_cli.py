"""End-to-end tests of ``creditgate prices``: import, list, quote, explain, estimate, compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.unit.pricing.conftest import FIXTURES
from typer.testing import CliRunner

from creditgate.cli.prices import app

runner = CliRunner()
WHEN = "2025-08-04T16:00:00Z"  # noon in New York: no off-peak window on the sample card


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stdout: str, stderr: str, fragment: str) -> None:
    assert code == 1, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "prices.json"


def test_import_litellm_then_list_and_quote_from_the_sheets(store: Path) -> None:
    code, out, _ = invoke("import", FIXTURES / "litellm_prices.json", "--format", "litellm",
                          "--store", store)
    assert code == 0, out
    assert "imported 12 models from litellm_prices.json (litellm)" in out
    assert "skipped 1 entries without a supported meter" in out
    code, out, _ = invoke("list", "--store", store, "--json")
    rows = {row["model"]: row for row in json.loads(out)}
    assert rows["gpt-4o"]["prices"]["input_tokens"] == "2.5/1M"
    assert rows["gpt-4o"]["credits"]["input_tokens"] == "250/1M"
    code, out, _ = invoke("quote", "--card", "sheets", "--store", store, "--model", "gpt-4o",
                          "--usage", "input_tokens=1000,output_tokens=200", "--at", WHEN, "--json")
    assert code == 0, out
    assert json.loads(out)["credits"] == "0.45"
    code, out, _ = invoke("list", "--store", store)
    assert code == 0 and "gpt-4o" in out and "Provider prices" in out


def test_import_json_summary_and_dry_run(store: Path) -> None:
    code, out, _ = invoke("import", FIXTURES / "prices.csv", "--format", "csv", "--store", store,
                          "--dry-run", "--json")
    summary = json.loads(out)
    assert (code, summary["imported"], summary["dry_run"]) == (0, 5, True)
    assert not store.exists()
    code, out, _ = invoke("import", FIXTURES / "prices.yaml", "-f", "yaml", "--store", store,
                          "--json")
    assert json.loads(out)["stored_models"] == 3


def test_a_bad_import_is_all_or_nothing(store: Path, tmp_path: Path) -> None:
    assert invoke("import", FIXTURES / "prices.yaml", "--format", "yaml", "--store", store)[0] == 0
    before = store.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text('{"fine": {"input_cost_per_token": 1e-06},'
                   ' "broken": {"output_cost_per_token": -2e-06}}')
    assert_one_line_error(*invoke("import", bad, "--format", "litellm", "--store", store),
                          "broken.output_cost_per_token: must not be negative")
    assert store.read_text() == before


@pytest.mark.parametrize(("args", "fragment"), [
    (("import", FIXTURES / "prices.csv"), "--format is required"),
    (("import", FIXTURES / "prices.csv", "--format", "xml"), "--format must be one of"),
    (("import", "/nonexistent/prices.csv", "--format", "csv"), "no such file"),
    (("import", FIXTURES / "litellm_prices.json", "--format", "csv"), "unknown column"),
    (("import", FIXTURES / "prices.csv", "--format", "litellm"), "malformed JSON at line 1"),
    (("quote", "--usage", "input_tokens=1"), "--model is required"),
    (("quote", "--model", "gpt-4o"), "--usage is required"),
    (("quote", "--model", "gpt-4o", "--usage", "input_tokens=lots"), "not a whole number"),
    (("quote", "--model", "gpt-4o", "--usage", "furlongs=1"), "unknown meter 'furlongs'"),
    (("quote", "--model", "nope", "--usage", "input_tokens=1", "--at", WHEN), "no price on card"),
    (("quote", "--model", "gpt-4o", "--usage", "input_tokens=1", "--at", "yesterday"),
     "not an ISO 8601 timestamp"),
    (("quote", "--model", "gpt-4o", "--usage", "input_tokens=1", "--at", "2020-01-01T00:00:00Z"),
     "no version in force"),
    (("explain", "--model", "gpt-4o", "--usage", "images=1", "--at", WHEN),
     "no price for meter 'images'"),
    (("quote", "--card", FIXTURES / "workload.yaml", "--model", "m", "--usage", "images=1"),
     "workload.yaml: name: unknown field"),
    (("quote", "--card", "sheets", "--store", "/nonexistent/none.json", "--model", "m",
      "--usage", "images=1"), "the price store is empty"),
    (("estimate", "--model", "gpt-4o", "--prompt-tokens", "-5", "--max-output-tokens", "1"),
     "must be at least 0"),
    (("compare",), "--workload is required"),
    (("compare", "--workload", FIXTURES / "workload.yaml", "--store", "/nonexistent/x.json"),
     "the price store is empty"),
    (("compare", "--workload", FIXTURES / "prices.csv", "--sheet", "sample"),
     "expected a mapping with an 'items' list"),
    (("compare", "--workload", FIXTURES / "workload.yaml", "--sheet", "sample", "--output",
      "xml"), "--output must be table, json or csv"),
])
def test_bad_input_exits_non_zero_with_one_line(args: tuple[str | Path, ...],
                                                fragment: str) -> None:
    assert_one_line_error(*invoke(*args), fragment)


def test_errors_with_json_print_the_error_object_too() -> None:
    code, out, err = invoke("quote", "--model", "nope", "--usage", "input_tokens=1", "--at", WHEN,
                            "--json")
    assert code == 1
    assert json.loads(out)["error"]["code"] == "not_found"
    assert err.strip().startswith("error: ")


def test_quote_on_the_sample_card_with_org_and_load() -> None:
    code, out, _ = invoke("quote", "-m", "gpt-4o", "-u", "input_tokens=1000,output_tokens=200",
                          "--at", WHEN)
    assert (code, out.strip()) == (0, "0.45 credits (gpt-4o, card public v2)")
    code, out, _ = invoke("quote", "-m", "gpt-4o", "-u", "input_tokens=1000,output_tokens=200",
                          "--at", WHEN, "--org", "acme", "--json")
    charge = json.loads(out)
    assert charge["credits"] == "0.405"
    assert charge["rules"][0]["kind"] == "discount"
    code, out, _ = invoke("quote", "-m", "llama-3.1-8b-local", "-u", "compute_ms=1000,requests=1",
                          "--at", WHEN, "--utilisation", "97", "--json")
    assert json.loads(out)["credits"] == "0.765"  # (0.5 + 0.01) x 1.5


def test_quote_with_a_card_file(tmp_path: Path) -> None:
    code, out, _ = invoke("quote", "--card", FIXTURES / "rate_card.yaml", "-m", "gpt-4o",
                          "-u", "input_tokens=1000000", "--at", "2025-07-01T12:00:00Z",
                          "--org", "globex", "--json")
    assert (code, json.loads(out)["credits"]) == (0, "150")


def test_explain_shows_version_base_rules_rounding_and_result() -> None:
    code, out, _ = invoke("explain", "-m", "gemini-1.5-pro",
                          "-u", "input_tokens=200000,cached_input_tokens=3,output_tokens=1000",
                          "--at", WHEN, "--org", "acme")
    assert code == 0, out
    for fragment in ("card 'public' version 2 (in force from 2025-07-01T00:00:00Z)",
                     "long-context (above 128000 tokens) prices", "base price",
                     "input_tokens", "200,000 tokens × 250 per 1M tokens", "rules applied, in order",
                     "long_context", "discount", "acme-enterprise", "×0.9",
                     "rounding  half up to 0.000001 credit, once per charge",
                     "+0.00000025", "final     45.900169 credits"):
        assert fragment in out, (fragment, out)
    code, out, _ = invoke("explain", "-m", "gemini-1.5-pro", "-u", "input_tokens=200000",
                          "--at", WHEN, "--json")
    data = json.loads(out)
    assert (data["version"], data["base_credits"], data["credits"]) == (2, "50", "50")
    assert data["rules"][0]["kind"] == "long_context"


def test_estimate_and_list_card() -> None:
    code, out, _ = invoke("estimate", "-m", "gpt-4o", "--prompt-tokens", "1000",
                          "--max-output-tokens", "200", "--at", WHEN, "--json")
    assert (code, json.loads(out)["credits"]) == (0, "0.45")
    code, out, _ = invoke("list", "--card", "sample", "--at", WHEN, "--json")
    card = json.loads(out)
    assert (card["card"], card["version"]) == ("public", 2)
    assert "off-peak-nights" in card["rules"]


def test_compare_as_table_json_and_csv(store: Path) -> None:
    for name, sheet_format in (("prices.csv", "csv"), ("prices.yaml", "yaml")):
        assert invoke("import", FIXTURES / name, "--format", sheet_format, "--store", store)[0] == 0
    args = ("compare", "--workload", FIXTURES / "workload.yaml", "--store", store,
            "--bundles", FIXTURES / "bundles.yaml")
    code, out, _ = invoke(*args)
    assert code == 0, out
    for fragment in ("Models for workload doc-assistant", "Providers", "openai", "Bundles at"):
        assert fragment in out
    code, out, _ = invoke(*args, "--json")
    data = json.loads(out)
    assert [p["provider"] for p in data["providers"]] == ["openai", "google", "anthropic"]
    assert data["bundles"][0]["bundle"] == "large"
    code, out, _ = invoke(*args, "--output", "csv")
    lines = out.strip().splitlines()
    assert lines[0].startswith("section,rank,name")
    assert any(line.startswith("provider,1,openai") for line in lines)


def test_compare_with_the_sample_sheet_and_bundles() -> None:
    code, out, _ = invoke("compare", "--workload", FIXTURES / "workload.yaml", "--sheet", "sample",
                          "--json")
    assert code == 0
    assert json.loads(out)["bundles"]


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    environment = {**os.environ, "CREDITGATE_PRICE_STORE": str(tmp_path / "prices.json")}
    command = [sys.executable, "-c", "from creditgate.cli.prices import app; app()",
               "import", str(FIXTURES / "rate_card.yaml"), "--format", "litellm"]
    finished = subprocess.run(command, capture_output=True, text=True, env=environment,
                              timeout=60, check=False)
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr
    assert finished.stderr.strip().splitlines() == [
        "error: rate_card.yaml: malformed JSON at line 1 column 1: Expecting value"]
