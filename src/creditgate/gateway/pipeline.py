"""One gateway request, start to end.

    authenticate -> estimate the most it can cost -> rate-limit -> reserve a hold -> forward -> settle

Each step is a named method of :class:`Gateway`; :meth:`Gateway.openai_request` and
:meth:`Gateway.predict_request` show the whole path in a few lines. A step that fails after the
hold was reserved voids the hold and gives back the rate-limit slot before the error leaves, so
no failure leaves a hold or a slot behind (a crashed process's holds expire by their ttl).

For a key this process last saw able to pay, "reserve" and "forward" run at once
(:meth:`Pipeline.reserve_while_forwarding`): the hold is committed while the upstream works, and
the client still gets nothing before the hold stands. When the upstream has answered before the
hold's commit starts, the hold is committed with its settlement instead, in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from creditgate.errors import (
    CreditgateError,
    Forbidden,
    HoldNotPending,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)
from creditgate.gateway.config import hold_ttl_s
from creditgate.gateway.deployments import Deployment
from creditgate.gateway.estimate import MaxUsage, max_usage
from creditgate.gateway.limits import RateLimiter, Ticket
from creditgate.gateway.settlement import ReserveAndSettle, ReserveForRequest, settle_operation
from creditgate.gateway.streaming import DONE_LINE, MeteredStream, StreamMeter
from creditgate.gateway.upstream import UpstreamFailure
from creditgate.gateway.usage import UsageRecord, parse_tags
from creditgate.ledger.budgets import subjects_of
from creditgate.ledger.credits import MICROS_MAX, format_amount
from creditgate.ledger.loop_commit import DEFERRED
from creditgate.tracking.hooks import request_settled, upstream_timer

log = logging.getLogger(__name__)

UPSTREAM_PATHS: Final = {"chat": "/chat/completions", "completions": "/completions",
                         "embeddings": "/embeddings"}
TOKENS_PER_BYTE_GUESS: Final = 4  # only for input when a stream ends without usage
# Above this an upstream's token count is not believed (no model's context comes near a billion
# tokens): such usage is unreadable, charged as the bound.
USAGE_TOKENS_MAX: Final = 10**9
LAST_AVAILABLE_PAYERS_MAX: Final = 100_000


class ModelNotFound(NotFound):
    code = "model_not_found"
    error_type = "invalid_request_error"


@dataclass(slots=True)
class Call:
    """Everything known about one request once it has been read and priced."""

    principal: Any
    deployment: Deployment
    endpoint: str
    body: dict[str, Any]
    body_bytes: int
    limits_tokens: int
    max_cost: int
    tags: dict[str, str]
    started_ns: int
    stream: bool = False
    client_wants_usage: bool = False
    ticket: Ticket | None = None
    hold_id: str | None = None
    available: int | None = None
    finished: bool = False
    # Forwarded before its hold was committed: counted in Pipeline._unheld until it is.
    unheld: bool = False
    # The upstream answered before the hold's commit started: hold and settlement go as one.
    joined: bool = False
    extra_meters: dict[str, int] = field(default_factory=dict)
    usage_recorded: bool = False  # the usage record was written with the settlement itself
    payload: bytes = b""  # the request as the upstream gets it (upstream_payload), made by estimate


@dataclass(frozen=True, slots=True)
class Charge:
    cost: int
    available: int | None
    meters: dict[str, int]


class Pipeline:
    """The request path. Mixed into Gateway, which provides the collaborators used below."""

    services: Any
    deployments: Any
    limit_store: Any
    local_models: Any
    usage: Any
    config: Any

    in_flight: int = 0  # requests being served by this process (streams until they end)
    reserved_while_forwarding: int = 0  # requests sent upstream before their hold was committed
    joined_commits: int = 0  # of those, held and settled in one transaction (see _reserve_during)
    # Available credits after this process's last write for each key (see _payer).
    _last_available: dict[str, int]
    # The most that this process's requests forwarded without a committed hold may cost, per key:
    # the next request may go ahead of its hold only if the rest still covers it.
    _unheld: dict[str, int]
    _unheld_waiters: dict[str, asyncio.Event]

    async def limiter(self) -> Any: ...
    async def upstreams(self) -> Any: ...
    def authenticate(self, header: str | None) -> Any: ...

    # ================================================================== the two paths
    async def openai_request(self, request: Request, endpoint: str) -> Response:
        self.in_flight += 1
        streaming = False
        call: Call | None = None
        try:
            principal = self.authenticate(request.headers.get("authorization"))
            call = await self.estimate(principal, request, endpoint)
            await self.limit(call)
            if call.stream:
                overlap = self._may_overlap(call)
                if not overlap:
                    await self.reserve(call)
                response = await self.forward_stream(call, reserve_meanwhile=overlap)
                streaming = True  # in flight until the stream ends (see forward_stream)
                return response
            if self._may_overlap(call):
                answer = await self.reserve_while_forwarding(call)
            else:
                await self.reserve(call)
                answer = await self.forward(call)
            relayed = await self.relayable(call, answer)
            charge = await self.settle(call, usage_meters(answer, call))
            return json_answer(relayed, charge)
        finally:
            if call is not None:
                self._held(call)  # whatever happened, it no longer waits for a hold
            if not streaming:
                self.in_flight -= 1

    async def predict_request(self, request: Request, name: str) -> Response:
        self.in_flight += 1
        try:
            principal = self.authenticate(request.headers.get("authorization"))
            call = await self.estimate(principal, request, "predict", deployment_name=name)
            await self.limit(call)
            await self.reserve(call)
            prediction = await self.forward_local(call)
            charge = await self.settle(call, {"requests": 1, "items": prediction.items,
                                              "compute_ms": prediction.compute_ms})
            answer = {"object": "prediction", "model": call.deployment.name, "outputs": prediction.outputs,
                      "usage": {"items": prediction.items, "compute_ms": prediction.compute_ms,
                                "compute_us": prediction.compute_us}}
            return json_answer(orjson.dumps(answer), charge)
        finally:
            self.in_flight -= 1

    # ================================================================== steps
    async def estimate(self, principal: Any, request: Request, endpoint: str, *,
                       deployment_name: str | None = None) -> Call:
        """Read the body, find the deployment, and price the most the request can use."""
        raw = await request.body()
        if len(raw) > self.config.body_bytes_max:
            raise PayloadTooLarge(f"the request body is larger than {self.config.body_bytes_max} bytes")
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise InvalidInput("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidInput("the request body must be a JSON object")
        name = deployment_name or body.get("model")
        if not isinstance(name, str) or not name:
            raise InvalidInput("model is required", param="model")
        deployment = await self.deployments.find(name)
        if deployment is None or not deployment.allows(principal.org_id):
            raise ModelNotFound(f"The model `{name}` does not exist or you do not have access to it.",
                                param="model")
        call = Call(principal, deployment, endpoint, body, len(raw), 0, 0,
                    parse_tags(request.headers.get("x-creditgate-tags"), body), time.perf_counter_ns())
        if endpoint == "predict":
            if deployment.backend != "onnx":
                raise InvalidInput(f"{name} is not a local model; use /v1/chat/completions", param="model")
            items = _items(body.get("inputs"))
            call.max_cost = deployment.prices.cost(
                {"requests": 1, "items": items, "compute_ms": deployment.timeout_ms})
            return call
        if deployment.backend != "openai":
            raise InvalidInput(f"{name} is a local model; use /v1/predict/{name}", param="model")
        if body.get("stream") is not None and not isinstance(body["stream"], bool):
            # An upstream might read 1 or "true" as true and answer a stream to a call expecting JSON.
            raise InvalidInput("stream must be true or false", param="stream")
        bound: MaxUsage = max_usage(body, len(raw), endpoint=endpoint,
                                    max_tokens_default=deployment.max_tokens_default)
        if bound.cap_applied:
            # Enforce the default cap upstream, so that the hold really is an upper bound.
            body["max_tokens"] = deployment.max_tokens_default
        call.limits_tokens = bound.tokens
        call.max_cost = deployment.prices.cost(bound.meters())
        call.stream = endpoint != "embeddings" and body.get("stream") is True
        if call.stream:
            options = body.get("stream_options")
            call.client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
        call.payload = upstream_payload(call)
        return call

    async def limit(self, call: Call) -> None:
        principal = call.principal
        limits = await self.limit_store.limits_for(principal.key_id, principal.org_id)
        if not limits.unlimited:
            limiter = await self.limiter()
            call.ticket = await limiter.admit(principal.key_id, limits, call.limits_tokens)

    async def reserve(self, call: Call, *, unless_answered: asyncio.Future[Any] | None = None) -> None:
        """Commit the request's hold. With ``unless_answered`` (the upstream call, started), the
        hold is left to the settlement if that call is done when the commit starts (call.joined).

        Committed on the event loop (SQLite), the commit starts at the end of the loop's turn, by
        which time a fast upstream has often answered. The writer thread (PostgreSQL) would take
        the hold at once, before any answer could be in, so there the hold first waits up to
        ``join_wait_s`` for the answer: one transaction instead of two for a fast upstream, and
        for a slow one a hold committed a few milliseconds into a call that takes longer anyway.
        """
        if call.max_cost == 0:
            return  # a free deployment: nothing to hold
        if not call.unheld and _payer(call) in self._unheld:
            # This key's requests that went upstream ahead of their holds came first: let their
            # holds be committed before this one, so that this hold cannot take their credits
            # and leave their upstream work unpaid (they would answer 402).
            try:
                await self._holds_committed(_payer(call))
            except BaseException:  # cancelled while waiting: the slot must not outlive the request
                await self._release_slot(call, 0)
                raise
        if unless_answered is not None and not self._commits_on_loop() and self.config.join_wait_s > 0:
            if not unless_answered.done():
                await asyncio.wait({unless_answered}, timeout=self.config.join_wait_s)
            if unless_answered.done():
                call.joined = True  # still unheld: counted in _unheld until the joined commit
                return
        result = await self._commit_hold(call, self._reserve_operation(call),
                                         defer_if=unless_answered.done if unless_answered is not None else None)
        if result is DEFERRED:
            call.joined = True  # still unheld: counted in _unheld until the joined commit
            return
        self._reserved(call, result)

    async def _commit_hold(self, call: Call, operation: Any, *,
                           defer_if: Any = None) -> dict[str, Any]:
        """Commit an operation that creates the request's hold; a refusal forgets the key's
        balance and gives back the rate-limit slot before it leaves."""
        try:
            return await self.services.ledger.execute_async(  # type: ignore[no-any-return]
                operation, inline=self._inline_ledger(), defer_if=defer_if)
        except BaseException:
            self._refused(call)
            await self._release_slot(call, 0)
            raise

    def _reserve_operation(self, call: Call) -> ReserveForRequest:
        deployment = call.deployment
        return ReserveForRequest(
            call.principal.org_id, None, amount=min(call.max_cost, MICROS_MAX), scope=deployment.scope,
            ttl_us=hold_ttl_s(deployment.timeout_ms, stream=call.stream) * 1_000_000, subjects=(deployment.name,),
            model=deployment.name, budget_subjects=budget_subjects(call.principal))

    def _reserved(self, call: Call, result: dict[str, Any]) -> None:
        self._held(call)
        call.hold_id = result["hold_id"]
        call.available = result["available"]
        self._remember_available(_payer(call), result.get("spendable", result["available"]))

    def _refused(self, call: Call) -> None:
        # Whatever this process knew of the organization's credits is wrong or unknown now: its
        # next request reserves before it forwards.
        self._held(call)
        self._last_available.pop(_payer(call), None)

    async def forward(self, call: Call) -> dict[str, Any]:
        try:
            return await self._post(call)
        except BaseException as error:
            await self.abandon(call, error)
            raise

    async def reserve_while_forwarding(self, call: Call) -> dict[str, Any]:
        """Reserve and forward at once: the hold is committed while the upstream works.

        The answer reaches the client only after the hold is committed, so this keeps every
        guarantee of reserve-then-forward: if the hold is refused (the credits went elsewhere
        meanwhile) the upstream request is cancelled and the client gets the 402; nothing was
        delivered, so nothing is charged. Used only when this process's last reserve for the same
        key left enough credits for the request (see _may_overlap), so a key that is out of
        credits or budget does not get its requests sent upstream at all.
        """
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        upstream = asyncio.ensure_future(self._post(call, sent=sent))
        await self._reserve_during(call, upstream, sent)
        try:
            return await upstream
        except BaseException as error:
            await self.abandon(call, error)
            raise

    async def _reserve_during(self, call: Call, upstream: asyncio.Future[Any],
                              sent: asyncio.Future[None]) -> None:
        """Commit the hold while ``upstream`` (started) works; cancel it if the hold is refused."""
        self.reserved_while_forwarding += 1
        upstream.add_done_callback(lambda _: _resolve(sent))
        try:
            await sent  # reserve once the request is on the wire, so that both run at once
            if not upstream.done() or isinstance(upstream.exception(), (type(None), StopAsyncIteration)):
                # A plain answer that is in by the time the hold's commit starts (a fast upstream
                # at a low rate: it runs while this thread writes to it) needs no hold of its
                # own: the hold is committed with the settlement, one transaction, not two.
                await self.reserve(call, unless_answered=None if call.stream else upstream)
        except BaseException:
            upstream.cancel()
            with contextlib.suppress(BaseException):
                await upstream
            await self._release_slot(call, 0)  # (reserve gives it back itself when it fails)
            raise

    async def _post(self, call: Call, *, sent: asyncio.Future[None] | None = None) -> dict[str, Any]:
        upstreams = await self.upstreams()
        if sent is not None and upstreams.busy(call.deployment):
            _resolve(sent)  # queued for a slot: commit the hold now, not after the wait (see forward_stream)
        turn = await upstreams.wait_turn(call.deployment)
        try:
            with upstream_timer(call.deployment.name):
                return await upstreams.post_json(call.deployment, UPSTREAM_PATHS[call.endpoint],  # type: ignore[no-any-return]
                                                 call.payload, sent=sent)
        finally:
            turn.release()

    async def relayable(self, call: Call, answer: dict[str, Any]) -> bytes:
        """The upstream's answer as the client will get it, made before anything is charged: an
        answer that cannot be relayed is the upstream's failure (nothing charged but a per-request
        fee, the hold voided), not a charge followed by the gateway's 500."""
        try:
            return relayable_answer(answer)
        except UpstreamFailure as failure:
            await self.abandon(call, failure)
            raise

    async def forward_local(self, call: Call) -> Any:
        try:
            return await self.local_models.predict(call.deployment, call.body.get("inputs"))
        except BaseException as error:
            await self.abandon(call, error)
            raise

    async def forward_stream(self, call: Call, *, reserve_meanwhile: bool = False) -> Response:
        """Open the upstream stream; an error before its first line is an ordinary error answer.

        With ``reserve_meanwhile`` the hold is committed while the upstream prepares its first
        line (see reserve_while_forwarding); nothing reaches the client before the hold stands.
        """
        upstreams = await self.upstreams()
        if reserve_meanwhile and upstreams.busy(call.deployment):
            # Queued for a slot: commit the hold before the wait, not after it. A request that is
            # counted as upstream without its hold makes its key's next hold wait for it, and a
            # queue may take QUEUE_WAIT_MAX_S.
            await self.reserve(call)
            reserve_meanwhile = False
        try:
            # The deployment's concurrency slot is held for the stream's whole life (see finish).
            turn = await upstreams.wait_turn(call.deployment)
        except BaseException as error:
            await self.abandon(call, error)
            raise
        sent: asyncio.Future[None] | None = (asyncio.get_running_loop().create_future()
                                             if reserve_meanwhile else None)
        lines = upstreams.stream_lines(call.deployment, UPSTREAM_PATHS[call.endpoint], call.payload,
                                       sent=sent)
        meter = StreamMeter(call.client_wants_usage)

        async def close_upstream() -> None:
            try:
                await lines.aclose()
            finally:
                turn.release()

        opening: Any = lines.__anext__()
        if sent is not None:
            opening = asyncio.ensure_future(opening)
            try:
                await self._reserve_during(call, opening, sent)
            except BaseException:
                await close_upstream()
                raise
        try:
            first = await opening
        except StopAsyncIteration:
            first = DONE_LINE
        except BaseException as error:
            await close_upstream()
            await self.abandon(call, error)
            raise

        async def events() -> Any:
            line: bytes | None = first
            broken_by: str | None = None
            try:
                while line is not None:
                    out = meter.feed(line)
                    if out is not None:
                        yield out
                    if meter.done or meter.failed:
                        break
                    line = await anext(lines, None)
            except UpstreamFailure as failure:
                meter.failed = failure.to_dict()
                broken_by = failure.code
                yield b"data: " + orjson.dumps(meter.failed) + b"\n\n"
            await lines.aclose()
            if not meter.done and broken_by is None:
                broken_by = stream_error_code(meter.failed)
            charge = await self.settle(call, stream_meters(meter, call),
                                       status="ok" if meter.done else "partial", error=broken_by)
            if meter.done:
                yield (f": creditgate cost={format_amount(charge.cost)}"
                       + (f" balance={format_amount(charge.available)}" if charge.available is not None else "")
                       + "\n\n").encode()
                yield DONE_LINE + b"\n\n"

        async def finish() -> None:
            # Runs after every ending: a normal end has settled already; a disconnect has not.
            try:
                await close_upstream()
                if not call.finished:
                    await self.settle(call, stream_meters(meter, call), status="partial",
                                      error="client_disconnected")
            finally:
                self.in_flight -= 1

        headers = {"x-creditgate-reserved": format_amount(call.max_cost)}
        if call.available is not None:
            headers["x-creditgate-balance"] = format_amount(call.available)
        return MeteredStream(events(), finish, headers)

    async def settle(self, call: Call, meters: dict[str, int], *, status: str = "ok",
                     error: str | None = None) -> Charge:
        """Post the actual cost, release the rest of the hold, free the slot, record usage
        (with ``error``, the code of the failure that a charged request ended in)."""
        assert not call.finished
        call.finished = True
        # No charge can be larger than the largest amount (an upstream reporting absurd usage
        # against an expensive price list would otherwise overflow the records' 64-bit columns).
        cost = min(call.deployment.prices.cost(meters), MICROS_MAX) if meters else 0
        result: dict[str, Any] = {}
        # Whoever sees the hold settled can then also wait for its usage record (flush).
        self.usage.expect()
        tokens_used = meters.get("input_tokens", 0) + meters.get("output_tokens", 0)
        # Shielded: a client that disconnects while its charge is being committed must not cancel
        # the rest, or the charge would stand without its usage record (or its slot).
        with anyio.CancelScope(shield=True):
            # Even when the write fails, the request is over: its concurrency slot must not wait
            # for the limiter's own expiry. Taken now, so that a refusal does not give it back too.
            ticket, call.ticket = call.ticket, None
            releasing = await self._start_release(ticket, tokens_used)
            try:
                try:
                    if call.joined:
                        result = await self._reserve_and_settle(call, cost, meters, status, error)
                    elif call.hold_id is not None:
                        result = await self._close_hold(
                            call, cost, usage=self._usage_builder(call, meters, cost, status, error))
                    elif cost > 0:
                        result = await self._debit(call, cost)
                finally:
                    await releasing
            except BaseException:
                self.usage.unexpect()
                raise
            available = result.get("available", call.available)
            self._remember_available(_payer(call), result.get("spendable"))
            if call.usage_recorded:
                self.usage.unexpect()
                request_settled(self.services, call.principal.org_id, call.deployment.name, status, meters,
                                cost, call.started_ns)
            else:
                self._record(call, meters, cost, status, result, error, expected=True)
        return Charge(cost, available, meters)

    async def abandon(self, call: Call, error: BaseException) -> None:
        """Nothing was delivered: void the hold, charge nothing, record the failure.

        Except when the upstream failed and the deployment has a per-request fee (a price for
        its ``requests`` meter): every request that reached the upstream pays that fee, failed
        or not, and nothing more.
        """
        if call.finished:
            return
        if isinstance(error, UpstreamFailure) and error.reached and call.deployment.prices.price("requests"):
            try:
                await self.settle(call, {"requests": 1}, status="error", error=error.code)
            except CreditgateError:
                # A joined commit refused (the credits went elsewhere): nothing held or charged.
                log.warning("the per-request fee of a failed request to %s was not charged",
                            call.deployment.name)
            return
        call.finished = True
        with anyio.CancelScope(shield=True):
            if call.hold_id is not None:
                try:
                    await self._close_hold(call, 0)
                except CreditgateError:
                    log.exception("voiding hold %s failed; it expires by its ttl", call.hold_id)
            await self._release_slot(call, 0)
        # Every request leaves a record, a free failure too, with what ended it.
        self._record(call, {}, 0, "error", {}, failure_code(error))

    # ================================================================== helpers
    def _inline_ledger(self) -> bool:
        return self.config.ledger_commits_on_loop  # type: ignore[no-any-return]

    def _commits_on_loop(self) -> bool:
        """Whether this process's ledger commits run on the event loop (see reserve)."""
        return self.services.ledger.commits_on_loop(inline=self._inline_ledger())  # type: ignore[no-any-return]

    def _may_overlap(self, call: Call) -> bool:
        """Reserve during the forward only for a priced request of a key that this process
        last saw able to pay it, together with its other requests still waiting for a hold.
        A yes counts the request among those (until _held)."""
        if call.max_cost == 0 or not self.config.reserve_while_forwarding:
            return False
        payer = _payer(call)
        unheld = self._unheld.get(payer, 0)
        if self._last_available.get(payer, 0) - unheld < call.max_cost:
            return False
        self._unheld[payer] = unheld + call.max_cost
        call.unheld = True
        return True

    def _held(self, call: Call) -> None:
        """The request no longer waits for a hold (it has one, was refused, or is over)."""
        if not call.unheld:
            return
        call.unheld = False
        payer = _payer(call)
        left = self._unheld.get(payer, 0) - call.max_cost
        if left > 0:
            self._unheld[payer] = left
            return
        self._unheld.pop(payer, None)
        waiting = self._unheld_waiters.pop(payer, None)
        if waiting is not None:
            waiting.set()

    async def _holds_committed(self, payer: str) -> None:
        """Wait until none of ``payer``'s requests is upstream without its hold."""
        waiting = self._unheld_waiters.get(payer)
        if waiting is None:
            waiting = self._unheld_waiters[payer] = asyncio.Event()
        await waiting.wait()

    def _remember_available(self, payer: str, available: int | None) -> None:
        if available is None:
            return
        if len(self._last_available) >= LAST_AVAILABLE_PAYERS_MAX and payer not in self._last_available:
            self._last_available.clear()
        self._last_available[payer] = available

    async def _close_hold(self, call: Call, cost: int, *, usage: Any = None) -> dict[str, Any]:
        deployment = call.deployment
        operation = settle_operation(call.principal.org_id, call.hold_id or "", cost=cost,
                                     held=min(call.max_cost, MICROS_MAX), scope=deployment.scope,
                                     subjects=(deployment.name,), usage=usage,
                                     budget_subjects=budget_subjects(call.principal))
        try:
            result = await self.services.ledger.execute_async(operation, inline=self._inline_ledger())
            call.usage_recorded = usage is not None
            return result  # type: ignore[no-any-return]
        except HoldNotPending:
            # The hold outlived its ttl (a very long stream): charge what was used directly.
            log.warning("hold %s was no longer pending at settlement", call.hold_id)
            return await self._debit(call, cost) if cost else {}

    async def _reserve_and_settle(self, call: Call, cost: int, meters: dict[str, int],
                                  status: str, error: str | None = None) -> dict[str, Any]:
        """The joined commit: hold and settlement at once. Refused (402) with nothing written
        when the credits went elsewhere meanwhile; the answer is then not delivered."""
        result = await self._commit_hold(call, ReserveAndSettle(
            call.principal.org_id, None, reserve=self._reserve_operation(call), cost=cost,
            usage=self._usage_builder(call, meters, cost, status, error)))
        self.joined_commits += 1
        self._reserved(call, result)
        call.usage_recorded = True
        return result

    async def _debit(self, call: Call, cost: int) -> dict[str, Any]:
        ledger = self.services.ledger
        operation = ledger.debit_operation(call.principal.org_id, cost, scope=call.deployment.scope,
                                           subjects=(call.deployment.name,), ref=call.hold_id,
                                           budget_subjects=budget_subjects(call.principal),
                                           budgets_refuse=False)
        try:
            return await ledger.execute_async(operation)  # type: ignore[no-any-return]
        except InsufficientCredits:
            log.error("a late charge of %s for %s could not be collected", format_amount(cost),
                      call.principal.org_id)
            return {"uncollected": cost}

    async def _release_slot(self, call: Call, tokens_used: int) -> None:
        ticket, call.ticket = call.ticket, None
        with anyio.CancelScope(shield=True):
            await (await self._start_release(ticket, tokens_used))

    async def _start_release(self, ticket: Ticket | None, tokens_used: int) -> Awaitable[None]:
        """The release of a request's rate-limit slot, to be awaited. A limiter on another server
        (Redis) has it sent at once, so that its round trip overlaps the charge's commit instead of
        following it; the answer still leaves only after both, so a client's next request never
        finds this one's slot taken."""
        if ticket is None:
            return _done()
        limiter: RateLimiter = await self.limiter()
        release = limiter.release(ticket, tokens_used)
        return asyncio.ensure_future(release) if limiter.remote else release

    def _usage_builder(self, call: Call, meters: dict[str, int], cost: int, status: str,
                       error: str | None = None) -> Any:
        """The request's usage record as a function of its settlement's result (built in the
        ledger writer, inside the transaction that books the charge)."""
        return lambda result: self._usage_record(call, meters, cost, status, result, error)

    def _usage_record(self, call: Call, meters: dict[str, int], cost: int, status: str,
                      result: dict[str, Any], error: str | None = None) -> UsageRecord:
        principal = call.principal
        details = {key: result[key] for key in ("uncollected", "excess_debited") if result.get(key)}
        if error:
            details["error"] = error
        return UsageRecord(
            org_id=principal.org_id, key_id=principal.key_id, project_id=principal.project_id,
            deployment=call.deployment.id, model=call.deployment.name, meters=meters, tags=call.tags,
            latency_ms=(time.perf_counter_ns() - call.started_ns) // 1_000_000, credits=cost,
            at_us=self.services.clock.now_us(), status=status, details=details)

    def _record(self, call: Call, meters: dict[str, int], cost: int, status: str,
                result: dict[str, Any], error: str | None = None, *, expected: bool = False) -> None:
        self.usage.record(self._usage_record(call, meters, cost, status, result, error), expected=expected)
        request_settled(self.services, call.principal.org_id, call.deployment.name, status, meters, cost,
                        call.started_ns)


