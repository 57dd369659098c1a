"""The dashboard at ``/dashboard``: sign-in, an organization's page, a grant's details, statement
downloads, the live balance stream (SSE), and the admin's page of every organization.

Entrypoints only: each handler checks the session, loads data off the event loop with
:mod:`creditgate.tracking.dashboard_data`, and renders with :mod:`creditgate.tracking.pages`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from creditgate.api.common import blocking
from creditgate.errors import CreditgateError, Forbidden, NotFound, Unauthorized
from creditgate.tracking import dashboard_data as data
from creditgate.tracking import pages
from creditgate.tracking.service import get_tracking
from creditgate.tracking.session import COOKIE_NAME, SESSION_TTL_S, Session, Sessions

LIVE_POLL_S: Final = 0.5
LIVE_HEARTBEAT_S: Final = 15.0
LIVE_STREAM_MAX_S: Final = 3600.0
LIVE_SESSION_RECHECK_S: Final = 30.0
LIVE_STREAMS_MAX: Final = 1000
SIGN_IN_BODY_BYTES_MAX: Final = 4096
STATIC_FILES: Final = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
_HEADERS: Final = {"cache-control": "no-store", "x-content-type-options": "nosniff",
                   "referrer-policy": "same-origin", "x-frame-options": "DENY",
                   "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                              "img-src 'self' data:; frame-ancestors 'none'"}
Handler = Callable[[Request], Awaitable[Response]]


class _State:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.sessions = Sessions(services)
        self.streams = 0


def _html(markup: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(markup, status_code=status, headers=_HEADERS)


def _page(state: _State, handler: Callable[[Request, Session], Awaitable[Response]]) -> Handler:
    """Check the session first; map operating errors to HTML pages (never a traceback)."""
    async def endpoint(request: Request) -> Response:
        try:
            session = await blocking(state.sessions.read, request.cookies.get(COOKIE_NAME))
        except Unauthorized:
            return RedirectResponse("/dashboard/sign-in", status_code=303)
        try:
            return await handler(request, session)
        except CreditgateError as error:
            title = {403: "Not allowed", 404: "Not found"}.get(error.status, "Something is wrong")
            return _html(pages.error_page(title, error.message), error.status)
    return endpoint


def _org_id(request: Request, session: Session) -> str:
    org_id = str(request.path_params["org_id"])
    if not session.may_see(org_id):
        raise Forbidden("this session may only see its own organization")
    return org_id


def routes(services: Any) -> list[Route]:
    state = _State(services)
    tracking = get_tracking(services)

    async def sign_in_form(request: Request) -> Response:
        return _html(pages.sign_in_page())

    async def sign_in(request: Request) -> Response:
        body = await request.body()
        if len(body) > SIGN_IN_BODY_BYTES_MAX:
            return _html(pages.sign_in_page("That key is too long."), 413)
        form = await request.form()
        key = form.get("key")
        if not isinstance(key, str) or not key.strip():
            return _html(pages.sign_in_page("Enter an API key."), 422)
        try:
            _, cookie = await blocking(state.sessions.sign_in, key)
        except (Unauthorized, Forbidden) as error:
            return _html(pages.sign_in_page(error.message), error.status)
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(COOKIE_NAME, cookie, max_age=SESSION_TTL_S, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/dashboard")
        return response

    async def sign_out(request: Request) -> Response:
        response = RedirectResponse("/dashboard/sign-in", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/dashboard")
        return response

    async def home(request: Request, session: Session) -> Response:
        if not session.is_admin:
            return RedirectResponse(f"/dashboard/orgs/{session.org_id}", status_code=303)
        view = await blocking(data.admin_view, services, tracking)
        return _html(pages.layout("All organizations", pages.admin_page(view["orgs"], view["deployments"]),
                                  signed_in="admin", server_now=view["now"]))

    async def org_page(request: Request, session: Session) -> Response:
        org_id = _org_id(request, session)
        chosen = request.query_params.get("range", "7d")
        chosen = chosen if chosen in pages.RANGES else "7d"
        view = await blocking(data.org_view, services, tracking, org_id, chosen)
        return _html(pages.layout(view["name"], data.org_markup(view, chosen),
                                  signed_in="admin" if session.is_admin else view["name"],
                                  server_now=view["now"]))

    async def grant_page(request: Request, session: Session) -> Response:
        org_id = _org_id(request, session)
        grant = await blocking(data.grant_view, services, tracking, org_id, str(request.path_params["grant_id"]))
        return _html(pages.layout(f"Grant {grant['id']}", pages.grant_page(org_id, grant),
                                  signed_in="admin" if session.is_admin else org_id,
                                  server_now=data.now_iso(services)))

    async def statement(request: Request, session: Session) -> Response:
        org_id = _org_id(request, session)
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "csv", "html"):
            raise NotFound("format must be json, csv or html", param="format")
        content, media = await blocking(data.statement_file, services, org_id,
                                        str(request.path_params["statement_id"]), fmt)
        name = f'statement-{request.path_params["statement_id"]}.{fmt}'
        return Response(content, media_type=media,
                        headers={**_HEADERS, "content-disposition": f'attachment; filename="{name}"'})

    async def live(request: Request, session: Session) -> Response:
        org_id = _org_id(request, session)
        if state.streams >= LIVE_STREAMS_MAX:
            return Response("too many live streams", status_code=503, headers={"retry-after": "5"})
        return StreamingResponse(_balance_stream(state, tracking, request, org_id),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def static(request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in STATIC_FILES:
            return Response("not found", status_code=404)
        content = resources.files("creditgate.tracking").joinpath("static", name).read_bytes()
        return Response(content, media_type=STATIC_FILES[name],
                        headers={"cache-control": "public, max-age=300", "x-content-type-options": "nosniff"})

    return [
        Route("/dashboard", _page(state, home), methods=["GET"]),
        Route("/dashboard/sign-in", sign_in_form, methods=["GET"]),
        Route("/dashboard/sign-in", sign_in, methods=["POST"]),
        Route("/dashboard/sign-out", sign_out, methods=["POST"]),
        Route("/dashboard/static/{name}", static, methods=["GET"]),
        Route("/dashboard/orgs/{org_id}", _page(state, org_page), methods=["GET"]),
        Route("/dashboard/orgs/{org_id}/grants/{grant_id}", _page(state, grant_page), methods=["GET"]),
        Route("/dashboard/orgs/{org_id}/statements/{statement_id}", _page(state, statement), methods=["GET"]),
        Route("/dashboard/orgs/{org_id}/live", _page(state, live), methods=["GET"]),
    ]


async def _balance_stream(state: _State, tracking: Any, request: Request, org_id: str) -> AsyncIterator[bytes]:
    """Send the balance now and whenever it changes: woken by the gateway's notify, and polling
    every ``LIVE_POLL_S`` for changes made by other processes."""
    state.streams += 1
    wake = tracking.live.subscribe(org_id)
    started = last_beat = last_check = time.monotonic()
    version = 0
    last: dict[str, str] | None = None
    try:
        yield b"retry: 1000\n\n"
        while time.monotonic() - started < LIVE_STREAM_MAX_S:
            current = await blocking(data.balance_now, state.services, org_id)
            changed = {k: v for k, v in current.items() if k != "as_of"} != \
                ({k: v for k, v in last.items() if k != "as_of"} if last else None)
            if changed:
                version += 1
                last = current
                yield b"event: balance\ndata: " + orjson.dumps({**current, "version": version}) + b"\n\n"
            now = time.monotonic()
            if now - last_beat >= LIVE_HEARTBEAT_S:
                last_beat = now
                yield b": keep-alive\n\n"
            if now - last_check >= LIVE_SESSION_RECHECK_S:
                last_check = now
                await blocking(state.sessions.read, request.cookies.get(COOKIE_NAME))
            if await request.is_disconnected():
                return
            try:
                await asyncio.wait_for(wake.wait(), timeout=LIVE_POLL_S)
            except TimeoutError:
                pass
            wake.clear()
    except Unauthorized:
        yield b"event: signed-out\ndata: {}\n\n"
    finally:
        tracking.live.unsubscribe(org_id, wake)
        state.streams -= 1


def install(app: Any, services: Any) -> None:
    for route in routes(services):
        app.router.routes.append(route)
