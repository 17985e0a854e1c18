"""Ranking rewards for customers: the interaction data, the candidates and the taste model.

Every candidate has `fit(Interactions) -> self` and `score(customer_index) -> (n, R)`
float32 over all rewards in `Interactions.rewards` order, higher is better. The protocol
that compares them on held-out redemptions is `HoldOut`; `reward_assets.recommend.evaluate` runs it
for all candidates, `fit_taste_model` tunes and fits the product's model.

`TasteModel` is the product's model and also its embedding space: a customer's score for
a reward is exactly the dot product of the customer's and the reward's vectors, made of
named blocks (category taste, tier segment, latent co-redemption factors).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from reward_assets.ingest.clock import as_of_params
from reward_assets.ingest.contract import ENTITIES, TIERS
from reward_assets.ingest.landing import ContractError, landing_files, read_landing_file
from reward_assets.ingest.validation import validate
from reward_assets.recommend.inputs import member_of, positions
from reward_assets.recommend.metrics import METRICS, ranking_metrics
from reward_assets.warehouse.store import Warehouse

# One segment per tier, and one for customers whose tier is unknown.
SEGMENTS = (*TIERS, "unknown")
UNKNOWN_SEGMENT = len(TIERS)
Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


# --------------------------------------------------------------------------- data


@dataclass
class Interactions:
    """Who redeemed what, with the customer and reward attributes the rankers use.

    Row order matters: a customer's row in `customers` is its `customer_index` in `score`,
    and rewards are scored in `rewards` order.
    """

    customers: pd.DataFrame  # customer_id, tier (str|None), preferred_categories ('a|b'|None)
    rewards: pd.DataFrame  # reward_id, category, points_cost, min_tier (str|None)
    redemptions: pd.DataFrame  # customer_id, reward_id, redeemed_at
    # customer_id, category, purchases (count of non-refund transactions); optional
    category_purchases: pd.DataFrame | None = None
    # Rows left out while building, per entity and reason: contract breaks, unknown ids.
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_warehouse(cls, warehouse: Warehouse, as_of: dt.date | None = None) -> Interactions:
        """The marts tables; with `as_of`, only events (and sign-ups) before the end of that day."""
        params = as_of_params(as_of) if as_of else {}

        def before(column: str) -> str:
            return f"{column} < CAST(:as_of_end AS TIMESTAMP)" if as_of else "TRUE"

        customers = warehouse.frame(
            "SELECT customer_id, tier, preferred_categories FROM marts.dim_customers "
            f"WHERE {before('signup_at')} ORDER BY customer_id",
            params,
        )
        rewards = warehouse.frame(
            "SELECT reward_id, category, points_cost, min_tier FROM marts.dim_rewards "
            "ORDER BY reward_id"
        )
        redemptions = warehouse.frame(
            "SELECT redemption_id, customer_id, reward_id, redeemed_at FROM marts.fct_redemptions "
            f"WHERE {before('redeemed_at')} ORDER BY redemption_id",
            params,
        )
        purchases = warehouse.frame(
            "SELECT customer_id, category, COUNT(*) AS purchases FROM marts.fct_transactions "
            f"WHERE NOT is_refund AND category IS NOT NULL AND {before('occurred_at')} "
            "GROUP BY customer_id, category ORDER BY customer_id, category",
            params,
        )
        excluded: dict[str, dict[str, int]] = {}
        redemptions = _known(redemptions, customers, rewards, excluded, "redemptions")
        purchases = _known(purchases, customers, None, excluded, "transactions")
        return cls(customers, rewards, redemptions, purchases, excluded)

    @classmethod
    def from_folder(cls, data_dir: Path) -> Interactions:
        """A landing folder of the input contract; transactions are optional.

        Rows that break the contract and redemptions of unknown customers or rewards are
        left out and counted in `excluded`.
        """
        excluded: dict[str, dict[str, int]] = {}
        customers = _read_entity(Path(data_dir), "customers", excluded)
        rewards = _read_entity(Path(data_dir), "rewards", excluded)
        redemptions = _read_entity(Path(data_dir), "redemptions", excluded)
        rewards["category"] = rewards["category"].str.lower()
        redemptions = _known(redemptions, customers, rewards, excluded, "redemptions")

        purchases = None
        if landing_files(Path(data_dir), "transactions"):
            transactions = _read_entity(Path(data_dir), "transactions", excluded)
            bought = transactions[(transactions["amount"] >= 0) & transactions["category"].notna()]
            bought = _known(bought, customers, None, excluded, "transactions")
            purchases = (
                bought.assign(category=bought["category"].str.lower())
                .groupby(["customer_id", "category"], sort=True)
                .size()
                .rename("purchases")
                .reset_index()
            )
        return cls(
            customers[["customer_id", "tier", "preferred_categories"]].reset_index(drop=True),
            rewards[["reward_id", "category", "points_cost", "min_tier"]].reset_index(drop=True),
            redemptions[["redemption_id", "customer_id", "reward_id", "redeemed_at"]].reset_index(
                drop=True
            ),
            purchases,
            excluded,
        )

    @property
    def n_customers(self) -> int:
        return len(self.customers)

    @property
    def n_rewards(self) -> int:
        return len(self.rewards)

    @cached_property
    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(customer row, reward row) of every redemption row."""
        customer = positions(self.redemptions["customer_id"], self.customers["customer_id"])
        reward = pd.Index(self.rewards["reward_id"]).get_indexer(self.redemptions["reward_id"])
        if (customer < 0).any() or (reward < 0).any():
            raise ValueError("redemptions refer to customers or rewards not in the data")
        return customer.astype(np.int64), reward.astype(np.int64)

    @cached_property
    def redemption_matrix(self) -> sp.csr_matrix:
        """Binary customer x reward matrix: 1 where the customer redeemed the reward."""
        customer, reward = self.codes
        return _binary((self.n_customers, self.n_rewards), customer, reward)

    @cached_property
    def categories(self) -> list[str]:
        """Reward categories, sorted: the columns of the per-category matrices."""
        return sorted(self.rewards["category"].astype(str).unique().tolist())

    @cached_property
    def profiles(self) -> CustomerProfiles:
        """Per-customer tier segment, sign-up preferences and purchases, encoded lazily."""
        return CustomerProfiles(self.customers, self.category_purchases, self.categories)

    def subset(self, rows: np.ndarray) -> Interactions:
        """Only the redemption rows at positions `rows`; customers and rewards unchanged."""
        part = Interactions(
            self.customers,
            self.rewards,
            self.redemptions.iloc[rows].reset_index(drop=True),
            self.category_purchases,
            self.excluded,
        )
        # Encoding ids is the slow part: the subset shares the parent's encodings.
        customer, reward = self.codes
        part.__dict__["codes"] = (customer[rows], reward[rows])
        part.__dict__["categories"] = self.categories
        part.__dict__["profiles"] = self.profiles
        return part


