"""The reply while the gallery store cannot serve (a Milvus server down, restarting, loading):
503 with ``Retry-After``, and a message that names no address or collection. Clients retry;
a load balancer's readiness probe (/readyz) has already turned false."""

from __future__ import annotations

import logging
import math

from fastapi import Request
from fastapi.responses import JSONResponse

from index.errors import StoreUnavailableError

log = logging.getLogger("service.app")

MESSAGE = "the gallery store is unavailable; retry shortly"


def retry_after(exc: StoreUnavailableError) -> str:
    """Whole seconds, at least 1 (the header takes no fractions)."""
    return str(max(1, math.ceil(exc.retry_after_s)))


def store_unavailable(request: Request, exc: StoreUnavailableError) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": MESSAGE}, status_code=503, headers={"Retry-After": retry_after(exc)}
    )
