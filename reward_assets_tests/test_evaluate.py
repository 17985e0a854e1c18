"""The ranking protocol, the candidates and the evaluation CLI on small hand-built data."""

import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from reward_assets.ingest.contract import Column, sql_types
from reward_assets.recommend.evaluate import evaluate, main
from reward_assets.recommend.interactions import Interactions
from reward_assets.recommend.protocol import HoldOut, ranking_quality, split_rows, top_k
from reward_assets.recommend.rankers import Ease, ItemKNN, Popularity, RandomRanker
from reward_assets.recommend.served import fit_served_model
from reward_assets.recommend.taste import TasteModel
from reward_assets_tests.landing_builders import customer, write_rows

CATEGORIES = ("dining", "home", "travel", "wellness")


def small_world(seed: int = 0, customers: int = 400, rewards: int = 40) -> Interactions:
    """Customers with one favourite category each; 90% of their redemptions fall in it."""
    rng = np.random.default_rng(seed)
    favourite = rng.integers(len(CATEGORIES), size=customers)
    reward_category = np.arange(rewards) % len(CATEGORIES)
    popularity = 1.0 / (1 + rng.permutation(rewards))
    owner = np.repeat(np.arange(customers), 6)
    noise = rng.random(owner.size) < 0.1
    category = np.where(noise, rng.integers(len(CATEGORIES), size=owner.size), favourite[owner])
    reward = np.empty(owner.size, dtype=int)
    for c in range(len(CATEGORIES)):
        rows = np.flatnonzero(category == c)
        options = np.flatnonzero(reward_category == c)
        p = popularity[options] / popularity[options].sum()
        reward[rows] = rng.choice(options, size=rows.size, p=p)
    ids = np.array([f"c{i:04d}" for i in range(customers)])
    reward_ids = np.array([f"r{j:03d}" for j in range(rewards)])
    names = np.array(CATEGORIES)
    return Interactions(
        customers=pd.DataFrame(
            {
                "customer_id": ids,
                "tier": np.where(np.arange(customers) % 3 == 0, "gold", "bronze"),
                "preferred_categories": np.where(
                    np.arange(customers) % 2 == 0, names[favourite], None
                ),
            }
        ),
        rewards=pd.DataFrame(
            {
                "reward_id": reward_ids,
                "category": names[reward_category],
                "points_cost": 100 * (1 + np.arange(rewards)),
                "min_tier": "bronze",
            }
        ),
        redemptions=pd.DataFrame(
            {
                "customer_id": ids[owner],
                "reward_id": reward_ids[reward],
                "redeemed_at": pd.Timestamp("2023-03-01")
                + pd.to_timedelta(rng.permutation(owner.size), unit="min"),
            }
        ),
        category_purchases=pd.DataFrame(
            {"customer_id": ids, "category": names[favourite], "purchases": 5}
        ),
    )


@pytest.fixture(scope="module")
def world() -> Interactions:
    return small_world()


# --------------------------------------------------------------------------- loading

