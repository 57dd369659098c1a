"""Dashboard HTML, pure: functions from already-loaded data to escaped markup.

Every value shown is escaped with :func:`html.escape`; pages load one stylesheet and one script,
both served by creditgate from this package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any, Final
from urllib.parse import quote

from creditgate.tracking import charts

RANGES: Final = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days"}
STATIC: Final = "/dashboard/static"


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def layout(title: str, body: str, *, signed_in: str | None = None, server_now: str = "") -> str:
    sign_out = ""
    if signed_in is not None:
        sign_out = (f'<span class="muted">Signed in as {e(signed_in)}</span> '
                    '<form class="inline" method="post" action="/dashboard/sign-out">'
                    '<button type="submit">Sign out</button></form>')
    return ("<!doctype html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
            f'initial-scale=1"><title>{e(title)} · creditgate</title>'
            f'<link rel="stylesheet" href="{STATIC}/dashboard.css">'
            f'<script src="{STATIC}/dashboard.js" defer></script></head>'
            f'<body data-server-now="{e(server_now)}"><a class="skip" href="#main">Skip to content</a>'
            f'<header><a href="/dashboard"><strong>creditgate</strong></a><div>{sign_out}</div></header>'
            f'<main id="main">{body}</main></body></html>')


def sign_in_page(error: str | None = None) -> str:
    problem = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = ('<div class="signin"><h1>Sign in to the dashboard</h1>'
            '<p>Use an organization key with the <code>read</code> scope, or an admin key. '
            'The key is sent once and never stored in the browser; a session cookie keeps you signed in.</p>'
            f'{problem}<form method="post" action="/dashboard/sign-in">'
            '<label for="key">API key</label>'
            '<input id="key" name="key" type="password" autocomplete="off" required maxlength="200">'
            '<button type="submit">Sign in</button></form></div>')
    return layout("Sign in", body)


def error_page(title: str, message: str) -> str:
    return layout(title, f'<h1>{e(title)}</h1><p role="alert">{e(message)}</p>'
                  '<p><a href="/dashboard">Back to the dashboard</a></p>')


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *,
          numeric: frozenset[int] = frozenset(), empty: str = "Nothing yet.") -> str:
    """A table; cells are markup already escaped by the caller."""
    head = "".join(f'<th scope="col"{" class=num" if i in numeric else ""}>{e(h)}</th>'
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{cell}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{e(empty)}</td></tr>'
    return f"<table><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def balance_cards(org_id: str, balance: dict[str, str], forecast: dict[str, Any]) -> str:
    burn = forecast["burn_rate"]
    depletion = forecast["depletion"]
    days = depletion["days_left"]
    live_url = f"/dashboard/orgs/{quote(org_id)}/live"
    return (f'<section aria-labelledby="balance-h"><h2 id="balance-h">Balance</h2>'
            f'<div id="live-balance" class="cards" data-live-url="{e(live_url)}" aria-live="polite">'
            f'<div class="card"><div class="label" id="available-label">Available credits</div>'
            f'<div class="value" id="available" aria-labelledby="available-label">{e(balance["available"])}</div></div>'
            f'<div class="card"><div class="label" id="pending-label">Pending (held)</div>'
            f'<div class="value" id="pending" aria-labelledby="pending-label">{e(balance["pending"])}</div></div>'
            f'<div class="card"><div class="label">Debt</div><div class="value" id="debt">{e(balance["debt"])}</div></div>'
            f'<div class="card"><div class="label">Burn rate (median per day)</div>'
            f'<div class="value">{e(burn["per_day"])}</div></div>'
            f'<div class="card"><div class="label">Days left</div>'
            f'<div class="value">{e(days) if days is not None else "—"}</div></div></div>'
            f'<p class="muted">Updated <span id="balance-updated">{e(balance["as_of"])}</span> · '
            f'<span id="live-state">connecting</span></p></section>')


def grants_section(org_id: str, grants: Sequence[dict[str, Any]]) -> str:
    rows = []
    for grant in grants:
        link = f'/dashboard/orgs/{quote(org_id)}/grants/{quote(grant["id"])}'
        expiry = grant["expires_at"]
        countdown = (f'<time datetime="{e(expiry)}" data-expires="{e(expiry)}">{e(grant["expires_in"])}</time>'
                     if expiry else '<span class="muted">never</span>')
        waste = grant["projected_waste"]
        waste_cell = f'<span class="bad">{e(waste)}</span>' if waste not in ("0", None) else e(waste)
        rows.append((f'<a href="{e(link)}">{e(grant["id"])}</a>', e(grant["kind"]), e(grant["scope"]),
                     e(grant["remaining"]), e(grant["available"]), countdown, waste_cell))
    return ('<section aria-labelledby="grants-h"><h2 id="grants-h">Grants</h2>'
            + table("Live grants in burn-down order; projected waste is what expires unused at the current burn rate",
                    ("Grant", "Kind", "Scope", "Remaining", "Available", "Expires in", "Projected waste"),
                    rows, numeric=frozenset({3, 4, 6}), empty="No live grants.") + "</section>")


def chart_block(chart: charts.Chart, chart_id: str) -> str:
    legend = "".join(f'<li><span class="swatch" style="background:{s.color}" aria-hidden="true"></span>'
                     f'{e(s.name)}: {e(_amount(s.total))}</li>' for s in chart.series)
    rows = [(e(bucket), *(e(_amount(s.values[i])) for s in chart.series))
            for i, bucket in enumerate(chart.buckets) if any(s.values[i] for s in chart.series)]
    data = table(f"{chart.title} (data)", ("Period", *(s.name for s in chart.series)), rows,
                 numeric=frozenset(range(1, len(chart.series) + 1)), empty="No usage in this range.")
    return (f'<h3 id="{chart_id}-h">{e(chart.title)}</h3>{charts.render_svg(chart, chart_id)}'
            f'<ul class="legend" aria-label="Legend">{legend}</ul>'
            f'<details><summary>Show the numbers</summary>{data}</details>')


def _amount(micros: int) -> str:
    from creditgate.ledger.credits import format_amount

    return format_amount(micros)


def range_form(action: str, selected: str) -> str:
    options = "".join(f'<option value="{key}"{" selected" if key == selected else ""}>{e(label)}</option>'
                      for key, label in RANGES.items())
    return (f'<form method="get" action="{e(action)}"><label for="range">Range</label>'
            f'<select id="range" name="range">{options}</select> <button type="submit">Show</button></form>')


def forecast_section(forecast: dict[str, Any]) -> str:
    depletion = forecast["depletion"]
    burn = forecast["burn_rate"]
    recommendation = forecast["recommendation"]
    bundle = recommendation["bundle"]
    advice = (f'Buy <strong>{e(bundle["quantity"])} × {e(bundle["name"])}</strong> for '
              f'{e(bundle["price"])} {e(bundle["currency"])} (projected waste {e(bundle["projected_waste"])}).'
              if bundle else "No purchase needed.")
    return ('<section aria-labelledby="forecast-h"><h2 id="forecast-h">Forecast</h2><dl>'
            f'<dt>Burn rate</dt><dd>{e(burn["per_day"])} credits/day (range {e(burn["low_per_day"])}–'
            f'{e(burn["high_per_day"])}, median of {e(burn["days_observed"])} days)</dd>'
            f'<dt>Depletion</dt><dd>{e(depletion["expected"] or "not within the horizon")}'
            f' (earliest {e(depletion["earliest"] or "—")}, latest {e(depletion["latest"] or "—")})</dd>'
            f'<dt>Projected waste</dt><dd>{e(forecast["projected_waste"])} credits</dd>'
            f'<dt>Recommendation through {e(recommendation["through"])}</dt><dd>{advice} '
            f'<span class="muted">{e(recommendation["reason"])}</span></dd></dl></section>')


def alerts_section(rules: Sequence[dict[str, Any]], alerts: Sequence[dict[str, Any]],
                   deliveries: Sequence[dict[str, Any]]) -> str:
    rule_rows = [(e(r["kind"]), e(", ".join(f"{k}={v}" for k, v in r["params"].items())),
                  f'<span class="{"bad" if r["state"] == "firing" else "ok"}">{e(r["state"])}</span>',
                  e(r["last_value"])) for r in rules if r["enabled"]]
    alert_rows = [(e(a["at"]), e(a["kind"]), e(a["transition"]), e(a["message"])) for a in alerts]
    delivery_rows = [(e(d["created_at"]), e(d["event_type"]), e(d["status"]), e(d["attempts"]),
                      e(d["last_status_code"] or d["last_error"] or ""), e(d["next_attempt_at"] or ""))
                     for d in deliveries]
    return ('<section aria-labelledby="alerts-h"><h2 id="alerts-h">Alerts and webhooks</h2>'
            + table("Alert rules", ("Rule", "Parameters", "State", "Last reading"), rule_rows,
                    empty="No alert rules.")
            + table("Recent alerts", ("When", "Rule", "Transition", "Message"), alert_rows, empty="No alerts.")
            + table("Webhook deliveries", ("Created", "Event", "Status", "Attempts", "Last answer", "Next attempt"),
                    delivery_rows, numeric=frozenset({3}), empty="No deliveries.")
            + "</section>")


def requests_section(requests: Sequence[dict[str, Any]]) -> str:
    rows = [(e(r["at"]), e(r["model"]), e(r["project"] or ""), e(r["purpose"] or ""), e(r["tokens"]),
             e(r["latency_ms"] if r["latency_ms"] is not None else ""), e(r["credits"])) for r in requests]
    return ('<section aria-labelledby="requests-h"><h2 id="requests-h">Recent requests</h2>'
            + table("The latest metered requests and their cost", ("When", "Model", "Project", "Purpose",
                                                                    "Tokens", "Latency (ms)", "Credits"),
                    rows, numeric=frozenset({4, 5, 6}), empty="No requests yet.") + "</section>")


def statements_section(org_id: str, statements: Sequence[dict[str, Any]] | None) -> str:
    if statements is None:
        return ('<section aria-labelledby="statements-h"><h2 id="statements-h">Statements</h2>'
                '<p class="muted">Billing is not installed.</p></section>')
    rows = []
    for item in statements:
        base = f'/dashboard/orgs/{quote(org_id)}/statements/{quote(item["id"])}'
        links = " · ".join(f'<a href="{e(base)}?format={fmt}" download>{fmt.upper()}</a>'
                           for fmt in ("json", "csv", "html"))
        rows.append((e(item["period_start"]), e(item["period_end"]), e(item["id"]), links))
    return ('<section aria-labelledby="statements-h"><h2 id="statements-h">Statements</h2>'
            + table("Signed statements of closed periods", ("Period start", "Period end", "Statement", "Download"),
                    rows, empty="No closed periods yet.") + "</section>")


def admin_page(orgs: Sequence[dict[str, Any]], deployments: Sequence[dict[str, Any]]) -> str:
    org_rows = [(f'<a href="/dashboard/orgs/{quote(o["id"])}">{e(o["name"])}</a>', e(o["available"]),
                 e(o["pending"]), e(o["burn_per_day"]), e(o["days_left"] if o["days_left"] is not None else "—"))
                for o in orgs]
    deployment_rows = [(e(d["name"]), e(d["backend"]), e(d["requests"]), e(d["tokens"]), e(d["credits"]))
                       for d in deployments]
    return ('<h1>All organizations</h1>'
            + table("Organizations with balance, burn rate and days left",
                    ("Organization", "Available", "Pending", "Burn per day", "Days left"), org_rows,
                    numeric=frozenset({1, 2, 3, 4}), empty="No organizations.")
            + '<h2 id="deployments-h">Deployments</h2>'
            + table("Deployments with their traffic over the last 24 hours",
                    ("Deployment", "Backend", "Requests", "Tokens", "Credits"), deployment_rows,
                    numeric=frozenset({2, 3, 4}), empty="No deployments."))


def grant_page(org_id: str, grant: dict[str, Any]) -> str:
    fields = "".join(f"<dt>{e(name)}</dt><dd>{e(value)}</dd>" for name, value in grant.items()
                     if name not in ("expires_in",))
    expiry = grant.get("expires_at")
    countdown = (f'<p>Expires in <time datetime="{e(expiry)}" data-expires="{e(expiry)}">'
                 f'{e(grant["expires_in"])}</time></p>' if expiry else "<p>Never expires.</p>")
    return (f'<p><a href="/dashboard/orgs/{quote(org_id)}">← Back to the organization</a></p>'
            f'<h1>Grant {e(grant["id"])}</h1>{countdown}<dl class="grant-details">{fields}</dl>')
