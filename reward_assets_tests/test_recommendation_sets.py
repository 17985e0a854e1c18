"""Recommendation sets: eligibility, diversity, almost-there and exploration slots, reasons,
and that chunking and the one-customer path never change a row.

Vectors are synthetic with the taste model's block layout: taste (one dim per category),
segment (one per tier) and latent. Hand-built cases put the score in the first latent
dim (customer latent = [1, 0]), so each reward's score is the number the test chose.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import numpy as np
import pandas as pd
import pytest

from reward_assets.recommend.arrays import FOLD_ROWS, bits, fold, in_threads, mix
from reward_assets.recommend.eligibility import (
    ALMOST_THERE_RATIO,
    blocking_reason,
    eligibility_masks,
    required_rank,
)
from reward_assets.recommend.sets import (
    COLUMNS,
    RewardCatalog,
    SetBuild,
    SetRules,
    _Customers,
    _pairs,
    build_sets,
    recommend_one,
)

AS_OF = dt.date(2023, 8, 1)
CATEGORIES = ["dining", "gift_cards", "travel", "wellness"]
TIERS = ["bronze", "silver", "gold", "platinum"]
BLOCKS = {"taste": slice(0, 4), "segment": slice(4, 8), "latent": slice(8, 10)}
DIMS = 10
PLAIN = SetRules(exploration_share=0, almost_there_ratio=1, max_per_category=10)


def customers_frame(*rows: dict) -> pd.DataFrame:
    defaults = {"tier": "silver", "tier_rank": 2, "points_balance": 1000}
    return pd.DataFrame([{**defaults, **row} for row in rows])


def rewards_frame(*rows: dict) -> pd.DataFrame:
    defaults = {
        "category": "dining",
        "points_cost": 100,
        "min_tier_rank": 1,
        "is_available": True,
        "redemptions": 100,
    }
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    return frame.assign(name="Name of " + frame["reward_id"])


def scored(rewards: pd.DataFrame, scores) -> tuple[np.ndarray, np.ndarray]:
    """One customer vector and reward vectors giving the rewards exactly `scores`."""
    customer = np.zeros((1, DIMS))
    customer[0, BLOCKS["latent"].start] = 1
    vectors = np.zeros((len(rewards), DIMS))
    vectors[:, BLOCKS["latent"].start] = scores
    return customer, vectors


def no_pairs() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [], "reward_id": []}, dtype=object)


def no_latest() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [], "category": [], "reward_name": []}, dtype=object)


def sets(
    customers,
    customer_vectors,
    rewards,
    reward_vectors,
    rules=PLAIN,
    recent=None,
    latest=None,
    seed=42,
    chunk_size=50_000,
) -> pd.DataFrame:
    chunks = build_sets(
        customers,
        customer_vectors,
        rewards,
        reward_vectors,
        BLOCKS,
        no_pairs() if recent is None else recent,
        no_latest() if latest is None else latest,
        rules,
        "v-test",
        AS_OF,
        seed,
        chunk_size,
    )
    return pd.concat(list(chunks), ignore_index=True)


def random_world(seed: int = 0, customers: int = 300, rewards: int = 60) -> dict:
    """Customers and rewards of every kind: unknown tiers and balances, unavailable and
    new rewards, recent redemptions, last redeemed names."""
    rng = np.random.default_rng(seed)
    rank = rng.integers(1, 5, customers)
    tier = np.array(TIERS, dtype=object)[rank - 1]
    unknown = rng.random(customers) < 0.05
    customer_frame = pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(customers)],
            "tier": pd.Series(np.where(unknown, None, tier), dtype="str"),
            "tier_rank": pd.array(np.where(unknown, 0, rank), dtype="Int64"),
            "points_balance": pd.array(rng.integers(0, 4000, customers), dtype="Int64"),
        }
    )
    customer_frame.loc[unknown, "tier_rank"] = pd.NA
    customer_frame.loc[rng.random(customers) < 0.03, "points_balance"] = pd.NA
    category = rng.integers(len(CATEGORIES), size=rewards)
    reward_frame = pd.DataFrame(
        {
            "reward_id": [f"r{i:03d}" for i in range(rewards)],
            "name": [f"Reward {i}" for i in range(rewards)],
            "category": np.array(CATEGORIES)[category],
            "points_cost": rng.integers(50, 3000, rewards),
            "min_tier_rank": rng.integers(1, 5, rewards),
            "is_available": rng.random(rewards) < 0.85,
            "redemptions": np.where(rng.random(rewards) < 0.25, rng.integers(0, 6, rewards), 50),
        }
    )
    reward_vectors = np.zeros((rewards, DIMS))
    reward_vectors[np.arange(rewards), category] = 1
    reward_vectors[:, BLOCKS["segment"]] = rng.random((rewards, 4))
    reward_vectors[:, BLOCKS["latent"]] = rng.normal(0, 1, (rewards, 2))
    customer_vectors = np.zeros((customers, DIMS))
    customer_vectors[:, BLOCKS["taste"]] = rng.dirichlet(np.ones(4), customers) * 2
    customer_vectors[np.arange(customers), BLOCKS["segment"].start + rank - 1] = ~unknown
    customer_vectors[:, BLOCKS["latent"]] = rng.normal(0, 1, (customers, 2))
    pairs = customers * 2
    recent = pd.DataFrame(
        {
            "customer_id": customer_frame["customer_id"].to_numpy()[
                rng.integers(customers, size=pairs)
            ],
            "reward_id": reward_frame["reward_id"].to_numpy()[rng.integers(rewards, size=pairs)],
        }
    )
    latest = pd.DataFrame(
        {
            "customer_id": customer_frame["customer_id"].to_numpy()[
                rng.integers(customers, size=pairs)
            ],
            "category": np.array(CATEGORIES)[rng.integers(len(CATEGORIES), size=pairs)],
            "reward_name": [f"Old reward {i}" for i in range(pairs)],
        }
    ).drop_duplicates(["customer_id", "category"])
    return dict(
        customers=customer_frame,
        customer_vectors=customer_vectors,
        rewards=reward_frame,
        reward_vectors=reward_vectors,
        recent=recent,
        latest=latest,
    )


DEFAULT_RULES = SetRules()


@pytest.fixture(scope="module")
def world() -> dict:
    return random_world()


@pytest.fixture(scope="module")
def world_sets(world) -> pd.DataFrame:
    return sets(**world, rules=DEFAULT_RULES)


def with_inputs(frame: pd.DataFrame, world: dict) -> pd.DataFrame:
    customers = world["customers"].assign(
        tier_rank=world["customers"]["tier_rank"].fillna(1),
        points_balance=world["customers"]["points_balance"].fillna(0),
    )
    return frame.merge(customers, on="customer_id").merge(world["rewards"], on="reward_id")


# Eligibility ---------------------------------------------------------------------------

EXCLUDED = {
    "unavailable": {"is_available": False},
    "tier": {"min_tier_rank": 3},
    "cost": {"points_cost": 1001},
    "recent": {},
}


def eligibility_case(lifted: str | None):
    """A silver customer with 1000 points; four eligible rewards and one top-scoring reward
    excluded by each rule, unless that rule is `lifted`."""
    excluded = [
        {"reward_id": f"x_{rule}", **({} if rule == lifted else change)}
        for rule, change in EXCLUDED.items()
    ]
    eligible = [{"reward_id": f"ok_{i}"} for i in range(3)] + [
        {"reward_id": "ok_exact_cost", "points_cost": 1000, "min_tier_rank": 2}
    ]
    rewards = rewards_frame(*excluded, *eligible)
    customer, vectors = scored(rewards, [9, 8, 7, 6, 4, 3, 2, 1])
    recent = pd.DataFrame({"customer_id": ["c1"], "reward_id": ["x_recent"]})
    return (
        customers_frame({"customer_id": "c1"}),
        customer,
        rewards,
        vectors,
        (no_pairs() if lifted == "recent" else recent),
    )


def test_only_eligible_rewards_are_recommended():
    customers, customer, rewards, vectors, recent = eligibility_case(None)
    out = sets(customers, customer, rewards, vectors, recent=recent)
    assert out["reward_id"].tolist() == ["ok_0", "ok_1", "ok_2", "ok_exact_cost"]


@pytest.mark.parametrize("rule", sorted(EXCLUDED))
def test_each_rule_alone_excludes_its_reward(rule):
    customers, customer, rewards, vectors, recent = eligibility_case(rule)
    out = sets(customers, customer, rewards, vectors, recent=recent)
    assert set(out["reward_id"]) == {f"x_{rule}", "ok_0", "ok_1", "ok_2", "ok_exact_cost"}


def test_unknown_tier_and_balance_mean_lowest_tier_and_no_points():
    rewards = rewards_frame(
        {"reward_id": "free", "points_cost": 0},
        {"reward_id": "cheap", "points_cost": 1},
        {"reward_id": "silver_free", "points_cost": 0, "min_tier_rank": 2},
    )
    customer, vectors = scored(rewards, [1, 2, 3])
    customers = customers_frame({"customer_id": "c1", "tier": None})
    customers["tier_rank"] = pd.array([pd.NA], dtype="Int64")
    customers["points_balance"] = pd.array([pd.NA], dtype="Int64")
    out = sets(customers, customer, rewards, vectors)
    assert out["reward_id"].tolist() == ["free"]


def test_every_row_is_eligible_in_a_random_world(world, world_sets):
    rows = with_inputs(world_sets, world)
    recent = set(zip(world["recent"]["customer_id"], world["recent"]["reward_id"], strict=True))
    assert len(rows) == len(world_sets) > 0
    assert rows["is_available"].all()
    assert (rows["tier_rank"] >= rows["min_tier_rank"]).all()
    assert not any(
        pair in recent for pair in zip(rows["customer_id"], rows["reward_id"], strict=True)
    )
    affordable = rows["points_cost"] <= rows["points_balance"]
    assert (affordable != rows["is_almost_there"]).all()
    limit = rows["points_balance"] * DEFAULT_RULES.almost_there_ratio
    assert (rows["points_cost"] <= limit).all()


def test_the_apis_recheck_keeps_what_the_batch_finds_eligible():
    """Every tier, minimum tier and cost around the balance and the almost-there limit: a
    stored item passes the API's re-check exactly when the batch could have chosen it."""
    balance, ranks = 100.0, [1, 2, 3, 4]
    costs = [0, 99, 100, 101, 124, 125, 126, 1000]
    rewards = pd.DataFrame(
        [(rank, cost) for rank in ranks for cost in costs],
        columns=["min_tier_rank", "points_cost"],
    ).assign(is_available=True)
    eligible, almost_there = eligibility_masks(
        np.array(ranks),
        np.full(len(ranks), balance),
        required_rank(rewards),
        rewards["points_cost"].to_numpy(float),
        np.array([], np.int64),
        ALMOST_THERE_RATIO,
    )
    assert eligible.any() and almost_there.any() and not (eligible | almost_there).all()
    for row, tier_rank in enumerate(ranks):
        for column, reward in enumerate(rewards.itertuples(index=False)):
            kept = [
                blocking_reason(
                    active=True,
                    inventory=None,
                    min_tier_rank=reward.min_tier_rank,
                    points_cost=reward.points_cost,
                    tier_rank=tier_rank,
                    points_balance=balance,
                    almost_there=flagged,
                )
                is None
                for flagged in (False, True)
            ]
            assert kept[0] == eligible[row, column]
            assert kept[1] == (eligible | almost_there)[row, column]


