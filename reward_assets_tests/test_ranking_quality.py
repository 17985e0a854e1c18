"""Quality bars of the reward ranking on both seeded worlds, against the planted truth.

The truth ranking (the oracle) scores a reward as the generator chooses rewards:
(taste of its category + the choice noise) x popularity x the tier's eligibility and
affordability (seeding.reward_weights). The tests bound the planted signal from both
sides: popular enough that popularity is a real baseline, noisy enough that even the
oracle stays far from perfect.
"""

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from reward_assets.recommend.evaluate import Report, evaluate
from reward_assets.recommend.interactions import Interactions
from reward_assets.recommend.protocol import HoldOut, ranking_quality, top_k
from reward_assets.recommend.served import fit_served_model
from reward_assets.recommend.taste import TasteModel
from reward_assets.seed.catalogue import reward_weights
from reward_assets.seed.model import CATEGORIES, Model

K = 10


class TruthRanker:
    """The generator's own reward choice, from the planted tastes and reward truth."""

    def __init__(self, truth_dir, data: Interactions):
        model = Model.from_json(json.loads((truth_dir / "params.json").read_text())["model"])
        rewards = pq.read_table(truth_dir / "rewards_truth.parquet").to_pandas()
        customers = pq.read_table(truth_dir / "customers_truth.parquet").to_pandas()
        reward_rows = pd.Index(rewards["reward_id"]).get_indexer(data.rewards["reward_id"])
        customer_rows = pd.Index(customers["customer_id"]).get_indexer(
            data.customers["customer_id"]
        )
        assert (reward_rows >= 0).all() and (customer_rows >= 0).all()
        frame = {c: rewards[c].to_numpy() for c in rewards.columns if c != "reward_id"}
        self.weights = reward_weights(frame, model)[:, reward_rows]  # (tier, reward)
        self.category = frame["category"][reward_rows]
        self.taste = customers[[f"taste_{c}" for c in CATEGORIES]].to_numpy()[customer_rows]
        self.tier = pd.Index(["bronze", "silver", "gold", "platinum"]).get_indexer(
            customers["tier"]
        )[customer_rows]
        self.noise = model.reward_taste_smoothing

    def fit(self, data: Interactions) -> "TruthRanker":
        return self

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        taste = self.taste[customer_index][:, self.category] + self.noise
        return taste * self.weights[self.tier[customer_index]]


@dataclass
class Outcome:
    data: Interactions
    report: Report
    holdout: HoldOut
    truth: TruthRanker
    oracle: dict[str, float]


@pytest.fixture(scope="module")
def outcome(seeded_world) -> Outcome:
    warehouse = seeded_world.warehouse()
    try:
        data = Interactions.from_warehouse(warehouse)
    finally:
        warehouse.dispose()
    report = evaluate(data, k=K, split="random", seed=42)
    # The same split as the report's test part (same seed and cap).
    holdout = HoldOut.split(data, "random", seed=42)
    truth = TruthRanker(seeded_world.truth_dir, data)
    return Outcome(data, report, holdout, truth, holdout.evaluate(truth, K))


def test_the_signal_is_learnable_but_not_trivial(outcome):
    counts = np.sort(np.bincount(outcome.data.codes[1], minlength=outcome.data.n_rewards))
    top_tenth = counts[::-1][: max(1, counts.size // 10)]
    assert top_tenth.sum() / counts.sum() >= 0.35
    popularity = outcome.report.candidates["popularity"].test[f"ndcg@{K}"]
    assert popularity < outcome.oracle[f"ndcg@{K}"] <= 0.6


def test_taste_model_beats_popularity_and_the_other_candidates(outcome):
    ndcg = {name: r.test[f"ndcg@{K}"] for name, r in outcome.report.candidates.items()}
    assert ndcg["taste_model"] >= 1.5 * ndcg["popularity"]
    others = {name: value for name, value in ndcg.items() if name != "taste_model"}
    assert ndcg["taste_model"] > max(others.values())
    assert outcome.report.validation_winner == "taste_model"
    # The served ranker is chosen on validation; on the generator's data taste leads it.
    served = outcome.report.served
    assert served.name in {"taste", "blend"}
    assert served.test[f"ndcg@{K}"] >= ndcg["taste_model"] - 0.005


def test_top_rewards_fall_in_the_true_favourite_categories(outcome):
    holdout, truth = outcome.holdout, outcome.truth
    model = TasteModel(**outcome.report.candidates["taste_model"].params).fit(holdout.train)
    customers = holdout.customers
    trained = holdout.train.redemption_matrix[customers]
    favourite = np.argsort(-truth.taste[customers], axis=1)[:, :2]

    def share_in_favourites(scores: np.ndarray) -> float:
        top = truth.category[top_k(scores, 5, trained)]
        return float((top[:, :, None] == favourite[:, None, :]).any(axis=2).mean())

    reward_share = np.bincount(truth.category, minlength=len(CATEGORIES)) / truth.category.size
    chance = reward_share[favourite].sum(axis=1).mean()
    model_share = share_in_favourites(model.score(customers))
    assert model_share >= 2 * chance


def test_validation_check_passes_on_the_data_and_shuffled_rewards_lose_the_lift(outcome):
    data = outcome.data
    _, validation = fit_served_model(data, seed=42)
    assert ranking_quality(validation) == []
    assert validation["lift_over_popularity"] >= 1.2
    shuffled = data.redemptions.assign(
        reward_id=np.random.default_rng(0).permutation(data.redemptions["reward_id"].to_numpy())
    )
    garbage = Interactions(data.customers, data.rewards, shuffled, data.category_purchases)
    _, validation = fit_served_model(garbage, seed=42)
    assert validation["lift_over_popularity"] < 1.1
