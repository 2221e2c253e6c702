"""The FastAPI application factory. All state lives on ``app.state``; nothing at module level."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.types import Scope

from index.errors import IndexStoreError
from service.loader import Loader, close_runtime
from service.metrics import Metrics
from service.middleware import BodyLimitMiddleware, MetricsMiddleware
from service.openapi import install_openapi
from service.routes import gallery, health, page, search
from service.routes.page import STATIC_DIR
from service.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Describe a person in plain words and get the matching gallery images, best first.

Reads (search, gallery images) are open unless `TPS_READ_REQUIRES_KEY` is set; writes (upload,
delete) need the `X-API-Key` header. `/readyz` turns 200 once the model and the index are
loaded and warmed.
"""

# Routes whose body carries images: they get the upload limit, every other the JSON limit.
UPLOAD_PATHS = frozenset({"/v1/gallery", "/v1/search/image"})


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    loader: Loader = app.state.loader

    async def load() -> None:
        runtime = await loader.load()
        app.state.runtime = runtime
        if runtime is not None and runtime.settings.index_refresh_s > 0:
            await _refresh_loop(app, runtime.settings.index_refresh_s)

    task = asyncio.create_task(load(), name="load-runtime")
    try:
        yield
    finally:
        loader.state = "stopping"
        runtime, app.state.runtime = app.state.runtime, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if runtime is not None:
            await close_runtime(runtime)


async def _refresh_loop(app: FastAPI, every_s: float) -> None:
    """Pick up generations committed by other processes (a CLI adding to the same index folder).
    A Milvus store answers every search from the server, so its refresh has nothing to do."""
    while True:
        await asyncio.sleep(every_s)
        runtime = app.state.runtime
        if runtime is None:
            return
        try:
            if await asyncio.to_thread(runtime.store.refresh):
                count = await asyncio.to_thread(runtime.store.count)
                log.info("index refreshed: %d images", count)
        except IndexStoreError as err:
            log.warning("index refresh failed (still serving the last good state): %s", err)


def _bind_gauges(app: FastAPI, metrics: Metrics) -> None:
    def runtime_value(read) -> float:
        runtime = app.state.runtime
        try:
            return float(read(runtime)) if runtime is not None else 0.0
        except Exception:  # a store that cannot answer now (a Milvus server away): not a number
            return float("nan")

    metrics.gauge(
        "tps_ready",
        "1 once model and index are loaded and warmed.",
        lambda: 1.0 if app.state.runtime is not None else 0.0,
    )
    metrics.gauge(
        "tps_index_images",
        "Images in the gallery store.",
        lambda: runtime_value(lambda r: r.store.count()),
    )
    metrics.gauge(
        "tps_query_queue_depth",
        "Queries waiting for or inside the encoder and index.",
        lambda: runtime_value(lambda r: r.searcher.depth),
    )


def _method_not_allowed(routes: list[APIRoute]):
    """Starlette's 405 names only the methods of the first route whose path matched; HTTP wants
    every method the resource has (GET and DELETE share /v1/gallery/{image_id})."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        path = request.scope["path"]
        allowed = sorted({m for r in routes if r.path_regex.match(path) for m in r.methods or ()})
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=headers)

    return handler


async def _index_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("index error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": f"index error: {exc}"}, status_code=500)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model and index load in the background once it starts serving."""
    settings = settings or Settings()  # type: ignore[call-arg]  # fields come from TPS_* env
    metrics = Metrics(CollectorRegistry())  # this app's own, never prometheus_client's global
    app = FastAPI(
        title="Text-to-person search",
        version="1.0",
        description=DESCRIPTION,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.loader = Loader(settings, metrics)
    app.state.runtime = None

    routers = [module.router for module in (search, gallery, health, page)]
    for router in routers:
        app.include_router(router)
    api_routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    app.add_exception_handler(405, _method_not_allowed(api_routes))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(IndexStoreError, _index_error)
    install_openapi(app, settings)

    def body_limit(scope: Scope) -> int:
        is_upload = scope.get("method") == "POST" and scope["path"].rstrip("/") in UPLOAD_PATHS
        return settings.max_upload_bytes if is_upload else settings.max_json_bytes

    # Added last = outermost: metrics see every response, including 413s from the body limit.
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _bind_gauges(app, metrics)
    return app
