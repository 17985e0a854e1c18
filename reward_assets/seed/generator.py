"""Synthetic landing data with planted, known structure: the seed and the daily top-up.

The generator draws a latent truth per customer (category tastes, preferred email hour,
activity, engagement, churn date) and per reward (popularity), simulates a window of time
from it (purchases and refunds, marketing emails and their events, redemptions), and lands
the rows as the daily files of the input contract with a known share of rows that break
the contract. Everything it planted goes to ``_truth/`` so that models and data checks can
be tested against it.

All work is vectorised over customers and rows; Python loops only run over files, tiers,
categories and id widths. Times are int64 seconds since the Unix epoch (UTC) throughout.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from reward_assets.contact.holdout import holdout_mask
from reward_assets.ingest.contract import ENTITIES, EVENT_TYPES, TIERS

DAY = 86_400
DAYS_PER_MONTH = 30.44
# "Not yet / never": far beyond any simulated time, yet small enough to do arithmetic on.
NEVER = 2**62
NO_EMAIL_YET = -(2**62)
DEMO_CUSTOMERS = 10  # cust001..cust010: clean, consenting, high-tier, never churn
WRITE_THREADS = min(4, os.cpu_count() or 1)

CATEGORIES = (
    "travel",
    "dining",
    "entertainment",
    "electronics",
    "fashion",
    "groceries",
    "wellness",
    "gift_cards",
    "experiences",
    "home",
)
CHANNELS = ("online", "store", "app")
SENT, DELIVERED, OPEN, CLICK, BOUNCE, UNSUBSCRIBE, COMPLAINT = (
    EVENT_TYPES.index(t)
    for t in ("sent", "delivered", "open", "click", "bounce", "unsubscribe", "complaint")
)
# (IANA zone, ISO country, share of customers)
TIMEZONES = (
    ("America/New_York", "US", 0.16),
    ("America/Chicago", "US", 0.08),
    ("America/Los_Angeles", "US", 0.10),
    ("America/Toronto", "CA", 0.05),
    ("America/Mexico_City", "MX", 0.04),
    ("America/Sao_Paulo", "BR", 0.07),
    ("Europe/London", "GB", 0.09),
    ("Europe/Berlin", "DE", 0.08),
    ("Europe/Paris", "FR", 0.06),
    ("Europe/Madrid", "ES", 0.04),
    ("Africa/Johannesburg", "ZA", 0.03),
    ("Asia/Kolkata", "IN", 0.07),
    ("Asia/Singapore", "SG", 0.03),
    ("Asia/Tokyo", "JP", 0.05),
    ("Australia/Sydney", "AU", 0.05),
)
FIRST_NAMES = (
    "Ava", "Liam", "Olivia", "Noah", "Emma", "Lucas", "Mia", "Ethan", "Sofia", "Mateo",
    "Hannah", "Leon", "Chloe", "Arjun", "Yuki", "Kenji", "Priya", "Rahul", "Amelia", "Oliver",
    "Isla", "Jack", "Lea", "Felix", "Camila", "Diego", "Aiko", "Ren", "Zara", "Omar",
    "Grace", "Henry", "Ines", "Marco", "Nora", "Pablo", "Sara", "Tom", "Vera", "Wei",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Miller", "Brown", "Davis", "Martinez", "Lopez", "Wilson",
    "Anderson", "Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Dubois", "Martin",
    "Bernard", "Rossi", "Silva", "Santos", "Oliveira", "Sato", "Suzuki", "Takahashi",
    "Tanaka", "Patel", "Sharma", "Singh", "Kumar", "Nguyen", "Tran", "Kim", "Lee", "Chen",
    "Wang", "O'Brien", "Murphy", "Kelly", "Walsh",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "mail.example.com", "post.example.com", "inbox.example.com")
REWARD_ADJECTIVES = (
    "Classic", "Premium", "Deluxe", "Essential", "Signature", "Weekend", "Family", "Express",
)  # fmt: skip
REWARD_ITEMS = {
    "travel": (
        "Airport Lounge Pass", "Hotel Night", "Flight Voucher", "Car Rental Day", "City Break",
    ),
    "dining": ("Dinner for Two", "Brunch Voucher", "Coffee Card", "Tasting Menu", "Pizza Night"),
    "entertainment": (
        "Movie Tickets", "Concert Pass", "Streaming Month", "Theme Park Ticket", "Comedy Night",
    ),
    "electronics": (
        "Wireless Earbuds", "Smart Speaker", "Phone Charger", "Fitness Tracker", "E-Reader",
    ),
    "fashion": ("Sneaker Voucher", "Silk Scarf", "Boutique Credit", "Sunglasses", "Leather Wallet"),
    "groceries": (
        "Grocery Credit", "Organic Box", "Market Voucher", "Pantry Bundle", "Wine Selection",
    ),
    "wellness": (
        "Spa Session", "Yoga Class Pack", "Massage Voucher", "Gym Day Pass", "Meditation App Year",
    ),
    "gift_cards": (
        "Department Store Card", "Bookshop Card", "Online Store Card", "Cinema Card", "Cafe Card",
    ),
    "experiences": (
        "Cooking Class", "Balloon Ride", "Wine Tasting Tour", "Kayak Trip", "Pottery Workshop",
    ),
    "home": ("Candle Set", "Cookware Set", "Throw Blanket", "Plant Subscription", "Coffee Maker"),
}  # fmt: skip
# Unparseable values planted in timestamp columns.
BAD_TIMESTAMPS = (
    "2023-13-45T99:00:00",
    "yesterday",
    "not a date",
    "31/02/2023 25:61",
    "2023-02-30T10:00:00Z",
    "0000-00-00T00:00:00Z",
)

Frame = dict[str, np.ndarray]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Model:
    """Every knob of the generative model; stored in params.json, read back by simulate_day."""

    pre_start_signup_share: float = 0.6
    pre_start_signup_days: int = 730
    opt_in_share: float = 0.7
    tier_shares: tuple[float, ...] = (0.5, 0.3, 0.15, 0.05)
    tier_typical_balance: tuple[float, ...] = (800.0, 2500.0, 6000.0, 15000.0)
    balance_sigma: float = 0.7
    # Category tastes ~ Dirichlet(alpha); a small alpha concentrates them on 1-3 categories.
    taste_alpha: float = 0.25
    preferred_empty_share: float = 0.2
    preferred_wrong_share: float = 0.15
    preferred_second_share: float = 0.4
    # Purchases per day: lognormal around the median, scaled by tier.
    purchase_rate_median: float = 0.11
    purchase_rate_sigma: float = 1.0
    tier_purchase_factor: tuple[float, ...] = (0.85, 1.0, 1.25, 1.5)
    category_mean_amount: tuple[float, ...] = (180, 45, 35, 220, 80, 60, 50, 50, 120, 90)
    amount_sigma: float = 0.6
    spend_sigma: float = 0.3
    tier_points_per_dollar: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0)
    channel_shares: tuple[float, ...] = (0.45, 0.35, 0.2)
    refund_share: float = 0.021
    refund_max_days: int = 30
    # Redemptions per day: the median, times (purchase rate / its median) ** elasticity, times
    # the tier factor. An elasticity below 1 keeps redemption counts from being as skewed as
    # purchases, so the uplift stands out of the noise in a 5% holdout.
    redemption_rate_median: float = 0.02
    redemption_purchase_elasticity: float = 0.5
    tier_redeem_factor: tuple[float, ...] = (0.8, 1.0, 1.2, 1.4)
    reward_zipf_exponent: float = 0.6
    # Added to every taste before choosing a reward category: the choice noise.
    reward_taste_smoothing: float = 0.03
    reward_cost_median: float = 2500.0
    reward_cost_sigma: float = 0.9
    reward_min_tier_shares: tuple[float, ...] = (0.6, 0.2, 0.13, 0.07)
    reward_inactive_share: float = 0.1
    reward_out_of_stock_share: float = 0.04
    # Marketing email and its events.
    emails_per_month: float = 2.0
    send_local_hours: tuple[int, int] = (8, 20)
    send_spread_minutes: int = 15
    engagement_beta: tuple[float, float] = (2.0, 2.0)
    open_peak_sigma_hours: float = 1.5
    open_off_peak_floor: float = 0.02
    open_max_delay_minutes: int = 90
    # Open delay = max delay * Beta(1, b): most opens come within the first half hour.
    open_delay_beta: float = 4.0
    reopen_mean: float = 2.5
    click_share: float = 0.3
    unsubscribe_share: float = 0.01
    complaint_share: float = 0.002
    bounce_share: float = 0.02
    churned_open_factor: float = 0.2
    # Churn: whether a customer ever churns is a logistic in its drivers; when is a
    # late-leaning Beta share of a horizon of `churn_horizon_periods` seeded periods, counted
    # from the period start (or sign-up plus grace).
    churn_base_logit: float = 0.8
    churn_tier_effect: tuple[float, ...] = (0.7, 0.2, -0.7, -1.4)
    churn_engagement_effect: float = -5.0
    churn_noise_sigma: float = 0.3
    churn_horizon_periods: float = 4 / 3
    churn_timing_beta: tuple[float, float] = (4.0, 1.0)
    churn_grace_days: int = 14
    # Quiet spells: each customer-block of this many days (epoch-aligned) is quiet with this
    # probability, purchases then run at `quiet_factor` of the usual rate (mean kept at 1).
    quiet_block_days: int = 28
    quiet_share: float = 0.12
    quiet_factor: float = 0.02
    # Activity declines linearly to `floor` over the last `ramp` days before churn.
    churn_ramp_days: int = 120
    churn_ramp_floor: float = 0.2
    uplift_window_days: int = 7

    @classmethod
    def from_json(cls, values: dict) -> Model:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class SeedConfig:
    output: Path
    customers: int = 10_000
    rewards: int = 200
    days: int = 180
    start_date: date = date(2023, 3, 1)
    seed: int = 42
    format: str = "csv"
    dirty_fraction: float = 0.01
    holdout_share: float = 0.05
    # Relative increase of the redemption rate in the window after a delivered email.
    uplift: float = 0.5
    # The generative model's knobs; a second seed can vary them (`--set taste_alpha=0.4`).
    model: Model = Model()


@dataclass
class Counters:
    """The next number of every id sequence, so a later day continues them."""

    customer: int = 1
    transaction: int = 1
    redemption: int = 1
    event: int = 1
    message: int = 1


@dataclass
class Summary:
    data_dir: Path
    first_day: date
    last_day: date
    rows: dict[str, int]
    dirty: dict[str, int]
    files: dict[str, int]
    seconds: float
    uplift: dict | None = None

    def render(self) -> str:
        days = (self.last_day - self.first_day).days + 1
        lines = [
            f"Landed {self.first_day} .. {self.last_day} ({days} day(s)) into {self.data_dir}"
            f" in {self.seconds:.1f}s",
            f"{'entity':<20}{'rows':>14}{'dirty':>10}{'files':>8}",
        ]
        for entity, rows in self.rows.items():
            lines.append(
                f"{entity:<20}{rows:>14,}{self.dirty[entity]:>10,}{self.files[entity]:>8,}"
            )
        lines.append(f"{'total':<20}{sum(self.rows.values()):>14,}{sum(self.dirty.values()):>10,}")
        truth = self.data_dir / "_truth"
        lines.append(f"Every dirty row (file, line, id, kind): {truth / 'dirty_rows.csv'}")
        lines.append(f"Ground truth (params, tastes, churn, holdout, uplift): {truth}/")
        if self.uplift:
            lines.append(
                "Planted uplift: +{:.3f} redemptions per contacted customer expected "
                "(x{:.2f} redemption rate for {} days after each delivered email)".format(
                    self.uplift["expected_absolute_uplift_redemptions_per_customer"],
                    1 + self.uplift["relative_increase"],
                    self.uplift["window_days"],
                )
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- formatting


def _string_array(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(
        pa.string(),
        len(offsets) - 1,
        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(data))],
    )


def _fixed_width_strings(matrix: np.ndarray) -> pa.Array:
    rows, width = matrix.shape
    return _string_array(matrix.reshape(-1), np.arange(rows + 1, dtype=np.int64) * width)


# ASCII digits of 0000..9999 as little-endian words, so formatting divides once per four
# digits and writes four bytes at a time.
_QUADS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), np.uint32)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) matrix of the zero-padded ASCII digits of non-negative integers."""
    groups = -(-width // 4)
    words = np.empty((values.size, groups), dtype=np.uint32)
    rest = values
    for group in range(groups - 1, -1, -1):
        rest, quad = np.divmod(rest, 10_000)
        words[:, group] = _QUADS[quad]
    return words.view(np.uint8)[:, groups * 4 - width :]


def format_ids(prefix: str, numbers: np.ndarray, min_width: int) -> pa.Array:
    """`f"{prefix}{n:0{min_width}d}"` for every n, built without Python string formatting."""
    numbers = np.asarray(numbers, dtype=np.int64)
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    full = max(min_width, len(str(int(numbers.max(initial=0)))))
    matrix = np.empty((numbers.size, head.size + full), dtype=np.uint8)
    matrix[:, : head.size] = head
    matrix[:, head.size :] = _digits(numbers, full)
    if full == min_width:
        return _fixed_width_strings(matrix)
    widths = np.full(numbers.size, min_width)
    for power in range(min_width, full):
        widths += numbers >= 10**power
    # Drop each row's surplus leading zeros; boolean selection keeps row-major order.
    columns = np.arange(head.size + full)
    keep = (columns < head.size) | (columns - head.size >= (full - widths)[:, None])
    offsets = np.zeros(numbers.size + 1, dtype=np.int64)
    np.cumsum(head.size + widths, out=offsets[1:])
    return _string_array(matrix[keep], offsets)


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proleptic Gregorian (year, month, day) of days since 1970-01-01 (H. Hinnant)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (month <= 2), month, day


@cache
def _clock_faces() -> np.ndarray:
    """(86400, 8) ASCII `HH:MM:SS` for every second of a day."""
    second = np.arange(DAY, dtype=np.int64)
    out = np.empty((DAY, 8), dtype=np.uint8)
    out[:] = np.frombuffer(b"00:00:00", dtype=np.uint8)
    out[:, 0:2] = _digits(second // 3600, 2)
    out[:, 3:5] = _digits(second // 60 % 60, 2)
    out[:, 6:8] = _digits(second % 60, 2)
    return out


def format_timestamps(seconds: np.ndarray) -> pa.Array:
    """ISO 8601 UTC at seconds resolution, `2023-03-01T14:05:09Z`."""
    seconds = np.asarray(seconds, dtype=np.int64)
    days, second_of_day = np.divmod(seconds, DAY)
    first = int(days.min(initial=0))
    year, month, day = _civil_from_days(np.arange(first, int(days.max(initial=0)) + 1))
    calendar = np.empty((year.size, 10), dtype=np.uint8)
    calendar[:] = np.frombuffer(b"0000-00-00", dtype=np.uint8)
    calendar[:, 0:4] = _digits(year, 4)
    calendar[:, 5:7] = _digits(month, 2)
    calendar[:, 8:10] = _digits(day, 2)
    out = np.empty((seconds.size, 20), dtype=np.uint8)
    out[:, 0:10] = calendar[days - first]
    out[:, 10] = ord("T")
    out[:, 11:19] = _clock_faces()[second_of_day]
    out[:, 19] = ord("Z")
    return _fixed_width_strings(out)


def _money(cents: np.ndarray) -> pa.Array:
    """Cents as decimal(12, 2): written as `12.34` in CSV, typed in Parquet."""
    cents = np.asarray(cents, dtype=np.int64)
    words = np.stack([cents, np.where(cents < 0, -1, 0)], axis=1)  # little-endian int128
    return pa.Array.from_buffers(pa.decimal128(12, 2), cents.size, [None, pa.py_buffer(words)])


def _labels(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(np.asarray(codes))


def _timestamp_column(seconds: np.ndarray, missing: np.ndarray) -> pa.Array:
    return pa.array(seconds, pa.int64(), mask=missing).cast(pa.timestamp("s", tz="UTC"))


def _seconds(column: pa.ChunkedArray, missing_value: int) -> np.ndarray:
    # Parquet stores second timestamps as milliseconds; come back to seconds first.
    seconds = column.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64())
    return pc.fill_null(seconds, missing_value).to_numpy()


def epoch_seconds(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _date_of(seconds: int) -> date:
    return date(1970, 1, 1) + timedelta(days=seconds // DAY)


# --------------------------------------------------------------------------- rewards


def draw_rewards(rng: np.random.Generator, n: int, model: Model) -> Frame:
    category = rng.integers(len(CATEGORIES), size=n)
    cost = rng.lognormal(np.log(model.reward_cost_median), model.reward_cost_sigma, n)
    cost = np.clip(np.round(cost / 50) * 50, 100, 100_000).astype(np.int64)
    inventory = rng.integers(1, 5_000, size=n)
    inventory[rng.random(n) < model.reward_out_of_stock_share] = 0
    min_tier = rng.choice(len(TIERS), size=n, p=model.reward_min_tier_shares)
    active = rng.random(n) >= model.reward_inactive_share
    # So that cust001..cust010 always have several affordable choices.
    cheapest = np.argsort(cost, kind="stable")[:5]
    active[cheapest] = True
    inventory[cheapest] = np.maximum(inventory[cheapest], 100)
    min_tier[cheapest] = 0
    rank = rng.permutation(n) + 1
    return {
        "category": category,
        "points_cost": cost,
        "inventory": inventory,
        "min_tier": min_tier,
        "active": active,
        "adjective": rng.integers(len(REWARD_ADJECTIVES), size=n),
        "item": rng.integers(5, size=n),
        "popularity": 1.0 / rank**model.reward_zipf_exponent,
    }


def reward_weights(rewards: Frame, model: Model) -> np.ndarray:
    """(tier, reward) weight of a reward for a customer of that tier, before taste.

    Popularity, times eligibility (min tier, active, in stock), times a soft affordability
    against the tier's typical balance.
    """
    tiers = np.arange(len(TIERS))[:, None]
    typical = np.asarray(model.tier_typical_balance)[:, None]
    afford = np.minimum(1.0, typical / rewards["points_cost"][None, :])
    available = rewards["active"] & (rewards["inventory"] > 0)
    eligible = (rewards["min_tier"][None, :] <= tiers) & available[None, :]
    return rewards["popularity"][None, :] * afford * eligible


# --------------------------------------------------------------------------- customers


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
            "tier": _labels(TIERS, self.tier),
            "timezone": _labels(tuple(t[0] for t in TIMEZONES), self.timezone),
            "marketing_opt_in": pa.array(self.opt_in),
            "is_holdout": pa.array(self.holdout),
            **{f"taste_{c}": pa.array(self.taste[:, i]) for i, c in enumerate(CATEGORIES)},
            "top_category": _labels(CATEGORIES, self.taste.argmax(axis=1)),
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


# --------------------------------------------------------------------------- simulation


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
    return _concat([pending[entity], frame]) if entity in pending else frame


def _concat(frames: list[Frame]) -> Frame:
    return {k: np.concatenate([f[k] for f in frames]) for k in frames[-1]}


def _take(frame: Frame, index: np.ndarray | slice) -> Frame:
    return {k: v[index] for k, v in frame.items()}


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
    return _take(frame, _stable_order(frame["ts"]))


def _split_at(frame: Frame, end: int) -> tuple[Frame, Frame]:
    """Rows before `end` sorted by time, and the rows from `end` on."""
    order = _stable_order(frame["ts"])
    cut = int(np.searchsorted(frame["ts"][order], end))
    return _take(frame, order[:cut]), _take(frame, order[cut:])


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
    refunds = _take(purchases, refunded)
    refunds["ts"] = refund_at[refunded]
    refunds["cents"] = -refunds["cents"]
    refunds["points"] = -refunds["points"]
    return _concat([purchases, refunds])


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


# --------------------------------------------------------------------------- landing


@dataclass(frozen=True)
class EntitySpec:
    name: str
    time_column: str | None  # the timestamp column bad timestamps are planted in
    frame_time: str | None  # the frame key behind it
    dirty_kinds: tuple[str, ...]
    build: Callable[[Frame, np.ndarray], pa.Table]

    @property
    def columns(self) -> list[str]:
        return ENTITIES[self.name].column_names

    @property
    def key(self) -> str:
        return ENTITIES[self.name].key

    @property
    def has_customer(self) -> bool:
        return ENTITIES[self.name].customer_column is not None

    def table(self, frame: Frame, ids: np.ndarray) -> pa.Table:
        """The rows as the contract's columns, in its order (an error if one is missing)."""
        return self.build(frame, ids).select(self.columns)


def _customers_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    first = frame["first"]
    last = frame["last"]
    lower_first = _labels(tuple(x.lower() for x in FIRST_NAMES), first)
    lower_last = _labels(tuple(x.lower().replace("'", "") for x in LAST_NAMES), last)
    email = pc.binary_join_element_wise(
        lower_first, ".", lower_last, format_ids("", ids, 1), "@",
        _labels(EMAIL_DOMAINS, frame["domain"]), "",
    )  # fmt: skip
    labels = (*CATEGORIES, "")
    preferred_first = _labels(
        labels, np.where(frame["preferred_first"] < 0, len(CATEGORIES), frame["preferred_first"])
    )
    both = pc.binary_join_element_wise(
        preferred_first, "|", _labels(labels, np.maximum(frame["preferred_second"], 0)), ""
    )
    return pa.table(
        {
            "customer_id": format_ids("cust", ids, 3),
            "email": email,
            "signup_at": format_timestamps(frame["signup_at"]),
            "first_name": _labels(FIRST_NAMES, first),
            "last_name": _labels(LAST_NAMES, last),
            "country": _labels(tuple(t[1] for t in TIMEZONES), frame["timezone"]),
            "timezone": _labels(tuple(t[0] for t in TIMEZONES), frame["timezone"]),
            "tier": _labels(TIERS, frame["tier"]),
            "points_balance": pa.array(frame["balance"], pa.int64()),
            "marketing_opt_in": pa.array(frame["opt_in"], pa.bool_()),
            "preferred_categories": pc.if_else(
                pa.array(frame["preferred_second"] >= 0, pa.bool_()), both, preferred_first
            ),
        }
    )


def _rewards_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    items = [item for c in CATEGORIES for item in REWARD_ITEMS[c]]
    name = pc.binary_join_element_wise(
        _labels(REWARD_ADJECTIVES, frame["adjective"]),
        _labels(tuple(items), frame["category"] * 5 + frame["item"]),
        " ",
    )
    description = pc.binary_join_element_wise(
        "Redeem ",
        format_ids("", frame["points_cost"], 1),
        " points for a ",
        pc.utf8_lower(name),
        "",
    )
    return pa.table(
        {
            "reward_id": format_ids("rwd", ids, 3),
            "name": name,
            "category": _labels(CATEGORIES, frame["category"]),
            "points_cost": pa.array(frame["points_cost"], pa.int64()),
            "description": description,
            "inventory": pa.array(frame["inventory"], pa.int64()),
            "min_tier": _labels(TIERS, frame["min_tier"]),
            "active": pa.array(frame["active"], pa.bool_()),
        }
    )


def _constant(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


def _transactions_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    n = ids.size
    return pa.table(
        {
            "transaction_id": format_ids("txn", ids, 8),
            "customer_id": format_ids("cust", frame["customer"], 3),
            "occurred_at": format_timestamps(frame["ts"]),
            "amount": _money(frame["cents"]),
            "currency": _constant("USD", n),
            "category": _labels(CATEGORIES, frame["category"]),
            "channel": _labels(CHANNELS, frame["channel"]),
            "points_earned": pa.array(frame["points"], pa.int64()),
        }
    )


def _redemptions_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "redemption_id": format_ids("rdm", ids, 7),
            "customer_id": format_ids("cust", frame["customer"], 3),
            "reward_id": format_ids("rwd", frame["reward"], 3),
            "redeemed_at": format_timestamps(frame["ts"]),
            "points_spent": pa.array(frame["points"], pa.int64()),
        }
    )


def campaign_names(codes: np.ndarray) -> pa.Array:
    """`wk<monday yyyymmdd>_<category>` for week * n_categories + category codes."""
    unique, inverse = np.unique(codes, return_inverse=True)
    monday = date(1970, 1, 1) - timedelta(days=3)
    names = [
        f"wk{monday + timedelta(weeks=int(c) // len(CATEGORIES)):%Y%m%d}_"
        f"{CATEGORIES[int(c) % len(CATEGORIES)]}"
        for c in unique
    ]
    return pa.array(names, pa.string()).take(inverse.reshape(-1))


def _events_table(frame: Frame, ids: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "event_id": format_ids("evt", ids, 9),
            "customer_id": format_ids("cust", frame["customer"], 3),
            "event_type": _labels(EVENT_TYPES, frame["type"]),
            "occurred_at": format_timestamps(frame["ts"]),
            "message_id": format_ids("msg", frame["message"], 10),
            "campaign": campaign_names(frame["campaign"]),
            "channel": _constant("email", ids.size),
        }
    )


DUPLICATE, MALFORMED_EMAIL, MISSING_KEY = "duplicate_id", "malformed_email", "missing_key"
BAD_TIMESTAMP, UNKNOWN_CUSTOMER = "unparseable_timestamp", "unknown_customer"
UNKNOWN_REWARD = "unknown_reward"

CUSTOMERS = EntitySpec(
    "customers",
    "signup_at",
    "signup_at",
    (DUPLICATE, MALFORMED_EMAIL, MISSING_KEY, BAD_TIMESTAMP),
    _customers_table,
)
REWARDS = EntitySpec("rewards", None, None, (DUPLICATE, MISSING_KEY), _rewards_table)
TRANSACTIONS = EntitySpec(
    "transactions",
    "occurred_at",
    "ts",
    (DUPLICATE, MISSING_KEY, BAD_TIMESTAMP, UNKNOWN_CUSTOMER),
    _transactions_table,
)
REDEMPTIONS = EntitySpec(
    "redemptions",
    "redeemed_at",
    "ts",
    (DUPLICATE, MISSING_KEY, BAD_TIMESTAMP, UNKNOWN_CUSTOMER, UNKNOWN_REWARD),
    _redemptions_table,
)
ENGAGEMENT_EVENTS = EntitySpec(
    "engagement_events",
    "occurred_at",
    "ts",
    (DUPLICATE, MISSING_KEY, BAD_TIMESTAMP, UNKNOWN_CUSTOMER),
    _events_table,
)
SPECS = (CUSTOMERS, REWARDS, TRANSACTIONS, REDEMPTIONS, ENGAGEMENT_EVENTS)
DIRTY_COLUMNS = ("entity", "file", "id", "line", "kind")


@dataclass
class Landed:
    rows: int
    dirty: pa.Table  # DIRTY_COLUMNS
    next_id: int
    files: int


@dataclass(frozen=True)
class Lander:
    """Writes an entity's rows into its files, with dirty rows planted among them."""

    data_dir: Path
    file_format: str
    dirty_fraction: float
    rng: np.random.Generator

    def land(
        self,
        spec: EntitySpec,
        frame: Frame,
        first_id: int,
        files: list[str],
        bounds: np.ndarray,
    ) -> Landed:
        """`frame` rows are in file order; file i holds rows bounds[i]:bounds[i + 1].

        Clean rows get ids from `first_id` on, dirty rows that need a new id the ones after.
        """
        n = int(bounds[-1])
        ids = first_id + np.arange(n, dtype=np.int64)
        protected = frame["customer"] if spec.has_customer else ids if spec is CUSTOMERS else None
        eligible = (
            np.flatnonzero(protected > DEMO_CUSTOMERS) if protected is not None else np.arange(n)
        )
        wanted = round(n * self.dirty_fraction / (1 - self.dirty_fraction))
        count = min(wanted, eligible.size)
        plan = self._plan(spec, frame, ids, bounds, eligible, count, first_id + n)
        first_line = 2 if self.file_format == "csv" else 1

        def write_file(i: int) -> pa.Table:
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            clean = spec.table(_take(frame, slice(lo, hi)), ids[lo:hi])
            mine = np.flatnonzero(plan.file == i)
            mine = mine[np.lexsort((mine, plan.after[mine]))]
            table, lines = _interleave(clean, plan.table.take(mine), plan.after[mine] - lo)
            self._write(table, self.data_dir / files[i])
            return pa.table(
                {
                    "entity": _constant(spec.name, mine.size),
                    "file": _constant(files[i], mine.size),
                    "id": pc.fill_null(plan.table.column(spec.key).take(mine), ""),
                    "line": pa.array(lines + first_line, pa.int64()),
                    "kind": _labels(spec.dirty_kinds, plan.kind[mine]),
                }
            )

        # numpy and Arrow release the GIL, so files format and write in parallel.
        with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
            records = list(pool.map(write_file, range(len(files))))
        dirty = pa.concat_tables(records) if records else _empty_dirty()
        return Landed(rows=n + dirty.num_rows, dirty=dirty, next_id=plan.next_id, files=len(files))

    def _plan(
        self,
        spec: EntitySpec,
        frame: Frame,
        ids: np.ndarray,
        bounds: np.ndarray,
        eligible: np.ndarray,
        count: int,
        next_id: int,
    ) -> _DirtyPlan:
        rng = self.rng
        template = np.sort(rng.choice(eligible, size=count, replace=False))
        kind = rng.permutation(np.resize(np.arange(len(spec.dirty_kinds)), count))
        kinds = np.asarray(spec.dirty_kinds)[kind]
        file = np.searchsorted(bounds, template, "right") - 1
        lo, hi = bounds[file], bounds[file + 1]
        duplicate = kinds == DUPLICATE
        # A duplicate comes after its original; other dirty rows anywhere in the file.
        after = np.where(duplicate, rng.integers(template, hi), rng.integers(lo - 1, hi))

        rows = _take(frame, template)
        altered = duplicate & (rng.random(count) < 0.5)
        if spec.frame_time:
            at = rows[spec.frame_time]
            shifted = np.minimum(at + rng.integers(1, 600, size=count), (at // DAY + 1) * DAY - 1)
            rows[spec.frame_time] = np.where(altered, shifted, at)
        else:
            rows["inventory"] = np.where(altered, rows["inventory"] + 7, rows["inventory"])
        null_customer = (kinds == MISSING_KEY) & spec.has_customer & (rng.random(count) < 0.5)
        null_id = (kinds == MISSING_KEY) & ~null_customer
        fresh = ~duplicate & ~null_id
        dirty_ids = ids[template].copy()
        dirty_ids[fresh] = next_id + np.arange(fresh.sum())
        table = spec.table(rows, dirty_ids)

        def override(column: str, mask: np.ndarray, values: pa.Array | pa.Scalar) -> None:
            nonlocal table
            index = table.schema.get_field_index(column)
            replaced = pc.if_else(pa.array(mask, pa.bool_()), values, table.column(index))
            table = table.set_column(index, column, replaced)

        null = pa.scalar(None, pa.string())
        override(spec.key, null_id, null)
        if spec.has_customer:
            override("customer_id", null_customer, null)
            ghosts = format_ids("cust_ghost_", rng.integers(1, 100_000, size=count), 5)
            override("customer_id", kinds == UNKNOWN_CUSTOMER, ghosts)
        if UNKNOWN_REWARD in spec.dirty_kinds:
            ghosts = format_ids("rwd_ghost_", rng.integers(1, 10_000, size=count), 4)
            override("reward_id", kinds == UNKNOWN_REWARD, ghosts)
        if spec.time_column:
            garbage = _labels(BAD_TIMESTAMPS, rng.integers(len(BAD_TIMESTAMPS), size=count))
            override(spec.time_column, kinds == BAD_TIMESTAMP, garbage)
        if MALFORMED_EMAIL in spec.dirty_kinds:
            override("email", kinds == MALFORMED_EMAIL, _malformed(rng, table.column("email")))
        return _DirtyPlan(
            table=table, kind=kind, file=file, after=after, next_id=next_id + int(fresh.sum())
        )

    def _write(self, table: pa.Table, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.file_format == "parquet":
            pq.write_table(table, path)
            return
        _write_csv(table, path)


@dataclass
class _DirtyPlan:
    table: pa.Table  # the dirty rows, formatted
    kind: np.ndarray
    file: np.ndarray
    after: np.ndarray  # global position of the clean row each dirty row follows (-1 = first)
    next_id: int


def _malformed(rng: np.random.Generator, emails: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each email with its `@` dropped, doubled or preceded by a space."""
    variants = [
        pc.replace_substring(emails, "@", "", max_replacements=1),
        pc.replace_substring(emails, "@", "@@", max_replacements=1),
        pc.replace_substring(emails, "@", " @", max_replacements=1),
    ]
    pick = rng.integers(len(variants), size=len(emails))
    out = variants[0]
    for i, variant in enumerate(variants[1:], start=1):
        out = pc.if_else(pa.array(pick == i), variant, out)
    return out


def _interleave(clean: pa.Table, dirty: pa.Table, after: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Clean rows with each dirty row placed after clean row `after` (sorted, file-local).

    Returns the merged table and the 0-based positions of the dirty rows in it.
    """
    n_clean = clean.num_rows
    dirty_position = after + 1 + np.arange(after.size)
    clean_position = np.arange(n_clean) + np.searchsorted(after, np.arange(n_clean), "left")
    source = np.empty(n_clean + after.size, dtype=np.int64)
    source[clean_position] = np.arange(n_clean)
    source[dirty_position] = n_clean + np.arange(after.size)
    # One contiguous copy: Arrow's CSV writer is slow on many small chunks.
    return pa.concat_tables([clean, dirty]).take(source), dirty_position


def _empty_dirty() -> pa.Table:
    return pa.table(
        {c: pa.array([], pa.int64() if c == "line" else pa.string()) for c in DIRTY_COLUMNS}
    )


def _day_files(
    entity: str, start: int, end: int, ts: np.ndarray, ext: str
) -> tuple[list[str], np.ndarray]:
    days = np.arange(start // DAY, end // DAY)
    names = [f"{entity}/{_date_of(int(d) * DAY)}.{ext}" for d in days]
    bounds = np.searchsorted(ts // DAY, np.append(days, days[-1] + 1), "left")
    bounds[-1] = ts.size
    return names, bounds


# --------------------------------------------------------------------------- entry points


class _Clock:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def step(self, name: str, rows: int | None = None) -> None:
        count = f"{rows:>13,} rows" if rows is not None else " " * 18
        self.log(f"[{self.elapsed:6.1f}s] {name:<28}{count}")


def _silent(_: str) -> None:
    pass


def _rng_for_day(seed: int, day: date) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, day.toordinal()])))


def _truth_dir(data_dir: Path) -> Path:
    return data_dir / "_truth"


def _write_frame(frame: Frame, path: Path) -> None:
    pq.write_table(pa.table({k: pa.array(v) for k, v in frame.items()}), path)


def _read_frame(path: Path) -> Frame:
    table = pq.read_table(path)
    return {name: table[name].to_numpy() for name in table.column_names}


def _write_csv(table: pa.Table, path: Path, append: bool = False) -> None:
    """Unquoted CSV (no value holds a comma, quote or newline) with a plain header line."""
    with path.open("ab" if append else "wb") as handle:
        if not append:
            handle.write((",".join(table.column_names) + "\n").encode())
        # Only non-empty batches: Arrow's CSV writer writes garbage for an empty first one.
        batches = [batch for batch in table.to_batches() if batch.num_rows]
        if batches:
            options = pcsv.WriteOptions(include_header=False, quoting_style="none")
            pcsv.write_csv(pa.Table.from_batches(batches), handle, options)


def _write_dirty(dirty: list[pa.Table], path: Path, append: bool) -> None:
    _write_csv(pa.concat_tables([_empty_dirty(), *dirty]), path, append)


def _land_window(
    lander: Lander,
    window: Window,
    counters: Counters,
    start: int,
    end: int,
    clock: _Clock,
    summary: dict[str, Landed],
) -> None:
    ext = lander.file_format
    for spec, frame, counter in (
        (TRANSACTIONS, window.transactions, "transaction"),
        (REDEMPTIONS, window.redemptions, "redemption"),
        (ENGAGEMENT_EVENTS, window.engagement_events, "event"),
    ):
        files, bounds = _day_files(spec.name, start, end, frame["ts"], ext)
        landed = lander.land(spec, frame, getattr(counters, counter), files, bounds)
        setattr(counters, counter, landed.next_id)
        summary[spec.name] = landed
        clock.step(f"wrote {spec.name}", landed.rows)


def _summary(
    data_dir: Path, start: int, end: int, landed: dict[str, Landed], clock: _Clock
) -> Summary:
    return Summary(
        data_dir=data_dir,
        first_day=_date_of(start),
        last_day=_date_of(end - 1),
        rows={k: v.rows for k, v in landed.items()},
        dirty={k: v.dirty.num_rows for k, v in landed.items()},
        files={k: v.files for k, v in landed.items()},
        seconds=clock.elapsed,
    )


def generate(config: SeedConfig, log: Log = _silent) -> Summary:
    """Seed a data folder from scratch; same config => byte-identical files."""
    clock = _Clock(log)
    data_dir = Path(config.output)
    ext = config.format
    if ext not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, not {ext!r}")
    for name in [s.name for s in SPECS] + ["_truth"]:
        shutil.rmtree(data_dir / name, ignore_errors=True)
    truth = _truth_dir(data_dir)
    truth.mkdir(parents=True)

    model = config.model
    rng = np.random.Generator(np.random.PCG64(config.seed))
    start = epoch_seconds(config.start_date)
    end = start + config.days * DAY
    rewards = draw_rewards(rng, config.rewards, model)
    signups = draw_signups(rng, config.customers, start, end, model)
    numbers = np.arange(1, config.customers + 1, dtype=np.int64)
    churn_from = np.maximum(start, signups + model.churn_grace_days * DAY)
    population, profile = draw_customers(
        rng, numbers, signups, churn_from, config.days, config.holdout_share, rewards, model
    )
    clock.step("drew customers and rewards", config.customers)

    counters = Counters()
    window = simulate_window(
        rng, population, rewards, model, config.uplift, start, end, counters, {}, config.seed
    )
    clock.step("simulated transactions", window.transactions["ts"].size)
    clock.step("simulated redemptions", window.redemptions["ts"].size)
    clock.step("simulated engagement events", window.engagement_events["ts"].size)

    lander = Lander(data_dir, ext, config.dirty_fraction, rng)
    landed: dict[str, Landed] = {}
    landed["customers"] = lander.land(
        CUSTOMERS, profile, 1, [f"customers/customers.{ext}"], np.array([0, config.customers])
    )
    counters.customer = landed["customers"].next_id
    clock.step("wrote customers", landed["customers"].rows)
    landed["rewards"] = lander.land(
        REWARDS, rewards, 1, [f"rewards/rewards.{ext}"], np.array([0, config.rewards])
    )
    clock.step("wrote rewards", landed["rewards"].rows)
    _land_window(lander, window, counters, start, end, clock, landed)

    uplift = expected_uplift(population, window, model, config.uplift, start, end)
    params = {
        "seed": config.seed,
        "customers": config.customers,
        "rewards": config.rewards,
        "days": config.days,
        "start_date": config.start_date.isoformat(),
        "end_date": _date_of(end).isoformat(),
        "last_date": _date_of(end - 1).isoformat(),
        "format": ext,
        "dirty_fraction": config.dirty_fraction,
        "holdout_share": config.holdout_share,
        "daily_signups": round(int((signups >= start).sum()) / config.days),
        "categories": list(CATEGORIES),
        "tiers": list(TIERS),
        "timezones": [{"timezone": z, "country": c, "share": s} for z, c, s in TIMEZONES],
        "dirty_kinds": {s.name: list(s.dirty_kinds) for s in SPECS},
        "bad_timestamps": list(BAD_TIMESTAMPS),
        "uplift": uplift,
        "model": asdict(model),
        "next_ids": asdict(counters),
    }
    _write_truth(truth, params, population, end, window, append_dirty=False, landed=landed)
    pq.write_table(_rewards_truth(rewards), truth / "rewards_truth.parquet")
    clock.step("wrote truth")
    summary = _summary(data_dir, start, end, landed, clock)
    summary.uplift = uplift
    return summary


def simulate_day(data_dir: Path, new_customers: int | None = None, log: Log = _silent) -> Summary:
    """Land the day after the last landed one, continuing the seeded truth and ids."""
    clock = _Clock(log)
    data_dir = Path(data_dir)
    truth = _truth_dir(data_dir)
    params = json.loads((truth / "params.json").read_text())
    model = Model.from_json(params["model"])
    counters = Counters(**params["next_ids"])
    day = date.fromisoformat(params["last_date"]) + timedelta(days=1)
    start = epoch_seconds(day)
    end = start + DAY
    ext = params["format"]
    rng = _rng_for_day(params["seed"], day)

    rewards = _read_frame(truth / "rewards_truth.parquet")
    population = Population.from_table(pq.read_table(truth / "customers_truth.parquet"))
    n_new = params["daily_signups"] if new_customers is None else new_customers
    signups = np.sort(start + (rng.random(n_new) * DAY).astype(np.int64))
    numbers = counters.customer + np.arange(n_new, dtype=np.int64)
    newcomers, profile = draw_customers(
        rng,
        numbers,
        signups,
        signups + model.churn_grace_days * DAY,
        params["days"],
        params["holdout_share"],
        rewards,
        model,
    )
    population = population.concat(newcomers)
    clock.step("drew new customers", n_new)

    pending = {
        "transactions": _read_frame(truth / "pending_transactions.parquet"),
        "engagement_events": _read_frame(truth / "pending_engagement_events.parquet"),
    }
    uplift = params["uplift"]["relative_increase"]
    window = simulate_window(
        rng, population, rewards, model, uplift, start, end, counters, pending, params["seed"]
    )

    lander = Lander(data_dir, ext, params["dirty_fraction"], rng)
    landed: dict[str, Landed] = {}
    landed["customers"] = lander.land(
        CUSTOMERS, profile, counters.customer, [f"customers/{day}.{ext}"], np.array([0, n_new])
    )
    counters.customer = landed["customers"].next_id
    _land_window(lander, window, counters, start, end, clock, landed)

    params["last_date"] = day.isoformat()
    params["next_ids"] = asdict(counters)
    _write_truth(truth, params, population, end, window, append_dirty=True, landed=landed)
    clock.step("updated truth")
    return _summary(data_dir, start, end, landed, clock)


def _write_truth(
    truth: Path,
    params: dict,
    population: Population,
    landed_until: int,
    window: Window,
    append_dirty: bool,
    landed: dict[str, Landed],
) -> None:
    (truth / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    pq.write_table(population.to_table(landed_until), truth / "customers_truth.parquet")
    _write_frame(window.pending_transactions, truth / "pending_transactions.parquet")
    _write_frame(window.pending_events, truth / "pending_engagement_events.parquet")
    dirty = [landed[s.name].dirty for s in SPECS if s.name in landed]
    _write_dirty(dirty, truth / "dirty_rows.csv", append=append_dirty)


def _rewards_truth(rewards: Frame) -> pa.Table:
    table = _rewards_table(rewards, np.arange(1, rewards["category"].size + 1))
    extra = {k: pa.array(v) for k, v in rewards.items()}
    return pa.table({"reward_id": table["reward_id"], **extra})