MART_COLUMNS = {
    "marts.dim_customers": [
        Column("customer_id"),
        Column("tier"),
        Column("preferred_categories"),
        Column("signup_at", "timestamp"),
    ],
    "marts.dim_rewards": [
        Column("reward_id"),
        Column("category"),
        Column("points_cost", "integer"),
        Column("min_tier"),
    ],
    "marts.fct_redemptions": [
        Column("redemption_id"),
        Column("customer_id"),
        Column("reward_id"),
        Column("redeemed_at", "timestamp"),
    ],
    "marts.fct_transactions": [
        Column("customer_id"),
        Column("category"),
        Column("is_refund", "boolean"),
        Column("occurred_at", "timestamp"),
    ],
}
MART_ROWS = {
    "marts.dim_customers": [
        ("c1", "gold", "dining|travel", "2023-01-01 00:00:00"),
        ("c2", "bronze", None, "2023-03-05 10:00:00"),
    ],
    "marts.dim_rewards": [("r1", "dining", 100, "bronze"), ("r2", "travel", 900, "gold")],
    "marts.fct_redemptions": [
        ("d1", "c1", "r1", "2023-03-02 23:59:59"),
        ("d2", "c1", "r2", "2023-03-03 00:00:00"),
        ("d3", "c2", "r1", "2023-03-06 00:00:00"),
        # A reward the catalogue does not hold, and c2 before signing up.
        ("d4", "c1", "r9", "2023-03-01 08:00:00"),
        ("d5", "c2", "r1", "2023-03-01 09:00:00"),
    ],
    "marts.fct_transactions": [
        ("c1", "dining", False, "2023-03-01 10:00:00"),
        ("c1", "dining", False, "2023-03-02 10:00:00"),
        ("c1", "dining", True, "2023-03-02 11:00:00"),
        ("c1", "travel", False, "2023-03-04 10:00:00"),
        ("c2", "travel", False, "2023-03-01 12:00:00"),
    ],
}


@pytest.mark.parametrize(
    "warehouse_fixture",
    ["duckdb_warehouse", pytest.param("pg_warehouse", marks=pytest.mark.postgres)],
)
def test_from_warehouse_keeps_events_before_the_end_of_as_of(request, warehouse_fixture):
    warehouse = request.getfixturevalue(warehouse_fixture)
    for table, columns in MART_COLUMNS.items():
        warehouse.create_table(table, sql_types(columns))
        frame = pd.DataFrame(MART_ROWS[table], columns=[c.name for c in columns])
        for column in columns:
            if column.type == "timestamp":
                frame[column.name] = pd.to_datetime(frame[column.name])
        with warehouse.begin() as conn:
            warehouse.append(conn, table, frame)

    cut = Interactions.from_warehouse(warehouse, as_of=dt.date(2023, 3, 2))
    assert cut.customers["customer_id"].tolist() == ["c1"]
    assert cut.redemptions["redemption_id"].tolist() == ["d1"]
    assert cut.category_purchases[["category", "purchases"]].values.tolist() == [["dining", 2]]
    # Rows of customers not signed up by then (c2's purchase and redemption), and of
    # rewards not in the catalogue, are left out and counted.
    assert cut.excluded == {
        "redemptions": {"unknown_customer": 1, "unknown_reward": 1},
        "transactions": {"unknown_customer": 1},
    }

    everything = Interactions.from_warehouse(warehouse)
    assert everything.redemptions["redemption_id"].tolist() == ["d1", "d2", "d3", "d5"]
    purchases = everything.category_purchases.sort_values(["customer_id", "category"])
    assert purchases.values.tolist() == [
        ["c1", "dining", 2],
        ["c1", "travel", 1],
        ["c2", "travel", 1],
    ]
    assert everything.excluded == {"redemptions": {"unknown_reward": 1}}
    assert everything.profiles.preferences.toarray().tolist() == [[1, 1], [0, 0]]


# --------------------------------------------------------------------------- protocol


def test_random_split_is_seeded_and_holds_out_a_quarter(world):
    test = split_rows(world, "random", seed=1)
    assert np.array_equal(test, split_rows(world, "random", seed=1))
    assert not np.array_equal(test, split_rows(world, "random", seed=2))
    assert test.sum() == round(0.25 * len(world.redemptions))


def test_temporal_split_holds_out_the_latest_rows(world):
    test = split_rows(world, "temporal", seed=1)
    times = world.redemptions["redeemed_at"]
    assert test.sum() == round(0.25 * len(world.redemptions))
    assert times[test].min() > times[~test].max()