def test_sets_are_ranked_without_repeats_and_scores_are_dot_products(world, world_sets):
    out = world_sets
    assert list(out.columns) == list(COLUMNS)
    assert not out.duplicated(["customer_id", "reward_id"]).any()
    assert not out.duplicated(["customer_id", "rank"]).any()
    ranks = out.groupby("customer_id")["rank"]
    assert (ranks.min() == 1).all()
    assert (ranks.max() == ranks.size()).all() and (ranks.size() <= DEFAULT_RULES.k).all()
    customer_row = pd.Index(world["customers"]["customer_id"]).get_indexer(out["customer_id"])
    reward_row = pd.Index(world["rewards"]["reward_id"]).get_indexer(out["reward_id"])
    expected = np.einsum(
        "ij,ij->i", world["customer_vectors"][customer_row], world["reward_vectors"][reward_row]
    )
    np.testing.assert_allclose(out["score"], expected, rtol=1e-5, atol=1e-5)
    assert (out["as_of"] == AS_OF).all() and (out["model_version"] == "v-test").all()
    regular = out[~out["is_exploration"] & ~out["is_almost_there"]]
    assert (regular.groupby("customer_id")["score"].diff().dropna() <= 0).all()


def test_customers_with_fewer_eligible_rewards_get_fewer_rows():
    rewards = rewards_frame(*({"reward_id": f"r{i}", "points_cost": 100 * i} for i in range(1, 13)))
    customer, vectors = scored(rewards, np.arange(12.0))
    customers = customers_frame(
        {"customer_id": "poor", "points_balance": 300}, {"customer_id": "rich"}
    )
    out = sets(customers, np.repeat(customer, 2, axis=0), rewards, vectors)
    assert out.groupby("customer_id").size().to_dict() == {"poor": 3, "rich": 10}
    assert out.loc[out["customer_id"] == "poor", "rank"].tolist() == [1, 2, 3]


