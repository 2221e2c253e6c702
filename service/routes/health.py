"""Liveness, readiness, metrics and a description of what is being served.

Routes that read the store (its stats, also behind the metrics' gauges) are plain ``def``: FastAPI
runs them in its threadpool, so a slow read never holds up the event loop. Readiness also runs a
one-row search on the store (in a worker thread, with a deadline): what searches need, where a
count would answer even from a Milvus collection that is not loaded. A replica whose store cannot
search says 503, so a load balancer stops sending it traffic, and 200 again once it can.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse

from index.gallery_store import GalleryStore
from service.access.security import require_metrics_key, require_read_key
from service.deps import RuntimeDep
from service.metrics import CONTENT_TYPE
from service.schemas import ErrorResponse, Health, Readiness, ServiceInfo

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)
UNAVAILABLE = "the gallery store cannot search now"

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE  # the Prometheus text format, version 0.0.4
STORE_CHECK_S = 3.0  # a readiness probe's answer comes well within the probe's own timeout


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Model and index are loaded and warmed",
    responses={
        503: {
            "model": Readiness,
            "description": "Still loading, loading failed, or the Milvus server does not answer.",
        }
    },
)
async def readyz(request: Request) -> JSONResponse:
    loader = request.app.state.loader
    runtime = request.app.state.runtime
    if runtime is None:
        body = Readiness(status=loader.state, detail=loader.describe())
        return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    try:
        await asyncio.wait_for(asyncio.to_thread(probe, runtime.store), STORE_CHECK_S)
    except Exception as err:  # a timeout, StoreUnavailableError, or a client's own error
        log.warning("not ready: the gallery store cannot search: %r", err)
        body = Readiness(status="unavailable", detail=UNAVAILABLE)  # no address in the reply
        return JSONResponse(
            body.model_dump(),
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    return JSONResponse(Readiness(status=loader.state).model_dump())


def probe(store: GalleryStore) -> None:
    """One search for one row: works only when the store can serve searches (blocking)."""
    query = np.zeros((1, store.dim), dtype=np.float32)
    query[0, 0] = 1.0
    store.search(query, 1)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {}}}},
    dependencies=[Depends(require_metrics_key)],
)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)


@router.get(
    "/v1/info",
    response_model=ServiceInfo,
    summary="The model and index being served, and the request limits",
    responses={503: {"model": ErrorResponse, "description": "Model and index are still loading."}},
    dependencies=[Depends(require_read_key)],
)
def info(runtime: RuntimeDep) -> ServiceInfo:
    s = runtime.settings
    stats = runtime.store.stats()
    return ServiceInfo(
        model=runtime.fingerprint,
        embed_dim=runtime.bundle.dim,
        context_length=runtime.bundle.meta.context_length,
        index={k: stats.get(k) for k in ("count", "kind", "store", "version", "generation", "gpu")},
        device=str(runtime.bundle.device),
        batching=s.batching,
        writes_enabled=s.writes_enabled,
        read_requires_key=s.read_requires_key,
        max_top_k=s.max_top_k,
        max_query_chars=s.max_query_chars,
        max_batch_queries=s.max_batch_queries,
        max_upload_bytes=s.max_upload_bytes,
        max_files=s.max_files,
    )