def test_holdout_partitions_rows_and_relevant_rewards_are_new(world):
    holdout = HoldOut.split(world, "random", seed=3)
    assert holdout.train_rows + holdout.test_rows == len(world.redemptions)
    assert len(holdout.train.redemptions) == holdout.train_rows
    trained = holdout.train.redemption_matrix[holdout.customers]
    assert holdout.relevant.nnz > 0
    assert holdout.relevant.multiply(trained).nnz == 0
    assert (holdout.relevant.getnnz(axis=1) >= 1).all()
    assert holdout.eligible == holdout.customers.size


class TrainingFirst:
    """Scores every reward the customer redeemed, training ones far above the rest."""

    def __init__(self, everything: Interactions):
        self.everything = everything

    def fit(self, data):
        self.trained = data.redemption_matrix
        return self

    def score(self, customer_index):
        rows = self.everything.redemption_matrix[customer_index].toarray()
        return rows + 10.0 * self.trained[customer_index].toarray()


def test_training_rewards_are_never_ranked(world):
    holdout = HoldOut.split(world, "random", seed=4)
    assert holdout.train.redemption_matrix[holdout.customers].nnz > 0
    # Were training rewards ranked, they would take the top positions and nDCG would drop.
    metrics = holdout.evaluate(TrainingFirst(world).fit(holdout.train), k=10)
    assert metrics["ndcg@10"] == pytest.approx(1.0)
    ranked = top_k(
        TrainingFirst(world).fit(holdout.train).score(holdout.customers),
        5,
        holdout.train.redemption_matrix[holdout.customers],
    )
    trained = holdout.train.redemption_matrix[holdout.customers].toarray()
    assert not np.take_along_axis(trained, ranked, axis=1).any()


class Coarse:
    """Seeded scores on a few levels: many ties, which `hits` must break as top_k does."""

    def fit(self, data):
        self.n_rewards = data.n_rewards
        return self

    def score(self, customer_index):
        rng = np.random.default_rng(len(customer_index))
        return np.round(rng.random((len(customer_index), self.n_rewards)) * 3)


def test_hits_are_the_relevant_rewards_where_top_k_ranks_them(world):
    holdout = HoldOut.split(world, "random", seed=4)
    ranker = Coarse().fit(holdout.train)
    excluded = holdout.train.redemption_matrix[holdout.customers]
    scores = ranker.score(holdout.customers)
    for k in (1, 5):
        ranked = top_k(scores, k, excluded)
        relevant = holdout.relevant.toarray()
        expected = np.take_along_axis(relevant, ranked, axis=1) > 0
        assert expected.any()
        assert np.array_equal(holdout.hits(ranker, k), expected)


def test_customer_sample_is_capped_and_seeded(world):
    first = HoldOut.split(world, "random", seed=5, max_customers=50)
    again = HoldOut.split(world, "random", seed=5, max_customers=50)
    assert first.customers.size == 50 < first.eligible
    assert np.array_equal(first.customers, again.customers)


def test_evaluate_reports_every_candidate(world):
    report = evaluate(world, k=5, seed=7, max_customers=60)
    assert set(report.candidates) == {"popularity", "random", "ease", "itemknn", "taste_model"}
    assert report.customers_evaluated == 60 and report.sampled
    assert report.train_rows + report.test_rows == len(world.redemptions)
    assert report.validation_rows > 0
    ndcg = {name: result.test["ndcg@5"] for name, result in report.candidates.items()}
    assert ndcg["taste_model"] > ndcg["popularity"] > ndcg["random"]
    assert report.validation_winner in report.candidates
    assert "a seeded sample of 60" in report.to_markdown()
    headline = report.headline()
    assert headline["ndcg@5"] == ndcg["taste_model"]
    lift = ndcg["taste_model"] / ndcg["popularity"]
    assert headline["ndcg@5_over_popularity"] == pytest.approx(lift)


# --------------------------------------------------------------------------- candidates


