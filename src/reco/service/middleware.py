"""The outermost layer of every request (plain ASGI: no per-request overhead beyond it).

* request id: ``X-Request-ID`` when the caller sends a sane one, else a new one;
  echoed on the answer and in every log line;
* connection balance: with several workers, a worker holding more active
  connections than the others closes one now and then (:mod:`reco.service.balance`);
* request body limit: 413 when ``Content-Length`` or the streamed size passes
  ``max_body_bytes``, before anything reads the body;
* the access log line and the latency / request metrics, labelled by route template;
* any exception no handler took: logged with its traceback, answered as a 500
  problem carrying the request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reco.service.balance import ConnectionBalance
from reco.service.errors import PROBLEM_JSON, Problem, problem_body
from reco.service.logs import log_request, redact
from reco.service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
UNMATCHED = "unmatched"


class ServiceMiddleware:
    """Request ids, body limit, access log, metrics and the last-resort 500."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServiceMetrics,
        max_body_bytes: int,
        balance: ConnectionBalance | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.balance = balance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        balance = self.balance
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), header]
                client = scope.get("client")
                if balance is not None and client and balance.should_close(tuple(client)):
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        try:
            if scope["method"] in _BODY_METHODS:
                receive = await self._limited_body(scope, receive)
            await self.app(scope, receive, send_with_id)
        except _TooLarge:
            await _send_problem(send_with_id, scope, request_id, _too_large(self.max_body_bytes))
            self.metrics.errors.labels("body-too-large").inc()
        except Exception:
            log.exception(
                "unexpected error answering %s %s",
                scope["method"],
                redact(scope["path"][:300]),
                extra={"fields": {"request_id": request_id}},
            )
            self.metrics.errors.labels("internal").inc()
            if response_started:
                raise
            await _send_problem(
                send_with_id,
                scope,
                request_id,
                Problem(
                    500,
                    "the service failed unexpectedly; this is a bug, not your request. "
                    f"Report it with the request id {request_id}.",
                    kind="internal",
                ),
            )
        finally:
            route = scope.get("route")
            template = getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED
            seconds = time.perf_counter() - started
            method = scope["method"]
            self.metrics.request_seconds.labels(method, template).observe(seconds)
            self.metrics.requests.labels(method, template, str(status)).inc()
            log_request(
                method=method,
                route=template,
                path=scope["path"],
                status=status,
                milliseconds=seconds * 1000,
                request_id=request_id,
                key_id=state.get("key_id"),
            )

    async def _limited_body(self, scope: Scope, receive: Receive) -> Receive:
        """Read the whole body (at most ``max_body_bytes``) and replay it."""
        limit = self.max_body_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: hand the disconnect on to the app.
                return _replay([message], receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        return _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


class _TooLarge(Exception):
    """The request body passed the limit."""


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        f"the request body is larger than this service accepts ({limit:,} bytes); send "
        "smaller requests (e.g. split event batches)",
        kind="body-too-large",
    )


def _replay(messages: list[Message], then: Receive) -> Receive:
    """A receive that gives ``messages`` first, then waits on the real one (disconnect)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()

    return receive


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _SAFE_REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


async def _send_problem(send: Send, scope: Scope, request_id: str, problem: Problem) -> None:
    body = problem_body(problem, scope["path"], request_id)
    headers: list[Any] = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