# Diversity --------------------------------------------------------------------------------


def test_diversity_cap_takes_each_categorys_best_and_fills_from_others():
    travel = [{"reward_id": f"t{i}", "category": "travel"} for i in range(6)]
    dining = [{"reward_id": f"d{i}", "category": "dining"} for i in range(6)]
    rewards = rewards_frame(*travel, *dining)
    customer, vectors = scored(rewards, [20, 19, 18, 17, 16, 15, 6, 5, 4, 3, 2, 1])
    rules = SetRules(k=6, exploration_share=0, almost_there_ratio=1, max_per_category=2)
    out = sets(customers_frame({"customer_id": "c1"}), customer, rewards, vectors, rules)
    assert out["reward_id"].tolist() == ["t0", "t1", "d0", "d1"]
    uncapped = SetRules(k=6, exploration_share=0, almost_there_ratio=1, max_per_category=6)
    out = sets(customers_frame({"customer_id": "c1"}), customer, rewards, vectors, uncapped)
    assert out["reward_id"].tolist() == ["t0", "t1", "t2", "t3", "t4", "t5"]


def test_cap_holds_for_every_item_in_a_random_world(world, world_sets):
    per_category = world_sets.merge(world["rewards"], on="reward_id").groupby(
        ["customer_id", "category"]
    )
    assert per_category.size().max() == DEFAULT_RULES.max_per_category