# ====================================================================== pure helpers
def stream_error_code(failed: dict[str, Any] | None) -> str:
    """Why a stream ended without ``[DONE]``: the code of the error event the upstream sent, or
    ``upstream_stream_ended`` when it just stopped."""
    error = failed.get("error") if failed else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if code else "upstream_stream_ended"


def failure_code(error: BaseException) -> str:
    """What ended a request that failed, as its usage record's ``error`` tag."""
    if isinstance(error, CreditgateError):
        return error.code
    if isinstance(error, asyncio.CancelledError):
        return "client_disconnected"
    return "internal_error"


def usage_meters(answer: dict[str, Any], call: Call) -> dict[str, int]:
    meters = reported_meters(answer.get("usage"), embeddings=call.endpoint == "embeddings")
    if meters is not None:
        return meters
    # No usage the gateway can read: fall back to the bound (never less than may have been used).
    if answer.get("usage") is not None:
        log.warning("unreadable usage from the upstream of %s, charged as the bound: %.200r",
                    call.deployment.name, answer.get("usage"))
    bound = max_usage(call.body, call.body_bytes, endpoint=call.endpoint,
                      max_tokens_default=call.deployment.max_tokens_default)
    return {**bound.meters(), "estimated": 1}


def reported_meters(usage: Any, *, embeddings: bool = False) -> dict[str, int] | None:
    """The meters of an upstream's ``usage``, or None when it cannot be read: token counts that
    are not whole numbers from 0 to USAGE_TOKENS_MAX, or missing (an embedding has no completion
    tokens). Unreadable usage is never read as zero: that would book no spend for delivered work."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if embeddings:
        if not prompt:
            prompt = _count(usage.get("total_tokens"))
        if "completion_tokens" not in usage:
            completion = 0
    if prompt is None or completion is None:
        return None
    return {"input_tokens": prompt, "output_tokens": completion, "requests": 1}


def stream_meters(meter: StreamMeter, call: Call) -> dict[str, int]:
    reported = reported_meters(meter.usage)
    if reported is not None:
        return reported
    if meter.usage is not None:
        log.warning("unreadable usage at the end of a stream from %s, charged as delivered: %.200r",
                    call.deployment.name, meter.usage)
    if meter.delivered_deltas == 0:
        return {}  # nothing reached the client and the upstream reported nothing: no charge
    return {"input_tokens": -(-_prompt_bytes(call.body) // TOKENS_PER_BYTE_GUESS),
            "output_tokens": meter.delivered_deltas, "requests": 1, "estimated": 1}


def _prompt_bytes(body: dict[str, Any]) -> int:
    prompt = body.get("messages") if "messages" in body else body.get("prompt")
    return len(orjson.dumps(prompt)) if prompt is not None else 0


def upstream_payload(call: Call) -> bytes:
    """The client's request as the upstream gets it: under the upstream's name for the model.
    Made before anything is held or counted, so that a body that cannot be forwarded is the
    client's 422, not the gateway's 500 after its hold (orjson reads 1,024 levels of nesting but
    writes only 255)."""
    try:
        return orjson.dumps({**call.body, "model": call.deployment.upstream_model or call.deployment.name})
    except TypeError:
        raise InvalidInput("the request body nests deeper than the 255 levels that can be forwarded") from None


def _payer(call: Call) -> str:
    """Whose last reserve decides whether the next one may overlap the forward: per key, so that
    a key whose budget is spent does not ride on another key's success in the same organization."""
    return call.principal.key_id or call.principal.org_id  # type: ignore[no-any-return]


