"""The FastAPI application factory. All state lives on ``app.state``; nothing at module level."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.types import Scope

from index.errors import IndexStoreError, StoreUnavailableError
from service.access.audit import AuditError, AuditLog
from service.access.clients import ClientAddressMiddleware
from service.access.keys import KeyRing
from service.access.lockout import Lockout
from service.access.refusals import RefusalThrottle
from service.access.retention import cutoff_for, sweep
from service.headers import SecurityHeadersMiddleware
from service.loader import Loader, close_runtime
from service.metrics import Metrics
from service.middleware import AccessLogMiddleware, BodyLimitMiddleware, MetricsMiddleware
from service.openapi import install_openapi
from service.orphans import sweep_loop
from service.routes import audit, footage, gallery, health, page, search
from service.routes.page import STATIC_DIR
from service.settings import Settings
from service.unavailable import store_unavailable
from service.validation_errors import validation_error

log = logging.getLogger(__name__)

DESCRIPTION = """\
Describe a person in plain words and get the matching gallery images, best first.

Every route but `/healthz`, `/readyz` and the page needs a key in the `X-API-Key` header: a
`reader` key searches and views images, a `writer` key also uploads and deletes, an `admin` key
also reads the audit trail (`/v1/audit`) and runs retention. Searches, image views, uploads and
deletes are recorded in the audit trail. `/readyz` turns 200 once the model and the index are
loaded and warmed.
"""

# Routes whose body carries images: they get the upload limit, every other the JSON limit.
UPLOAD_PATHS = frozenset({"/v1/gallery", "/v1/search/image"})


# TPS_FILE_MODE → the process umask. The service's own files (uploads, service/storage.py) and
# the index package's (index/, bundle/fsio.py: generations, index.json, the manifest a new store
# creates) all take 0o666/0o777 less the umask, so one umask set at start-up covers every file
# and folder the server creates; the audit trail and its exports are 0600 whatever it is.
UMASKS = {"owner": 0o077, "group": 0o027}


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    loader: Loader = app.state.loader
    settings: Settings = app.state.settings
    previous_umask = os.umask(UMASKS[settings.file_mode])
    try:
        async with _serving(app, loader, settings):
            yield
    finally:
        os.umask(previous_umask)


@contextlib.asynccontextmanager
async def _serving(app: FastAPI, loader: Loader, settings: Settings) -> AsyncIterator[None]:

    async def load() -> None:
        runtime = await loader.load()
        if runtime is None:
            return
        # Opened once the store is (its default place is the image folder): every audited
        # route needs the runtime, so none can run before the trail is open.
        if settings.audit:
            try:
                app.state.audit = await asyncio.to_thread(
                    AuditLog, settings.audit_path, settings.audit_sync, settings.audit_timeout_s
                )
            except (OSError, sqlite3.Error) as err:  # never serve unaudited, never hang unready
                await close_runtime(runtime)
                loader.fail(f"cannot open the audit trail {settings.audit_path}: {err}")
                return
        app.state.runtime = runtime
        loops = []
        if runtime.settings.index_refresh_s > 0:
            loops.append(_refresh_loop(app, runtime.settings.index_refresh_s))
        if settings.orphan_sweep_interval_s > 0:
            loops.append(sweep_loop(lambda: app.state.runtime, settings.orphan_sweep_interval_s))
        if settings.retention_days is not None or settings.audit_retention_days is not None:
            loops.append(_retention_loop(app, settings.retention_interval_s))
        await asyncio.gather(*loops)

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
        trail, app.state.audit = app.state.audit, None
        if trail is not None:
            await asyncio.to_thread(trail.close)


async def _retention_loop(app: FastAPI, every_s: float) -> None:
    """Sweep at start and every ``every_s``: gallery images past TPS_RETENTION_DAYS, audit
    entries past TPS_AUDIT_RETENTION_DAYS. A failed sweep is logged and tried again next time."""
    settings: Settings = app.state.settings
    while True:
        runtime = app.state.runtime
        if runtime is None:
            return
        trail: AuditLog | None = app.state.audit
        try:
            if settings.retention_days is not None:
                async with runtime.write_lock:
                    outcome = await asyncio.to_thread(
                        sweep,
                        runtime.store,
                        runtime.images,
                        cutoff_for(settings.retention_days),
                        trail=trail,
                    )
                if outcome.removed:
                    log.info("retention removed %d images", len(outcome.removed))
            if trail is not None and settings.audit_retention_days is not None:
                cutoff = cutoff_for(settings.audit_retention_days)
                await asyncio.to_thread(trail.sweep, cutoff, "retention")
        except Exception:
            log.exception("retention sweep failed (tried again in %g s)", every_s)
        await asyncio.sleep(every_s)


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
    metrics.labelled(
        "tps_exact_engine",
        "The engine answering unfiltered searches, per batch size, and why it was chosen "
        "(forced, detected, calibrated).",
        ("batch", "engine", "reason"),
        lambda: engine_labels(app.state.runtime),
    )


def engine_labels(runtime: object) -> list[tuple[str, str, str]]:
    """(batch, engine, reason) of the store's search engine report, [] where it has none."""
    try:
        found = runtime.store.stats().get("search_engine") if runtime is not None else None
    except Exception:  # a store that cannot answer now: no labels this scrape
        return []
    if not isinstance(found, dict):
        return []
    reason = str(found.get("reason", ""))
    return [(b.removeprefix("batch_"), str(e), reason) for b, e in found["engine"].items()]


