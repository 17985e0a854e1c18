"""The global holdout: a stable hash of the customer id, shared by the seed and the product.

A customer is in the holdout when the first 8 hex digits of sha256(customer_id), read as
an integer modulo 10,000, fall below ``share * 10,000``. The rule never depends on run
order, data size or Python's salted ``hash()``, so the seed, the pipeline and the API agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

DEFAULT_HOLDOUT_SHARE = 0.05


def holdout_bucket(customer_id: str) -> int:
    return int(hashlib.sha256(customer_id.encode()).hexdigest()[:8], 16) % 10_000


def is_holdout(customer_id: str, share: float = DEFAULT_HOLDOUT_SHARE) -> bool:
    return holdout_bucket(customer_id) < round(share * 10_000)


def holdout_mask(customer_ids: Iterable[str], share: float = DEFAULT_HOLDOUT_SHARE) -> np.ndarray:
    threshold = round(share * 10_000)
    return np.fromiter((holdout_bucket(c) < threshold for c in customer_ids), dtype=bool)