# Almost there -----------------------------------------------------------------------------


def almost_case():
    affordable = [{"reward_id": f"a{i}", "category": CATEGORIES[i % 4]} for i in range(12)]
    stretch = [
        {"reward_id": "near", "points_cost": 1200},
        {"reward_id": "nearest", "points_cost": 1100},
        {"reward_id": "too_far", "points_cost": 1300},
    ]
    rewards = rewards_frame(*affordable, *stretch)
    scores = [*range(30, 18, -1), 100, 50, 200]
    return rewards, *scored(rewards, scores)


def test_one_almost_there_item_takes_the_last_slot_only():
    rewards, customer, vectors = almost_case()
    rules = SetRules(exploration_share=0, max_per_category=10)
    out = sets(customers_frame({"customer_id": "c1"}), customer, rewards, vectors, rules)
    assert out["reward_id"].tolist() == [f"a{i}" for i in range(9)] + ["near"]
    assert out["is_almost_there"].tolist() == [False] * 9 + [True]
    assert out["reason"].iloc[-1] == "200 points to go"
    without = sets(customers_frame({"customer_id": "c1"}), customer, rewards, vectors, PLAIN)
    assert without["reward_id"].tolist() == [f"a{i}" for i in range(10)]
    assert not without["is_almost_there"].any()


def test_almost_there_item_when_nothing_is_affordable():
    rewards, customer, vectors = almost_case()
    customers = customers_frame({"customer_id": "c1", "points_balance": 1000})
    rewards["points_cost"] = np.where(
        rewards["reward_id"].str.startswith("a"), 5000, rewards["points_cost"]
    )
    out = sets(customers, customer, rewards, vectors, SetRules())
    assert out["reward_id"].tolist() == ["near"] and out["is_almost_there"].all()


def test_at_most_one_almost_there_item_per_customer_in_a_random_world(world_sets):
    flagged = world_sets[world_sets["is_almost_there"]]
    assert len(flagged) > 0
    assert flagged["customer_id"].is_unique
    last = world_sets.groupby("customer_id")["rank"].max()
    assert (flagged.set_index("customer_id")["rank"] == last[flagged["customer_id"]]).all()
    assert flagged["reason"].str.fullmatch(r"\d+ points to go").all()


# Exploration ------------------------------------------------------------------------------


def exploration_case(new_available: bool = True):
    old = [{"reward_id": f"old{i}", "category": CATEGORIES[i % 4]} for i in range(12)]
    new = [
        {
            "reward_id": f"new{i}",
            "category": "gift_cards",
            "redemptions": i,
            "is_available": new_available,
        }
        for i in range(4)
    ] + [{"reward_id": "not_new", "category": "gift_cards", "redemptions": 6}]
    rewards = rewards_frame(*old, *new)
    scores = [*range(30, 18, -1), 1, 2, 3, 4, 5]
    return rewards, *scored(rewards, scores)


