"""The generative model's knobs and the generator's shared vocabulary.

`Model` holds every knob of the generative model (stored in `_truth/params.json`, read back
by the daily top-up), `SeedConfig` the sizes, dates and shares of one seeding run,
`Counters` the next number of every id sequence and `Summary` what a run landed. The
constants are the time units and sentinels, the categories, channels and timezones, and the
vocabularies that names, emails, rewards and planted bad timestamps are drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

DAY = 86_400
DAYS_PER_MONTH = 30.44
# "Not yet / never": far beyond any simulated time, yet small enough to do arithmetic on.
NEVER = 2**62
NO_EMAIL_YET = -(2**62)
DEMO_CUSTOMERS = 10  # cust001..cust010: clean, consenting, high-tier, never churn

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
