"""Recommendation sets: each customer's top-k eligible rewards at AS_OF, with a reason each.

Scores come from the served ranker (`recommend.served`): the dot product of customer and
reward vectors, plus, when it has item-item weights, the customer's redemption row times
those weights, computed a chunk at a time like the dot products. A set is
built in four steps, vectorised over a chunk of customers at a time; memory holds a few
chunk x rewards boolean masks and chunk x category score blocks, never a matrix of the
whole population:

1. Eligibility (recommend/eligibility.py): available, tier allowed, affordable, not
   redeemed in the last `recent_days`. Rewards a customer cannot afford yet but that cost
   at most `almost_there_ratio` times the balance are kept apart as "almost there"
   candidates.
2. Exploration slots (round half up of k x `exploration_share`): a seeded random pick among
   the best-scoring eligible new rewards (at most `new_reward_max_redemptions` so far), so
   new rewards get shown before they have a history.
3. One almost-there slot: the best-scoring almost-there reward.
4. Regular slots: the rest, best score first, at most `max_per_category` per category; the
   cap counts the exploration and almost-there items too.

Layout: regular items by score, then the exploration items, then the almost-there item in
the last slot, so the flagged item takes exactly one slot. A slot that finds no
exploration or almost-there item goes to the next regular item, and customers with fewer
eligible rewards than k get fewer rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from reward_assets.recommend.arrays import (
    best,
    by_score,
    fold,
    hash_ids,
    in_threads,
    mix,
    salt,
    seen_before,
    set_keys,
)
from reward_assets.recommend.catalog import RewardCatalog, Scorer, SetRules
from reward_assets.recommend.eligibility import (
    LOWEST_RANK,
    UNREACHABLE_RANK,
    affordable,
    eligibility_masks,
    tier_allowed,
)
from reward_assets.recommend.inputs import positions

TABLE = "ml.recommendation_sets"  # one row per customer and rank, COLUMNS:
COLUMNS = {
    "as_of": "DATE",
    "customer_id": "VARCHAR",
    "rank": "INTEGER",
    "reward_id": "VARCHAR",
    "score": "DOUBLE PRECISION",
    "reason": "VARCHAR",
    "is_almost_there": "BOOLEAN",
    "is_exploration": "BOOLEAN",
    "model_version": "VARCHAR",
    # "model" when the served ranker scored the row, else the fallback's source
    # (recommend.fallback).
    "source": "VARCHAR",
}
# The served table adds, per row, the day its set was computed (before `as_of` when the
# set was carried forward) and the key of the inputs it was computed from (`SetBuild`);
# the ranking fallback's rows have no key and are always recomputed.
TABLE_COLUMNS = {**COLUMNS, "computed_as_of": "DATE", "inputs_key": "BIGINT"}
MODEL_SOURCE = "model"
# The blocks that can explain a regular item; a tie goes to the earlier one.
REASON_BLOCKS = ("latent", "segment", "taste")
LATENT, SEGMENT = REASON_BLOCKS.index("latent"), REASON_BLOCKS.index("segment")
REGULAR, EXPLORATION, ALMOST_THERE = range(3)
# Exploration draws among this many times as many new rewards as it has slots: random
# enough to spread exposure over the new rewards, still close to the customer's taste.
EXPLORATION_POOL = 3


def build_sets(
    customers: pd.DataFrame,
    customer_vectors: np.ndarray,
    rewards: pd.DataFrame,
    reward_vectors: np.ndarray,
    blocks: Mapping[str, slice],
    recent: pd.DataFrame,
    last_redeemed: pd.DataFrame,
    rules: SetRules,
    model_version: str,
    as_of: dt.date,
    seed: int = 42,
    chunk_size: int = 50_000,
    item_weights: np.ndarray | None = None,
    history: sp.csr_matrix | None = None,
    source: str = MODEL_SOURCE,
) -> Iterator[pd.DataFrame]:
    """One frame (COLUMNS) per chunk of `chunk_size` customers, in the order of `customers`.

    customers: customer_id, tier, tier_rank, points_balance; rewards: reward_id, name,
    category, points_cost, min_tier_rank, is_available, redemptions; recent: (customer_id,
    reward_id) redeemed in the last `rules.recent_days`; last_redeemed: customer_id,
    category, reward_name of the customer's latest redemption in that category.
    """
    catalog = RewardCatalog.build(rewards, reward_vectors, blocks, item_weights)
    inputs = (customers, customer_vectors, catalog, rewards, history, recent, last_redeemed)
    build = SetBuild.prepare(*inputs, rules, (model_version, source), seed)
    yield from build.sets(as_of, chunk_size=chunk_size)


@dataclass(frozen=True)
class SetBuild:
    """`build_sets`'s inputs prepared once, to build the sets of all customers or of some.

    A customer's set is a function of their row (tier, balance), vector, recent
    redemptions, latest redemption per category and, with item-item weights, redemption
    history, and of what all customers share: the catalogue (with which rewards count as
    new), the model's reward vectors and weights, the rules, the seed and the labels.
    `keys` digests all of it per customer, so a customer whose key is the one their served
    set was computed from would get that set again, row for row: only the others need
    computing (`stale`). With `vector_keys`, the key each vector was computed from (the
    customer embeddings' `inputs_key`, under the model version of the labels), a vector
    counts in the digest by that one word instead of its 64: the same key, the same
    vector to the bit.
    """

    customers: pd.DataFrame
    vectors: np.ndarray  # float32
    history: sp.csr_matrix | None  # in catalogue order, None without item-item weights
    catalog: RewardCatalog
    recent: pd.DataFrame
    last_redeemed: pd.DataFrame
    rules: SetRules
    labels: tuple[str, str]  # the rows' model_version and source
    seed: int
    vector_keys: np.ndarray | None = None  # int64 per customer, see above

    @classmethod
    def prepare(
        cls,
        customers: pd.DataFrame,
        customer_vectors: np.ndarray,
        catalog: RewardCatalog,
        rewards: pd.DataFrame,
        history: sp.csr_matrix | None,
        recent: pd.DataFrame,
        last_redeemed: pd.DataFrame,
        rules: SetRules,
        labels: tuple[str, str],
        seed: int = 42,
        vector_keys: np.ndarray | None = None,
    ) -> SetBuild:
        """`build_sets`'s inputs, the rewards also as their catalogue (`RewardCatalog.build`)
        and the labels as (model_version, source)."""
        return cls(
            customers.reset_index(drop=True),
            np.asarray(customer_vectors, dtype=np.float32),
            catalog.in_catalog_order(history, rewards),
            catalog,
            recent,
            last_redeemed,
            rules,
            labels,
            seed,
            None if vector_keys is None else np.asarray(vector_keys, np.int64),
        )

    @cached_property
    def keys(self) -> np.ndarray:
        """Each customer's int64 inputs key (see the class docstring)."""
        catalog, rules = self.catalog, self.rules
        shared = salt(
            "\0".join(self.labels),
            f"{rules!r} seed={self.seed} blocks={sorted(catalog.blocks.items())!r}",
            "\0".join(catalog.reward_id.astype(str)),
            "\0".join(catalog.categories.astype(str)),
            catalog.category_code,
            catalog.points_cost,
            catalog.required_rank,
            catalog.redemptions <= rules.new_reward_max_redemptions,
            catalog.vectors,
            b"" if catalog.item_weights is None else catalog.item_weights,
        )
        people = _Customers.build(self.customers)
        n = len(people.customer_id)
        recent, latest = _pairs(people, catalog, self.recent, self.last_redeemed)
        rows, columns = np.divmod(recent.keys, catalog.size)
        recent_key = set_keys(n, rows, catalog.hash[columns])
        rows, category = np.divmod(latest.keys, len(catalog.categories))
        named = hash_ids(pd.Series(latest.values, dtype=object)) ^ mix(category.astype(np.uint64))
        latest_key = set_keys(n, rows, named)
        history_key = np.zeros(n, np.uint64)
        if self.history is not None:
            rows = np.repeat(np.arange(n), np.diff(self.history.indptr))
            history_key = set_keys(n, rows, catalog.hash[self.history.indices])
        tier = hash_ids(pd.Series(people.segment_reason, dtype=object))
        columns = [people.hash, tier, people.has_tier, people.tier_rank, people.points_balance]
        vectors = self.vectors if self.vector_keys is None else self.vector_keys
        columns += [vectors, recent_key, latest_key, history_key]
        return fold(shared, columns).view(np.int64)

    def stale(self, previous: pd.DataFrame | None) -> np.ndarray:
        """Which customers need their set computed: those without a row in `previous`
        (customer_id, inputs_key: the served sets' keys) under their current key. The
        others' served sets are the ones they would get (the asset carries them inside the
        warehouse, `recommendation_sets`)."""
        if previous is None:
            return np.ones(len(self.customers), dtype=bool)
        at = positions(self.customers["customer_id"], previous["customer_id"])
        known = at >= 0
        stale = ~known
        stale[known] = previous["inputs_key"].to_numpy(np.int64)[at[known]] != self.keys[known]
        return stale

    def sets(
        self,
        as_of: dt.date,
        rows: np.ndarray | None = None,
        chunk_size: int = 50_000,
        keyed: bool = False,
    ) -> Iterator[pd.DataFrame]:
        """The sets (COLUMNS, or TABLE_COLUMNS when `keyed`) of the customers at positions
        `rows` (all by default), a frame per chunk of `chunk_size` customers."""
        rows = np.arange(len(self.customers)) if rows is None else np.asarray(rows)
        customers = self.customers.iloc[rows].reset_index(drop=True)
        history = None if self.history is None else self.history[rows]
        context = (self.catalog, self.recent, self.last_redeemed, self.rules, self.labels)
        chunks = _sets(
            customers, self.vectors[rows], history, *context, as_of, self.seed, chunk_size
        )
        for start, chunk in zip(range(0, len(rows), chunk_size), chunks, strict=True):
            if keyed:
                part = rows[start : start + chunk_size]
                at = positions(
                    chunk["customer_id"], customers["customer_id"][start : start + chunk_size]
                )
                chunk = chunk.assign(computed_as_of=as_of, inputs_key=self.keys[part][at])
            yield chunk


def recommend_one(
    customer_row: Mapping[str, Any],
    customer_vector: np.ndarray,
    catalog: RewardCatalog,
    recent: pd.DataFrame,
    last_redeemed: pd.DataFrame,
    rules: SetRules,
    model_version: str,
    as_of: dt.date,
    seed: int = 42,
    redeemed_columns: np.ndarray | None = None,
) -> pd.DataFrame:
    """One customer's set, as an API serves it: the batch code run on a chunk of one.

    `catalog` is built once (RewardCatalog.build); `recent` and `last_redeemed` may hold
    only this customer's rows; `redeemed_columns` are the catalogue columns of every reward
    the customer redeemed (`RewardCatalog.item_columns`), for the item-item term.
    """
    customers = pd.DataFrame([dict(customer_row)])
    vector = np.asarray(customer_vector).reshape(1, -1)
    history = None
    if catalog.item_weights is not None and redeemed_columns is not None:
        columns = np.unique(np.asarray(redeemed_columns, np.int64))
        history = sp.csr_matrix(
            (np.ones(columns.size, np.float32), columns, [0, columns.size]),
            shape=(1, catalog.size),
        )
    context = (catalog, recent, last_redeemed, rules, (model_version, MODEL_SOURCE), as_of, seed)
    return next(_sets(customers, vector, history, *context, 1))


@dataclass(frozen=True)
class _Customers:
    customer_id: pd.Index
    tier_rank: np.ndarray
    points_balance: np.ndarray
    has_tier: np.ndarray
    segment_reason: np.ndarray
    hash: np.ndarray

    @classmethod
    def build(cls, customers: pd.DataFrame) -> _Customers:
        # One reason string per tier, shared by its customers; code -1 (no tier) gets None.
        tier, tiers = pd.factorize(customers["tier"])
        segment_reason = np.array([f"popular with {name} members" for name in tiers] + [None])
        rank = customers["tier_rank"].fillna(LOWEST_RANK).to_numpy(np.int8)
        return cls(
            customer_id=pd.Index(customers["customer_id"]),
            tier_rank=np.clip(rank, 0, UNREACHABLE_RANK - 1),
            points_balance=customers["points_balance"].fillna(0).to_numpy(np.float64),
            has_tier=tier >= 0,
            segment_reason=segment_reason[tier],
            hash=hash_ids(customers["customer_id"]),
        )

    def rows(self, part: slice) -> _Customers:
        return _Customers(*(getattr(self, field.name)[part] for field in fields(self)))


@dataclass(frozen=True)
class _Pairs:
    """Values keyed by (customer row, column), as unique sorted keys row * width + column.

    A chunk's keys, less its first row's offset, are flat indexes into its rows x width
    arrays.
    """

    keys: np.ndarray
    values: np.ndarray | None
    width: int

    @classmethod
    def build(
        cls, rows: np.ndarray, columns: np.ndarray, width: int, values: np.ndarray | None = None
    ) -> _Pairs:
        """Pairs with a row or column of -1 (unknown ids) are left out."""
        found = (rows >= 0) & (columns >= 0)
        keys, first = np.unique(rows[found].astype(np.int64) * width + columns[found], True)
        return cls(keys, None if values is None else np.asarray(values)[found][first], width)

    def chunk(self, part: slice) -> tuple[np.ndarray, np.ndarray | None]:
        lo, hi = np.searchsorted(self.keys, [part.start * self.width, part.stop * self.width])
        values = None if self.values is None else self.values[lo:hi]
        return self.keys[lo:hi] - part.start * self.width, values


@dataclass(frozen=True)
class _Picks:
    """Each customer's candidates in slot order: columns, scores (-inf: none) and the taken."""

    columns: np.ndarray
    scores: np.ndarray
    taken: np.ndarray


def _sets(
    customers: pd.DataFrame,
    customer_vectors: np.ndarray,
    history: sp.csr_matrix | None,
    catalog: RewardCatalog,
    recent: pd.DataFrame,
    last_redeemed: pd.DataFrame,
    rules: SetRules,
    labels: tuple[str, str],
    as_of: dt.date,
    seed: int,
    chunk_size: int,
) -> Iterator[pd.DataFrame]:
    """`labels`: the rows' model_version and source."""
    model_version, source = labels
    people = _Customers.build(customers)
    recent_pairs, latest_pairs = _pairs(people, catalog, recent, last_redeemed)

    def one(start: int) -> pd.DataFrame:
        part = slice(start, min(start + chunk_size, len(customers)))
        vectors = np.asarray(customer_vectors[part], dtype=np.float32)
        scorer = Scorer(vectors, catalog, None if history is None else history[part])
        recent_part, latest_part = recent_pairs.chunk(part)[0], latest_pairs.chunk(part)
        sets = _chunk(people.rows(part), scorer, catalog, recent_part, latest_part, rules, seed)
        n = len(sets["rank"])
        frame = {
            "as_of": np.full(n, as_of, dtype=object),
            **sets,
            "model_version": np.full(n, model_version, dtype=object),
            "source": np.full(n, source, dtype=object),
        }
        # Typed here, not inferred: an empty chunk would infer object columns.
        for name in ("reason", "model_version", "source"):
            frame[name] = pd.array(frame[name], dtype="str")
        return pd.DataFrame({name: frame[name] for name in COLUMNS}, copy=False)

    yield from in_threads(one, range(0, len(customers), chunk_size))


def _pairs(
    people: _Customers, catalog: RewardCatalog, recent: pd.DataFrame, last_redeemed: pd.DataFrame
) -> tuple[_Pairs, _Pairs]:
    """The recently redeemed (customer row, catalogue column) pairs, and the reason naming
    each (customer row, category)'s latest redemption."""

    def row_of(ids: pd.Series) -> np.ndarray:
        return positions(ids, people.customer_id)

    recent_pairs = _Pairs.build(
        row_of(recent["customer_id"]),
        positions(recent["reward_id"], catalog.reward_id),
        catalog.size,
    )
    # Reversed, so that the first row of each (customer, category) `_Pairs.build` keeps
    # is the last one given, as the frame's order has it (a hash-free drop of duplicates).
    latest = last_redeemed.iloc[::-1]
    latest_pairs = _Pairs.build(
        row_of(latest["customer_id"]),
        positions(latest["category"], catalog.categories),
        len(catalog.categories),
        _named(latest["reward_name"]),
    )
    return recent_pairs, latest_pairs


def _named(reward_names: pd.Series) -> np.ndarray:
    """The reason "because you redeemed <name>" per row, each distinct name's text built
    once (a missing name stays missing: code -1 takes the trailing NaN)."""
    codes, names = pd.factorize(reward_names.astype(str))
    texts = ("because you redeemed " + pd.Index(names, dtype=object)).to_numpy(object)
    return np.append(texts, np.nan)[codes]


def _chunk(
    people: _Customers,
    scorer: Scorer,
    catalog: RewardCatalog,
    recent: np.ndarray,
    latest: tuple[np.ndarray, np.ndarray],
    rules: SetRules,
    seed: int,
) -> dict[str, np.ndarray]:
    """The rows of one chunk's sets, column by column (as_of and model_version apart)."""
    eligible, almost_there = eligibility_masks(
        people.tier_rank,
        people.points_balance,
        catalog.required_rank,
        catalog.points_cost,
        recent,
        rules.almost_there_ratio,
    )
    n, cap = len(eligible), rules.max_per_category
    used = np.zeros((n, len(catalog.categories)), np.int64)

    slots = rules.exploration_slots
    new = np.flatnonzero(catalog.redemptions <= rules.new_reward_max_redemptions)
    pool, pool_scores = best(scorer.scores(new, eligible), slots * EXPLORATION_POOL)
    pool = new[pool]
    draw = mix(people.hash[:, None] ^ mix(catalog.hash[pool] + np.uint64(seed % 2**64)))
    order = np.argsort(draw, axis=1, kind="stable")
    pool, pool_scores = (np.take_along_axis(a, order, axis=1) for a in (pool, pool_scores))
    explore = _pick(pool, pool_scores, catalog, used, cap, np.full(n, slots))
    rows, slot = np.nonzero(explore.taken)
    eligible[rows, explore.columns[rows, slot]] = False

    regular_candidates, almost_candidates = _candidates(
        scorer, catalog, eligible, almost_there, min(cap, rules.k)
    )
    room = rules.k - explore.taken.sum(axis=1)
    almost = _pick(*almost_candidates, catalog, used, cap, np.minimum(room, 1))
    regular = _pick(*regular_candidates, catalog, used, cap, room - almost.taken.sum(axis=1))

    picks = (regular, explore, almost)
    taken = np.concatenate([pick.taken for pick in picks], axis=1)
    rows, slot = np.nonzero(taken)
    columns = np.concatenate([pick.columns for pick in picks], axis=1)[rows, slot]
    widths = [pick.taken.shape[1] for pick in picks]
    kind = np.repeat([REGULAR, EXPLORATION, ALMOST_THERE], widths)[slot]
    reason = np.empty(len(rows), dtype=object)
    is_regular = kind == REGULAR
    mean_reward = _mean_eligible_vector(people, catalog, recent)
    reason[is_regular] = _regular_reasons(
        rows[is_regular], columns[is_regular], people, scorer, mean_reward, catalog, latest
    )
    is_exploration = kind == EXPLORATION
    reason[is_exploration] = catalog.new_reason[columns[is_exploration]]
    is_almost = kind == ALMOST_THERE
    to_go = catalog.points_cost[columns[is_almost]] - people.points_balance[rows[is_almost]]
    points = pd.Series(np.ceil(to_go).astype(np.int64)).astype(str)
    reason[is_almost] = (points + " points to go").to_numpy(object)
    score = np.concatenate([pick.scores for pick in picks], axis=1)[rows, slot]
    return {
        "customer_id": people.customer_id[rows],
        "rank": np.cumsum(taken, axis=1)[rows, slot],
        "reward_id": catalog.reward_id[columns],
        "score": score.astype(np.float64),
        "reason": reason,
        "is_almost_there": is_almost,
        "is_exploration": is_exploration,
    }


def _mean_eligible_vector(
    people: _Customers, catalog: RewardCatalog, recent: np.ndarray
) -> np.ndarray:
    """Each customer's mean eligible reward vector: tier allowed and affordable from the
    running sums, less the recently redeemed ones."""
    # Right side: the rewards costing at most the balance, as `affordable` has it.
    within = np.searchsorted(catalog.sorted_cost, people.points_balance, side="right")
    total = catalog.cost_prefix_vectors[people.tier_rank, within]
    count = catalog.cost_prefix_counts[people.tier_rank, within]
    rows, columns = np.divmod(recent, catalog.size)
    was_eligible = tier_allowed(
        people.tier_rank[rows], catalog.required_rank[columns]
    ) & affordable(catalog.points_cost[columns], people.points_balance[rows])
    np.subtract.at(total, rows[was_eligible], catalog.vectors[columns[was_eligible]])
    count = count - np.bincount(rows[was_eligible], minlength=len(count))
    return total / np.maximum(count, 1)[:, None]


def _regular_reasons(
    rows: np.ndarray,
    columns: np.ndarray,
    people: _Customers,
    scorer: Scorer,
    mean_reward: np.ndarray,
    catalog: RewardCatalog,
    latest: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """The block lifting each item most above the customer's mean eligible reward.

    The item-item term counts with the latent block (both say "because you redeemed"),
    against the customer's mean over the catalogue. The latent block needs a redeemed
    reward in the item's category to name, the segment block a known tier; without them
    the next block explains the item.
    """
    # Per block: customer . item - customer . mean; the second term once per customer.
    vectors = scorer.vectors
    by_dim = vectors[rows] * catalog.vectors[columns]
    mean_by_dim = vectors * mean_reward
    lift = np.stack(
        [
            by_dim[:, catalog.blocks[b]].sum(axis=1)
            - mean_by_dim[:, catalog.blocks[b]].sum(axis=1)[rows]
            for b in REASON_BLOCKS
        ],
        axis=1,
    )
    item = scorer.item
    if item is not None:
        lift[:, LATENT] += item[rows, columns] - item.mean(axis=1)[rows]
    keys, named = latest
    wanted = rows * len(catalog.categories) + catalog.category_code[columns]
    at = np.searchsorted(keys, wanted)
    found = at < len(keys)
    found[found] = keys[at[found]] == wanted[found]
    lift[~found, LATENT] = -np.inf
    lift[~people.has_tier[rows], SEGMENT] = -np.inf
    winner = lift.argmax(axis=1)
    reason = catalog.interest_reason[columns]
    segment = winner == SEGMENT
    reason[segment] = people.segment_reason[rows[segment]]
    latent = winner == LATENT
    reason[latent] = named[at[latent]]
    return reason


def _candidates(
    scorer: Scorer,
    catalog: RewardCatalog,
    eligible: np.ndarray,
    almost_there: np.ndarray,
    n: int,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Each row's n best eligible rewards and its best almost-there one in every category,
    as (columns, scores) best first.

    The greedy pass can only take an item among its category's best `cap`, so these
    candidates give exactly the result of a pass over all rewards. Scoring one category
    at a time keeps the score blocks small.
    """
    regular, almost = [], []
    for part in catalog.category_slices:
        scores = scorer.scores(part)
        columns, values = best(np.where(eligible[:, part], scores, -np.inf), n)
        regular.append((part.start + columns, values))
        columns, values = best(np.where(almost_there[:, part], scores, -np.inf), 1)
        almost.append((part.start + columns, values))
    return by_score(regular), by_score(almost)


def _pick(
    columns: np.ndarray,
    scores: np.ndarray,
    catalog: RewardCatalog,
    used: np.ndarray,
    cap: int,
    wanted: np.ndarray,
) -> _Picks:
    """The greedy diversity pass, for all customers at once: walk each row's candidates in
    order, taking each one with a score while the row wants more and the item's category is
    under `cap`. Counts the taken items into `used` (customers x categories)."""
    valid = np.isfinite(scores)
    category = catalog.category_code[columns]
    room = cap - np.take_along_axis(used, category, axis=1)
    fits = valid & (seen_before(np.where(valid, category, -1)) < room)
    taken = fits & (np.cumsum(fits, axis=1) <= np.asarray(wanted)[:, None])
    rows = np.nonzero(taken)[0]
    cells = rows * used.shape[1] + category[taken]
    used += np.bincount(cells, minlength=used.size).reshape(used.shape)
    return _Picks(columns, scores, taken)