class CustomerProfiles:
    """What customers bring besides redemptions, as arrays with one row per customer."""

    def __init__(
        self,
        customers: pd.DataFrame,
        category_purchases: pd.DataFrame | None,
        categories: list[str],
    ):
        self.customers = customers
        self.category_purchases = category_purchases
        self.categories = categories

    @cached_property
    def segments(self) -> np.ndarray:
        """Each customer's index into SEGMENTS."""
        segment = pd.Index(TIERS).get_indexer(self.customers["tier"].astype("string").str.lower())
        return np.where(segment < 0, UNKNOWN_SEGMENT, segment)

    @cached_property
    def preferences(self) -> sp.csr_matrix:
        """(customers, categories): 1 for each category preferred at sign-up."""
        listed = (
            self.customers["preferred_categories"]
            .reset_index(drop=True)
            .astype("string")
            .str.lower()
            .str.split("|")
            .explode()
            .dropna()
        )
        column = pd.Index(self.categories).get_indexer(listed.str.strip())
        row = listed.index.to_numpy()[column >= 0]
        return _binary((len(self.customers), len(self.categories)), row, column[column >= 0])

    @cached_property
    def purchases(self) -> sp.csr_matrix:
        """(customers, categories): non-refund purchases (all zero without transactions)."""
        shape = (len(self.customers), len(self.categories))
        frame = self.category_purchases
        if frame is None or frame.empty:
            return sp.csr_matrix(shape)
        row = positions(frame["customer_id"], self.customers["customer_id"])
        column = pd.Index(self.categories).get_indexer(
            frame["category"].astype("string").str.lower()
        )
        keep = (row >= 0) & (column >= 0)
        counts = frame["purchases"].to_numpy(np.float64)[keep]
        return sp.csr_matrix((counts, (row[keep], column[keep])), shape=shape)


def _binary(shape: tuple[int, int], rows: np.ndarray, columns: np.ndarray) -> sp.csr_matrix:
    matrix = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, columns)), shape=shape, dtype=np.float32
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _read_entity(data_dir: Path, name: str, excluded: dict) -> pd.DataFrame:
    entity = ENTITIES[name]
    files = landing_files(data_dir, name)
    if not files:
        raise ContractError(
            f"no {name} files under {data_dir}: expected {name}.csv, {name}.parquet "
            f"or a {name}/ folder of them"
        )
    frame = pd.concat(
        [read_landing_file(f, entity.column_names, entity.required) for f in files],
        ignore_index=True,
    )
    result = validate(entity, frame)
    if len(result.quarantine):
        excluded[name] = dict(Counter(result.quarantine["reason"]))
    return result.good


