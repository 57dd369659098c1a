"""What the dashboard shows, loaded from the ledger, usage, billing and tracking (blocking; the
dashboard runs these off the event loop). Amounts leave here as decimal strings."""

from __future__ import annotations

from typing import Any, Final

import orjson
from sqlalchemy import func, select

from creditgate.clock import iso
from creditgate.errors import NotFound
from creditgate.ledger.credits import format_amount, parse_amount
from creditgate.storage.tables_api import usage_records
from creditgate.tracking import charts, pages
from creditgate.tracking.forecast import DAY_US, HOUR_US

RANGE_SPANS: Final = {"24h": (DAY_US, "hour"), "7d": (7 * DAY_US, "day"), "30d": (30 * DAY_US, "day"),
                      "90d": (90 * DAY_US, "day")}
CHART_DIMENSIONS: Final = (("model", "Credits by model"), ("project", "Credits by project"),
                           ("tag:purpose", "Credits by purpose tag"))
RECENT_REQUESTS_MAX: Final = 20
ADMIN_ORGS_MAX: Final = 100
FORECAST_MAX_AGE_US: Final = 60_000_000
PURPOSE_TAG: Final = "purpose"


def now_iso(services: Any) -> str:
    return iso(services.clock.now_us()) or ""


def balance_now(services: Any, org_id: str) -> dict[str, str]:
    balance = services.ledger.balance(org_id)
    return {"available": format_amount(balance.available), "pending": format_amount(balance.pending),
            "debt": format_amount(balance.debt), "as_of": now_iso(services)}


