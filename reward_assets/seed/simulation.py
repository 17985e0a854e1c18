"""Simulating a window of time for every customer from the latent truth.

A window holds marketing emails and the events they cause, purchases and refunds (with
quiet spells and a decline before churn), and redemptions whose rate rises after a delivered
email. Rows come out as frames sorted by time; those that fall after the window stay
pending for the next one.
`expected_uplift` is the planted uplift, exact in expectation for the emails delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reward_assets.ingest.contract import EVENT_TYPES, TIERS
from reward_assets.seed.catalogue import reward_weights
from reward_assets.seed.frames import Frame, concat, take
from reward_assets.seed.model import (
    CATEGORIES,
    CHANNELS,
    DAY,
    DAYS_PER_MONTH,
    NEVER,
    TIMEZONES,
    Counters,
    Model,
)
from reward_assets.seed.population import Population

SENT, DELIVERED, OPEN, CLICK, BOUNCE, UNSUBSCRIBE, COMPLAINT = (
    EVENT_TYPES.index(t)
    for t in ("sent", "delivered", "open", "click", "bounce", "unsubscribe", "complaint")
)


@dataclass
class Window:
    """Rows of one simulated window, sorted by time, plus the rows that fall after it."""

    transactions: Frame
    redemptions: Frame
    engagement_events: Frame
    pending_transactions: Frame
    pending_events: Frame
    delivered_customer: np.ndarray  # row index into the population
    delivered_at: np.ndarray


def _poisson_points(
    rng: np.random.Generator, start: np.ndarray, end: np.ndarray, rate_per_day: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Homogeneous Poisson times per customer on [start, end); owners come out sorted."""
    span = np.maximum(end - start, 0)
    counts = rng.poisson(rate_per_day * span / DAY)
    owner = np.repeat(np.arange(start.size), counts)
    times = start[owner] + (rng.random(owner.size) * span[owner]).astype(np.int64)
    return owner, times


def _activity(model: Model, at: np.ndarray, churn_at: np.ndarray) -> np.ndarray:
    """Activity multiplier: 1, then a linear decline to the floor before churn."""
    lead_days = (churn_at - at) / DAY
    slope = (1.0 - model.churn_ramp_floor) / model.churn_ramp_days
    return np.minimum(1.0, model.churn_ramp_floor + slope * lead_days)


def _activity_integral(
    model: Model, a: np.ndarray, b: np.ndarray, churn_at: np.ndarray
) -> np.ndarray:
    """Integral of `_activity` over [a, b] in seconds, for a <= b <= churn_at."""
    ramp = model.churn_ramp_days * DAY
    ramp_start = churn_at - ramp
    drop = 1.0 - model.churn_ramp_floor

    def from_ramp_start(t: np.ndarray) -> np.ndarray:
        x = np.maximum(t - ramp_start, 0).astype(np.float64)
        return x - drop * x * x / (2 * ramp)

    flat = np.minimum(b, ramp_start) - np.minimum(a, ramp_start)
    return flat + from_ramp_start(b) - from_ramp_start(a)