def _known(
    rows: pd.DataFrame,
    customers: pd.DataFrame,
    rewards: pd.DataFrame | None,
    excluded: dict,
    entity: str,
) -> pd.DataFrame:
    """Rows whose customer (and reward) exist; the others are counted in `excluded`."""
    known_customer = member_of(rows["customer_id"], customers["customer_id"])
    keep = known_customer.copy()
    reasons = {"unknown_customer": int((~known_customer).sum())}
    if rewards is not None:
        known_reward = member_of(rows["reward_id"], rewards["reward_id"])
        keep &= known_reward
        reasons["unknown_reward"] = int((known_customer & ~known_reward).sum())
    counts = excluded.setdefault(entity, {})
    counts.update({reason: n for reason, n in reasons.items() if n})
    if not counts:
        del excluded[entity]
    return rows[keep].reset_index(drop=True)


# --------------------------------------------------------------------------- candidates


class Ranker(Protocol):
    def fit(self, data: Interactions) -> Self: ...

    def score(self, customer_index: np.ndarray) -> np.ndarray: ...


class Popularity:
    """Everyone gets the same ranking: rewards by how often they were redeemed."""

    def fit(self, data: Interactions) -> Self:
        self.counts = np.bincount(data.codes[1], minlength=data.n_rewards).astype(np.float32)
        return self

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(customer_index), 1))


class RandomRanker:
    """Uniform random scores, a fixed function of (seed, customer row, reward row)."""

    def __init__(self, seed: int = 42):
        self.seed = seed

    def fit(self, data: Interactions) -> Self:
        self.n_rewards = data.n_rewards
        return self

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        customer = np.asarray(customer_index, dtype=np.uint64)[:, None]
        reward = np.arange(self.n_rewards, dtype=np.uint64)[None, :]
        # SplitMix64 finaliser over a mix of the three keys: cheap, well spread bits.
        x = customer * np.uint64(0x9E3779B97F4A7C15) + reward * np.uint64(0xD1B54A32D192ED03)
        x ^= np.uint64(self.seed & 0xFFFFFFFFFFFFFFFF)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
        return ((x >> np.uint64(40)).astype(np.float32)) / np.float32(2**24)


class Ease:
    """EASE (Steck 2019): B = I - P / diag(P), P = (X'X + l2 I)^-1, so diag(B) = 0."""

    def __init__(self, l2: float = 100.0):
        self.l2 = l2

    def fit(self, data: Interactions) -> Self:
        self.matrix = data.redemption_matrix
        gram = (self.matrix.T @ self.matrix).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = np.linalg.inv(gram)
        self.weights = (-inverse / np.diag(inverse)[None, :]).astype(np.float32)
        np.fill_diagonal(self.weights, 0.0)
        return self

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[customer_index] @ self.weights, dtype=np.float32)


class ItemKNN:
    """Item-based k nearest neighbours: cosine similarity of reward redemption columns.

    A customer's score for a reward sums its similarities to the customer's redeemed
    rewards, over the reward's `neighbors` most similar rewards only.
    """

    def __init__(self, neighbors: int = 50):
        self.neighbors = neighbors

    def fit(self, data: Interactions) -> Self:
        self.matrix = data.redemption_matrix
        similarity = _cosine(self.matrix)
        np.fill_diagonal(similarity, 0.0)
        if self.neighbors < similarity.shape[0]:
            # Rank of each row within its column; keep the top `neighbors` of every column.
            order = np.argsort(-similarity, axis=0, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(order.shape[0])[:, None], axis=0)
            similarity[rank >= self.neighbors] = 0.0
        self.similarity = similarity.astype(np.float32)
        return self

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[customer_index] @ self.similarity, dtype=np.float32)


def _cosine(matrix: sp.csr_matrix) -> np.ndarray:
    """Reward x reward cosine similarity of the columns of a binary matrix (dense)."""
    gram = (matrix.T @ matrix).toarray().astype(np.float64)
    norms = np.sqrt(np.diag(gram))
    norms[norms == 0] = 1.0
    return gram / norms[:, None] / norms[None, :]


# --------------------------------------------------------------------------- taste model


@dataclass(frozen=True)
class _History:
    """What a set of customers brings to their vectors, one row per customer."""

    segment: np.ndarray  # (n,) index into SEGMENTS
    preferences: sp.csr_matrix  # (n, C) 1 per sign-up preferred category
    redeemed_categories: sp.csr_matrix  # (n, C) redemption rows per category
    purchases: sp.csr_matrix  # (n, C) non-refund purchases per category
    redeemed: sp.csr_matrix  # (n, R) binary

    def rows(self, index: np.ndarray) -> _History:
        return _History(
            self.segment[index],
            self.preferences[index],
            self.redeemed_categories[index],
            self.purchases[index],
            self.redeemed[index],
        )