def tiny(redeemed: list[tuple[str, str]]) -> Interactions:
    customers = sorted({c for c, _ in redeemed})
    rewards = sorted({r for _, r in redeemed})
    return Interactions(
        customers=pd.DataFrame(
            {"customer_id": customers, "tier": None, "preferred_categories": None}
        ),
        rewards=pd.DataFrame(
            {"reward_id": rewards, "category": "dining", "points_cost": 100, "min_tier": None}
        ),
        redemptions=pd.DataFrame(
            {
                "customer_id": [c for c, _ in redeemed],
                "reward_id": [r for _, r in redeemed],
                "redeemed_at": pd.Timestamp("2023-03-01"),
            }
        ),
    )


def test_ease_matches_the_closed_form_by_hand():
    # X = [[1,1,0],[0,1,1],[1,0,0]]: X'X + I = [[3,1,0],[1,3,1],[0,1,2]], determinant 13,
    # inverse P = [[5,-2,1],[-2,6,-3],[1,-3,8]] / 13 and B_ij = -P_ij / P_jj.
    data = tiny([("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c"), ("u3", "a")])
    model = Ease(l2=1.0).fit(data)
    expected = np.array([[0, 1 / 3, -1 / 8], [2 / 5, 0, 3 / 8], [-1 / 5, 1 / 2, 0]])
    np.testing.assert_allclose(model.weights, expected, rtol=1e-6, atol=1e-7)
    # u1 redeemed a and b: its scores are the sum of rows a and b of B.
    np.testing.assert_allclose(model.score(np.array([0])), [[2 / 5, 1 / 3, 1 / 4]], rtol=1e-6)


def test_itemknn_sums_cosine_similarities_of_redeemed_rewards():
    # Columns a = (1,0,1), b = (1,1,0), c = (0,1,0):
    # cos(a,b) = 1/2, cos(a,c) = 0, cos(b,c) = 1/sqrt(2).
    data = tiny([("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c"), ("u3", "a")])
    model = ItemKNN(neighbors=5).fit(data)
    u2, u3 = np.array([1]), np.array([2])  # u2 redeemed b and c, u3 only a
    np.testing.assert_allclose(model.score(u3), [[0, 1 / 2, 0]], atol=1e-7)
    root = 1 / np.sqrt(2)
    np.testing.assert_allclose(model.score(u2), [[1 / 2, root, root]], rtol=1e-6)


def test_popularity_and_random_scores(world):
    counts = world.redemptions["reward_id"].value_counts()
    scores = Popularity().fit(world).score(np.array([0, 1]))
    assert scores[0, world.rewards["reward_id"].tolist().index(counts.index[0])] == counts.iloc[0]
    assert np.array_equal(scores[0], scores[1])
    ranker = RandomRanker(seed=3).fit(world)
    both = ranker.score(np.array([5, 9]))
    assert np.array_equal(both[1], ranker.score(np.array([9]))[0])
    assert not np.array_equal(both[0], both[1])
    assert not np.array_equal(both, RandomRanker(seed=4).fit(world).score(np.array([5, 9])))


def test_taste_score_is_the_dot_product_of_the_vectors(world):
    model = TasteModel(latent_weight=1.0).fit(world)
    rows = np.array([0, 3, 17, 250])
    vectors = model.customer_vectors(
        world.customers.iloc[rows], world.redemptions, world.category_purchases
    )
    np.testing.assert_allclose(
        model.score(rows), vectors @ model.reward_vectors().T, rtol=1e-5, atol=1e-5
    )
    assert vectors.dtype == np.float32 and model.reward_vectors().dtype == np.float32
    assert set(model.blocks) == {"taste", "segment", "latent"}
    assert model.blocks["latent"].stop == vectors.shape[1] == model.reward_vectors().shape[1]
    assert np.isfinite(vectors).all() and np.isfinite(model.reward_vectors()).all()