def _utc_offsets(first_day: int, n_days: int) -> np.ndarray:
    """Seconds east of UTC per (timezone, day), taken at noon UTC (DST switches at night)."""
    noon = pd.DatetimeIndex(
        ((np.arange(first_day, first_day + n_days) * DAY) + DAY // 2).astype("datetime64[s]")
    ).tz_localize("UTC")
    naive = noon.tz_localize(None)
    return np.stack(
        [
            (noon.tz_convert(zone).tz_localize(None) - naive).total_seconds().to_numpy()
            for zone, _, _ in TIMEZONES
        ]
    ).astype(np.int64)


def simulate_window(
    rng: np.random.Generator,
    population: Population,
    rewards: Frame,
    model: Model,
    uplift: float,
    start: int,
    end: int,
    counters: Counters,
    pending: dict[str, Frame],
    seed: int,
) -> Window:
    """Simulate [start, end) for every customer; updates the email state and the counters.

    `pending` holds rows an earlier window scheduled for later (refunds, late email events).
    """
    emails = _simulate_emails(rng, population, model, start, end, counters)
    purchases = _simulate_purchases(rng, population, model, start, end, seed)
    redemptions = _simulate_redemptions(
        rng, population, rewards, model, uplift, start, end, emails.delivered
    )
    customer, at = emails.delivered
    np.maximum.at(population.last_delivered_at, customer, at)
    population.suppressed_at = np.minimum(population.suppressed_at, emails.suppressed_at)

    transactions, later_transactions = _split_at(
        _with_pending(pending, "transactions", purchases), end
    )
    events, later_events = _split_at(
        _with_pending(pending, "engagement_events", emails.events), end
    )
    return Window(
        transactions=transactions,
        redemptions=_sorted(redemptions),
        engagement_events=events,
        pending_transactions=later_transactions,
        pending_events=later_events,
        delivered_customer=customer,
        delivered_at=at,
    )


def _with_pending(pending: dict[str, Frame], entity: str, frame: Frame) -> Frame:
    return concat([pending[entity], frame]) if entity in pending else frame


def _stable_order(values: np.ndarray) -> np.ndarray:
    """`np.argsort(values, kind="stable")` for int64, by one sort of (value, position) keys."""
    n = values.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    low = int(values.min())
    bits = max(n - 1, 1).bit_length()
    if (int(values.max()) - low).bit_length() + bits > 62:
        return np.argsort(values, kind="stable")
    keys = ((values - low) << bits) | np.arange(n, dtype=np.int64)
    keys.sort()
    return keys & ((1 << bits) - 1)


def _sorted(frame: Frame) -> Frame:
    # Stable, so rows at the same second keep their (deterministic) generation order.
    return take(frame, _stable_order(frame["ts"]))


def _split_at(frame: Frame, end: int) -> tuple[Frame, Frame]:
    """Rows before `end` sorted by time, and the rows from `end` on."""
    order = _stable_order(frame["ts"])
    cut = int(np.searchsorted(frame["ts"][order], end))
    return take(frame, order[:cut]), take(frame, order[cut:])


def _hash_uniform(seed: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) per (seed, a, b), the same whichever window asks (splitmix64)."""
    mask = 2**64 - 1
    x = a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= b.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
    x ^= np.uint64((seed * 0x94D049BB133111EB) & mask)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53


def _quiet_multipliers(model: Model) -> tuple[float, float]:
    """Purchase-rate multipliers (quiet, normal) whose mean over blocks is 1."""
    q = model.quiet_share
    return model.quiet_factor, (1.0 - q * model.quiet_factor) / (1.0 - q)


def _simulate_purchases(
    rng: np.random.Generator,
    population: Population,
    model: Model,
    start: int,
    end: int,
    seed: int,
) -> Frame:
    begin = np.maximum(start, population.signup_at)
    stop = np.minimum(end, population.churn_at)
    quiet, normal = _quiet_multipliers(model)
    owner, ts = _poisson_points(rng, begin, stop, population.purchase_rate * normal)
    block = ts // (model.quiet_block_days * DAY)
    is_quiet = _hash_uniform(seed, population.number[owner], block) < model.quiet_share
    accept = _activity(model, ts, population.churn_at[owner]) * np.where(
        is_quiet, quiet / normal, 1.0
    )
    keep = rng.random(owner.size) < accept
    owner, ts = owner[keep], ts[keep]
    category = _categories_by_taste(rng, owner, population.taste)
    amount = (
        np.asarray(model.category_mean_amount)[category]
        * population.spend_factor[owner]
        * rng.lognormal(0.0, model.amount_sigma, owner.size)
    )
    cents = np.maximum(100, np.round(amount * 100)).astype(np.int64)
    per_dollar = np.asarray(model.tier_points_per_dollar)[population.tier[owner]]
    # Narrow types: these arrays are the largest the generator holds.
    purchases = {
        "customer": population.number[owner].astype(np.int32),
        "ts": ts,
        "cents": cents.astype(np.int32),
        "category": category,
        "channel": rng.choice(len(CHANNELS), size=owner.size, p=model.channel_shares).astype(
            np.int8
        ),
        "points": (cents * per_dollar // 100).astype(np.int32),
    }
    refunded = rng.random(owner.size) < model.refund_share
    refund_at = ts + rng.integers(3600, model.refund_max_days * DAY, size=owner.size)
    refunded &= refund_at < population.churn_at[owner]
    refunds = take(purchases, refunded)
    refunds["ts"] = refund_at[refunded]
    refunds["cents"] = -refunds["cents"]
    refunds["points"] = -refunds["points"]
    return concat([purchases, refunds])


def _categories_by_taste(
    rng: np.random.Generator, owner: np.ndarray, probabilities: np.ndarray
) -> np.ndarray:
    """One category per row, drawn from its owner's distribution (owners sorted).

    Draws per-customer counts with one multinomial call; the rows of a customer are in
    random time order, so handing the categories out in category order pairs them randomly.
    """
    counts = np.bincount(owner, minlength=probabilities.shape[0])
    active = np.flatnonzero(counts)
    per_category = rng.multinomial(counts[active], probabilities[active])
    labels = np.tile(np.arange(probabilities.shape[1]), active.size)
    return np.repeat(labels, per_category.reshape(-1)).astype(np.int8)


def _last_delivery_before(
    owner: np.ndarray, at: np.ndarray, delivered: tuple[np.ndarray, np.ndarray], earlier: np.ndarray
) -> np.ndarray:
    """Time of the owner's latest delivered email at or before `at` (else `earlier`)."""
    customer, delivered_at = delivered
    if customer.size == 0:
        return earlier[owner]
    base = min(int(at.min(initial=0)), int(delivered_at.min()))
    keys = np.sort((customer.astype(np.int64) << 34) | (delivered_at - base))
    index = np.searchsorted(keys, (owner.astype(np.int64) << 34) | (at - base), "right") - 1
    found = keys[np.maximum(index, 0)]
    hit = (index >= 0) & ((found >> 34) == owner)
    return np.where(hit, (found & (2**34 - 1)) + base, earlier[owner])


def _simulate_redemptions(
    rng: np.random.Generator,
    population: Population,
    rewards: Frame,
    model: Model,
    uplift: float,
    start: int,
    end: int,
    delivered: tuple[np.ndarray, np.ndarray],
) -> Frame:
    """Redemptions by thinning: rate x (1 + uplift) inside the window after an email."""
    boost = 1.0 + uplift
    begin = np.maximum(start, population.signup_at)
    stop = np.minimum(end, population.churn_at)
    owner, ts = _poisson_points(rng, begin, stop, population.redemption_rate * boost)
    last = _last_delivery_before(owner, ts, delivered, population.last_delivered_at)
    treated = ts - last < model.uplift_window_days * DAY
    accept = _activity(model, ts, population.churn_at[owner]) * np.where(treated, 1.0, 1.0 / boost)
    keep = rng.random(owner.size) < accept
    owner, ts = owner[keep], ts[keep]

    weights = reward_weights(rewards, model)
    category_weight = np.stack(
        [np.bincount(rewards["category"], w, minlength=len(CATEGORIES)) for w in weights]
    )
    # The choice noise: every category keeps some chance, whatever the taste.
    scores = (population.taste + model.reward_taste_smoothing) * category_weight[population.tier]
    totals = scores.sum(axis=1)
    can_redeem = totals[owner] > 0
    owner, ts = owner[can_redeem], ts[can_redeem]
    probabilities = scores / np.where(totals > 0, totals, 1.0)[:, None]
    category = _categories_by_taste(rng, owner, probabilities)

    tier = population.tier[owner]
    reward = np.empty(owner.size, dtype=np.int64)
    for t in range(len(TIERS)):
        for k in range(len(CATEGORIES)):
            rows = np.flatnonzero((tier == t) & (category == k))
            if rows.size == 0:
                continue
            candidates = np.flatnonzero((rewards["category"] == k) & (weights[t] > 0))
            p = weights[t, candidates] / weights[t, candidates].sum()
            reward[rows] = rng.choice(candidates, size=rows.size, p=p)
    return {
        "customer": population.number[owner].astype(np.int32),
        "reward": reward + 1,
        "ts": ts,
        "points": rewards["points_cost"][reward],
    }


@dataclass
class _Emails:
    events: Frame
    delivered: tuple[np.ndarray, np.ndarray]
    suppressed_at: np.ndarray


def _simulate_emails(
    rng: np.random.Generator,
    population: Population,
    model: Model,
    start: int,
    end: int,
    counters: Counters,
) -> _Emails:
    """Marketing sends to consenting, non-holdout customers and the events they cause.

    Sends land at a uniform local hour; the open probability peaks around the customer's
    preferred hour, and opens follow the send within the maximum delay.
    """
    n = len(population)
    eligible = population.opt_in & ~population.holdout & (population.suppressed_at >= NEVER)
    begin = np.where(eligible, np.maximum(start, population.signup_at), end)
    owner, moment = _poisson_points(
        rng, begin, np.full(n, end), model.emails_per_month / DAYS_PER_MONTH
    )
    first_day = start // DAY
    day = moment // DAY
    low, high = model.send_local_hours
    local_hour = rng.integers(low, high + 1, size=owner.size)
    # Batch sends go out in the first minutes of the scheduled hour.
    local_second = local_hour * 3600 + rng.integers(
        0, model.send_spread_minutes * 60, size=owner.size
    )
    offsets = _utc_offsets(first_day, (end - start) // DAY)[
        population.timezone[owner], day - first_day
    ]
    sent_at = day * DAY + (local_second - offsets) % DAY
    campaign = ((day + 3) // 7) * len(CATEGORIES) + rng.integers(len(CATEGORIES), size=owner.size)

    m = owner.size
    distance = np.abs(local_hour - population.preferred_hour[owner])
    distance = np.minimum(distance, 24 - distance)
    peak = np.exp(-0.5 * (distance / model.open_peak_sigma_hours) ** 2)
    p_open = population.engagement[owner] * (
        model.open_off_peak_floor + (1 - model.open_off_peak_floor) * peak
    )
    # Customers on their way out open less too; once gone, hardly at all.
    churn_at = population.churn_at[owner]
    fading = np.where(
        sent_at >= churn_at, model.churned_open_factor, _activity(model, sent_at, churn_at)
    )
    p_open = p_open * fading
    bounced = rng.random(m) < model.bounce_share
    delivered_at = sent_at + rng.integers(1, 120, size=m)
    opened = ~bounced & (rng.random(m) < p_open)
    max_delay = model.open_max_delay_minutes * 60
    # An open comes at the customer's preferred hour when that is within the maximum delay,
    # otherwise soon after the send.
    preferred_second = population.preferred_hour[owner] * 3600 + rng.integers(0, 3600, size=m)
    wait_for_preferred = (preferred_second - local_second) % DAY
    soon_after = (rng.beta(1.0, model.open_delay_beta, size=m) * max_delay).astype(np.int64)
    open_delay = np.where(wait_for_preferred <= max_delay, wait_for_preferred, soon_after) + 1
    opened_at = sent_at + open_delay
    reopens = np.where(opened, rng.poisson(model.reopen_mean * population.engagement[owner]), 0)
    clicked = opened & (rng.random(m) < model.click_share)
    clicked_at = opened_at + rng.integers(5, 900, size=m)
    opt_out_draw = rng.random(m)
    complained = opened & (opt_out_draw < model.complaint_share)
    unsubscribed = (
        opened & ~complained & (opt_out_draw < model.complaint_share + model.unsubscribe_share)
    )
    opted_out_at = opened_at + rng.integers(30, 1800, size=m)

    # Nothing before sign-up (a send hour early on the sign-up day), no mail after an
    # unsubscribe or complaint.
    signed_up = sent_at >= population.signup_at[owner]
    suppressed_at = np.full(n, NEVER, dtype=np.int64)
    opted_out = signed_up & (complained | unsubscribed)
    np.minimum.at(suppressed_at, owner[opted_out], opted_out_at[opted_out])
    kept = signed_up & (sent_at < suppressed_at[owner])
    send_order = np.flatnonzero(kept)[_stable_order(sent_at[kept])]
    message = np.zeros(m, dtype=np.int64)
    message[send_order] = counters.message + np.arange(send_order.size)
    counters.message += send_order.size

    reopen_of = np.repeat(np.arange(m), reopens)
    reopened_at = (
        sent_at[reopen_of]
        + open_delay[reopen_of]
        + (rng.random(reopen_of.size) * np.maximum(max_delay - open_delay[reopen_of], 0)).astype(
            np.int64
        )
    )

    # Events as (send, time, type), one block per type, re-opens last.
    sends, times, kinds = [], [], []
    for mask, at, kind in (
        (kept, sent_at, SENT),
        (kept & ~bounced, delivered_at, DELIVERED),
        (kept & bounced, delivered_at, BOUNCE),
        (kept & opened, opened_at, OPEN),
        (kept & clicked, clicked_at, CLICK),
        (kept & unsubscribed, opted_out_at, UNSUBSCRIBE),
        (kept & complained, opted_out_at, COMPLAINT),
    ):
        rows = np.flatnonzero(mask)
        sends.append(rows)
        times.append(at[rows])
        kinds.append(np.full(rows.size, kind, np.int8))
    reopened = kept[reopen_of]
    sends.append(reopen_of[reopened])
    times.append(reopened_at[reopened])
    kinds.append(np.full(int(reopened.sum()), OPEN, np.int8))
    send = np.concatenate(sends)
    events = {
        "customer": population.number[owner[send]].astype(np.int32),
        "ts": np.concatenate(times),
        "type": np.concatenate(kinds),
        "message": message[send],
        "campaign": campaign[send].astype(np.int32),
    }
    delivered = kept & ~bounced
    return _Emails(
        events=events,
        delivered=(owner[delivered], delivered_at[delivered]),
        suppressed_at=suppressed_at,
    )


def expected_uplift(
    population: Population,
    window: Window,
    model: Model,
    uplift: float,
    start: int,
    end: int,
) -> dict:
    """The planted uplift, exact in expectation given the emails actually delivered.

    Population: consenting customers signed up before `start` (exposed all period).
    Contacted = its non-holdout part, compared with its holdout part.
    """
    customer, at = window.delivered_customer, window.delivered_at
    # Deliveries fall inside [start, end + 2 min), so (customer, time) packs into one int64.
    order = _stable_order(customer.astype(np.int64) * (end - start + DAY) + (at - start))
    customer, at = customer[order], at[order]
    exposure_end = np.minimum(end, population.churn_at)
    next_at = np.full(at.size, NEVER, dtype=np.int64)
    same_next = customer[1:] == customer[:-1]
    next_at[:-1][same_next] = at[1:][same_next]
    window_end = np.minimum.reduce(
        [at + model.uplift_window_days * DAY, next_at, exposure_end[customer]]
    )
    window_start = np.minimum(at, window_end)
    boosted = _activity_integral(model, window_start, window_end, population.churn_at[customer])
    treated_seconds = np.bincount(customer, boosted, minlength=len(population))

    begin = np.maximum(start, population.signup_at)
    base_seconds = _activity_integral(
        model, np.minimum(begin, exposure_end), exposure_end, population.churn_at
    )
    rate_per_second = population.redemption_rate / DAY
    base = rate_per_second * base_seconds
    extra = uplift * rate_per_second * treated_seconds

    members = population.opt_in & (population.signup_at < start)
    contacted = members & ~population.holdout
    holdout = members & population.holdout
    counts = np.zeros(len(population))
    index = np.searchsorted(population.number, window.redemptions["customer"])
    np.add.at(counts, index, 1)
    return {
        "definition": (
            "A customer's redemption rate is multiplied by (1 + relative_increase) for "
            "window_days after each delivered marketing email (a later email restarts the "
            "window). Redemption rate = redemptions per customer over the seeded period. "
            "Population: marketing_opt_in = true and signup_at before start_date. Contacted = "
            "population outside the holdout (they receive emails), holdout = population in "
            "the holdout (never emailed)."
        ),
        "relative_increase": uplift,
        "window_days": model.uplift_window_days,
        "population_contacted": int(contacted.sum()),
        "population_holdout": int(holdout.sum()),
        "expected_absolute_uplift_redemptions_per_customer": float(extra[contacted].mean()),
        "expected_absolute_uplift_share_redeeming": float(
            (np.exp(-base[contacted]) - np.exp(-(base + extra)[contacted])).mean()
        ),
        "expected_redemptions_per_customer_without_email": float(base[contacted].mean()),
        "realized_redemptions_per_customer_contacted": float(counts[contacted].mean()),
        "realized_redemptions_per_customer_holdout": float(counts[holdout].mean())
        if holdout.any()
        else None,
    }
