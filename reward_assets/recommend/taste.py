"""The taste model: the product's ranker and its embedding space, and how it is tuned.

A customer's score for a reward is exactly the dot product of the customer's and the
reward's vectors, made of named blocks (category taste, tier segment, latent co-redemption
factors), so the same vectors serve ranking, the published embeddings and rewards or
customers the model has never seen. `tune_taste_model` tunes its hyper-parameters on a
hold-out of the data (`recommend.protocol`); `recommend.served` decides whether it is served
alone, blended with item-item weights, or not at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from reward_assets.ingest.contract import TIERS
from reward_assets.recommend.inputs import positions
from reward_assets.recommend.interactions import (
    TIER_SEGMENTS,
    UNKNOWN_SEGMENT,
    CustomerProfiles,
    Interactions,
    binary_matrix,
)
from reward_assets.recommend.protocol import HoldOut
from reward_assets.recommend.rankers import cosine_similarity

Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class _History:
    """What a set of customers brings to their vectors, one row per customer."""

    segment: np.ndarray  # (n,) index into TIER_SEGMENTS
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
        counts = np.zeros((len(TIER_SEGMENTS), len(self.categories)))
        np.add.at(counts, (segment, self._reward_category[reward]), 1.0)
        overall = counts.sum(axis=0) + 1.0
        overall /= overall.sum()
        strength = 10.0 * len(self.categories)
        self._segment_mix = (counts + strength * overall) / (
            counts.sum(axis=1, keepdims=True) + strength
        )
        self._segment_counts = np.zeros((len(TIER_SEGMENTS), len(self.reward_ids)))
        np.add.at(self._segment_counts, (segment, reward), 1.0)
        cost = rewards["points_cost"].to_numpy(np.float64)
        self._cost_edges = np.nanquantile(cost, [0.25, 0.5, 0.75])
        self._min_tier = _min_tiers(rewards)
        self._content_group = _content_groups(cost, self._min_tier, self._cost_edges)
        self._factors = _co_redemption_factors(
            data.gram, data.redemption_matrix.nnz, self.params["latent_rank"], self.params["seed"]
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
        segment = taste + len(TIER_SEGMENTS)
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
                np.hstack([self._segment_counts, np.zeros((len(TIER_SEGMENTS), len(new)))]),
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
            redeemed=binary_matrix((n, len(self.reward_ids)), customer, reward),
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
        segment = np.eye(len(TIER_SEGMENTS))[history.segment]
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
            "segments": list(TIER_SEGMENTS),
            "blocks": {name: [s.start, s.stop] for name, s in self.blocks.items()},
        }
        (directory / "taste_model.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> TasteModel:
        """The saved model: reward and customer vectors, but no `score` (no fitted data)."""
        directory = Path(directory)
        meta = json.loads((directory / "taste_model.json").read_text())
        if meta["segments"] != list(TIER_SEGMENTS):
            raise ValueError(f"model saved with segments {meta['segments']}, not {TIER_SEGMENTS}")
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

    tier_rank = np.arange(len(TIER_SEGMENTS))
    # Unknown minimum tier: open to all; unknown customer tier: all rewards count.
    allowed = (min_tier[:, None] <= tier_rank[None, :]) | (tier_rank[None, :] == UNKNOWN_SEGMENT)
    values = np.empty((category.size, len(TIER_SEGMENTS)))
    for s in range(len(TIER_SEGMENTS)):
        base = within_category(share * np.where(allowed[:, s], 1.0, 0.01))
        # Tiers differ in what they can afford: reweight by how the tier uses each group.
        in_category = np.bincount(category, weights=counts[s], minlength=per_category.size)
        prior = within_category(base * group_ratio(counts[s], base * in_category[category]))
        values[:, s] = np.log(within_category(counts[s] + smoothing * prior))
    return values


def _co_redemption_factors(gram: np.ndarray, redeemed: int, rank: int, seed: int) -> np.ndarray:
    """(R, rank) F with F F' ~ the cosine co-redemption matrix (positive semi-definite),
    from the redemption matrix's Gram matrix and its number of redemptions."""
    n_rewards = gram.shape[1]
    rank = min(rank, n_rewards)
    if redeemed == 0 or rank == 0:
        return np.zeros((n_rewards, rank))
    similarity = cosine_similarity(gram)
    if rank < n_rewards - 1:
        start = np.random.default_rng(seed).random(n_rewards)
        values, vectors = eigsh(similarity, k=rank, v0=start)
    else:
        values, vectors = np.linalg.eigh(similarity)
    top = np.argsort(-values, kind="stable")[:rank]
    return vectors[:, top] * np.sqrt(np.clip(values[top], 0.0, None))[None, :]


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
) -> tuple[TasteModel, dict[str, float]]:
    """Coordinate search over TASTE_GRID on the hold-out's validation customers.

    Returns the best model, fitted on the hold-out's training part, and its validation
    metrics. Two passes over the parameters, each keeping the best value of one parameter
    given the others.
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
    return model, best