def test_save_and_load_give_the_same_vectors(world, tmp_path):
    model = TasteModel(latent_weight=1.0).fit(world)
    model.save(tmp_path / "model")
    loaded = TasteModel.load(tmp_path / "model")
    assert loaded.params == model.params
    assert loaded.reward_ids == model.reward_ids and loaded.categories == model.categories
    assert loaded.blocks == model.blocks
    np.testing.assert_array_equal(loaded.reward_vectors(), model.reward_vectors())
    some = world.customers.iloc[:20]
    np.testing.assert_array_equal(
        loaded.customer_vectors(some, world.redemptions, world.category_purchases),
        model.customer_vectors(some, world.redemptions, world.category_purchases),
    )
    assert not list((tmp_path / "model").glob("*.pkl"))


def test_cold_start_customer_leans_to_the_preferred_category(world):
    model = TasteModel().fit(world)
    newcomers = pd.DataFrame(
        {
            "customer_id": ["new1", "new2", "new3"],
            "tier": ["gold", "gold", None],
            "preferred_categories": ["wellness", None, None],
        }
    )
    vectors = model.customer_vectors(newcomers, world.redemptions.iloc[:0])
    assert np.isfinite(vectors).all()
    assert np.all(vectors[:, model.blocks["latent"]] == 0)
    taste = vectors[:, model.blocks["taste"]]
    assert model.categories[int(taste[0].argmax())] == "wellness"
    assert not np.allclose(vectors[1], vectors[2])  # the tier is used when nothing else is
    # Same tier: the preference alone lifts every wellness reward above every other one.
    scores = vectors @ model.reward_vectors().T
    lift = scores[0] - scores[1]
    is_wellness = world.rewards["category"].to_numpy() == "wellness"
    assert lift[is_wellness].min() > lift[~is_wellness].max()
    in_top = is_wellness[top_k(scores, 10)].sum(axis=1)
    assert in_top[0] > in_top[1]


def test_new_reward_without_redemptions_gets_finite_scores(world):
    rewards = pd.concat(
        [
            world.rewards,
            pd.DataFrame(
                {
                    "reward_id": ["r999"],
                    "category": ["home"],
                    "points_cost": [300],
                    "min_tier": ["gold"],
                }
            ),
        ],
        ignore_index=True,
    )
    data = Interactions(world.customers, rewards, world.redemptions, world.category_purchases)
    model = TasteModel().fit(data)
    assert np.isfinite(model.reward_vectors()[-1]).all()
    assert np.isfinite(model.score(np.arange(10))).all()


def test_reward_vectors_of_a_catalog_with_new_rewards(world, tmp_path):
    model = TasteModel(latent_weight=1.0).fit(world)
    catalog = pd.concat(
        [
            world.rewards.iloc[[5, 2]],
            pd.DataFrame(
                {
                    "reward_id": ["new-home", "new-pets"],
                    "category": ["home", "pets"],
                    "points_cost": [300, 300],
                    "min_tier": ["bronze", None],
                }
            ),
        ],
        ignore_index=True,
    )
    vectors = model.reward_vectors(catalog)
    np.testing.assert_array_equal(vectors[:2], model.reward_vectors()[[5, 2]])
    assert np.isfinite(vectors).all()
    taste, segment = model.blocks["taste"], model.blocks["segment"]
    assert model.categories[int(vectors[2, taste].argmax())] == "home"
    np.testing.assert_allclose(vectors[3, taste], 1 / len(model.categories))
    # Never redeemed: below the best-redeemed reward of its category for every tier.
    home = world.rewards["category"].to_numpy() == "home"
    assert (vectors[2, segment] < model.reward_vectors()[home][:, segment].max(axis=0)).all()
    by_rank = catalog.assign(min_tier_rank=[1, 1, 1, None]).drop(columns="min_tier")
    np.testing.assert_array_equal(model.reward_vectors(by_rank), vectors)
    model.save(tmp_path / "model")
    loaded = TasteModel.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.reward_vectors(catalog), vectors)
    assert loaded.fingerprint == model.fingerprint
    assert TasteModel(latent_weight=2.0).fit(world).fingerprint != model.fingerprint