class TasteModel:
    """The product's ranker and embedding: score(u, i) = customer_vector(u) . reward_vector(i).

    Blocks of the vectors (`blocks`):
    - taste: one dimension per category. The customer's value is the log of a smoothed
      category affinity: redemptions per category (weight 1), purchases per category
      (`purchase_weight`), sign-up preferences (`preference_weight`) and a Dirichlet prior
      of strength `taste_smoothing` on the customer's tier's category mix. The reward's
      value is the one-hot of its category, so this block adds log P(category | customer).
    - segment: one dimension per tier and one for an unknown tier. The customer's value is
      the one-hot of its segment; the reward's is the log of its smoothed share of its
      category's redemptions by that segment. The prior of that share is content based
      (rewards of the same points-cost band and minimum tier, and whether the tier may
      redeem it at all), so a reward nobody redeemed yet still gets a finite value.
    - latent: the top `latent_rank` eigenvectors of the rewards' cosine co-redemption
      matrix (scaled by the root of their eigenvalues). The customer's value is the mean
      factor of the rewards they redeemed (zero for none), the reward's is its factor times
      `latent_weight`.
    """

    def __init__(
        self,
        purchase_weight: float = 0.3,
        preference_weight: float = 1.0,
        taste_smoothing: float = 3.0,
        segment_smoothing: float = 10.0,
        latent_weight: float = 2.0,
        latent_rank: int = 32,
        seed: int = 42,
    ):
        if taste_smoothing <= 0 or segment_smoothing <= 0:
            raise ValueError("taste_smoothing and segment_smoothing must be positive")
        self.params = {
            "purchase_weight": float(purchase_weight),
            "preference_weight": float(preference_weight),
            "taste_smoothing": float(taste_smoothing),
            "segment_smoothing": float(segment_smoothing),
            "latent_weight": float(latent_weight),
            "latent_rank": int(latent_rank),
            "seed": int(seed),
        }
        self._history: _History | None = None

    # ----------------------------------------------------------------- fitting

    def fit(self, data: Interactions) -> Self:
        rewards = data.rewards
        self.reward_ids = rewards["reward_id"].astype(str).tolist()
        self.categories = data.categories
        self._reward_index = pd.Index(self.reward_ids)
        self._reward_category = pd.Index(self.categories).get_indexer(rewards["category"])
        customer, reward = data.codes
        profiles = data.profiles
        segment = profiles.segments[customer]
        # Category mix of each segment's redemptions, shrunk toward the global mix (itself
        # shrunk toward uniform), so a small segment still gets a sensible prior.
        counts = np.zeros((len(SEGMENTS), len(self.categories)))
        np.add.at(counts, (segment, self._reward_category[reward]), 1.0)
        overall = counts.sum(axis=0) + 1.0
        overall /= overall.sum()
        strength = 10.0 * len(self.categories)
        self._segment_mix = (counts + strength * overall) / (
            counts.sum(axis=1, keepdims=True) + strength
        )
        self._segment_counts = np.zeros((len(SEGMENTS), len(self.reward_ids)))
        np.add.at(self._segment_counts, (segment, reward), 1.0)
        cost = rewards["points_cost"].to_numpy(np.float64)
        self._cost_edges = np.nanquantile(cost, [0.25, 0.5, 0.75])
        self._min_tier = _min_tiers(rewards)
        self._content_group = _content_groups(cost, self._min_tier, self._cost_edges)
        self._factors = _co_redemption_factors(
            data.redemption_matrix, self.params["latent_rank"], self.params["seed"]
        )
        self._history = _History(
            segment=profiles.segments,
            preferences=profiles.preferences,
            redeemed_categories=self._redeemed_categories(data.n_customers, data.codes),
            purchases=profiles.purchases,
            redeemed=data.redemption_matrix,
        )
        self._build_reward_vectors()
        return self

    def with_params(self, **changes) -> TasteModel:
        """The same fitted statistics under other hyper-parameters (not `latent_rank`)."""
        if "latent_rank" in changes and changes["latent_rank"] != self.params["latent_rank"]:
            raise ValueError("latent_rank needs a new fit")
        other = TasteModel(**{**self.params, **changes})
        for name, value in vars(self).items():
            if name != "params":
                setattr(other, name, value)
        other._build_reward_vectors()
        return other

    def _build_reward_vectors(self) -> None:
        self._reward_vectors = self._catalog_vectors(
            self._reward_category,
            self._content_group,
            self._min_tier,
            self._segment_counts,
            self._factors,
        )

    def _catalog_vectors(
        self,
        category: np.ndarray,
        group: np.ndarray,
        min_tier: np.ndarray,
        counts: np.ndarray,
        factors: np.ndarray,
    ) -> np.ndarray:
        taste = np.eye(len(self.categories))[category]
        segment = _segment_values(
            counts, category, group, min_tier, self.params["segment_smoothing"]
        )
        latent = self.params["latent_weight"] * factors
        return np.hstack([taste, segment, latent]).astype(np.float32)

    @property
    def fingerprint(self) -> str:
        """A digest of everything the vectors come from: same digest, same model."""
        digest = hashlib.sha256(
            json.dumps([self.params, self.reward_ids, self.categories]).encode()
        )
        for array in (self._reward_vectors, self._segment_mix, self._factors):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    @property
    def blocks(self) -> dict[str, slice]:
        taste = len(self.categories)
        segment = taste + len(SEGMENTS)
        return {
            "taste": slice(0, taste),
            "segment": slice(taste, segment),
            "latent": slice(segment, segment + self._factors.shape[1]),
        }

    # ----------------------------------------------------------------- vectors

    def reward_vectors(self, rewards: pd.DataFrame | None = None) -> np.ndarray:
        """(R, d) float32: the fitted rewards in `reward_ids` order, or the rows of `rewards`.

        `rewards` has reward_id, category, points_cost and min_tier (a name) or
        min_tier_rank (1..4). Rewards fitted on keep their vectors; new ones get what a
        reward of their category, cost band and minimum tier with no redemptions gets, and
        their category's mean latent factor. A reward of a category the model has never
        seen is an average one: equal weight on every category, the mean segment values.
        """
        if rewards is None:
            return self._reward_vectors
        position = self._reward_index.get_indexer(rewards["reward_id"].astype(str))
        vectors = np.empty((len(rewards), self._reward_vectors.shape[1]), dtype=np.float32)
        seen = position >= 0
        vectors[seen] = self._reward_vectors[position[seen]]
        if not seen.all():
            vectors[~seen] = self._new_reward_vectors(rewards[~seen])
        return vectors

    def _new_reward_vectors(self, rewards: pd.DataFrame) -> np.ndarray:
        n_categories = len(self.categories)
        category = pd.Index(self.categories).get_indexer(
            rewards["category"].astype("string").str.lower()
        )
        known = category >= 0
        vectors = np.zeros((len(rewards), self._reward_vectors.shape[1]), dtype=np.float32)
        vectors[~known, self.blocks["taste"]] = 1.0 / n_categories
        vectors[~known, self.blocks["segment"]] = self._reward_vectors[
            :, self.blocks["segment"]
        ].mean(axis=0)
        if known.any():
            new = rewards[known]
            category = category[known]
            sums = np.zeros((n_categories, self._factors.shape[1]))
            np.add.at(sums, self._reward_category, self._factors)
            sizes = np.bincount(self._reward_category, minlength=n_categories)
            mean_factor = sums / np.maximum(sizes, 1)[:, None]
            min_tier = _min_tiers(new)
            cost = new["points_cost"].to_numpy(np.float64)
            # Appended to the fitted catalog with no redemptions, they share its priors.
            catalog = self._catalog_vectors(
                np.concatenate([self._reward_category, category]),
                np.concatenate(
                    [self._content_group, _content_groups(cost, min_tier, self._cost_edges)]
                ),
                np.concatenate([self._min_tier, min_tier]),
                np.hstack([self._segment_counts, np.zeros((len(SEGMENTS), len(new)))]),
                np.vstack([self._factors, mean_factor[category]]),
            )
            vectors[known] = catalog[len(self.reward_ids) :]
        return vectors

    def customer_vectors(
        self,
        customers: pd.DataFrame,
        redemptions: pd.DataFrame,
        category_purchases: pd.DataFrame | None = None,
    ) -> np.ndarray:
        """(n, d) float32 for any customers (customer_id, tier, preferred_categories).

        Their redemptions and purchases are taken from the frames given (rows of other
        customers, and redemptions of rewards unknown to the model, are ignored); new
        customers without history get their preferences and their tier's mix.
        """
        n = len(customers)
        customer = positions(redemptions["customer_id"], customers["customer_id"])
        reward = self._reward_index.get_indexer(redemptions["reward_id"].astype(str))
        known = (customer >= 0) & (reward >= 0)
        customer, reward = customer[known], reward[known]
        profiles = CustomerProfiles(customers, category_purchases, self.categories)
        history = _History(
            segment=profiles.segments,
            preferences=profiles.preferences,
            redeemed_categories=self._redeemed_categories(n, (customer, reward)),
            purchases=profiles.purchases,
            redeemed=_binary((n, len(self.reward_ids)), customer, reward),
        )
        return self._vectors(history)

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        """Scores of the customers at rows `customer_index` of the data fitted on."""
        if self._history is None:
            raise ValueError("score needs the fitted data; use customer_vectors after load")
        vectors = self._vectors(self._history.rows(np.asarray(customer_index)))
        return vectors @ self._reward_vectors.T

    def _redeemed_categories(
        self, n_customers: int, codes: tuple[np.ndarray, np.ndarray]
    ) -> sp.csr_matrix:
        customer, reward = codes
        return sp.csr_matrix(
            (np.ones(customer.size), (customer, self._reward_category[reward])),
            shape=(n_customers, len(self.categories)),
        )

    def _vectors(self, history: _History) -> np.ndarray:
        p = self.params
        affinity = (
            history.redeemed_categories.toarray()
            + p["purchase_weight"] * history.purchases.toarray()
            + p["preference_weight"] * history.preferences.toarray()
            + p["taste_smoothing"] * self._segment_mix[history.segment]
        )
        taste = np.log(affinity / affinity.sum(axis=1, keepdims=True))
        segment = np.eye(len(SEGMENTS))[history.segment]
        redeemed = history.redeemed
        latent = (redeemed @ self._factors) / np.maximum(redeemed.getnnz(axis=1), 1)[:, None]
        return np.hstack([taste, segment, latent]).astype(np.float32)

    # ----------------------------------------------------------------- persistence

    def save(self, directory: Path) -> None:
        """`taste_model.npz` (arrays) and `taste_model.json` (ids, names, params)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / "taste_model.npz",
            reward_vectors=self._reward_vectors,
            reward_category=self._reward_category,
            segment_mix=self._segment_mix,
            factors=self._factors,
            segment_counts=self._segment_counts,
            content_group=self._content_group,
            min_tier=self._min_tier,
            cost_edges=self._cost_edges,
        )
        meta = {
            "params": self.params,
            "reward_ids": self.reward_ids,
            "categories": self.categories,
            "segments": list(SEGMENTS),
            "blocks": {name: [s.start, s.stop] for name, s in self.blocks.items()},
        }
        (directory / "taste_model.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> TasteModel:
        """The saved model: reward and customer vectors, but no `score` (no fitted data)."""
        directory = Path(directory)
        meta = json.loads((directory / "taste_model.json").read_text())
        if meta["segments"] != list(SEGMENTS):
            raise ValueError(f"model saved with segments {meta['segments']}, not {SEGMENTS}")
        model = cls(**meta["params"])
        model.reward_ids = meta["reward_ids"]
        model.categories = meta["categories"]
        model._reward_index = pd.Index(model.reward_ids)
        with np.load(directory / "taste_model.npz", allow_pickle=False) as arrays:
            for name in (
                "reward_vectors",
                "reward_category",
                "segment_mix",
                "factors",
                "segment_counts",
                "content_group",
                "min_tier",
                "cost_edges",
            ):
                setattr(model, f"_{name}", arrays[name])
        return model


def _min_tiers(rewards: pd.DataFrame) -> np.ndarray:
    """Index into TIERS of each reward's minimum tier; -1 when open to every tier."""
    if "min_tier" in rewards:
        return pd.Index(TIERS).get_indexer(rewards["min_tier"].astype("string").str.lower())
    return rewards["min_tier_rank"].fillna(0).to_numpy(np.int64) - 1