@pytest.mark.parametrize("share, slots", [(0.1, 1), (0.2, 2), (0.25, 3), (0.0, 0)])
def test_exploration_share_sets_the_slots_after_the_regular_items(share, slots):
    rewards, customer, vectors = exploration_case()
    rules = SetRules(exploration_share=share, max_per_category=10)
    out = sets(customers_frame({"customer_id": "c1"}), customer, rewards, vectors, rules)
    assert len(out) == 10
    assert out["is_exploration"].tolist() == [False] * (10 - slots) + [True] * slots
    assert out["reward_id"].tolist()[: 10 - slots] == [f"old{i}" for i in range(10 - slots)]
    explored = out[out["is_exploration"]]
    # Drawn among the best 3 x slots new rewards (all four when fewer are new).
    pool = {"new3", "new2", "new1"} if slots == 1 else {"new0", "new1", "new2", "new3"}
    assert set(explored["reward_id"]) <= pool
    assert (explored["reason"] == "new in gift cards").all()


def test_exploration_slot_falls_back_to_the_next_regular_item():
    rewards, customer, vectors = exploration_case(new_available=False)
    rules = SetRules(exploration_share=0.2, max_per_category=10)
    out = sets(customers_frame({"customer_id": "c1"}), customer, rewards, vectors, rules)
    assert out["reward_id"].tolist() == [f"old{i}" for i in range(10)]
    assert not out["is_exploration"].any()


def test_exploration_spreads_over_new_rewards_with_the_seed():
    rewards, customer, vectors = exploration_case()
    customers = customers_frame(*({"customer_id": f"c{i}"} for i in range(200)))
    many = np.repeat(customer, 200, axis=0)
    rules = SetRules(exploration_share=0.1, max_per_category=10)
    first = sets(customers, many, rewards, vectors, rules, seed=1)
    explored = first.loc[first["is_exploration"], "reward_id"]
    assert len(explored) == 200 and explored.nunique() == 3
    again = sets(customers, many, rewards, vectors, rules, seed=1)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    other = sets(customers, many, rewards, vectors, rules, seed=2)
    assert (other.loc[other["is_exploration"], "reward_id"].to_numpy() != explored.to_numpy()).any()
    regular = ~first["is_exploration"]
    pd.testing.assert_frame_equal(first[regular], other[regular])


def test_exploration_items_are_new_in_a_random_world(world, world_sets):
    explored = world_sets[world_sets["is_exploration"]].merge(world["rewards"], on="reward_id")
    assert len(explored) > 0
    assert (explored["redemptions"] <= DEFAULT_RULES.new_reward_max_redemptions).all()
    assert explored["customer_id"].is_unique  # 10% of 10 slots


# Reasons ----------------------------------------------------------------------------------


def test_reason_names_the_block_that_lifts_the_item_most():
    rewards = rewards_frame(
        {"reward_id": "by_taste", "category": "gift_cards"},
        {"reward_id": "by_segment", "category": "dining"},
        {"reward_id": "by_latent", "category": "travel"},
        {"reward_id": "by_latent_unnamed", "category": "wellness"},
    )
    customer = np.zeros((1, DIMS))
    customer[0, BLOCKS["taste"]] = 1
    customer[0, BLOCKS["segment"].start + 2] = 1  # gold
    customer[0, BLOCKS["latent"]] = [1, 0]
    vectors = np.zeros((4, DIMS))
    vectors[np.arange(4), [1, 0, 2, 3]] = [3, 0, 0, 0]  # taste one-hot scaled
    vectors[1, BLOCKS["segment"].start + 2] = 3
    vectors[2, BLOCKS["latent"].start] = 3
    vectors[3, BLOCKS["latent"].start] = 3
    vectors[3, BLOCKS["segment"].start + 2] = 1
    latest = pd.DataFrame(
        {"customer_id": ["c1", "c1"], "category": ["travel", "dining"], "reward_name": ["Spa", "X"]}
    )
    customers = customers_frame({"customer_id": "c1", "tier": "gold", "tier_rank": 3})
    out = sets(customers, customer, rewards, vectors, latest=latest).set_index("reward_id")
    assert out.loc["by_taste", "reason"] == "matches your interest in gift cards"
    assert out.loc["by_segment", "reason"] == "popular with gold members"
    assert out.loc["by_latent", "reason"] == "because you redeemed Spa"
    # Nothing redeemed in wellness to name: the next block (segment) explains it.
    assert out.loc["by_latent_unnamed", "reason"] == "popular with gold members"


