"""Request and response bodies: what the OpenAPI schema promises and the fuzz test checks."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reward_assets.contact.campaigns import STAGE_CAMPAIGNS
from reward_assets.ingest.contract import TIERS

Tier = Literal[TIERS]
JourneyStage = Literal[tuple(STAGE_CAMPAIGNS)]


class Error(BaseModel):
    detail: str = Field(description="What went wrong, in words.")


class RewardSummary(BaseModel):
    reward_id: str
    name: str
    category: str
    points_cost: int


class RecommendedReward(BaseModel):
    rank: int = Field(description="The model's rank; items dropped since leave gaps.")
    reward: RewardSummary
    score: float
    reason: str = Field(description="Why the model picked it, in words a member reads.")
    is_almost_there: bool
    is_exploration: bool
    model_version: str
    as_of: dt.date | None


class Dropped(BaseModel):
    count: int = Field(description="Items of the stored set no longer eligible.")
    reasons: dict[str, int] = Field(
        description="How many for each reason: reward_inactive, out_of_stock, "
        "tier_not_allowed, insufficient_points, reward_not_in_catalogue, suppressed."
    )


class RecommendedRewards(BaseModel):
    customer_id: str
    items: list[RecommendedReward]
    dropped: Dropped
    reason: str | None = Field(
        description="Why `items` is empty: suppressed (the customer unsubscribed, complained "
        "or bounced), no_recommendation_set (not scored yet) or none_eligible."
    )


class Churn(BaseModel):
    churn_probability: float | None
    risk_band: str | None
    drivers: list[str] = Field(description="The strongest contributions to the score.")
    model_version: str | None
    as_of: dt.date | None


class SendTime(BaseModel):
    best_local_hour: int | None
    best_weekday: int | None = Field(description="0 = Monday; null when no day stands out.")
    timezone: str | None


class Segment(BaseModel):
    segment: str
    campaign: str | None
    contact_today: bool | None


class CustomerProfile(BaseModel):
    customer_id: str
    email: str | None = Field(description="Masked: first letter and domain only.")
    tier: str | None
    points_balance: float | None
    country: str | None
    timezone: str | None
    marketing_opt_in: bool | None
    signup_at: dt.datetime | None
    suppressed: bool = Field(description="On the suppression list: no marketing email.")
    churn: Churn | None = Field(description="Null until churn_scores is published.")
    send_time: SendTime | None
    segment: Segment | None


class Reward(BaseModel):
    reward_id: str
    name: str
    category: str
    points_cost: int
    description: str | None
    inventory: int | None = Field(description="Null means unlimited.")
    min_tier: str | None
    active: bool | None
    is_available: bool | None = Field(description="Active and in stock.")


class RewardPage(BaseModel):
    total: int = Field(description="Rewards matching the filters, over all pages.")
    limit: int
    offset: int
    items: list[Reward]


class EngagementContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journey_stage: JourneyStage | None = Field(
        None,
        description="onboarding (or new): the welcome; active, at_risk, dormant: that "
        "segment's campaign; absent: the campaign of the customer's current segment.",
    )


class EngagementRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"engagement_type": "email", "context": {"journey_stage": "onboarding"}}]
        },
    )

    engagement_type: Literal["email"] = Field(description="Email is the one channel so far.")
    context: EngagementContext = Field(default_factory=EngagementContext)


class EngagementResult(BaseModel):
    customer_id: str
    campaign: str
    message_key: str = Field(description="The outbox key: customer:campaign:occurrence.")
    queued: bool = Field(description="True when this request queued the email.")
    reason: str | None = Field(
        description="Why nothing was queued: no_consent, suppressed, holdout, frequency_cap, "
        "quiet_hours, kill_switch, not_recent_signup or already_decided."
    )
    status: str | None = Field(description="The outbox row's status (queued, skipped, sent...).")
    send_at: dt.datetime | None
    reward_ids: list[str]
    content_source: str | None = Field(description="llm, cache or template.")
    deferred_for: str | None = Field(
        description="quiet_hours when the email waits for the customer's quiet hours to end."
    )


class TableState(BaseModel):
    published: bool
    age_seconds: float | None = Field(description="Since the snapshot was written (snapshots).")


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded: some served tables are not published yet."
    )
    backend: Literal["snapshots", "postgresql"]
    tables: dict[str, TableState]


Report = dict[str, Any]


class ContentLineage(BaseModel):
    source: str | None = Field(description="llm, cache (an LLM draft reused) or template.")
    fallback_reason: str | None = Field(description="Why the template wrote it, if it did.")
    llm_model: str | None
    prompt_sha256: str | None = Field(description="sha256 of the instructions and prompt.")
    template_sha256: str | None = Field(description="sha256 of the template's copy.")


class ModelLineage(BaseModel):
    name: str = Field(description="taste_model, churn_model or engagement_model.")
    version: str | None
    registry_status: str = Field(
        description="approved, rejected or candidate; `fallback (no trained model)`, "
        "`none used` or `not in the registry` otherwise."
    )


class MessageLineage(BaseModel):
    message_key: str
    campaign: str
    status: str
    reason: str | None = Field(description="Why it was skipped or cancelled.")
    to_address: str | None = Field(description="Masked: first letter and domain only.")
    message_id: str | None
    send_at: dt.datetime | None
    sent_at: dt.datetime | None
    run_id: str | None = Field(description="The Dagster run that queued it.")
    as_of: dt.date | None = Field(description="The data day it was decided on.")
    segment: str | None
    segment_rule: str | None
    experiment: str | None
    variant: str | None
    models: list[ModelLineage]
    content: ContentLineage | None = Field(description="Null for skips and older rows.")


class CustomerMessages(BaseModel):
    customer_id: str
    items: list[MessageLineage] = Field(description="Newest first; skips say why.")


class EmailEventsRecorded(BaseModel):
    received: int
    new: int = Field(description="Events not seen before (a replay counts 0).")
    unmatched: int = Field(description="New events whose Message-ID is in no outbox row.")
    suppressed: int = Field(description="Customers suppressed by this request.")
