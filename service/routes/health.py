"""Liveness, readiness, metrics and a description of what is being served.

Routes that read the index (its stats, also behind the metrics' gauges) are plain ``def``: FastAPI
runs them in its threadpool, so a slow read never holds up the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse

from service.deps import RuntimeDep
from service.metrics import CONTENT_TYPE
from service.schemas import ErrorResponse, Health, Readiness, ServiceInfo
from service.security import require_read_key

router = APIRouter(tags=["health"])

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE  # the Prometheus text format, version 0.0.4


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Model and index are loaded and warmed",
    responses={503: {"model": Readiness, "description": "Still loading, or loading failed."}},
)
async def readyz(request: Request) -> JSONResponse:
    loader = request.app.state.loader
    ready = request.app.state.runtime is not None
    body = Readiness(status=loader.state, detail=None if ready else loader.describe())
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(), status_code=code)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {}}}},
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
    stats = runtime.index.stats()
    return ServiceInfo(
        model=runtime.fingerprint,
        embed_dim=runtime.bundle.dim,
        context_length=runtime.bundle.meta.context_length,
        index={k: stats.get(k) for k in ("count", "kind", "version", "generation", "gpu")},
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
