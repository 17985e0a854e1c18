"""The /api endpoints behind the optional API key: customers, rewards, engagement,
analytics. Every query binds its values as parameters."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from reward_assets.analytics.report import MAX_RANGE_DAYS, NotMaterialized, range_report
from reward_assets.api import schemas
from reward_assets.api.data import as_date
from reward_assets.api.idempotency import KeyReused, StillRunning, fingerprint
from reward_assets.api.recommendations import CUSTOMERS, REWARDS, UnknownCustomer
from reward_assets.api.state import State, require_api_key
from reward_assets.email.suppression import suppressed
from reward_assets.engagement import engage
from reward_assets.ingest.contract import TIER_RANKS
from reward_assets.privacy import mask_email

# Ids are short printable strings (the stores keep up to 64 characters).
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
CustomerId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
RewardId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
# Bounds keep every number inside a 64-bit integer on either database.
MAX_NUMBER = 10**12

ERROR = {"model": schemas.Error}
NOT_FOUND = {404: {**ERROR, "description": "Unknown id."}}
UNAVAILABLE = {
    503: {
        **ERROR,
        "description": "A table the answer needs is not published yet: run the pipeline "
        "(`make run`) and retry.",
    }
}

router = APIRouter(
    prefix="/api",
    dependencies=[Depends(require_api_key)],
    responses={401: {**ERROR, "description": "API_KEY is set and X-API-Key is missing or wrong."}},
)

RECOMMENDED_REWARDS_PATH = "/api/customers/{customer_id}/recommended_rewards"


def invalid(location: str, name: str, message: str, value: Any) -> RequestValidationError:
    """A 422 shaped like FastAPI's own, for rules the schema cannot express."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (location, name), "msg": message, "input": value}]
    )


