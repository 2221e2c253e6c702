"""ASGI middleware: request-body size limits, per-route request metrics, the access log."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics

LimitFor = Callable[[Scope], int]


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


def too_large_message(limit: int, size: int | None = None) -> str:
    sent = f" ({_megabytes(size)})" if size is not None else ""
    return f"the request body{sent} is over the limit of {_megabytes(limit)}"


class BodyLimitMiddleware:
    """413 before reading a byte when Content-Length is over the limit, and again while
    streaming (chunked bodies, or a client that sends more than it announced)."""

    def __init__(self, app: ASGIApp, limit_for: LimitFor, metrics: Metrics) -> None:
        self.app = app
        self.limit_for = limit_for
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self.metrics.rejected.labels(reason="body_too_large").inc()
            response = JSONResponse(
                {"detail": too_large_message(limit, int(declared))},
                status_code=413,
                headers={"Connection": "close"},  # the unread body must not be parsed as a request
            )
            await response(scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request" and not response_started:
                received += len(message.get("body", b""))
                if received > limit:
                    self.metrics.rejected.labels(reason="body_too_large").inc()
                    raise HTTPException(413, too_large_message(limit))
            return message

        async def watch_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, watch_send)


class StatusWatch:
    """A ``send`` that remembers the response status (500 until one starts: the app raised)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


class MetricsMiddleware:
    """Latency histogram and request counter per route template (never per raw path, which
    would give one series per image id)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        watch = StatusWatch(send)
        try:
            await self.app(scope, receive, watch)
        finally:
            status = watch.status
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            elapsed = time.perf_counter() - started
            self.metrics.latency.labels(method=method, route=name).observe(elapsed)
            self.metrics.requests.labels(method=method, route=name, status=str(status)).inc()


access_log = logging.getLogger("service.access")

# What a request may put into a log line: control characters (C0, DEL, C1), Unicode line and
# paragraph separators, and the quote and backslash of the line's own format. The path is
# logged decoded, so "%0A" in a URL would otherwise end the line and start a forged one.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029"\\]')
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(text: str) -> str:
    """``text`` with every character that could end or fake a log line escaped."""
    return _UNSAFE.sub(_escape, text)


class AccessLogMiddleware:
    """One line per request with the caller's key name (uvicorn's own access log cannot know
    it): ``client "METHOD path HTTP/1.1" status key=NAME ms``. The query string is left out, so no
    search text or key ever reaches the log; what the request chose (path, method, version) is
    escaped by :func:`printable`, so one request is always one line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        watch = StatusWatch(send)
        try:
            await self.app(scope, receive, watch)
        finally:
            status = watch.status
            principal = scope.get("state", {}).get("principal")
            client = scope.get("client") or ("-", 0)
            access_log.info(
                '%s "%s %s HTTP/%s" %d key=%s %.1fms',
                printable(str(client[0])),
                printable(scope.get("method", "")),
                printable(scope.get("path", "")),
                printable(scope.get("http_version", "1.1")),
                status,
                principal.name if principal is not None else "-",
                (time.perf_counter() - started) * 1000.0,
            )
