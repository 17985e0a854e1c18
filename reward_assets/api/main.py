"""The FastAPI app: `uvicorn reward_assets.api.main:app` (or `make api`).

Settings are read when the server starts (the lifespan), not at import, so a test or a
deployment points the same app at other stores through the environment.
"""

import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from reward_assets.api import routes, schemas, unsubscribe
from reward_assets.api.data import NotPublished, ServedData
from reward_assets.api.idempotency import IdempotencyKeys
from reward_assets.api.recommendations import Recommender
from reward_assets.api.state import ApiState, State, known_query_only
from reward_assets.ops.store import open_ops_store
from reward_assets.settings import Settings
from reward_assets.warehouse.snapshots import SERVED_TABLES

DESCRIPTION = """
Recommended rewards, customer profiles, the reward catalogue, one-customer engagement and
the analytics report of the reward personalization platform.

On the embedded (DuckDB) setup the API reads the Parquet snapshots the assets publish after
each materialisation; on PostgreSQL it reads the warehouse. Until a table is published the
endpoints that need it answer 503. When the server sets `API_KEY`, every `/api` endpoint
except the unsubscribe link needs it in the `X-API-Key` header.
"""


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
    data = ServedData(settings.resolved_warehouse_url(), settings.data_dir)
    try:
        with open_ops_store(settings.resolved_ops_db_url()) as store:
            recommender = Recommender(data, store)
            recommender.warm_up()
            # What start-up loaded lives as long as the server: spare the full collections
            # the scan of it (over 100 ms with pandas and an index in memory) on requests.
            gc.freeze()
            app.state.api = ApiState(settings, data, store, recommender, IdempotencyKeys(store))
            yield
    finally:
        data.dispose()


async def not_published(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=503)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; `settings` default to the environment's when the server starts."""
    app = FastAPI(
        title="Reward personalization API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(known_query_only)],
    )
    app.state.settings = settings
    app.add_exception_handler(NotPublished, not_published)
    app.include_router(routes.router)
    app.include_router(unsubscribe.router)

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