def _content_groups(cost: np.ndarray, min_tier: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Group of similar rewards: band of points cost (cut at `edges`) x minimum tier."""
    return np.searchsorted(edges, cost) * (len(TIERS) + 1) + min_tier + 1


def _segment_values(
    counts: np.ndarray,
    category: np.ndarray,
    group: np.ndarray,
    min_tier: np.ndarray,
    smoothing: float,
) -> np.ndarray:
    """(R, segments) log of each reward's smoothed share of its category, per segment.

    A reward's share is shrunk toward a content prior: how much rewards of its content
    group are redeemed relative to their category's average, restricted to the rewards
    the segment's tier may redeem (minimum tier at or below it).
    """

    def within_category(values: np.ndarray) -> np.ndarray:
        totals = np.bincount(category, weights=values, minlength=category.max() + 1)
        return values / np.where(totals > 0, totals, 1.0)[category]

    def group_ratio(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
        """Per reward: its content group's redemptions over the expected, smoothed by one."""
        ratio = (np.bincount(group, weights=observed) + 1.0) / (
            np.bincount(group, weights=expected) + 1.0
        )
        return ratio[group]

    overall = counts.sum(axis=0)
    per_category = np.bincount(category, weights=overall)
    expected = (per_category / np.bincount(category))[category]
    share = within_category(overall + smoothing * within_category(group_ratio(overall, expected)))

    tier_rank = np.arange(len(SEGMENTS))
    # Unknown minimum tier: open to all; unknown customer tier: all rewards count.
    allowed = (min_tier[:, None] <= tier_rank[None, :]) | (tier_rank[None, :] == UNKNOWN_SEGMENT)
    values = np.empty((category.size, len(SEGMENTS)))
    for s in range(len(SEGMENTS)):
        base = within_category(share * np.where(allowed[:, s], 1.0, 0.01))
        # Tiers differ in what they can afford: reweight by how the tier uses each group.
        in_category = np.bincount(category, weights=counts[s], minlength=per_category.size)
        prior = within_category(base * group_ratio(counts[s], base * in_category[category]))
        values[:, s] = np.log(within_category(counts[s] + smoothing * prior))
    return values


def _co_redemption_factors(matrix: sp.csr_matrix, rank: int, seed: int) -> np.ndarray:
    """(R, rank) F with F F' ~ the cosine co-redemption matrix (positive semi-definite)."""
    n_rewards = matrix.shape[1]
    rank = min(rank, n_rewards)
    if matrix.nnz == 0 or rank == 0:
        return np.zeros((n_rewards, rank))
    similarity = _cosine(matrix)
    if rank < n_rewards - 1:
        start = np.random.default_rng(seed).random(n_rewards)
        values, vectors = eigsh(similarity, k=rank, v0=start)
    else:
        values, vectors = np.linalg.eigh(similarity)
    top = np.argsort(-values, kind="stable")[:rank]
    return vectors[:, top] * np.sqrt(np.clip(values[top], 0.0, None))[None, :]


# --------------------------------------------------------------------------- protocol


def split_rows(data: Interactions, split: str, seed: int, test_share: float = 0.25) -> np.ndarray:
    """Boolean test mask over redemption rows: a seeded random share, or the latest ones."""
    n = len(data.redemptions)
    n_test = round(n * test_share)
    test = np.zeros(n, dtype=bool)
    if split == "random":
        test[np.random.default_rng(seed).permutation(n)[:n_test]] = True
    elif split == "temporal":
        order = np.argsort(data.redemptions["redeemed_at"].to_numpy(), kind="stable")
        test[order[n - n_test :]] = True
    else:
        raise ValueError(f"split must be 'random' or 'temporal', not {split!r}")
    return test


@dataclass
class HoldOut:
    """Training data and, for a sample of customers, their held-out relevant rewards."""

    train: Interactions
    customers: np.ndarray  # customer rows evaluated (sorted)
    relevant: sp.csr_matrix  # (len(customers), R): held-out rewards not redeemed in training
    eligible: int  # customers with at least one relevant reward, before the cap
    train_rows: int
    test_rows: int

    @classmethod
    def split(
        cls,
        data: Interactions,
        split: str = "random",
        seed: int = 42,
        max_customers: int = 50_000,
        test_share: float = 0.25,
    ) -> HoldOut:
        test = split_rows(data, split, seed, test_share)
        train = data.subset(np.flatnonzero(~test))
        customer, reward = data.codes
        shape = (data.n_customers, data.n_rewards)
        held_out = _binary(shape, customer[test], reward[test])
        relevant = held_out - held_out.multiply(train.redemption_matrix)
        relevant.eliminate_zeros()
        candidates = np.flatnonzero(relevant.getnnz(axis=1))
        chosen = candidates
        if candidates.size > max_customers:
            rng = np.random.default_rng(seed)
            chosen = np.sort(rng.choice(candidates, size=max_customers, replace=False))
        return cls(
            train=train,
            customers=chosen,
            relevant=relevant[chosen].tocsr(),
            eligible=int(candidates.size),
            train_rows=int((~test).sum()),
            test_rows=int(test.sum()),
        )

    def evaluate(self, ranker: Ranker, k: int = 10) -> dict[str, float]:
        """Metrics of a ranker fitted on `train`."""
        if self.customers.size == 0:
            return {f"{name}@{k}": float("nan") for name in METRICS}
        return ranking_metrics(self.hits(ranker, k), self.relevant.getnnz(axis=1))

    def hits(self, ranker: Ranker, k: int = 10) -> np.ndarray:
        """(customers, k) boolean: whether the reward ranked at each position is relevant.

        The ranking is `top_k`'s: training rewards last, ties to the lower reward row. Only
        the relevant rewards' positions matter, so each is found by counting the rewards
        ranked above it, which is cheaper than sorting every customer's scores.
        """
        hits = np.zeros((self.customers.size, k), dtype=bool)
        reward = np.arange(self.train.n_rewards)
        for start, stop in self._chunks():
            rows = self.customers[start:stop]
            scores = _without(ranker.score(rows), self.train.redemption_matrix[rows])
            pairs = self.relevant[start:stop].tocoo()
            own = scores[pairs.row, pairs.col][:, None]
            others = scores[pairs.row]
            position = (others > own).sum(axis=1) + (
                (others == own) & (reward[None, :] < pairs.col[:, None])
            ).sum(axis=1)
            shown = position < k
            hits[start + pairs.row[shown], position[shown]] = True
        return hits

    def _chunks(self) -> list[tuple[int, int]]:
        """Customer ranges whose scores and relevant pairs hold about 4M values each."""
        per_chunk = max(1, 4_000_000 // max(self.train.n_rewards, 1))
        weight = 1 + np.diff(self.relevant.indptr)
        group = (np.cumsum(weight) - 1) // per_chunk
        starts = np.flatnonzero(np.diff(group, prepend=-1))
        stops = np.append(starts[1:], group.size)
        return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _without(scores: np.ndarray, excluded: sp.csr_matrix) -> np.ndarray:
    """A float copy of `scores` with the excluded (row, reward) entries at -inf."""
    scores = np.array(scores, dtype=np.float32)
    rows = np.repeat(np.arange(excluded.shape[0]), np.diff(excluded.indptr))
    scores[rows, excluded.indices] = -np.inf
    return scores


def top_k(scores: np.ndarray, k: int, excluded: sp.csr_matrix | None = None) -> np.ndarray:
    """(n, min(k, R)) reward columns, best first; ties to the lower column.

    `excluded` (n, R), e.g. rewards already redeemed, ranks those entries last.
    """
    if excluded is not None:
        scores = _without(scores, excluded)
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]


# --------------------------------------------------------------------------- tuning

TASTE_GRID: dict[str, tuple[float, ...]] = {
    "purchase_weight": (0.0, 0.1, 0.3, 1.0),
    "preference_weight": (0.0, 1.0, 3.0, 10.0),
    "taste_smoothing": (0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    "segment_smoothing": (1.0, 10.0, 100.0, 1000.0),
    "latent_weight": (0.0, 0.5, 2.0, 8.0, 32.0),
}


def tune_taste_model(
    holdout: HoldOut, k: int = 10, seed: int = 42, log: Log = _silent
) -> tuple[dict, dict[str, float]]:
    """Coordinate search over TASTE_GRID on the hold-out's validation customers.

    Returns the best parameters and their validation metrics. Two passes over the
    parameters, each keeping the best value of one parameter given the others.
    """
    model = TasteModel(seed=seed).fit(holdout.train)
    key = f"ndcg@{k}"
    best = holdout.evaluate(model, k)
    for _ in range(2):
        changed = False
        for name, values in TASTE_GRID.items():
            for value in values:
                if value == model.params[name]:
                    continue
                trial = model.with_params(**{name: value})
                metrics = holdout.evaluate(trial, k)
                if metrics[key] > best[key]:
                    model, best, changed = trial, metrics, True
        log(f"taste model search: {key} {best[key]:.4f} with {model.params}")
        if not changed:
            break
    return model.params, best


def fit_taste_model(
    data: Interactions, seed: int = 42, k: int = 10, max_customers: int = 20_000, log: Log = _silent
) -> tuple[TasteModel, dict]:
    """Tune the taste model on a random validation split of `data`, then fit it on all.

    The validation metrics hold the model's and popularity's scores on the same split
    (see `ranking_quality`).
    """
    holdout = HoldOut.split(data, "random", seed, max_customers)
    params, taste = tune_taste_model(holdout, k, seed, log)
    popularity = holdout.evaluate(Popularity().fit(holdout.train), k)
    model = TasteModel(**params).fit(data)
    validation = {
        "k": k,
        "customers": int(holdout.customers.size),
        "train_rows": holdout.train_rows,
        "validation_rows": holdout.test_rows,
        "params": params,
        "taste_model": taste,
        "popularity": popularity,
    }
    return model, validation


def ranking_quality(validation_metrics: dict, min_lift: float = 1.2) -> list[str]:
    """Reasons the taste model is not good enough to rank with (empty list: it is)."""
    key = f"ndcg@{validation_metrics['k']}"
    if validation_metrics["customers"] == 0:
        return ["no customers with held-out redemptions to validate on"]
    model = validation_metrics["taste_model"][key]
    popularity = validation_metrics["popularity"][key]
    if not model >= min_lift * popularity:
        return [
            f"taste model validation {key} {model:.4f} is below {min_lift}x popularity's "
            f"{popularity:.4f}"
        ]
    return []