def test_ranking_quality_passes_on_signal_and_reports_no_lift_on_shuffled_rewards(world):
    _, validation = fit_served_model(world, seed=1)
    assert ranking_quality(validation) == []
    assert validation["lift_over_popularity"] > 1.2
    shuffled = world.redemptions.assign(
        reward_id=np.random.default_rng(0).permutation(world.redemptions["reward_id"].to_numpy())
    )
    garbage = Interactions(world.customers, world.rewards, shuffled, world.category_purchases)
    _, validation = fit_served_model(garbage, seed=1)
    assert validation["lift_over_popularity"] < 1.1


def test_ranking_quality_rejects_a_served_model_below_popularity(world):
    _, validation = fit_served_model(world, seed=1)
    popularity = validation["popularity"]["ndcg@10"]
    worse = {**validation, "served_model": {"ndcg@10": popularity - 0.01}}
    reasons = ranking_quality(worse)
    assert len(reasons) == 1 and "below 1x popularity's" in reasons[0]
    # The optional stricter bar (RANKING_MIN_LIFT) is a multiple of popularity's.
    lift = validation["lift_over_popularity"]
    assert ranking_quality(validation, min_lift=lift * 0.99) == []
    assert ranking_quality(validation, min_lift=lift * 1.01)


# --------------------------------------------------------------------------- CLI


def write_tiny_folder(data_dir):
    write_rows(
        data_dir,
        "customers",
        "customers.csv",
        [
            customer(f"cust{i:03d}", preferred_categories="dining" if i % 2 else "travel")
            for i in range(1, 13)
        ],
    )
    write_rows(
        data_dir,
        "rewards",
        "rewards.csv",
        [
            {
                "reward_id": f"rwd{j:03d}",
                "name": f"Reward {j}",
                "category": "dining" if j % 2 else "travel",
                "points_cost": str(100 * j),
                "min_tier": "bronze",
                "active": "true",
            }
            for j in range(1, 7)
        ],
    )
    rows = [
        {
            "redemption_id": f"d{i:03d}{j}",
            "customer_id": f"cust{i:03d}",
            "reward_id": f"rwd{(i + j) % 6 + 1:03d}",
            "redeemed_at": f"2023-03-{1 + j:02d}T12:00:00Z",
            "points_spent": "100",
        }
        for i in range(1, 13)
        for j in range(4)
    ]
    rows.append({**rows[0], "redemption_id": "ghost", "reward_id": "rwd999"})
    write_rows(data_dir, "redemptions", "2023-03-01.csv", rows)


def test_cli_markdown_on_a_folder_without_transactions(tmp_path, capsys):
    write_tiny_folder(tmp_path / "data")
    assert main(["--data", str(tmp_path / "data"), "--k", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# Offline ranking evaluation (k = 3)")
    for name in ("popularity", "random", "ease", "itemknn", "taste_model"):
        assert f"| {name} |" in captured.out
    assert "Purchases per category: not available" in captured.out
    assert "redemptions: unknown_reward 1" in captured.out
    assert "split:" in captured.err  # progress goes to stderr


def test_cli_json(tmp_path, capsys):
    write_tiny_folder(tmp_path / "data")
    assert main(["--data", str(tmp_path / "data"), "--json", "--split", "temporal"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "temporal" and report["k"] == 10
    assert report["redemptions"] == 48
    assert report["excluded"] == {"redemptions": {"unknown_reward": 1}}
    assert set(report["candidates"]["taste_model"]["test"]) == {
        "precision@10",
        "recall@10",
        "ndcg@10",
        "map@10",
    }


def test_cli_folder_without_redemptions_is_a_clear_error(tmp_path):
    write_tiny_folder(tmp_path / "data")
    for path in (tmp_path / "data" / "redemptions").iterdir():
        path.unlink()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reward_assets",
            "evaluate",
            "--data",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: no redemptions files under")
    assert sum(line.startswith("error") for line in lines) == 1
