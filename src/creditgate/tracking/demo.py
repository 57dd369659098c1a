"""The tracking chapter of ``creditgate demo``: some usage, an alert rule, the forecast; with
``--serve`` the dashboard stays up with a read key printed, until Ctrl-C."""

from __future__ import annotations

import os
import secrets
import threading
from typing import Any, Final

DEMO_PORT_DEFAULT: Final = 8080
DAY_US: Final = 86_400_000_000


def run_chapter(services: Any, org_id: str, options: dict[str, Any]) -> None:
    from creditgate.cli.common import console
    from creditgate.ledger.credits import parse_amount
    from creditgate.tracking.service import get_tracking
    from creditgate.usage.records import UsageRow, record_usage

    clock = options.get("clock")
    tracking = get_tracking(services, start_worker=False)
    now = services.clock.now_us()
    # A week of synthetic usage, so that the charts and the forecast have something to show.
    rows = [UsageRow(org_id=org_id, model=model, meters={"input_tokens": 900, "output_tokens": 300},
                     credits=parse_amount(credits), at_us=now - day * DAY_US + hour * 3_600_000_000,
                     tags={"purpose": purpose})
            for day in range(1, 8) for hour, model, credits, purpose in
            ((9, "demo-model", "0.8", "chat"), (14, "demo-embed", "0.2", "search"))]
    record_usage(services.database, rows)
    tracking.rules.create(org_id, "available_below", {"credits": "100"})
    tracking.rules.create(org_id, "expiring_waste", {"days": 7})
    tracking.step()
    forecast = tracking.forecast(org_id).to_dict()
    console.print(f"Tracking: burn {forecast['burn_rate']['per_day']} credits/day, runs out "
                  f"{forecast['depletion']['expected'] or 'not within a year'}, projected waste "
                  f"{forecast['projected_waste']}; alerts: "
                  + (", ".join(a["message"] for a in tracking.rules.alerts(org_id)) or "none"))
    if options.get("serve"):
        serve_dashboard(services, org_id, clock)


def serve_dashboard(services: Any, org_id: str, clock: Any) -> None:
    """Serve the API, gateway and dashboard on loopback until Ctrl-C, with a fresh read key."""
    import uvicorn

    from creditgate.api import keystore
    from creditgate.api.app import create_app
    from creditgate.cli.common import console
    from creditgate.clock import SystemClock

    if clock is not None and hasattr(clock, "set"):
        # The story ran on a manual clock; from here on time moves as on the wall.
        wall = SystemClock().now_us()
        if wall > clock.now_us():
            clock.set(wall)
        threading.Thread(target=_follow_wall_clock, args=(clock,), daemon=True).start()
    _, secret = keystore.create_key(services, kind="org", name=f"demo-read-{secrets.token_hex(3)}",
                                    org_id=org_id, scopes=["read", "inference"])
    port = int(os.environ.get("CREDITGATE_DEMO_PORT", DEMO_PORT_DEFAULT))
    console.print(f"Dashboard: [bold]http://127.0.0.1:{port}/dashboard[/bold]")
    console.print(f"Read key (paste it into the sign-in form): [bold]{secret}[/bold]")
    console.print("Press Ctrl-C to stop.")
    try:
        uvicorn.run(create_app(services), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    except KeyboardInterrupt:
        pass


def _follow_wall_clock(clock: Any) -> None:
    from creditgate.clock import SystemClock

    wall = SystemClock()
    stop = threading.Event()
    while not stop.wait(0.2):
        now = wall.now_us()
        if now > clock.now_us():
            clock.set(now)