def _method_not_allowed(routes: list[APIRoute]):
    """Starlette's 405 names only the methods of the first route whose path matched; HTTP wants
    every method the resource has (GET and DELETE share /v1/gallery/{image_id})."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        path = request.scope["path"]
        allowed = sorted({m for r in routes if r.path_regex.match(path) for m in r.methods or ()})
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=headers)

    return handler


async def _audit_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("audit trail error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})


async def _index_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StoreUnavailableError):
        return store_unavailable(request, exc)
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
        # /docs is the package's own page (service/routes/page.py): FastAPI's pages load
        # Swagger UI and ReDoc from a CDN.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.loader = Loader(settings, metrics)
    app.state.runtime = None
    app.state.keys = KeyRing(settings.keys_file)  # re-read on change: revocation needs no restart
    app.state.audit = None  # opened when the app starts (service/access/audit.py)
    app.state.decode_slots = asyncio.Semaphore(settings.max_concurrent_decodes)  # search photos
    app.state.refusals = RefusalThrottle(settings.audit_refusal_interval_s)
    app.state.lockout = Lockout(
        settings.auth_lockout_failures, settings.auth_lockout_window_s, settings.auth_lockout_s
    )

    routers = [module.router for module in (search, gallery, footage, audit, health, page)]
    for router in routers:
        app.include_router(router)
    api_routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    app.add_exception_handler(405, _method_not_allowed(api_routes))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(IndexStoreError, _index_error)
    app.add_exception_handler(AuditError, _audit_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    install_openapi(app, settings)

    def body_limit(scope: Scope) -> int:
        is_upload = scope.get("method") == "POST" and scope["path"].rstrip("/") in UPLOAD_PATHS
        if scope.get("method") == "POST" and scope["path"].rstrip("/") == footage.FOOTAGE_PATH:
            return settings.footage_max_bytes
        return settings.max_upload_bytes if is_upload else settings.max_json_bytes

    # Added last = outermost: metrics see every response, including 413s from the body limit.
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(AccessLogMiddleware)
    # Outermost: the client address is settled before anything logs or audits it.
    app.add_middleware(ClientAddressMiddleware, trusted_proxies=settings.trusted_proxies)
    _bind_gauges(app, metrics)
    return app