def _value(value: Any) -> Any:
    """A database value as plain JSON-able Python (NaN, NaT and pandas NA become None)."""
    if value is None or (not isinstance(value, list | tuple) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _first(frame: pd.DataFrame) -> dict[str, Any] | None:
    if frame.empty:
        return None
    return {column: _value(value) for column, value in frame.iloc[0].items()}


def _datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    return pd.Timestamp(value).to_pydatetime()


@router.get(
    "/customers/{customer_id}/recommended_rewards",
    response_model=schemas.RecommendedRewards,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="The customer's current recommended rewards",
)
def recommended_rewards(
    state: State,
    customer_id: CustomerId,
    limit: Annotated[
        int,
        Query(ge=1, le=100, description="At most this many items (1..RECOMMENDATIONS_K)."),
    ] = 3,
):
    """The stored recommendation set, best first, with each reward re-checked against the
    current data: still active and in stock, allowed for the customer's tier, affordable
    with the current points balance (an 'almost there' item within reach of it), and the
    customer not on the suppression list. What no longer qualifies is dropped and counted."""
    k = state.settings.recommendations_k
    if limit > k:
        raise invalid("query", "limit", f"limit must be at most RECOMMENDATIONS_K ({k})", limit)
    try:
        found = state.recommender.recommend(customer_id, limit)
    except UnknownCustomer as error:
        raise HTTPException(404, str(error)) from error
    return {
        "customer_id": customer_id,
        "items": [
            {
                "rank": item.rank,
                "reward": {
                    "reward_id": reward.reward_id,
                    "name": reward.name,
                    "category": reward.category,
                    "points_cost": reward.points_cost,
                },
                "score": item.score,
                "reason": item.reason,
                "is_almost_there": item.is_almost_there,
                "is_exploration": item.is_exploration,
                "model_version": item.model_version,
                "as_of": item.as_of,
            }
            for item, reward in found.items
        ],
        "dropped": {"count": sum(found.dropped.values()), "reasons": dict(found.dropped)},
        "reason": found.reason,
    }


@router.get(
    "/customers/{customer_id}",
    response_model=schemas.CustomerProfile,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="A customer's profile, churn risk, best send time and segment",
)
def customer_profile(state: State, customer_id: CustomerId):
    data = state.data
    data.require(CUSTOMERS)
    params = {"customer_id": customer_id}
    customer = _first(
        data.frame(
            "SELECT customer_id, email, tier, points_balance, country, timezone, "
            f"marketing_opt_in, signup_at FROM {CUSTOMERS} WHERE customer_id = :customer_id",
            params,
        )
    )
    if customer is None:
        raise HTTPException(404, f"no customer with id {customer_id!r}")
    churn = send_time = segment = None
    if data.published("ml.churn_scores"):
        row = _first(
            data.frame(
                "SELECT churn_probability, risk_band, driver_1, driver_2, driver_3, "
                "model_version, as_of FROM ml.churn_scores WHERE customer_id = :customer_id",
                params,
            )
        )
        if row:
            drivers = [row.pop(f"driver_{i}") for i in (1, 2, 3)]
            churn = {**row, "as_of": as_date(row["as_of"]), "drivers": [d for d in drivers if d]}
    if data.published("ml.send_time_preferences"):
        row = _first(
            data.frame(
                "SELECT best_local_hour, best_weekday FROM ml.send_time_preferences "
                "WHERE customer_id = :customer_id",
                params,
            )
        )
        if row:
            send_time = {**row, "timezone": customer["timezone"]}
    if data.published("ml.customer_segments"):
        segment = _first(
            data.frame(
                "SELECT segment, campaign, contact_today FROM ml.customer_segments "
                "WHERE customer_id = :customer_id",
                params,
            )
        )
    email = customer["email"]
    return {
        **customer,
        "email": mask_email(email) if email else None,
        "signup_at": _datetime(customer["signup_at"]),
        "suppressed": bool(suppressed(state.store, [customer_id])),
        "churn": churn,
        "send_time": send_time,
        "segment": segment,
    }


REWARD_COLUMNS = (
    "reward_id, name, category, points_cost, description, inventory, min_tier, active, is_available"
)


@router.get(
    "/rewards",
    response_model=schemas.RewardPage,
    responses=UNAVAILABLE,
    summary="The reward catalogue, filtered and paginated",
)
def list_rewards(
    state: State,
    category: Annotated[str | None, Query(min_length=1, max_length=64, pattern=ID_PATTERN)] = None,
    available: Annotated[
        bool | None, Query(description="true: only rewards active and in stock.")
    ] = None,
    min_points: Annotated[int | None, Query(ge=0, le=MAX_NUMBER)] = None,
    max_points: Annotated[int | None, Query(ge=0, le=MAX_NUMBER)] = None,
    tier: Annotated[
        schemas.Tier | None, Query(description="Only rewards a member of this tier may redeem.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_NUMBER)] = 0,
):
    """Rewards ordered by id; `total` counts every match, `items` holds one page."""
    state.data.require(REWARDS)
    clauses, params = [], {}
    if category is not None:
        clauses.append("category = :category")
        params["category"] = category.lower()
    if available is not None:
        clauses.append("is_available = :available")
        params["available"] = available
    if min_points is not None:
        clauses.append("points_cost >= :min_points")
        params["min_points"] = min_points
    if max_points is not None:
        clauses.append("points_cost <= :max_points")
        params["max_points"] = max_points
    if tier is not None:
        clauses.append("min_tier_rank <= :tier_rank")
        params["tier_rank"] = TIER_RANKS[tier]
    where = " AND ".join(clauses) or "TRUE"
    total = state.data.scalar(f"SELECT COUNT(*) FROM {REWARDS} WHERE {where}", params)
    page = state.data.frame(
        f"SELECT {REWARD_COLUMNS} FROM {REWARDS} WHERE {where} "
        "ORDER BY reward_id LIMIT :limit OFFSET :offset",
        {**params, "limit": limit, "offset": offset},
    )
    items = [{c: _value(v) for c, v in row.items()} for row in page.to_dict("records")]
    return {"total": int(total), "limit": limit, "offset": offset, "items": items}


@router.get(
    "/rewards/{reward_id}",
    response_model=schemas.Reward,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="One reward",
)
def get_reward(state: State, reward_id: RewardId):
    state.data.require(REWARDS)
    reward = _first(
        state.data.frame(
            f"SELECT {REWARD_COLUMNS} FROM {REWARDS} WHERE reward_id = :reward_id",
            {"reward_id": reward_id},
        )
    )
    if reward is None:
        raise HTTPException(404, f"no reward with id {reward_id!r}")
    return reward


@router.post(
    "/customers/{customer_id}/engagement",
    response_model=schemas.EngagementResult,
    responses={
        400: {**ERROR, "description": "The body cannot be read (not UTF-8 JSON)."},
        **NOT_FOUND,
        409: {
            **ERROR,
            "description": "The Idempotency-Key was used with another request, or a request "
            "with it is still running (the detail says which).",
        },
        **UNAVAILABLE,
    },
    summary="Engage one customer now: rules, content, outbox",
)
def create_engagement(
    state: State,
    customer_id: CustomerId,
    body: schemas.EngagementRequest,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=ID_PATTERN,
            description="Retries with the same key and body replay the first answer.",
        ),
    ] = None,
):
    """Runs the batch's path for one customer: the contact rules, the content writer (a
    template without GROQ_API_KEY) and the outbox, under the batch's message key. Returns
    what was queued, or why nothing was."""
    if idempotency_key is None:
        return _engage(state, customer_id, body)
    request_fingerprint = fingerprint(
        "POST", f"/api/customers/{customer_id}/engagement", body.model_dump(mode="json")
    )
    try:
        stored = state.keys.claim(idempotency_key, request_fingerprint)
    except (KeyReused, StillRunning) as error:
        raise HTTPException(409, str(error)) from error
    if stored is not None:
        return JSONResponse(stored.body, status_code=stored.status_code)
    try:
        result = _engage(state, customer_id, body)
    except HTTPException as error:
        # An answer about the request (unknown customer) stands; anything else may pass.
        if 400 <= error.status_code < 500:
            state.keys.finish(idempotency_key, error.status_code, {"detail": error.detail})
        else:
            state.keys.release(idempotency_key)
        raise
    except BaseException:
        state.keys.release(idempotency_key)
        raise
    state.keys.finish(idempotency_key, 200, result)
    return result


def _engage(state: State, customer_id: str, body: schemas.EngagementRequest) -> dict:
    state.data.require(*engage.TABLES)
    try:
        outcome = engage.engage(
            state.data,
            state.store,
            state.settings,
            customer_id,
            body.context.journey_stage,
            as_of=state.as_of(),
            now=dt.datetime.now(dt.UTC),
            current_offers=state.recommender.offers,
        )
    except engage.CustomerNotFound as error:
        raise HTTPException(404, str(error)) from error
    result = schemas.EngagementResult.model_validate(outcome, from_attributes=True)
    return result.model_dump(mode="json")


@router.get(
    "/analytics/report",
    response_model=schemas.Report,
    responses={
        422: {
            "description": "Invalid dates, end_date before start_date or a range over "
            f"{MAX_RANGE_DAYS} days."
        },
        **UNAVAILABLE,
    },
    summary="The analytics metrics for a date range",
)
def analytics_report(
    state: State,
    start_date: Annotated[dt.date, Query(description="First day, YYYY-MM-DD.")],
    end_date: Annotated[dt.date, Query(description="Last day (inclusive), YYYY-MM-DD.")],
):
    """The funnel, redemptions, revenue, churn-risk mix, recommendation coverage and uplift
    of the daily analytics partitions from start_date to end_date."""
    try:
        return range_report(state.data.reader, start_date, end_date)
    except ValueError as error:
        raise invalid("query", "end_date", str(error), end_date.isoformat()) from error
    except NotMaterialized as error:
        raise HTTPException(503, str(error)) from error
