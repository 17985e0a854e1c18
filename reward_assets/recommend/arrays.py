"""Row-wise array helpers of the recommendation sets: top-n per row, candidates by score,
labels seen before, running sums, seeded hashes of ids, the 64-bit keys that tell whose
inputs changed, and chunks computed on two threads."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pandas as pd

# Rows `fold` mixes at a time (their words stay in the CPU's cache).
FOLD_ROWS = 8192
# Chunks computed at once: NumPy releases the GIL in its loops, so a second chunk uses the
# second CPU while the first one's Python runs; each chunk's rows come out as alone.
CHUNK_THREADS = 2

T = TypeVar("T")
R = TypeVar("R")


def in_threads(work: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
    """`work` of each item, in order, on CHUNK_THREADS threads: no more items worked or
    waiting at once than that (each result may be a chunk x catalogue matrix). A single
    item (the API's one customer) is worked on the caller's thread, without a pool."""
    if len(items) < 2:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(CHUNK_THREADS) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= CHUNK_THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def seen_before(labels: np.ndarray) -> np.ndarray:
    """Per row, how many earlier positions hold the same label."""
    order = np.argsort(labels, axis=1, kind="stable")
    grouped = np.take_along_axis(labels, order, axis=1)
    position = np.broadcast_to(np.arange(labels.shape[1]), labels.shape)
    starts = np.ones(labels.shape, bool)
    starts[:, 1:] = grouped[:, 1:] != grouped[:, :-1]
    group_start = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    seen = np.empty_like(order)
    np.put_along_axis(seen, order, position - group_start, axis=1)
    return seen


def best(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's n highest scores (fewer if there are fewer columns), best first, equal
    ones lowest column first, with their columns. Overwrites what it takes in `scores`.

    n rounds of argmax: for the few items needed this is several times faster than
    argpartition, and ties resolve the same way in every chunk.
    """
    n = min(n, scores.shape[1])
    rows = np.arange(len(scores))
    columns = np.zeros((len(scores), n), np.int64)
    values = np.zeros((len(scores), n), scores.dtype)
    for i in range(n):
        columns[:, i] = scores.argmax(axis=1)
        values[:, i] = scores[rows, columns[:, i]]
        scores[rows, columns[:, i]] = -np.inf
    return columns, values


def by_score(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(columns, scores) blocks side by side (a category's candidates each), in one list
    per row, best first."""
    columns = np.concatenate([c for c, _ in parts] or [np.zeros((0, 0), np.int64)], axis=1)
    values = np.concatenate([v for _, v in parts] or [np.zeros((0, 0))], axis=1)
    # Stable: equal scores stay in catalogue order, whatever chunk the customer is in.
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)


def running_sum(values: np.ndarray) -> np.ndarray:
    """Cumulative sums along axis 1, with a leading zero: [:, j] sums the first j items."""
    return np.concatenate([np.zeros_like(values[:, :1]), np.cumsum(values, axis=1)], axis=1)


def hash_ids(ids: pd.Series) -> np.ndarray:
    # Each distinct id hashed once: tiers, categories and rewards repeat over millions of
    # rows, and making a Python string of every row cost more than hashing them.
    codes, distinct = pd.factorize(ids, use_na_sentinel=False)
    return pd.util.hash_array(pd.Series(distinct).astype(str).to_numpy(object))[codes]


def mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: well-spread 64-bit draws from ids and a seed."""
    return _mix_in_place(np.array(values, dtype=np.uint64))


def _mix_in_place(values: np.ndarray) -> np.ndarray:
    values ^= values >> np.uint64(30)
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


def salt(*parts: bytes | str | np.ndarray) -> np.uint64:
    """A 64-bit digest of what every row's key shares (a catalogue, a model version):
    when any part changes, every key changes."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = part.encode() if isinstance(part, str) else np.ascontiguousarray(part).tobytes()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return np.uint64(int.from_bytes(digest.digest(), "little"))


def bits(values: np.ndarray) -> np.ndarray:
    """(n, m) uint64 of the exact bit patterns of `values` ((n,) or (n, m), any numeric
    dtype of at most 8 bytes): equal floats to the bit give equal words."""
    values = np.ascontiguousarray(values)
    if values.ndim == 1:  # not reshape(n, -1): it cannot infer m when n is 0
        values = values[:, None]
    unsigned = values.view(f"u{values.dtype.itemsize}") if values.dtype.kind != "b" else values
    return unsigned.astype(np.uint64)


def fold(key: np.uint64, columns: list[np.ndarray]) -> np.ndarray:
    """Each row's 64-bit key of its words in `columns` (each (n,) or (n, m), see `bits`)
    in order, seeded by `key`: equal rows get equal keys, different ones a different key
    but with a chance of about 2**-64."""
    words = np.concatenate([bits(column) for column in columns], axis=1)
    keys = np.full(len(words), key, np.uint64)
    # A block of rows at a time, its words transposed and mixed in place: the same
    # arithmetic in half the time of whole-column passes over millions of rows.
    for start in range(0, len(words), FOLD_ROWS):
        block = keys[start : start + FOLD_ROWS]
        for word in np.ascontiguousarray(words[start : start + FOLD_ROWS].T):
            block ^= word
            _mix_in_place(block)
    return keys


def set_keys(n: int, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per row of n, a 64-bit key of the multiset of uint64 `items` at that row (0 for
    none), whatever their order: the wrapping sum of their mixes."""
    keys = np.zeros(n, np.uint64)
    np.add.at(keys, rows, mix(np.asarray(items, np.uint64)))
    return keys
