"""The global holdout: a stable hash of the customer id, shared by the seed and the product.

A customer is in the holdout when the first 8 hex digits of sha256(customer_id), read as
an integer modulo BUCKETS, fall below `holdout_threshold(share)`. The rule never depends
on run order, data size or Python's salted ``hash()``, so the seed, the pipeline, the SQL
models (which compare the stored bucket with the threshold) and the API agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import duckdb
import numpy as np
import pyarrow as pa

DEFAULT_HOLDOUT_SHARE = 0.05
# Fine enough that any share given to two decimals of a percent is met exactly.
BUCKETS = 10_000


def holdout_bucket(customer_id: str) -> int:
    return int(hashlib.sha256(customer_id.encode()).hexdigest()[:8], 16) % BUCKETS


def holdout_bucket_sql(column: str) -> str:
    """`holdout_bucket` of a text column as DuckDB SQL: the same digits of the same hash,
    computed in the engine rather than one Python call per customer."""
    return f"CAST(CAST(('0x' || left(sha256({column}), 8)) AS UBIGINT) % {BUCKETS} AS BIGINT)"


def holdout_buckets(customer_ids: Iterable[str]) -> np.ndarray:
    """`holdout_bucket` of every id, in order, in one DuckDB query."""
    ids = pa.table({"customer_id": pa.array(list(customer_ids), pa.string())})
    with duckdb.connect() as con:
        con.register("ids", ids)
        query = f"SELECT {holdout_bucket_sql('customer_id')} AS bucket FROM ids"
        return con.execute(query).fetchnumpy()["bucket"].astype(np.int64)


def holdout_threshold(share: float) -> int:
    """The buckets below this number are the holdout."""
    return round(share * BUCKETS)


def is_holdout(customer_id: str, share: float = DEFAULT_HOLDOUT_SHARE) -> bool:
    return holdout_bucket(customer_id) < holdout_threshold(share)


def holdout_mask(customer_ids: Iterable[str], share: float = DEFAULT_HOLDOUT_SHARE) -> np.ndarray:
    return holdout_buckets(customer_ids) < holdout_threshold(share)
