"""The 95% interval of a difference of two means, from per-unit sums: the holdout uplift
(`analytics.report`) and the experiment effects (`analytics.experiments`) share it."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    """Difference of two means (contacted minus holdout) with a 95% confidence interval."""

    contacted_customers: int
    holdout_customers: int
    contacted_rate: float | None
    holdout_rate: float | None
    uplift: float | None
    standard_error: float | None
    ci_low: float | None
    ci_high: float | None


def welch_interval(
    n_contacted: int,
    sum_contacted: float,
    sum_sq_contacted: float,
    n_holdout: int,
    sum_holdout: float,
    sum_sq_holdout: float,
) -> Interval:
    """Means from per-customer sums and sums of squares; unequal variances, normal
    quantile (both arms hold hundreds of customers or more). No interval below two
    customers an arm."""

    def mean_and_var(n, total, total_sq):
        if n < 1:
            return None, None
        mean = total / n
        if n < 2:
            return mean, None
        return mean, max(total_sq / n - mean * mean, 0.0) * n / (n - 1)

    m1, v1 = mean_and_var(n_contacted, sum_contacted, sum_sq_contacted)
    m2, v2 = mean_and_var(n_holdout, sum_holdout, sum_sq_holdout)
    uplift = None if m1 is None or m2 is None else m1 - m2
    se = None if v1 is None or v2 is None else math.sqrt(v1 / n_contacted + v2 / n_holdout)
    return Interval(
        contacted_customers=int(n_contacted),
        holdout_customers=int(n_holdout),
        contacted_rate=m1,
        holdout_rate=m2,
        uplift=uplift,
        standard_error=se,
        ci_low=None if se is None else uplift - Z_95 * se,
        ci_high=None if se is None else uplift + Z_95 * se,
    )