def test_segment_reason_needs_a_known_tier():
    rewards = rewards_frame({"reward_id": "r1", "category": "travel"})
    customer = np.zeros((1, DIMS))
    customer[0, BLOCKS["segment"]] = 1
    vectors = np.zeros((1, DIMS))
    vectors[0, BLOCKS["segment"]] = 5
    customers = customers_frame({"customer_id": "c1", "tier": None, "tier_rank": None})
    out = sets(customers, customer, rewards, vectors)
    assert out["reason"].tolist() == ["matches your interest in travel"]


def test_recent_redemptions_leave_the_average_a_reason_compares_with():
    rewards = rewards_frame(
        {"reward_id": "a", "category": "travel"},
        {"reward_id": "b", "category": "dining"},
        {"reward_id": "redeemed", "category": "travel"},
    )
    customer = np.zeros((1, DIMS))
    customer[0, CATEGORIES.index("travel")] = 1
    customer[0, BLOCKS["latent"]] = [1, 0]
    vectors = np.zeros((3, DIMS))
    vectors[[0, 2], CATEGORIES.index("travel")] = 1
    vectors[:, BLOCKS["latent"].start] = [2, 0, 100]
    latest = pd.DataFrame({"customer_id": ["c1"], "category": ["travel"], "reward_name": ["Spa"]})
    recent = pd.DataFrame({"customer_id": ["c1"], "reward_id": ["redeemed"]})
    customers = customers_frame({"customer_id": "c1"})
    out = sets(customers, customer, rewards, vectors, recent=recent, latest=latest)
    # Against a and b only, a stands out by its latent factors; with the redeemed reward's
    # 100 in the average it would not.
    assert out.set_index("reward_id").loc["a", "reason"] == "because you redeemed Spa"


def test_reasons_match_a_direct_computation(world, world_sets):
    customers, rewards = world["customers"], world["rewards"]
    rank = customers["tier_rank"].fillna(1).to_numpy()[:, None]
    balance = customers["points_balance"].fillna(0).to_numpy(float)[:, None]
    eligible = (
        rewards["is_available"].to_numpy()
        & (rank >= rewards["min_tier_rank"].to_numpy())
        & (rewards["points_cost"].to_numpy() <= balance)
    )
    row_of = pd.Index(customers["customer_id"]).get_indexer
    column_of = pd.Index(rewards["reward_id"]).get_indexer
    eligible[row_of(world["recent"]["customer_id"]), column_of(world["recent"]["reward_id"])] = 0
    mean = eligible @ world["reward_vectors"] / np.maximum(eligible.sum(axis=1), 1)[:, None]
    regular = world_sets[~world_sets["is_exploration"] & ~world_sets["is_almost_there"]]
    u, i = row_of(regular["customer_id"]), column_of(regular["reward_id"])
    person, item = world["customer_vectors"][u], world["reward_vectors"][i]
    lift = {
        name: (person[:, part] * (item[:, part] - mean[u][:, part])).sum(axis=1)
        for name, part in BLOCKS.items()
    }
    named = regular.merge(rewards[["reward_id", "category"]], on="reward_id", how="left").merge(
        world["latest"], on=["customer_id", "category"], how="left"
    )
    lift["latent"] = np.where(named["reward_name"].notna(), lift["latent"], -np.inf)
    lift["segment"] = np.where(customers["tier"].notna().to_numpy()[u], lift["segment"], -np.inf)
    order = ["latent", "segment", "taste"]
    winner = np.array(order)[np.argmax(np.stack([lift[name] for name in order]), axis=0)]
    tier = customers["tier"].fillna("").to_numpy(object)[u]
    expected = np.select(
        [winner == "latent", winner == "segment"],
        [
            ("because you redeemed " + named["reward_name"].fillna("")).to_numpy(object),
            "popular with " + tier + " members",
        ],
        ("matches your interest in " + named["category"].str.replace("_", " ")).to_numpy(object),
    )
    assert len(regular) > 1000
    assert (regular["reason"].to_numpy() == expected).all()


