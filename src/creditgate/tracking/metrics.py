"""Prometheus metrics: one registry per process, scraped at ``/metrics``.

Label cardinality is bounded by construction: labels are the deployment name (at most
``DEPLOYMENT_LABELS_MAX`` distinct values, the rest counted as ``other``), a request status from
a fixed set, an HTTP status code from a fixed set, and a token direction. No label names a
request, a key or an organization unless ``CREDITGATE_METRICS_ORG_LABEL=1`` adds an ``org``
label to the request counter (also capped, at ``ORG_LABELS_MAX``).

The gateway calls :func:`observe_request` once per settled request and times its upstream call
with :func:`upstream_timer`; :class:`GatewayHttpMetrics` (an ASGI middleware) counts every
``/v1`` response by status code — which is where 402 and 429 answers show — and times it.
Pending holds are read from the database at scrape time, so every process reports the truth.
Credits are counted in micro-credits (integers; a float sample holds them exactly up to 2^53).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

DEPLOYMENT_LABELS_MAX: Final = 200
ORG_LABELS_MAX: Final = 1_000
REQUEST_CHILDREN_CACHED_MAX: Final = 10_000
_Series = TypeVar("_Series")
OTHER: Final = "other"
REQUEST_STATUSES: Final = frozenset({"ok", "error", "partial"})
HTTP_CODES: Final = frozenset({200, 400, 401, 402, 403, 404, 405, 409, 413, 422, 429, 500, 502, 503, 504})
GATEWAY_PATH_PREFIX: Final = "/v1/"
LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                            120.0)
ORG_LABEL_ENV: Final = "CREDITGATE_METRICS_ORG_LABEL"


class _Bounded:
    """Label values seen so far, at most ``limit`` of them; later newcomers become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        with self.lock:
            if len(self.seen) < self.limit:
                self.seen.add(value)
                return value
        return OTHER


class _PendingHolds:
    """Collects the pending holds (count and credits) from the database at scrape time."""

    def __init__(self) -> None:
        self.database: Any = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count = GaugeMetricFamily("creditgate_pending_holds", "Holds that are pending right now")
        held = GaugeMetricFamily("creditgate_pending_hold_microcredits",
                                 "Micro-credits earmarked by pending holds")
        if self.database is not None:
            from sqlalchemy import func, select

            from creditgate.storage.schema import holds

            with self.database.read() as connection:
                number, total = connection.execute(select(
                    func.count(), func.coalesce(func.sum(holds.c.amount), 0)).where(
                    holds.c.status == "pending")).one()
            count.add_metric([], int(number))
            held.add_metric([], int(total))
        yield count
        yield held


