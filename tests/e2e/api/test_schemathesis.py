"""Property-based fuzzing of the REST API from its own OpenAPI spec: no 5xx, responses conform."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.e2e.api.conftest import sample_engine, start_server

from creditgate.api import keystore
from creditgate.bootstrap import bootstrap
from creditgate.clock import ManualClock

EXAMPLES_PER_OPERATION = 5
# What the issue asks: no 5xx, and every answer is one the spec documents, in the documented
# shape. (Checks that need the spec to describe every business rule, such as "schema-valid data
# must be accepted", would fail on rules like unique names and are left out on purpose.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def live() -> Iterator[dict[str, Any]]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        clock = ManualClock()
        services = bootstrap(f"sqlite:///{folder}/fuzz.db", clock=clock)
        services.extras["pricing"] = sample_engine(clock)
        _, admin_key = keystore.create_key(services, kind="admin", name="fuzz")
        org = services.ledger.create_org("fuzzed")
        services.ledger.grant(org.id, 1_000_000_000)
        server, thread, base_url = start_server(services, requests_per_key_per_s=1e9, request_burst=10**9)
        try:
            yield {"base_url": base_url, "admin_key": admin_key}
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            services.close()


def _spec() -> dict[str, Any]:
    """The spec the server publishes (it does not depend on the data, so a scratch database does)."""
    import tempfile

    from creditgate.api.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        services = bootstrap(f"sqlite:///{folder}/spec.db")
        try:
            return create_app(services).openapi()
        finally:
            services.close()


schema = schemathesis.openapi.from_dict(_spec())


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_fails(case: Any, live: dict[str, Any]) -> None:
    case.call_and_validate(base_url=live["base_url"],
                           headers={"Authorization": f"Bearer {live['admin_key']}"}, checks=CHECKS)