def test_reasons_are_short_and_name_no_customer(world_sets):
    reasons = world_sets["reason"]
    pattern = (
        r"matches your interest in [a-z ]+|popular with (bronze|silver|gold|platinum) members"
        r"|because you redeemed Old reward \d+|new in [a-z ]+|\d+ points to go"
    )
    assert reasons.str.fullmatch(pattern).all()
    assert not reasons.str.contains(r"c\d{4}").any()
    kinds = reasons.str.extract(r"^(matches|popular|because|new|\d+)")[0].str.replace(
        r"\d+", "points", regex=True
    )
    assert set(kinds) == {"matches", "popular", "because", "new", "points"}


# Chunks, determinism and the one-customer path ----------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 37, 299])
def test_chunk_size_does_not_change_a_row(world, world_sets, chunk_size):
    again = sets(**world, rules=DEFAULT_RULES, chunk_size=chunk_size)
    pd.testing.assert_frame_equal(again, world_sets, check_exact=True)


def test_same_seed_same_sets(world, world_sets):
    pd.testing.assert_frame_equal(sets(**world, rules=DEFAULT_RULES), world_sets, check_exact=True)


def test_one_customer_path_gives_the_batch_rows(world, world_sets):
    catalog = RewardCatalog.build(world["rewards"], world["reward_vectors"], BLOCKS)
    customers = world["customers"].set_index("customer_id", drop=False)
    position = pd.Index(customers.index).get_indexer
    checked = world_sets["customer_id"].unique()[::20]
    assert len(checked) >= 10
    for customer_id in checked:
        one = recommend_one(
            customers.loc[customer_id].to_dict(),
            world["customer_vectors"][position([customer_id])[0]],
            catalog,
            world["recent"][world["recent"]["customer_id"] == customer_id],
            world["latest"][world["latest"]["customer_id"] == customer_id],
            DEFAULT_RULES,
            "v-test",
            AS_OF,
        )
        batch = world_sets[world_sets["customer_id"] == customer_id].reset_index(drop=True)
        pd.testing.assert_frame_equal(one, batch, check_exact=True)


def keyed(
    world: dict, as_of: dt.date, previous=None, rules=DEFAULT_RULES, vector_keys=None
) -> pd.DataFrame:
    catalog = RewardCatalog.build(world["rewards"], world["reward_vectors"], BLOCKS)
    inputs = (world["customers"], world["customer_vectors"], catalog, world["rewards"], None)
    labels = ("v-test", "model")
    build = SetBuild.prepare(
        *inputs, world["recent"], world["latest"], rules, labels, vector_keys=vector_keys
    )
    stale = build.stale(previous)
    frames = list(build.sets(as_of, np.flatnonzero(stale), chunk_size=7, keyed=True))
    if previous is not None:
        # What the asset's build copies inside the warehouse (`Carry`): the others' rows,
        # as of today.
        kept = previous["customer_id"].isin(build.customers["customer_id"][~stale])
        frames.append(previous[kept].assign(as_of=as_of))
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["customer_id", "rank"], ignore_index=True)


def test_only_customers_whose_inputs_moved_get_a_new_set_the_rest_is_carried(world):
    day, next_day = AS_OF, AS_OF + dt.timedelta(days=1)
    before = keyed(world, day)
    customers = world["customers"].copy()
    customers.loc[7, "points_balance"] += 1
    customers.loc[11, "tier"] = "gold" if customers.loc[11, "tier"] != "gold" else "silver"
    vectors = world["customer_vectors"].copy()
    vectors[3, BLOCKS["latent"].start] += 0.5
    recent, latest = world["recent"], world["latest"].copy()
    latest.loc[latest.index[0], "reward_name"] = "Another reward"
    changed = dict(world, customers=customers, customer_vectors=vectors, latest=latest)
    changed["recent"] = recent[recent["customer_id"] != recent["customer_id"].iloc[0]]
    moved = {"c0003", "c0007", "c0011", recent["customer_id"].iloc[0]}
    moved.add(latest["customer_id"].iloc[0])

    after = keyed(changed, next_day, before)
    full = keyed(changed, next_day)
    assert set(after["customer_id"][after["computed_as_of"] == next_day]) == moved
    assert (full["computed_as_of"] == next_day).all()
    pd.testing.assert_frame_equal(
        after.drop(columns="computed_as_of"), full.drop(columns="computed_as_of"), check_exact=True
    )
    # What every customer shares moves every key.
    rewards = world["rewards"].assign(points_cost=world["rewards"]["points_cost"] + 1)
    for other, rules in [(dict(world, rewards=rewards), DEFAULT_RULES), (world, PLAIN)]:
        assert (keyed(other, next_day, before, rules)["computed_as_of"] == next_day).all()