def _countdown(expires_at_us: int | None, now_us: int) -> str:
    if expires_at_us is None:
        return "never"
    left_s = max(0, (expires_at_us - now_us) // 1_000_000)
    if left_s == 0:
        return "expired"
    days, rest = divmod(left_s, 86_400)
    return f"{days} d {rest // 3600} h {rest % 3600 // 60} min"


def org_view(services: Any, tracking: Any, org_id: str, chosen: str) -> dict[str, Any]:
    org = services.ledger.get_org(org_id)
    now = services.clock.now_us()
    forecast = tracking.forecast(org_id, max_age_us=FORECAST_MAX_AGE_US)
    forecast_dict = forecast.to_dict()
    waste = {grant["id"]: grant["projected_waste"] for grant in forecast_dict["grants"]}
    balance = services.ledger.balance(org_id)
    grants = [{"id": g.id, "kind": g.kind, "scope": g.scope, "remaining": format_amount(g.remaining),
               "available": format_amount(g.free), "expires_at": iso(g.expires_at_us),
               "expires_in": _countdown(g.expires_at_us, now), "projected_waste": waste.get(g.id, "0")}
              for g in balance.grants if g.status == "active"]
    projects = {p["id"]: p["name"] for p in services.ledger.list_projects(org_id)}
    return {"id": org_id, "name": org.name, "now": iso(now),
            "balance": balance_now(services, org_id), "forecast": forecast_dict, "grants": grants,
            "charts": _charts(services, org_id, now, chosen, projects),
            "requests": _recent_requests(services, org_id, projects),
            "rules": tracking.rules.list_rules(org_id), "alerts": tracking.rules.alerts(org_id, limit=10),
            "deliveries": tracking.webhooks.list_deliveries(org_id, limit=10),
            "statements": _statements(services, org_id)}


def org_markup(view: dict[str, Any], chosen: str) -> str:
    org_id = view["id"]
    chart_html = "".join(pages.chart_block(chart, f"chart-{index}") for index, chart in enumerate(view["charts"]))
    return (f'<h1>{pages.e(view["name"])}</h1>'
            + pages.balance_cards(org_id, view["balance"], view["forecast"])
            + pages.grants_section(org_id, view["grants"])
            + '<section aria-labelledby="usage-h"><h2 id="usage-h">Usage</h2>'
            + pages.range_form(f"/dashboard/orgs/{org_id}", chosen) + chart_html + "</section>"
            + pages.requests_section(view["requests"])
            + pages.forecast_section(view["forecast"])
            + pages.alerts_section(view["rules"], view["alerts"], view["deliveries"])
            + pages.statements_section(org_id, view["statements"]))


def _charts(services: Any, org_id: str, now_us: int, chosen: str,
            projects: dict[str, str]) -> list[charts.Chart]:
    from creditgate.usage.queries import UsageQuery, run_query

    span, bucket = RANGE_SPANS[chosen]
    step = HOUR_US if bucket == "hour" else DAY_US
    end = now_us - now_us % step + step
    start = end - span
    labels = [_label(start + index * step, bucket) for index in range(span // step)]
    built = []
    for dimension, title in CHART_DIMENSIONS:
        rows = run_query(services.database, UsageQuery(org_id=org_id, start_us=start, end_us=end,
                                                       bucket=bucket, group_by=(dimension,)))
        points = []
        for row in rows:
            value = row.get(dimension) or ""
            if dimension == "project":
                value = projects.get(value, value)
            points.append((_label_iso(row["bucket_start"], bucket), value, parse_amount(row["credits"])))
        built.append(charts.build(title, labels, points))
    return built


def _label(at_us: int, bucket: str) -> str:
    text = iso(at_us) or ""
    return text[11:16] if bucket == "hour" else text[5:10]


def _label_iso(text: str, bucket: str) -> str:
    return text[11:16] if bucket == "hour" else text[5:10]


def _recent_requests(services: Any, org_id: str, projects: dict[str, str]) -> list[dict[str, Any]]:
    table = usage_records
    with services.database.read() as connection:
        rows = connection.execute(select(table.c.at_us, table.c.model, table.c.project_id, table.c.meters,
                                         table.c.tags, table.c.credits, table.c.latency_ms)
                                  .where(table.c.org_id == org_id)
                                  .order_by(table.c.at_us.desc(), table.c.id.desc()).limit(RECENT_REQUESTS_MAX)).all()
    found = []
    for row in rows:
        meters = orjson.loads(row.meters)
        tags = orjson.loads(row.tags)
        found.append({"at": iso(row.at_us), "model": row.model,
                      "project": projects.get(row.project_id or "", row.project_id),
                      "purpose": tags.get(PURPOSE_TAG), "latency_ms": row.latency_ms,
                      "tokens": meters.get("input_tokens", 0) + meters.get("output_tokens", 0),
                      "credits": format_amount(row.credits)})
    return found


def _statements(services: Any, org_id: str) -> list[dict[str, Any]] | None:
    billing = services.extras.get("billing")
    if billing is None:
        return None
    return billing.list_statements(org_id, limit=24)  # type: ignore[no-any-return]


def statement_file(services: Any, org_id: str, statement_id: str, fmt: str) -> tuple[bytes, str]:
    billing = services.extras.get("billing")
    if billing is None:
        raise NotFound("billing is not installed", param="statement_id")
    document = billing.statement(org_id, statement_id)
    if fmt == "json":
        return orjson.dumps(document, option=orjson.OPT_INDENT_2), "application/json"
    from creditgate.billing.render import to_csv, to_html

    if fmt == "csv":
        return to_csv(document).encode(), "text/csv; charset=utf-8"
    return to_html(document).encode(), "text/html; charset=utf-8"


def grant_view(services: Any, tracking: Any, org_id: str, grant_id: str) -> dict[str, Any]:
    from creditgate.api.common import grant_dict

    grant = services.ledger.get_grant(org_id, grant_id)
    forecast = tracking.forecast(org_id, max_age_us=FORECAST_MAX_AGE_US)
    waste = forecast.median.waste.get(grant.id, 0)
    details = grant_dict(grant)
    details["projected_waste"] = format_amount(waste)
    details["projected_waste_money"] = f"{format_amount(_money(grant, waste))} {grant.currency}"
    details["expires_in"] = _countdown(grant.expires_at_us, services.clock.now_us())
    details["metadata"] = orjson.dumps(details["metadata"]).decode()
    details["allow"] = ", ".join(details["allow"]) if details["allow"] else "any model"
    return details


def _money(grant: Any, credits: int) -> int:
    from creditgate.ledger.credits import divide_round_half_up

    if not grant.amount or not grant.cost_basis:
        return 0
    return divide_round_half_up(credits * grant.cost_basis, grant.amount)


def admin_view(services: Any, tracking: Any) -> dict[str, Any]:
    orgs = []
    for org in services.ledger.list_orgs(limit=ADMIN_ORGS_MAX):
        forecast = tracking.forecast(org.id, max_age_us=FORECAST_MAX_AGE_US)
        left = forecast.time_left_us(forecast.median)
        from creditgate.tracking.forecasting import days_text

        orgs.append({"id": org.id, "name": org.name, "available": format_amount(forecast.available),
                     "pending": format_amount(forecast.pending), "burn_per_day": format_amount(forecast.burn.per_day),
                     "days_left": days_text(left)})
    return {"now": now_iso(services), "orgs": orgs, "deployments": _deployments(services)}


def _deployments(services: Any) -> list[dict[str, Any]]:
    """Every deployment with its requests, tokens and credits over the last 24 hours."""
    try:
        from creditgate.storage.tables_gateway import deployments
    except ImportError:
        return []
    since = services.clock.now_us() - DAY_US
    table = usage_records
    with services.database.read() as connection:
        listed = connection.execute(select(deployments.c.name, deployments.c.backend)
                                    .order_by(deployments.c.name)).all()
        traffic = {row[0]: row for row in connection.execute(
            select(table.c.model, func.count(), func.coalesce(func.sum(table.c.credits), 0))
            .where(table.c.at_us >= since).group_by(table.c.model))}
        tokens: dict[str, int] = {}
        for model, meters in connection.execute(select(table.c.model, table.c.meters).where(
                table.c.at_us >= since).limit(100_000)):
            counted = orjson.loads(meters)
            tokens[model] = tokens.get(model, 0) + counted.get("input_tokens", 0) + counted.get("output_tokens", 0)
    return [{"name": name, "backend": backend, "requests": traffic[name][1] if name in traffic else 0,
             "tokens": tokens.get(name, 0),
             "credits": format_amount(int(traffic[name][2]) if name in traffic else 0)}
            for name, backend in listed]
