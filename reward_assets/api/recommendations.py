"""Recommended rewards from memory, eligibility re-checked against the current data.

A request must answer in a few milliseconds at hundreds per second, which a SQL query over
a million-row snapshot cannot (about 5 ms each). So the recommendation sets, the points
balances and the reward catalogue are held in memory, as sorted arrays and a small dict,
and reloaded when their table changes (a new snapshot file, a new table on PostgreSQL).
Each request then costs a binary search, a few dict look-ups and one suppression query on
the operational store, which the unsubscribe link writes at any time.

While one request reloads a table the others keep answering from the previous copy,
so a materialisation never stalls the API.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

from reward_assets.api.data import ServedData, as_date
from reward_assets.email.suppression import suppressed
from reward_assets.ops.store import OpsStore
from reward_assets.recommend.eligibility import LOWEST_RANK, Ineligible, blocking_reason

SETS, CUSTOMERS, REWARDS = "ml.recommendation_sets", "marts.dim_customers", "marts.dim_rewards"
# Why a response holds no item.
SUPPRESSED = "suppressed"
NO_SET = "no_recommendation_set"
NONE_ELIGIBLE = "none_eligible"


class UnknownCustomer(LookupError):
    def __init__(self, customer_id: str):
        super().__init__(f"no customer with id {customer_id!r}")


@dataclass(frozen=True)
class Customer:
    points_balance: float
    tier_rank: int


@dataclass(frozen=True)
class Reward:
    reward_id: str
    name: str
    category: str
    points_cost: int
    min_tier_rank: int
    active: bool
    inventory: int | None

    def blocking_reason(self, customer: Customer, almost_there: bool) -> Ineligible | None:
        return blocking_reason(
            active=self.active,
            inventory=self.inventory,
            min_tier_rank=self.min_tier_rank,
            points_cost=self.points_cost,
            tier_rank=customer.tier_rank,
            points_balance=customer.points_balance,
            almost_there=almost_there,
        )


@dataclass(frozen=True)
class StoredItem:
    rank: int
    reward_id: str
    score: float
    reason: str
    is_almost_there: bool
    is_exploration: bool
    model_version: str
    as_of: dt.date | None


def _id_array(values: pd.Series) -> np.ndarray:
    return values.astype(str).to_numpy(dtype=object)


def _position(ids: np.ndarray, customer_id: str) -> int | None:
    at = int(np.searchsorted(ids, customer_id))
    return at if at < len(ids) and ids[at] == customer_id else None


@dataclass(frozen=True)
class CustomerTable:
    """Points balance and tier rank by customer id (ids sorted for a binary search)."""

    ids: np.ndarray
    points_balance: np.ndarray
    tier_rank: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> CustomerTable:
        frame = frame.dropna(subset=["customer_id"]).sort_values("customer_id", kind="stable")
        return cls(
            _id_array(frame["customer_id"]),
            pd.to_numeric(frame["points_balance"]).fillna(0).to_numpy(dtype=float),
            pd.to_numeric(frame["tier_rank"]).fillna(LOWEST_RANK).to_numpy(dtype=np.int64),
        )

    def get(self, customer_id: str) -> Customer | None:
        at = _position(self.ids, customer_id)
        if at is None:
            return None
        return Customer(float(self.points_balance[at]), int(self.tier_rank[at]))


@dataclass(frozen=True)
class SetTable:
    """The recommendation sets: row `bounds[i]:bounds[i+1]` belong to `ids[i]`, by rank.

    Text columns are categorical codes, so a million rows take tens of megabytes.
    """

    ids: np.ndarray
    bounds: np.ndarray
    rank: np.ndarray
    score: np.ndarray
    is_almost_there: np.ndarray
    is_exploration: np.ndarray
    codes: dict[str, np.ndarray]
    labels: dict[str, list]

    CODED = ("reward_id", "reason", "model_version", "as_of")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> SetTable:
        frame = frame.dropna(subset=["customer_id"]).sort_values(
            ["customer_id", "rank"], kind="stable"
        )
        customers = _id_array(frame["customer_id"])
        ids, starts = np.unique(customers, return_index=True)
        codes, labels = {}, {}
        for name in cls.CODED:
            categorical = pd.Categorical(frame[name])
            codes[name] = categorical.codes
            labels[name] = list(categorical.categories)
        labels["as_of"] = [as_date(value) for value in labels["as_of"]]
        return cls(
            ids,
            np.append(starts, len(frame)),
            frame["rank"].to_numpy(dtype=np.int64),
            frame["score"].to_numpy(dtype=float),
            frame["is_almost_there"].fillna(False).to_numpy(dtype=bool),
            frame["is_exploration"].fillna(False).to_numpy(dtype=bool),
            codes,
            labels,
        )

    def items(self, customer_id: str) -> list[StoredItem]:
        at = _position(self.ids, customer_id)
        if at is None:
            return []
        rows = range(self.bounds[at], self.bounds[at + 1])
        return [
            StoredItem(
                rank=int(self.rank[row]),
                reward_id=self._label("reward_id", row),
                score=float(self.score[row]),
                reason=self._label("reason", row),
                is_almost_there=bool(self.is_almost_there[row]),
                is_exploration=bool(self.is_exploration[row]),
                model_version=self._label("model_version", row),
                as_of=self._label("as_of", row),
            )
            for row in rows
        ]

    def _label(self, column: str, row: int):
        code = self.codes[column][row]
        return None if code < 0 else self.labels[column][code]


def rewards_by_id(frame: pd.DataFrame) -> dict[str, Reward]:
    return {
        str(r.reward_id): Reward(
            reward_id=str(r.reward_id),
            name=str(r.name),
            category=str(r.category),
            points_cost=int(r.points_cost),
            min_tier_rank=LOWEST_RANK if pd.isna(r.min_tier_rank) else int(r.min_tier_rank),
            # As the set builder: an unknown active flag is not available.
            active=bool(r.active) if not pd.isna(r.active) else False,
            inventory=None if pd.isna(r.inventory) else int(r.inventory),
        )
        for r in frame.itertuples(index=False)
        if not pd.isna(r.points_cost)
    }


T = TypeVar("T")


class Reloading(Generic[T]):
    """One table's in-memory copy, rebuilt when the table's version token changes."""

    def __init__(self, load: Callable[[], T]):
        self._load = load
        self._lock = threading.Lock()
        self._current: tuple[Hashable, T] | None = None

    def get(self, version: Hashable) -> T:
        current = self._current
        if current is not None and current[0] == version:
            return current[1]
        # Someone else is reloading: answer from the previous copy rather than queue.
        if current is not None and not self._lock.acquire(blocking=False):
            return current[1]
        if current is None:
            self._lock.acquire()
        try:
            current = self._current
            if current is None or current[0] != version:
                current = (version, self._load())
                self._current = current
            return current[1]
        finally:
            self._lock.release()


@dataclass
class Recommendations:
    customer_id: str
    items: list[tuple[StoredItem, Reward]]
    dropped: Counter = field(default_factory=Counter)
    reason: str | None = None


class Recommender:
    def __init__(self, data: ServedData, store: OpsStore):
        self.data = data
        self.store = store
        self._customers = Reloading(
            lambda: CustomerTable.from_frame(
                data.frame(f"SELECT customer_id, points_balance, tier_rank FROM {CUSTOMERS}")
            )
        )
        self._sets = Reloading(
            lambda: SetTable.from_frame(
                data.frame(
                    "SELECT customer_id, rank, reward_id, score, reason, is_almost_there, "
                    f"is_exploration, model_version, as_of FROM {SETS}"
                )
            )
        )
        self._rewards = Reloading(
            lambda: rewards_by_id(
                data.frame(
                    "SELECT reward_id, name, category, points_cost, min_tier_rank, active, "
                    f"inventory FROM {REWARDS}"
                )
            )
        )

    def warm_up(self) -> None:
        """Load what is published already, so the first requests do not pay for it."""
        versions = self.data.versions([CUSTOMERS, SETS, REWARDS])
        caches = {CUSTOMERS: self._customers, SETS: self._sets, REWARDS: self._rewards}
        for table, cache in caches.items():
            if versions[table] is not None:
                cache.get(versions[table])

    def scored_as_of(self) -> dt.date | None:
        """The day the served recommendation sets were scored for."""
        sets = self._sets.get(self.data.require(SETS)[SETS])
        return max((day for day in sets.labels["as_of"] if day), default=None)

    def recommend(self, customer_id: str, limit: int) -> Recommendations:
        versions = self.data.require(SETS, CUSTOMERS, REWARDS)
        customer = self._customers.get(versions[CUSTOMERS]).get(customer_id)
        if customer is None:
            raise UnknownCustomer(customer_id)
        stored = self._sets.get(versions[SETS]).items(customer_id)
        if suppressed(self.store, [customer_id]):
            return Recommendations(customer_id, [], Counter({SUPPRESSED: len(stored)}), SUPPRESSED)
        if not stored:
            return Recommendations(customer_id, [], reason=NO_SET)
        rewards = self._rewards.get(versions[REWARDS])
        kept, dropped = [], Counter()
        for item in stored:
            reward = rewards.get(item.reward_id)
            why = (
                Ineligible.NOT_IN_CATALOGUE
                if reward is None
                else reward.blocking_reason(customer, item.is_almost_there)
            )
            if why:
                dropped[why] += 1
            else:
                kept.append((item, reward))
        return Recommendations(customer_id, kept[:limit], dropped, None if kept else NONE_ELIGIBLE)

    def offers(self, customer_id: str, limit: int) -> pd.DataFrame:
        """The customer's current eligible rewards in the shape the email writer reads."""
        found = self.recommend(customer_id, limit)
        return pd.DataFrame(
            [
                {
                    "customer_id": customer_id,
                    "rank": item.rank,
                    "reward_id": reward.reward_id,
                    "name": reward.name,
                    "category": reward.category,
                    "points_cost": reward.points_cost,
                    "reason": item.reason,
                    "is_almost_there": item.is_almost_there,
                }
                for item, reward in found.items
            ],
            columns=[
                "customer_id",
                "rank",
                "reward_id",
                "name",
                "category",
                "points_cost",
                "reason",
                "is_almost_there",
            ],
        )