def test_a_vectors_key_stands_for_the_vector_in_the_sets_keys(world):
    """With the key each vector was computed from (the customer embeddings' inputs_key),
    a customer whose vector key moved gets a new set and the others are carried, with the
    rows a full build gives."""
    day, next_day = AS_OF, AS_OF + dt.timedelta(days=1)
    vector_keys = np.arange(len(world["customers"]), dtype=np.int64) * 7919
    before = keyed(world, day, vector_keys=vector_keys)
    vectors = world["customer_vectors"].copy()
    vectors[5, BLOCKS["latent"].start] += 0.5
    changed = dict(world, customer_vectors=vectors)
    moved_keys = vector_keys.copy()
    moved_keys[5] += 1
    after = keyed(changed, next_day, before, vector_keys=moved_keys)
    full = keyed(changed, next_day)
    assert set(after["customer_id"][after["computed_as_of"] == next_day]) == {"c0005"}
    pd.testing.assert_frame_equal(
        after.drop(columns=["computed_as_of", "inputs_key"]),
        full.drop(columns=["computed_as_of", "inputs_key"]),
        check_exact=True,
    )
    # The vectors' own words are not read once their keys are given.
    unread = dict(world, customer_vectors=vectors)
    again = keyed(unread, next_day, before, vector_keys=vector_keys)
    assert (again["computed_as_of"] == day).all()


def test_rules_are_validated():
    with pytest.raises(ValueError):
        SetRules(k=0)
    with pytest.raises(ValueError):
        SetRules(exploration_share=1.5)
    with pytest.raises(ValueError):
        SetRules(almost_there_ratio=0.9)


@pytest.mark.parametrize("n", [0, 1, FOLD_ROWS - 1, FOLD_ROWS, 2 * FOLD_ROWS + 3])
def test_fold_by_blocks_gives_each_rows_key_word_by_word(n):
    """`fold` mixes blocks of rows in place; a row's key is still its words mixed one
    after another into the seed, whatever block it falls in."""
    rng = np.random.default_rng(n)
    columns = [
        rng.integers(0, 2**64, n, dtype=np.uint64),
        rng.random((n, 5)).astype(np.float32),
        rng.integers(0, 9, n),
        rng.random(n) < 0.5,
    ]
    seed = np.uint64(7)
    expected = np.full(n, seed, np.uint64)
    for word in np.concatenate([bits(column) for column in columns], axis=1).T:
        expected = mix(expected ^ word)
    words = columns[0].copy()
    assert np.array_equal(fold(seed, columns), expected)
    assert np.array_equal(columns[0], words)  # the inputs are left as they were


def test_a_categorys_latest_redemption_is_the_last_row_given_for_it():
    """Each (customer, category)'s reason names its last row in `last_redeemed` (the SQL
    gives one; a frame given twice keeps the last), a missing name stays missing, and
    unknown customers or categories are left out."""
    customers = customers_frame({"customer_id": "c1"}, {"customer_id": "c2"})
    rewards = rewards_frame(
        {"reward_id": "r1", "category": "dining"}, {"reward_id": "r2", "category": "travel"}
    )
    catalog = RewardCatalog.build(rewards, np.zeros((2, DIMS)), BLOCKS)
    latest = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c2", "c9", "c1"],
            "category": ["dining", "dining", "travel", "dining", "dining", "spa"],
            "reward_name": ["Old", "New", None, "Tea", "X", "Y"],
        }
    )
    people = _Customers.build(customers)
    keys, named = _pairs(people, catalog, no_pairs(), latest)[1].chunk(slice(0, 2))
    width = len(catalog.categories)
    dining, travel = (catalog.categories.tolist().index(c) for c in ("dining", "travel"))
    assert keys.tolist() == [0 * width + dining, 1 * width + dining, 1 * width + travel]
    assert named[:2].tolist() == ["because you redeemed New", "because you redeemed Tea"]
    assert pd.isna(named[2])


def test_in_threads_keeps_the_order_and_works_a_single_item_on_the_callers_thread():
    def slow_first(item: int) -> tuple[int, int]:
        time.sleep(0.05 if item == 0 else 0)  # the second item finishes first
        return item, threading.get_ident()

    results = list(in_threads(slow_first, range(5)))
    assert [item for item, _ in results] == [0, 1, 2, 3, 4]
    assert threading.get_ident() not in {thread for _, thread in results}
    assert list(in_threads(slow_first, [7])) == [(7, threading.get_ident())]
