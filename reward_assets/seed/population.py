"""The customers: their latent truth and the draws of new ones.

`Population` holds the truth per customer (tastes, preferred email hour, purchase and
redemption rates, engagement, churn date) and its email state, and round-trips through
`_truth/customers_truth.parquet` so the daily top-up can continue it. `draw_signups` and
`draw_customers` draw new customers together with the profile they land with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reward_assets.contact.holdout import holdout_mask
from reward_assets.ingest.contract import TIERS
from reward_assets.seed.formatting import format_ids, label_array
from reward_assets.seed.frames import Frame
from reward_assets.seed.model import (
    CATEGORIES,
    DAY,
    DEMO_CUSTOMERS,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    NEVER,
    NO_EMAIL_YET,
    TIMEZONES,
    Model,
)


def _timestamp_column(seconds: np.ndarray, missing: np.ndarray) -> pa.Array:
    return pa.array(seconds, pa.int64(), mask=missing).cast(pa.timestamp("s", tz="UTC"))


def _seconds(column: pa.ChunkedArray, missing_value: int) -> np.ndarray:
    # Parquet stores second timestamps as milliseconds; come back to seconds first.
    seconds = column.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64())
    return pc.fill_null(seconds, missing_value).to_numpy()


@dataclass
class Population:
    """Latent truth and email state per customer; arrays are aligned by row."""

    number: np.ndarray
    signup_at: np.ndarray
    tier: np.ndarray
    timezone: np.ndarray
    opt_in: np.ndarray
    holdout: np.ndarray
    taste: np.ndarray
    preferred_hour: np.ndarray
    purchase_rate: np.ndarray
    spend_factor: np.ndarray
    redemption_rate: np.ndarray
    engagement: np.ndarray
    churn_at: np.ndarray
    suppressed_at: np.ndarray
    last_delivered_at: np.ndarray

    def __len__(self) -> int:
        return self.number.size

    def concat(self, other: Population) -> Population:
        return Population(
            **{
                f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                for f in fields(self)
            }
        )

    def to_table(self, landed_until: int) -> pa.Table:
        never = self.churn_at >= NEVER
        churned = self.churn_at < landed_until
        churn_day = np.where(churned, self.churn_at // DAY, 0).astype(np.int32)
        columns = {
            "customer_id": format_ids("cust", self.number, 3),
            "signup_at": _timestamp_column(self.signup_at, np.zeros(len(self), bool)),
            "tier": label_array(TIERS, self.tier),
            "timezone": label_array(tuple(t[0] for t in TIMEZONES), self.timezone),
            "marketing_opt_in": pa.array(self.opt_in),
            "is_holdout": pa.array(self.holdout),
            **{f"taste_{c}": pa.array(self.taste[:, i]) for i, c in enumerate(CATEGORIES)},
            "top_category": label_array(CATEGORIES, self.taste.argmax(axis=1)),
            "preferred_local_hour": pa.array(self.preferred_hour.astype(np.int64)),
            "purchase_rate_per_day": pa.array(self.purchase_rate),
            "spend_factor": pa.array(self.spend_factor),
            "redemption_rate_per_day": pa.array(self.redemption_rate),
            "email_engagement": pa.array(self.engagement),
            "churned": pa.array(churned),
            "churn_date": pa.array(churn_day, pa.int32(), mask=~churned).cast(pa.date32()),
            "scheduled_churn_at": _timestamp_column(self.churn_at, never),
            "email_suppressed_at": _timestamp_column(
                self.suppressed_at, self.suppressed_at >= NEVER
            ),
            "last_email_delivered_at": _timestamp_column(
                self.last_delivered_at, self.last_delivered_at <= NO_EMAIL_YET
            ),
        }
        return pa.table(columns)

    @classmethod
    def from_table(cls, table: pa.Table) -> Population:
        def codes(column: str, values: tuple[str, ...]) -> np.ndarray:
            return pc.index_in(table[column], value_set=pa.array(values)).to_numpy()

        ids = table["customer_id"]
        return cls(
            number=pc.cast(pc.utf8_slice_codeunits(ids, 4), pa.int64()).to_numpy(),
            signup_at=_seconds(table["signup_at"], 0),
            tier=codes("tier", TIERS),
            timezone=codes("timezone", tuple(t[0] for t in TIMEZONES)),
            opt_in=table["marketing_opt_in"].to_numpy(),
            holdout=table["is_holdout"].to_numpy(),
            taste=np.stack([table[f"taste_{c}"].to_numpy() for c in CATEGORIES], axis=1),
            preferred_hour=table["preferred_local_hour"].to_numpy(),
            purchase_rate=table["purchase_rate_per_day"].to_numpy(),
            spend_factor=table["spend_factor"].to_numpy(),
            redemption_rate=table["redemption_rate_per_day"].to_numpy(),
            engagement=table["email_engagement"].to_numpy(),
            churn_at=_seconds(table["scheduled_churn_at"], NEVER),
            suppressed_at=_seconds(table["email_suppressed_at"], NEVER),
            last_delivered_at=_seconds(table["last_email_delivered_at"], NO_EMAIL_YET),
        )


def draw_signups(
    rng: np.random.Generator, n: int, start: int, end: int, model: Model
) -> np.ndarray:
    """Sorted sign-up times: a share before `start` (the demo customers among them)."""
    before = min(n, max(round(n * model.pre_start_signup_share), DEMO_CUSTOMERS))
    span = model.pre_start_signup_days * DAY
    early = start - 1 - (rng.random(before) * span).astype(np.int64)
    late = start + (rng.random(n - before) * (end - start)).astype(np.int64)
    return np.sort(np.concatenate([early, late]))


def draw_customers(
    rng: np.random.Generator,
    numbers: np.ndarray,
    signup_at: np.ndarray,
    churn_from: np.ndarray,
    period_days: int,
    holdout_share: float,
    rewards: Frame,
    model: Model,
) -> tuple[Population, Frame]:
    """The latent truth of new customers and the profile they land with.

    Churn lifetimes count from `churn_from` (the period start for customers who signed up
    before it, else sign-up plus a grace period) and scale with the seeded period.
    """
    n = numbers.size
    demo = numbers <= DEMO_CUSTOMERS
    tier = rng.choice(len(TIERS), size=n, p=model.tier_shares)
    tier[demo] = rng.integers(2, 4, size=demo.sum())
    timezone = rng.choice(len(TIMEZONES), size=n, p=[t[2] for t in TIMEZONES])
    opt_in = (rng.random(n) < model.opt_in_share) | demo
    taste = rng.dirichlet(np.full(len(CATEGORIES), model.taste_alpha), size=n)
    engagement = rng.beta(*model.engagement_beta, size=n)
    engagement[demo] = np.maximum(engagement[demo], 0.6)
    purchase_rate = (
        rng.lognormal(np.log(model.purchase_rate_median), model.purchase_rate_sigma, n)
        * np.asarray(model.tier_purchase_factor)[tier]
    )
    churn_logit = (
        model.churn_base_logit
        + np.asarray(model.churn_tier_effect)[tier]
        + model.churn_engagement_effect * (engagement - 0.5)
        + rng.normal(0.0, model.churn_noise_sigma, n)
    )
    churner = rng.random(n) < 1.0 / (1.0 + np.exp(-churn_logit))
    horizon_days = model.churn_horizon_periods * period_days
    lifetime_days = horizon_days * rng.beta(*model.churn_timing_beta, size=n)
    churn_at = np.where(churner & ~demo, churn_from + (lifetime_days * DAY).astype(np.int64), NEVER)
    balance = (
        np.asarray(model.tier_typical_balance)[tier] * rng.lognormal(0.0, model.balance_sigma, n)
    ).astype(np.int64)
    balance[demo] = np.maximum(balance[demo], _demo_balance(rng, rewards, tier[demo]))

    population = Population(
        number=numbers,
        signup_at=signup_at,
        tier=tier,
        timezone=timezone,
        opt_in=opt_in,
        holdout=holdout_mask(format_ids("cust", numbers, 3).to_pylist(), holdout_share),
        taste=taste,
        preferred_hour=rng.integers(
            model.send_local_hours[0], model.send_local_hours[1] + 1, size=n
        ),
        purchase_rate=purchase_rate,
        spend_factor=rng.lognormal(0.0, model.spend_sigma, n),
        redemption_rate=model.redemption_rate_median
        * (purchase_rate / model.purchase_rate_median) ** model.redemption_purchase_elasticity
        * np.asarray(model.tier_redeem_factor)[tier],
        engagement=engagement,
        churn_at=churn_at,
        suppressed_at=np.full(n, NEVER, dtype=np.int64),
        last_delivered_at=np.full(n, NO_EMAIL_YET, dtype=np.int64),
    )
    first, second = _preferred_categories(rng, taste, model)
    profile = {
        "signup_at": signup_at,
        "first": rng.integers(len(FIRST_NAMES), size=n),
        "last": rng.integers(len(LAST_NAMES), size=n),
        "domain": rng.integers(len(EMAIL_DOMAINS), size=n),
        "timezone": timezone,
        "tier": tier,
        "balance": balance,
        "opt_in": opt_in,
        "preferred_first": first,
        "preferred_second": second,
    }
    return population, profile


def _demo_balance(rng: np.random.Generator, rewards: Frame, tiers: np.ndarray) -> np.ndarray:
    """A balance above the 5th cheapest reward the tier can redeem, plus some headroom."""
    available = rewards["active"] & (rewards["inventory"] > 0)
    floors = []
    for tier in tiers:
        costs = np.sort(rewards["points_cost"][available & (rewards["min_tier"] <= tier)])
        floors.append(costs[min(4, costs.size - 1)] if costs.size else 0)
    return np.asarray(floors, dtype=np.int64) + rng.integers(500, 5_000, size=tiers.size)


def _preferred_categories(
    rng: np.random.Generator, taste: np.ndarray, model: Model
) -> tuple[np.ndarray, np.ndarray]:
    """Sign-up preferences (-1 = none): mostly the top taste, sometimes empty or wrong."""
    n = taste.shape[0]
    ranked = np.argsort(-taste, axis=1, kind="stable")
    draw = rng.random(n)
    wrong = rng.integers(len(CATEGORIES), size=n)
    empty_cut = model.preferred_empty_share
    wrong_cut = empty_cut + model.preferred_wrong_share
    first = np.where(draw < empty_cut, -1, np.where(draw < wrong_cut, wrong, ranked[:, 0]))
    add_second = (draw >= wrong_cut) & (rng.random(n) < model.preferred_second_share)
    return first, np.where(add_second, ranked[:, 1], -1)
