"""A signed statement as CSV and as a printable HTML page. Pure.

Both carry the signature and key id; the signature covers the JSON statement, so ``creditgate
statement verify`` checks the JSON file (CSV and HTML are views of it).
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any


def lines(statement: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, item, amount) rows in reading order."""
    rows: list[tuple[str, str, str]] = [("balance", "opening balance", statement["opening_balance"])]
    credits = statement["credits_in"]
    rows += [("credits in", "paid", credits["paid"]), ("credits in", "free", credits["free"])]
    rows += [("credits in", f"{item['kind']} {item['grant_id']}", item["amount"]) for item in credits["items"]]
    usage = statement["usage"]
    rows.append(("usage", "total", usage["total"]))
    for dimension in ("model", "project", "purpose"):
        rows += [(f"usage by {dimension}", name, value) for name, value in usage[f"by_{dimension}"].items()]
    breakage = statement["breakage"]
    rows += [("breakage", "total", breakage["total"]), ("breakage", "cost basis", breakage["cost_basis"])]
    rows += [("breakage", f"{item['kind']} {item['grant_id']}", item["amount"]) for item in breakage["items"]]
    rows.append(("forfeited", "total", statement["forfeited"]["total"]))
    rolls = statement["rollovers"]
    rows += [("rollovers", "out", rolls["out"]), ("rollovers", "in", rolls["in"])]
    rows += [("pending holds", "opening", statement["pending_holds"]["opening"]),
             ("pending holds", "closing", statement["pending_holds"]["closing"])]
    rows += [("closing parts", name.replace("_", " "), value) for name, value in statement["closing_parts"].items()]
    rows.append(("balance", "closing balance", statement["closing_balance"]))
    return rows


def to_csv(document: dict[str, Any]) -> str:
    statement = document["statement"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "item", "credits"])
    writer.writerow(["statement", "id", statement["statement_id"]])
    writer.writerow(["statement", "organization", f"{statement['org']['name']} ({statement['org']['id']})"])
    writer.writerow(["statement", "period", statement["period"]["label"]])
    for row in lines(statement):
        writer.writerow(row)
    signature = document.get("signature", {})
    writer.writerow(["signature", signature.get("key_id", ""), signature.get("value", "")])
    return buffer.getvalue()


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; color: #111; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; } .meta { color: #555; margin-bottom: 1.5rem; }
table { width: 100%; border-collapse: collapse; margin-bottom: 1rem; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #ddd; text-align: left; }
td.amount { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.total td { font-weight: 600; border-top: 2px solid #111; }
.signature { font-size: .75rem; color: #555; word-break: break-all; }
@media print { body { margin: 0; } a { color: inherit; } }
"""


def to_html(document: dict[str, Any]) -> str:
    statement = document["statement"]
    signature = document.get("signature", {})
    body_rows = []
    previous = None
    for section, item, value in lines(statement):
        heading = escape(section) if section != previous else ""
        previous = section
        total = " class=\"total\"" if item in ("opening balance", "closing balance") else ""
        body_rows.append(f"<tr{total}><th>{heading}</th><td>{escape(item)}</td>"
                         f"<td class=\"amount\">{escape(value)}</td></tr>")
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Statement {escape(statement['statement_id'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Credit statement — {escape(statement['org']['name'])}</h1>"
        f"<div class=\"meta\">Period {escape(statement['period']['label'])} ({escape(statement['period']['timezone'])})"
        f" · statement {escape(statement['statement_id'])} · journal through entry {statement['journal']['cut_seq']}"
        f" · generated {escape(statement['generated_at'])}</div>"
        "<table><thead><tr><th>Section</th><th>Item</th><th class=\"amount\">Credits</th></tr></thead><tbody>"
        + "".join(body_rows) +
        "</tbody></table>"
        f"<p>{escape(statement['balance_equation'])}</p>"
        f"<p class=\"signature\">Signed with {escape(signature.get('algorithm', ''))} key "
        f"{escape(signature.get('key_id', ''))}: {escape(signature.get('value', ''))}. "
        "Check the JSON statement offline with <code>creditgate statement verify FILE</code>.</p>"
        "</body></html>\n")
