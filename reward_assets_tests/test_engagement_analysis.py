"""Segments, campaigns and the daily contact spread of the engagement cycle."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest

from reward_assets.contact.holdout import holdout_mask
from reward_assets.engagement.segments import LIFECYCLE_STAGES, segment_customers

AS_OF = dt.date(2023, 8, 28)
NO_ENGAGEMENT = pd.DataFrame(columns=["customer_id", "open_probability", "click_probability"])


def frames(
    rows: list[tuple[str, str, float, str]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customers, churn) from (customer_id, signup_at, churn_probability, risk_band)."""
    table = pd.DataFrame(rows, columns=["customer_id", "signup_at", "p", "band"])
    customers = pd.DataFrame(
        {
            "customer_id": table["customer_id"],
            "signup_at": pd.to_datetime(table["signup_at"], format="ISO8601"),
        }
    )
    churn = pd.DataFrame(
        {
            "customer_id": table["customer_id"],
            "churn_probability": table["p"],
            "risk_band": table["band"],
        }
    )
    return customers, churn


def population(
    count: int, *, band: str = "low", probability: float = 0.1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"C{i:06d}" for i in range(count)]
    customers = pd.DataFrame({"customer_id": ids, "signup_at": pd.Timestamp("2023-01-01")})
    churn = pd.DataFrame({"customer_id": ids, "churn_probability": probability, "risk_band": band})
    return customers, churn


def test_segments_and_campaigns():
    customers, churn = frames(
        [
            ("new_today", "2023-08-28 23:30", 0.9, "high"),
            ("new_13_days", "2023-08-15 00:00", np.nan, "never_purchased"),
            ("old_14_days", "2023-08-14 23:59", 0.1, "low"),
            ("lapsed", "2023-01-01", np.nan, "lapsed"),
            ("never_bought", "2023-01-01", np.nan, "never_purchased"),
            ("at_risk_edge", "2023-01-01", 0.5, "medium"),
            ("high_risk", "2023-01-01", 0.93, "high"),
            ("active_edge", "2023-01-01", 0.4999, "medium"),
            ("active_low", "2023-01-01", 0.02, "low"),
        ]
    )
    customers.loc[len(customers)] = ["not_scored", pd.Timestamp("2023-02-01")]
    out = segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF).set_index("customer_id")
    assert out["segment"].to_dict() == {
        "new_today": "new",
        "new_13_days": "new",
        "old_14_days": "active",
        "lapsed": "dormant",
        "never_bought": "dormant",
        "at_risk_edge": "at_risk",
        "high_risk": "at_risk",
        "active_edge": "active",
        "active_low": "active",
        "not_scored": "active",
    }
    assert out["campaign"].to_dict() == {
        "new_today": None,
        "new_13_days": None,
        "old_14_days": "rewards_digest",
        "lapsed": "reactivation",
        "never_bought": "reactivation",
        "at_risk_edge": "win_back",
        "high_risk": "win_back",
        "active_edge": "rewards_digest",
        "active_low": "rewards_digest",
        "not_scored": "rewards_digest",
    }
    assert set(out["segment"]) == set(LIFECYCLE_STAGES)


def test_columns_order_and_passed_through_scores():
    customers, churn = frames(
        [("b", "2023-01-01", 0.3, "low"), ("a", "2023-01-01", np.nan, "lapsed")]
    )
    engagement = pd.DataFrame(
        {"customer_id": ["a"], "open_probability": [0.25], "click_probability": [0.05]}
    )
    out = segment_customers(customers, churn, engagement, AS_OF)
    assert list(out.columns) == [
        "customer_id",
        "segment",
        "campaign",
        "contact_today",
        "churn_probability",
        "open_probability",
        "click_probability",
    ]
    assert out["customer_id"].tolist() == ["b", "a"]  # the customers' order
    assert out["churn_probability"].iloc[0] == pytest.approx(0.3)
    assert np.isnan(out["churn_probability"].iloc[1])
    assert np.isnan(out["open_probability"].iloc[0])  # no engagement row for b
    assert out["open_probability"].iloc[1] == pytest.approx(0.25)
    assert out["click_probability"].iloc[1] == pytest.approx(0.05)
    assert out["contact_today"].dtype == bool


def test_timezone_aware_and_missing_signups():
    customers = pd.DataFrame(
        {
            "customer_id": ["tokyo", "none"],
            # 2023-08-15 01:00 in Tokyo is 2023-08-14 16:00 UTC: 14 days before as-of.
            "signup_at": [pd.Timestamp("2023-08-15 01:00", tz="Asia/Tokyo"), pd.NaT],
        }
    )
    churn = pd.DataFrame(
        {"customer_id": ["tokyo", "none"], "churn_probability": 0.1, "risk_band": "low"}
    )
    out = segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF)
    assert out["segment"].tolist() == ["active", "active"]


def test_new_days_and_threshold_are_parameters():
    customers, churn = frames(
        [("recent", "2023-08-20", 0.3, "low"), ("older", "2023-05-01", 0.3, "low")]
    )
    out = segment_customers(
        customers, churn, NO_ENGAGEMENT, AS_OF, new_days=5, at_risk_probability=0.25
    )
    assert out["segment"].tolist() == ["at_risk", "at_risk"]
    out = segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF, new_days=30)
    assert out["segment"].tolist() == ["new", "active"]


