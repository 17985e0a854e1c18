"""Content experiments in the report: each variant against its experiment's control.

Reads `analytics.analytics_experiments` (one row per experiment, variant, campaign and
send day) over the sends of a date range and gives, per variant, its sends, open, click
and redemption rates, and its effect on clicks per email and on redemptions within 7 days
per email against the control, with a 95% interval (Welch, as the holdout uplift). Opens
are reported but not compared: mail privacy pre-fetching inflates them.
"""

from __future__ import annotations

import datetime as dt

from reward_assets.analytics.stats import welch_interval
from reward_assets.content.experiments import CONTROL
from reward_assets.warehouse.store import Warehouse

EXPERIMENTS = "analytics.analytics_experiments"
# The outcomes compared, as (name, column with the per-email sum, with its sum of squares):
# a click is 0 or 1 per email, so its square is itself.
OUTCOMES = (("clicks", "clicked", "clicked"), ("redemptions", "redemptions", "redemptions_sum_sq"))


def experiment_effects(db: Warehouse, start: dt.date, end: dt.date) -> list[dict]:
    """Per experiment with sends in start..end: its variants, each with its effect against
    the control (None for the control itself, or when the control sent nothing)."""
    if not db.table_exists(EXPERIMENTS):
        return []
    arms = db.frame(
        f"""
        SELECT experiment, variant, SUM(sends) AS sends, SUM(opened) AS opened,
               SUM(clicked) AS clicked, SUM(redemptions) AS redemptions,
               SUM(redemptions_sum_sq) AS redemptions_sum_sq
        FROM {EXPERIMENTS}
        WHERE sent_date >= :start AND sent_date <= :end
        GROUP BY experiment, variant
        ORDER BY experiment, variant
        """,
        {"start": start, "end": end},
    )
    report = []
    for experiment, variants in arms.groupby("experiment", sort=True):
        rows = {r.variant: r for r in variants.itertuples(index=False)}
        control = rows.get(CONTROL)
        report.append(
            {
                "experiment": experiment,
                "variants": [_variant(row, control) for row in rows.values()],
            }
        )
    return report


def _variant(row, control) -> dict:
    sends = int(row.sends)
    out = {
        "variant": row.variant,
        "sends": sends,
        "open_rate": _rate(row.opened, sends),
        "click_rate": _rate(row.clicked, sends),
        "redemptions_per_email": _rate(row.redemptions, sends),
    }
    for name, total, total_sq in OUTCOMES:
        effect = None
        if control is not None and row.variant != CONTROL:
            interval = welch_interval(
                sends,
                float(getattr(row, total)),
                float(getattr(row, total_sq)),
                int(control.sends),
                float(getattr(control, total)),
                float(getattr(control, total_sq)),
            )
            effect = {
                "effect": interval.uplift,
                "ci_low": interval.ci_low,
                "ci_high": interval.ci_high,
            }
        out[f"{name}_vs_control"] = effect
    return out


def _rate(count, sends: int) -> float | None:
    return float(count) / sends if sends else None
