"""What every request reads: the served data, the operational store, the settings; and the
optional API key check."""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader

from reward_assets.api.data import ServedData
from reward_assets.api.idempotency import IdempotencyKeys
from reward_assets.api.recommendations import Recommender
from reward_assets.ops.store import OpsStore
from reward_assets.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    data: ServedData
    store: OpsStore
    recommender: Recommender
    keys: IdempotencyKeys

    def as_of(self) -> dt.date:
        """Data 'today': AS_OF, else the day the recommendation sets were scored for."""
        return (
            self.settings.as_of or self.recommender.scored_as_of() or dt.datetime.now(dt.UTC).date()
        )


async def get_state(request: Request) -> ApiState:
    return request.app.state.api


State = Annotated[ApiState, Depends(get_state)]

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Needed when the server sets API_KEY (/health and the unsubscribe link "
    "never need it).",
)


async def known_query_only(request: Request) -> None:
    """422 for a query parameter the operation does not take: `?categroy=travel` must not
    quietly return the unfiltered list."""
    known = {param.alias for param in request.scope["route"].dependant.query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        expected = ", ".join(sorted(known)) or "none"
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter {name!r}; this operation takes: {expected}",
                    "input": request.query_params[name],
                }
                for name in unknown
            ]
        )


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    # The app's settings, which the server reads when it starts (the schema may be asked
    # for before, by a tool loading the app in-process).
    expected = (request.app.state.settings or Settings()).api_key
    if not expected:
        return
    # compare_digest: the time taken must not tell how much of a guess was right.
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong X-API-Key header",
            headers={"WWW-Authenticate": "X-API-Key"},
        )
