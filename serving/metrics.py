"""Prometheus metrics and the two pure-ASGI middlewares (request metrics, body-size limit).

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (tests build many apps). With
several uvicorn workers each process counts its own requests; ``/metrics`` shows the worker that
answered it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

disable_created_metrics()  # no *_created series: they double the output and nobody graphs them

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    """Request counts by route and status, a latency histogram, errors, recommendations, reloads."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "invnet_http_requests",
            "HTTP requests by route template, method and status",
            ("route", "method", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "invnet_http_request_duration_seconds",
            "Time from request start to the last response byte",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "invnet_http_errors",
            "Responses with status >= 400 by route and status class",
            ("route", "kind"),
            registry=r,
        )
        self.recommendations = Counter(
            "invnet_recommendations", "Network states answered (a batch counts each state)", registry=r
        )
        self.reloads = Counter("invnet_policy_reloads", "Policy reloads by outcome", ("outcome",), registry=r)
        self.policy_info = Gauge(
            "invnet_policy_info", "The loaded policy (value 1)", ("name", "version", "scenario"), registry=r
        )

    def set_policy(self, name: str, version: str, scenario: str) -> None:
        self.policy_info.clear()
        self.policy_info.labels(name, version, scenario).set(1)


def _route_of(scope: Scope, known: frozenset[str]) -> str:
    """The matched route's template; for requests refused before routing (413) the path when it is a
    known route, else ``unmatched`` (raw unknown paths would make unbounded label values)."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    raw = scope.get("path", "")
    return raw if raw in known else "unmatched"


class MetricsMiddleware:
    """Counts every HTTP request by its route template (never the raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, known_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            m, route, method = self.metrics, _route_of(scope, self.known_paths), scope.get("method", "")
            m.requests.labels(route, method, str(status)).inc()
            m.latency.labels(route, method).observe(time.perf_counter() - start)
            if status >= 400:
                m.errors.labels(route, "5xx" if status >= 500 else "4xx").inc()


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (FastAPI re-raises HTTPException)."""

    def __init__(self, detail: Any) -> None:
        super().__init__(status_code=413, detail=detail)


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413: by Content-Length before reading, and while
    streaming for chunked bodies (the request is then never handed to a route)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> dict[str, Any]:
        return {
            "detail": [
                {
                    "loc": ["body"],
                    "msg": f"request body too large: the limit is {self.max_bytes} bytes (setting max_body_bytes)",
                    "type": "body_too_large",
                }
            ]
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    bad = {"loc": ["header", "content-length"], "msg": "not an integer", "type": "value_error"}
                    await _send_json(send, 400, {"detail": [bad]})
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, self._detail())
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self._detail()["detail"])
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:  # only when raised outside a route (routes answer it as a 413 themselves)
            if not started:
                await _send_json(send, 413, self._detail())