class Metrics:
    def __init__(self, *, org_label: bool | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.org_label = (os.environ.get(ORG_LABEL_ENV, "") == "1") if org_label is None else org_label
        self.deployment = _Bounded(DEPLOYMENT_LABELS_MAX)
        self.org = _Bounded(ORG_LABELS_MAX)
        request_labels = ["deployment", "status", *(["org"] if self.org_label else [])]
        self.requests = Counter("creditgate_gateway_requests", "Settled gateway requests",
                                request_labels, registry=self.registry)
        self.tokens = Counter("creditgate_gateway_tokens", "Tokens metered by the gateway",
                              ["deployment", "direction"], registry=self.registry)
        self.credits = Counter("creditgate_gateway_credits_consumed_microcredits",
                               "Micro-credits charged for gateway requests", ["deployment"],
                               registry=self.registry)
        self.latency = Histogram("creditgate_gateway_request_duration_seconds",
                                 "Gateway request time, from arrival to settlement", ["deployment"],
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.upstream_latency = Histogram("creditgate_upstream_request_duration_seconds",
                                          "Time an upstream took to answer a non-streamed request",
                                          ["deployment"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.responses = Counter("creditgate_gateway_http_responses",
                                 "Gateway HTTP answers by status code", ["code"], registry=self.registry)
        self.response_latency = Histogram("creditgate_gateway_http_duration_seconds",
                                          "Gateway HTTP time to the response start",
                                          buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.insufficient = Counter("creditgate_gateway_insufficient_credits",
                                    "Gateway answers 402 (insufficient credits or budget)",
                                    registry=self.registry)
        self.rate_limited = Counter("creditgate_gateway_rate_limited",
                                    "Gateway answers 429 (rate limited)", registry=self.registry)
        self.pending = _PendingHolds()
        self.registry.register(self.pending)
        self._request_children: dict[tuple[str, str, str | None], tuple[Any, ...]] = {}
        self._upstream_series: dict[str, Any] = {}

    def bind(self, database: Any) -> None:
        self.pending.database = database

    def observe_request(self, deployment: str, status: str, latency_s: float, tokens_in: int,
                        tokens_out: int, credits: int, org_id: str | None = None) -> None:
        labels = (deployment, status, org_id if self.org_label else None)
        children = self._request_children.get(labels)
        if children is None:
            children = self._children_of(*labels)
        requests, tokens_input, tokens_output, credits_consumed, latency = children
        requests.inc()
        if tokens_in:
            tokens_input.inc(tokens_in)
        if tokens_out:
            tokens_output.inc(tokens_out)
        if credits:
            credits_consumed.inc(credits)
        latency.observe(latency_s)

    def _children_of(self, deployment: str, status: str, org_id: str | None) -> tuple[Any, ...]:
        """The labelled series one settled request counts in. Kept per label values: looking them
        up through ``labels()`` (validation, a lock, a dict) was five calls per request."""
        name = self.deployment(deployment)
        labels = [name, status if status in REQUEST_STATUSES else OTHER]
        if self.org_label:
            labels.append(self.org(org_id or ""))
        return _kept(self._request_children, (deployment, status, org_id), (
            self.requests.labels(*labels), self.tokens.labels(name, "input"), self.tokens.labels(name, "output"),
            self.credits.labels(name), self.latency.labels(name)))

    def observe_response(self, code: int, latency_s: float) -> None:
        self.responses.labels(str(code) if code in HTTP_CODES else OTHER).inc()
        self.response_latency.observe(latency_s)
        if code == 402:
            self.insufficient.inc()
        elif code == 429:
            self.rate_limited.inc()

    def upstream_timer(self, deployment: str) -> _Timer:
        """Times the block into the deployment's upstream latency series (kept per deployment,
        as the request series are)."""
        series = self._upstream_series.get(deployment)
        if series is None:
            series = _kept(self._upstream_series, deployment,
                           self.upstream_latency.labels(self.deployment(deployment)))
        return _Timer(series)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _kept(cache: dict[Any, _Series], key: Any, series: _Series) -> _Series:
    """Keep ``series`` under ``key`` (label values, bounded by the label caps, but a cache emptied
    when full all the same) and answer it."""
    if len(cache) >= REQUEST_CHILDREN_CACHED_MAX:
        cache.clear()
    cache[key] = series
    return series


class _Timer:
    """A with-block's duration, observed into one histogram series, even when the block raises."""

    __slots__ = ("_series", "_started")

    def __init__(self, series: Any) -> None:
        self._series = series
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self._series.observe(time.perf_counter() - self._started)


# One registry per process: the gateway's hooks reach it without being handed the services.
_metrics = Metrics()


def metrics() -> Metrics:
    return _metrics


def observe_request(deployment: str, status: str, latency_s: float, tokens_in: int, tokens_out: int,
                    credits: int, org_id: str | None = None) -> None:
    _metrics.observe_request(deployment, status, latency_s, tokens_in, tokens_out, credits, org_id)


def upstream_timer(deployment: str) -> Any:
    return _metrics.upstream_timer(deployment)


class GatewayHttpMetrics:
    """ASGI middleware: count and time every ``/v1`` answer by status code (cheap, no I/O)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(GATEWAY_PATH_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = False

        async def observe_send(message: Any) -> None:
            nonlocal seen
            if message["type"] == "http.response.start" and not seen:
                seen = True
                _metrics.observe_response(int(message["status"]), time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, observe_send)
