"""The data every ranker learns from: who redeemed what, and what customers bring besides.

`Interactions` holds the customers, the rewards and the redemptions, read from the warehouse
marts or from a landing folder of the input contract, with the rows it had to leave out
counted per entity and reason. Its row order is the contract with the rankers: a customer's
row is its `customer_index` and rewards are scored in `rewards` order. `CustomerProfiles`
encodes each customer's tier segment (`TIER_SEGMENTS`), sign-up preferences and purchases
per category, once, so every ranker and every hold-out subset shares the encoding.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from reward_assets.ingest.clock import as_of_params
from reward_assets.ingest.contract import ENTITIES, TIERS
from reward_assets.ingest.landing import ContractError, landing_files
from reward_assets.ingest.quarantine import QuarantineReason
from reward_assets.ingest.validation import read_validated
from reward_assets.recommend.inputs import member_of, positions
from reward_assets.warehouse.store import Warehouse

# One segment per tier, and one for customers whose tier is unknown. Not the lifecycle
# stages of `engagement.segments`: these only say which tier's taste a customer shares.
TIER_SEGMENTS = (*TIERS, "unknown")
UNKNOWN_SEGMENT = len(TIERS)


@dataclass
class Interactions:
    """Who redeemed what, with the customer and reward attributes the rankers use.

    Row order matters: a customer's row in `customers` is its `customer_index` in `score`,
    and rewards are scored in `rewards` order.
    """

    customers: pd.DataFrame  # customer_id, tier (str|None), preferred_categories ('a|b'|None)
    rewards: pd.DataFrame  # reward_id, category, points_cost, min_tier (str|None)
    redemptions: pd.DataFrame  # customer_id, reward_id, redeemed_at
    # customer_id, category, purchases (count of non-refund transactions), in no
    # particular order; optional
    category_purchases: pd.DataFrame | None = None
    # Rows left out while building, per entity and reason: contract breaks, unknown ids.
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_warehouse(cls, warehouse: Warehouse, as_of: dt.date | None = None) -> Interactions:
        """The marts tables; with `as_of`, only events (and sign-ups) before the end of that day."""
        params = as_of_params(as_of) if as_of else {}

        def before(column: str) -> str:
            return f"{column} < CAST(:as_of_end AS TIMESTAMP)" if as_of else "TRUE"

        # Whether a row's customer is one of `customers` (and its reward one of `rewards`),
        # answered by the engine: an Arrow hash lookup of millions of ids here cost more
        # than the queries (1.3-2.5 s of purchases at 1,000,000 customers).
        signed_up = f"SELECT customer_id FROM marts.dim_customers WHERE {before('signup_at')}"
        known_customer = f"COALESCE(customer_id IN ({signed_up}), FALSE) AS known_customer"

        customers = warehouse.text_frame(
            "SELECT customer_id, tier, preferred_categories FROM marts.dim_customers "
            f"WHERE {before('signup_at')} ORDER BY customer_id",
            params,
        )
        rewards = warehouse.text_frame(
            "SELECT reward_id, category, points_cost, min_tier FROM marts.dim_rewards "
            "ORDER BY reward_id"
        )
        redemptions = warehouse.text_frame(
            f"SELECT redemption_id, customer_id, reward_id, redeemed_at, {known_customer}, "
            "COALESCE(reward_id IN (SELECT reward_id FROM marts.dim_rewards), FALSE) "
            "AS known_reward "
            f"FROM marts.fct_redemptions WHERE {before('redeemed_at')} ORDER BY redemption_id",
            params,
        )
        # Not sorted: every reader sums counts per customer and category (a third of the
        # query's CPU went to the sort).
        purchases = warehouse.text_frame(
            f"SELECT customer_id, category, COUNT(*) AS purchases, {known_customer} "
            "FROM marts.fct_transactions "
            f"WHERE NOT is_refund AND category IS NOT NULL AND {before('occurred_at')} "
            "GROUP BY customer_id, category",
            params,
        )
        excluded: dict[str, dict[str, int]] = {}
        redemptions = _known(
            redemptions.drop(columns=["known_customer", "known_reward"]),
            redemptions["known_customer"].to_numpy(bool),
            redemptions["known_reward"].to_numpy(bool),
            excluded,
            "redemptions",
        )
        purchases = _known(
            purchases.drop(columns=["known_customer"]),
            purchases["known_customer"].to_numpy(bool),
            None,
            excluded,
            "transactions",
        )
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
        redemptions = _known(
            redemptions,
            member_of(redemptions["customer_id"], customers["customer_id"]),
            member_of(redemptions["reward_id"], rewards["reward_id"]),
            excluded,
            "redemptions",
        )

        purchases = None
        if landing_files(Path(data_dir), "transactions"):
            transactions = _read_entity(Path(data_dir), "transactions", excluded)
            bought = transactions[(transactions["amount"] >= 0) & transactions["category"].notna()]
            known = member_of(bought["customer_id"], customers["customer_id"])
            bought = _known(bought, known, None, excluded, "transactions")
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
        return binary_matrix((self.n_customers, self.n_rewards), customer, reward)

    @cached_property
    def gram(self) -> np.ndarray:
        """X'X of the redemption matrix, dense float64 (read-only): EASE and DLAE invert it
        with a penalty for every value of their grids, so it is built once."""
        matrix = self.redemption_matrix
        gram = (matrix.T @ matrix).toarray().astype(np.float64)
        gram.flags.writeable = False
        return gram

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
        """Each customer's index into TIER_SEGMENTS."""
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
        return binary_matrix((len(self.customers), len(self.categories)), row, column[column >= 0])

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


def binary_matrix(shape: tuple[int, int], rows: np.ndarray, columns: np.ndarray) -> sp.csr_matrix:
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
    result = read_validated(files, entity)
    if len(result.quarantine):
        excluded[name] = dict(Counter(result.quarantine["reason"]))
    return result.good


def _known(
    rows: pd.DataFrame,
    known_customer: np.ndarray,
    known_reward: np.ndarray | None,
    excluded: dict,
    entity: str,
) -> pd.DataFrame:
    """The rows whose customer (and reward) exist, as the boolean arrays say; the others
    are counted in `excluded`."""
    keep = known_customer.copy()
    # Named as the loader's outcomes: it holds back unknown customers, quarantines unknown
    # rewards.
    reasons = {"unknown_customer": int((~known_customer).sum())}
    if known_reward is not None:
        keep &= known_reward
        reasons[QuarantineReason.UNKNOWN_REWARD] = int((known_customer & ~known_reward).sum())
    counts = excluded.setdefault(entity, {})
    counts.update({reason: n for reason, n in reasons.items() if n})
    if not counts:
        del excluded[entity]
    return rows[keep].reset_index(drop=True)