def test_a_customer_scored_twice_is_an_error():
    customers, churn = frames([("a", "2023-01-01", 0.3, "low")])
    with pytest.raises(ValueError, match="duplicate"):
        segment_customers(customers, pd.concat([churn, churn]), NO_ENGAGEMENT, AS_OF)


def test_empty_input_gives_an_empty_table():
    customers, churn = population(0)
    out = segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF)
    assert out.empty
    assert "contact_today" in out.columns


def test_new_customers_are_never_contacted_by_the_cycle():
    customers, churn = population(700)
    customers["signup_at"] = pd.Timestamp("2023-08-25")
    for offset in range(7):  # 3 to 9 days old: about 100 a day would be due if not new
        out = segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF + dt.timedelta(offset))
        assert (out["segment"] == "new").all()
        assert not out["contact_today"].any()


@pytest.mark.parametrize(
    ("band", "probability", "period"),
    [("low", 0.1, 7), ("high", 0.8, 7), ("lapsed", np.nan, 28)],
)
def test_each_customer_is_contacted_once_per_period(band, probability, period):
    count = 7000
    customers, churn = population(count, band=band, probability=probability)
    days = [
        segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF + dt.timedelta(days=offset))[
            "contact_today"
        ].to_numpy()
        for offset in range(2 * period)
    ]
    contacts = np.vstack(days)
    # Exactly once in any `period` consecutive days, and on the same day of each period.
    for start in range(period + 1):
        assert (contacts[start : start + period].sum(axis=0) == 1).all()
    assert (contacts[:period] == contacts[period:]).all()
    # Roughly 1/period of them each day: binomial, 5 standard deviations of slack.
    per_day = contacts.sum(axis=1)
    expected = count / period
    slack = 5 * np.sqrt(count * (1 / period) * (1 - 1 / period))
    assert (np.abs(per_day - expected) < slack).all()


def test_contact_day_is_stable_across_calls_and_input_order():
    customers, churn = population(3000, band="medium", probability=0.3)
    first = segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF)
    again = segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF)
    pd.testing.assert_frame_equal(first, again)
    shuffled = segment_customers(
        customers.sample(frac=1, random_state=3),
        churn.sample(frac=1, random_state=4),
        NO_ENGAGEMENT,
        AS_OF,
    )
    by_id = shuffled.set_index("customer_id").loc[first["customer_id"], "contact_today"]
    assert (by_id.to_numpy() == first["contact_today"].to_numpy()).all()
    assert 0 < first["contact_today"].sum() < len(first)


# int.from_bytes(sha256(id).digest()[4:8], "big") % 7 == date.toordinal() % 7
PINNED_DAYS = {
    "C000000": 0,
    "C000001": 0,
    "C000002": 2,
    "C000003": 4,
    "C000004": 3,
    "C000005": 3,
    "C000006": 2,
    "C000007": 2,
}


def test_contact_days_are_pinned():
    """The hash is part of the contract: changing it would contact some people twice in a
    week. These days (offset from 2023-08-28) were computed once and must not move; they
    also prove the hash is not Python's per-process salted hash()."""
    customers, churn = population(8)
    contacted_on = {}
    for offset in range(7):
        out = segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF + dt.timedelta(days=offset))
        for customer_id in out.loc[out["contact_today"], "customer_id"]:
            contacted_on[customer_id] = offset
    assert contacted_on == PINNED_DAYS


def test_contact_day_is_independent_of_the_holdout():
    customers, churn = population(40_000)
    out = segment_customers(customers, churn, NO_ENGAGEMENT, AS_OF)
    held = holdout_mask(customers["customer_id"])
    share_held = out["contact_today"][held].mean()
    share_rest = out["contact_today"][~held].mean()
    assert held.sum() > 1500
    assert abs(share_held - share_rest) < 0.03
    assert abs(share_rest - 1 / 7) < 0.01


def test_a_million_customers_in_seconds():
    count = 1_000_000
    rng = np.random.default_rng(7)
    ids = pd.Series([f"C{i:07d}" for i in range(count)])
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_at": pd.Timestamp("2023-01-01")
            + pd.to_timedelta(rng.integers(0, 240 * 86_400, count), unit="s"),
        }
    )
    band = rng.choice(["low", "medium", "high", "lapsed", "never_purchased"], count)
    probability = np.where(np.isin(band, ["lapsed", "never_purchased"]), np.nan, rng.random(count))
    churn = pd.DataFrame({"customer_id": ids, "churn_probability": probability, "risk_band": band})
    # CPU time, not wall time: the test workers (`make test`) and whatever else
    # shares the cores must not fail the budget; threads, if any, only add to it.
    started = time.process_time()
    out = segment_customers(customers, churn.sample(frac=1, random_state=1), NO_ENGAGEMENT, AS_OF)
    elapsed = time.process_time() - started
    assert len(out) == count
    assert set(out["segment"]) == set(LIFECYCLE_STAGES)
    assert elapsed < 15, f"{elapsed:.1f} s"
