"""The control-plane ASGI application of one replica."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from nodekeeper import __version__

from . import admin, public, reports
from .artifacts import ArtifactStore
from .doc_cache import DocumentCache
from .errors import ControlPlaneError
from .settings import ServerSettings
from .store import Store, prune_reports

log = logging.getLogger("nodekeeper.server")


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        # pydantic prefixes our own messages with "Value error, "; they read better bare
        parts.append(f"{where}: {str(err.get('msg')).removeprefix('Value error, ')}")
    return "invalid request: " + "; ".join(parts)


REPORT_RETENTION = 30 * 86_400.0
PRUNE_EVERY = 3600.0


async def _poll_changes(documents: DocumentCache, store: Store, settings: ServerSettings) -> None:
    """Notice changes other replicas made, and ramp ticks, without touching requests;
    now and then, drop reports past their retention."""
    last_prune = 0.0
    while True:
        await asyncio.sleep(settings.poll_interval)
        try:
            await anyio.to_thread.run_sync(documents.refresh)
            now = settings.clock()
            if now - last_prune > PRUNE_EVERY:
                last_prune = now
                await anyio.to_thread.run_sync(prune_reports, store, now - REPORT_RETENTION)
        except Exception:  # the database may be briefly away; keep serving the last doc
            log.exception("could not refresh the announcement; serving the previous one")


def create_app(settings: ServerSettings) -> FastAPI:
    store = Store(settings.db_url)
    store.init_schema()
    artifacts = ArtifactStore(
        settings.artifact_dir, settings.data_dir / "uploads", settings.max_artifact_size
    )
    artifacts.remove_stale_uploads()
    documents = DocumentCache(store, settings)
    documents.refresh(force=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        poller = asyncio.create_task(_poll_changes(documents, store, settings))
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            store.close()

    app = FastAPI(
        title="nodekeeper control plane",
        version=__version__,
        description="Announces versions and staged rollouts (Storj-compatible) and steers them.",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.artifacts = artifacts
    app.state.documents = documents

    @app.exception_handler(ControlPlaneError)
    async def _control_plane_error(_request: Request, exc: ControlPlaneError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _describe_validation(exc)}, status_code=422)

    app.include_router(public.router)
    app.include_router(admin.router)
    app.include_router(reports.router)
    app.mount("/artifacts", StaticFiles(directory=settings.artifact_dir), name="artifacts")
    return app
