"""The FastAPI app: `uvicorn reward_assets.api.main:app` (or `make api`).

Settings are read when the server starts (the lifespan), not at import, so a test or a
deployment points the same app at other stores through the environment.
"""

import datetime as dt
import gc
import logging
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from reward_assets.api import email_routes, routes, schemas, unsubscribe
from reward_assets.api.data import NotPublished, ServedData
from reward_assets.api.idempotency import IdempotencyKeys
from reward_assets.api.recommendations import Recommender
from reward_assets.api.state import ApiState, State, known_query_only, require_api_key
from reward_assets.email.unsubscribe import signing_secret
from reward_assets.ops.store import open_ops_store
from reward_assets.settings import Settings
from reward_assets.warehouse.snapshots import SERVED_TABLES

DESCRIPTION = """
Recommended rewards, customer profiles, the reward catalogue, one-customer engagement and
the analytics report of the reward personalization platform.

On the embedded (DuckDB) setup the API reads the Parquet snapshots the assets publish after
each materialisation; on PostgreSQL it reads the warehouse. Until a table is published the
endpoints that need it answer 503. When the server sets `API_KEY`, every `/api` endpoint
except the unsubscribe link needs it in the `X-API-Key` header, and so do this schema
(`/openapi.json`) and its pages (`/docs`, `/redoc`).
"""
# The largest request body accepted (413 above it), form and JSON alike.
MAX_BODY_BYTES = 64 * 1024


class RedactTokens(logging.Filter):
    """Unsubscribe tokens stay out of the access log: each one unsubscribes a customer."""

    PATTERN = re.compile(r"(token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's AccessFormatter unpacks exactly these five args, so only the path
        # (the third) is rewritten; the record keeps its shape.
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and "token=" in str(args[2]):
            path = self.PATTERN.sub(r"\1[redacted]", str(args[2]))
            record.args = (*args[:2], path, *args[3:])
        return True


logging.getLogger("uvicorn.access").addFilter(RedactTokens())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Read when the server starts, not when the module is imported.
    settings = app.state.settings = app.state.settings or Settings()
    # Refuse to start, rather than honour links anyone can forge with the public default.
    signing_secret(settings)
    data = ServedData(settings.resolved_warehouse_url(), settings.data_dir)
    try:
        with open_ops_store(settings.resolved_ops_db_url()) as store:
            recommender = Recommender(data, store)
            recommender.warm_up()
            # What start-up loaded lives as long as the server: spare the full collections
            # the scan of it (over 100 ms with pandas and an index in memory) on requests.
            gc.freeze()
            keys = IdempotencyKeys(store, dt.timedelta(hours=settings.idempotency_ttl_hours))
            app.state.api = ApiState(settings, data, store, recommender, keys)
            yield
    finally:
        data.dispose()


async def not_published(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=503)


def _json_safe(value: Any) -> Any:
    """NaN and the infinities (`NaN`, `Infinity`, `1e999999` in a body all parse to one) are
    not JSON: echoed back in an error they go as the words that spell them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, whatever input it echoes."""
    return JSONResponse({"detail": _json_safe(jsonable_encoder(error.errors()))}, status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; `settings` default to the environment's when the server starts."""
    app = FastAPI(
        title="Reward personalization API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(known_query_only)],
        # 413 above this: every body the API takes is a few hundred bytes.
        max_body_size=MAX_BODY_BYTES,
        # Served below, behind the API key when there is one.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.add_exception_handler(NotPublished, not_published)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.include_router(routes.router)
    app.include_router(email_routes.router)
    app.include_router(email_routes.webhook_router)
    app.include_router(unsubscribe.router)
    docs = APIRouter(dependencies=[Depends(require_api_key)], include_in_schema=False)

    @docs.get("/openapi.json")
    def openapi_schema():
        return JSONResponse(app.openapi())

    @docs.get("/docs")
    def swagger_ui():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @docs.get("/redoc")
    def redoc():
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")

    app.include_router(docs)

    @app.get("/health", response_model=schemas.Health, tags=["health"])
    def health(state: State):
        """Which backend serves, and whether (and how long ago) each served table was
        published. Never needs the API key."""
        data = state.data
        published = data.versions(list(SERVED_TABLES))
        ages = data.snapshot_ages() if data.backend == "snapshots" else {}
        tables = {
            table: {"published": published[table] is not None, "age_seconds": ages.get(table)}
            for table in SERVED_TABLES
        }
        everything = all(t["published"] for t in tables.values())
        return {
            "status": "ok" if everything else "degraded",
            "backend": data.backend,
            "tables": tables,
        }

    def openapi() -> dict:
        # The largest `limit` is a setting, so the schema is finished when first asked for.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            operation = schema["paths"][routes.RECOMMENDED_REWARDS_PATH]["get"]
            for parameter in operation["parameters"]:
                if parameter["name"] == "limit":
                    parameter["schema"]["maximum"] = (
                        app.state.settings or Settings()
                    ).recommendations_k
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


app = create_app()