async def _done() -> None:
    return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= USAGE_TOKENS_MAX:
        return value
    return None


def _items(inputs: Any) -> int:
    if isinstance(inputs, list):
        return max(1, len(inputs))
    if isinstance(inputs, dict) and inputs:
        return max(len(value) if isinstance(value, list) else 1 for value in inputs.values())
    raise InvalidInput("inputs must be a list of rows, or an object of input name to rows", param="inputs")


def budget_subjects(principal: Any) -> tuple[str, ...]:
    """The budgets a request counts against: its key's and its project's, when they have one."""
    return subjects_of(principal.key_id, principal.project_id)


def relayable_answer(answer: dict[str, Any]) -> bytes:
    """``answer`` encoded for the client, or the UpstreamFailure it is: an error under a 200
    status (no choices, no data), or an answer nested deeper than orjson writes (it reads 1,024
    levels, writes 255)."""
    error = answer.get("error")
    if error is not None and not answer.get("choices") and not answer.get("data"):
        raise UpstreamFailure(502, "the upstream answered 200 with an error",
                              body={"error": error} if isinstance(error, dict) else None)
    try:
        return orjson.dumps(answer)
    except TypeError:
        raise UpstreamFailure(502, "the upstream's answer nests deeper than the 255 levels that can be relayed",
                              code="upstream_bad_answer") from None


def json_answer(answer: bytes, charge: Charge) -> Response:
    headers = {"x-creditgate-cost": format_amount(charge.cost)}
    if charge.available is not None:
        headers["x-creditgate-balance"] = format_amount(charge.available)
    return Response(answer, media_type="application/json", headers=headers)


def require_inference(principal: Any) -> None:
    if principal.org_id is None:
        raise Forbidden("the gateway needs an organization key, not an admin key")
    if "inference" not in principal.scopes:
        raise Forbidden("this key lacks the 'inference' scope", param="scope")
