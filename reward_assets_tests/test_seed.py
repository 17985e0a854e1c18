"""The synthetic data generator: contract, determinism, planted dirt and the daily top-up."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from reward_assets.contact.holdout import holdout_mask
from reward_assets.seed.generate import generate, simulate_day
from reward_assets.seed.model import SeedConfig

START = date(2023, 3, 1)
DAYS = 30
CONFIG = dict(customers=1500, rewards=60, days=DAYS, start_date=START, seed=7)
COLUMNS = {
    "customers": [
        "customer_id", "email", "signup_at", "first_name", "last_name", "country", "timezone",
        "tier", "points_balance", "marketing_opt_in", "preferred_categories",
    ],
    "rewards": [
        "reward_id", "name", "category", "points_cost", "description", "inventory", "min_tier",
        "active",
    ],
    "transactions": [
        "transaction_id", "customer_id", "occurred_at", "amount", "currency", "category",
        "channel", "points_earned",
    ],
    "redemptions": ["redemption_id", "customer_id", "reward_id", "redeemed_at", "points_spent"],
    "engagement_events": [
        "event_id", "customer_id", "event_type", "occurred_at", "message_id", "campaign",
        "channel",
    ],
}  # fmt: skip
TIME_COLUMN = {
    "customers": "signup_at",
    "transactions": "occurred_at",
    "redemptions": "redeemed_at",
    "engagement_events": "occurred_at",
}
ID_PATTERN = {
    "customers": r"cust\d{3,}",
    "rewards": r"rwd\d{3,}",
    "transactions": r"txn\d{8,}",
    "redemptions": r"rdm\d{7,}",
    "engagement_events": r"evt\d{9,}",
}
ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
TIERS = ["bronze", "silver", "gold", "platinum"]


def seed(folder: Path, **overrides) -> Path:
    generate(SeedConfig(output=folder, **{**CONFIG, **overrides}))
    return folder


def data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def read_entity(folder: Path, entity: str) -> pd.DataFrame:
    """Every row of an entity as strings, with its file (relative) and 1-based line."""
    frames = []
    for path in sorted((folder / entity).glob("*.csv")):
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        frame = pd.DataFrame(rows[1:], columns=rows[0], dtype=str)
        frame["file"] = path.relative_to(folder).as_posix()
        frame["line"] = range(2, len(frame) + 2)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def dirty_rows(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "_truth" / "dirty_rows.csv", dtype=str, keep_default_na=False)


def clean_rows(folder: Path, entity: str) -> pd.DataFrame:
    rows = read_entity(folder, entity)
    dirty = dirty_rows(folder)
    dirty = dirty[dirty.entity == entity]
    listed = set(zip(dirty.file, dirty.line.astype(int), strict=True))
    keep = [(f, n) not in listed for f, n in zip(rows.file, rows.line, strict=True)]
    return rows[keep].reset_index(drop=True)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    return seed(tmp_path_factory.mktemp("seed") / "data")


def test_same_seed_gives_identical_bytes_and_another_seed_differs(seeded, tmp_path):
    again = seed(tmp_path / "again")
    files = [p.relative_to(seeded) for p in data_files(seeded)]
    assert files == [p.relative_to(again) for p in data_files(again)]
    for relative in files:
        assert (seeded / relative).read_bytes() == (again / relative).read_bytes(), relative
    other = seed(tmp_path / "other", seed=8)
    sample = Path("transactions") / f"{START + timedelta(days=3)}.csv"
    assert (other / sample).read_bytes() != (seeded / sample).read_bytes()


def test_reseeding_a_folder_replaces_only_what_the_seed_owns(seeded, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(seeded, folder)
    (folder / "README.md").write_text("keep me")
    (folder / "transactions" / "1999-01-01.csv").write_text("stale")
    seed(folder)
    assert (folder / "README.md").read_text() == "keep me"
    assert not (folder / "transactions" / "1999-01-01.csv").exists()
    assert (folder / "transactions" / f"{START}.csv").read_bytes() == (
        seeded / "transactions" / f"{START}.csv"
    ).read_bytes()


def test_layout_has_one_file_per_day_with_the_contract_header(seeded):
    days = [str(START + timedelta(days=i)) for i in range(DAYS)]
    assert sorted(p.name for p in seeded.iterdir()) == [
        "_truth", "customers", "engagement_events", "redemptions", "rewards", "transactions",
    ]  # fmt: skip
    assert [p.name for p in (seeded / "customers").iterdir()] == ["customers.csv"]
    assert [p.name for p in (seeded / "rewards").iterdir()] == ["rewards.csv"]
    for entity in ("transactions", "redemptions", "engagement_events"):
        assert sorted(p.stem for p in (seeded / entity).iterdir()) == days
    for entity, columns in COLUMNS.items():
        for path in (seeded / entity).glob("*.csv"):
            assert path.read_text().splitlines()[0].split(",") == columns, path


def test_clean_rows_follow_the_contract(seeded):
    customers = clean_rows(seeded, "customers")
    rewards = clean_rows(seeded, "rewards")
    known_customers = set(customers.customer_id)
    for entity, pattern in ID_PATTERN.items():
        rows = clean_rows(seeded, entity)
        key = COLUMNS[entity][0]
        assert rows[key].str.fullmatch(pattern).all(), entity
        assert rows[key].is_unique, entity
        if entity in TIME_COLUMN:
            stamps = rows[TIME_COLUMN[entity]]
            assert stamps.str.fullmatch(ISO_UTC).all(), entity
            pd.to_datetime(stamps, format="%Y-%m-%dT%H:%M:%SZ", utc=True)  # raises if invalid
        if "customer_id" in rows and entity != "customers":
            assert rows.customer_id.isin(known_customers).all(), entity

    # cust + zero-padded to at least three digits, numbered from 1.
    numbers = customers.customer_id.str[4:].astype(int)
    assert (customers.customer_id == [f"cust{n:03d}" for n in numbers]).all()
    assert set(range(1, CONFIG["customers"] + 1)) <= set(numbers)
    assert customers.email.str.fullmatch(r"[a-z.']+\d+@[a-z.]+\.[a-z]{2,}").all()
    assert customers.tier.isin(TIERS).all()
    assert customers.marketing_opt_in.isin(["true", "false"]).all()
    assert (customers.points_balance.astype(int) >= 0).all()
    assert customers.preferred_categories.eq("").any()
    assert customers.timezone.nunique() >= 6

    assert (rewards.points_cost.astype(int) > 0).all()
    assert (rewards.inventory.astype(int) >= 0).all()
    assert rewards.min_tier.isin(TIERS).all()
    assert rewards.active.isin(["true", "false"]).all()

    transactions = clean_rows(seeded, "transactions")
    assert transactions.amount.str.fullmatch(r"-?\d+\.\d{2}").all()
    amounts = transactions.amount.astype(float)
    refunds = amounts < 0
    assert 0 < refunds.mean() < 0.04
    assert ((transactions.points_earned.astype(int) < 0) == refunds).all()
    assert (transactions.currency == "USD").all()
    assert transactions.channel.isin(["online", "store", "app"]).all()
    categories = json.loads((seeded / "_truth" / "params.json").read_text())["categories"]
    assert set(transactions.category) <= set(categories)
    assert set(rewards.category) <= set(categories)

    redemptions = clean_rows(seeded, "redemptions")
    assert redemptions.reward_id.isin(set(rewards.reward_id)).all()
    events = clean_rows(seeded, "engagement_events")
    assert set(events.event_type) <= {
        "sent", "delivered", "open", "click", "bounce", "unsubscribe", "complaint",
    }  # fmt: skip
    assert {"sent", "delivered", "open", "click"} <= set(events.event_type)
    assert (events.channel == "email").all()


def test_clean_event_rows_sit_in_the_file_of_their_utc_day(seeded):
    for entity in ("transactions", "redemptions", "engagement_events"):
        rows = clean_rows(seeded, entity)
        day = rows[TIME_COLUMN[entity]].str[:10]
        assert (rows.file == entity + "/" + day + ".csv").all(), entity


def test_dirty_share_matches_the_configured_fraction(seeded):
    dirty = dirty_rows(seeded)
    for entity in ("customers", "transactions", "redemptions", "engagement_events"):
        rows = read_entity(seeded, entity)
        share = (dirty.entity == entity).sum() / len(rows)
        assert share == pytest.approx(0.01, abs=0.002), entity
    assert (dirty.entity == "rewards").sum() <= 2


def test_no_dirty_rows_with_zero_fraction(tmp_path):
    folder = seed(tmp_path / "data", dirty_fraction=0.0)
    assert len(dirty_rows(folder)) == 0
    for entity, pattern in ID_PATTERN.items():
        rows = read_entity(folder, entity)
        key = COLUMNS[entity][0]
        assert rows[key].str.fullmatch(pattern).all() and rows[key].is_unique, entity


def check_dirty_rows(folder: Path) -> None:
    """Every row dirty_rows.csv lists is at its file and line, with its id, and is bad."""
    dirty = dirty_rows(folder)
    kinds = json.loads((folder / "_truth" / "params.json").read_text())["dirty_kinds"]
    customers = set(clean_rows(folder, "customers").customer_id)
    rewards = set(clean_rows(folder, "rewards").reward_id)
    for entity, listed in dirty.groupby("entity"):
        assert set(listed.kind) <= set(kinds[entity])
        rows = read_entity(folder, entity).set_index(["file", "line"])
        key = COLUMNS[entity][0]
        for item in listed.itertuples():
            row = rows.loc[(item.file, int(item.line))]
            assert row[key] == item.id, item
            if item.kind == "duplicate_id":
                same_file = rows.loc[item.file]
                earlier = same_file[same_file.index < int(item.line)]
                assert (earlier[key] == item.id).any(), item
            elif item.kind == "missing_key":
                assert row[key] == "" or row.get("customer_id") == "", item
            elif item.kind == "unparseable_timestamp":
                parsed = pd.to_datetime(row[TIME_COLUMN[entity]], errors="coerce", utc=True)
                assert pd.isna(parsed), item
            elif item.kind == "unknown_customer":
                assert row.customer_id not in customers and row.customer_id != "", item
            elif item.kind == "unknown_reward":
                assert row.reward_id not in rewards and row.reward_id != "", item
            elif item.kind == "malformed_email":
                assert not re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", row.email), item


def test_every_listed_dirty_row_is_where_it_says_and_breaks_the_contract(seeded):
    check_dirty_rows(seeded)
    dirty = dirty_rows(seeded)
    kinds = json.loads((seeded / "_truth" / "params.json").read_text())["dirty_kinds"]
    for entity, listed in dirty.groupby("entity"):
        # Kinds are dealt round-robin, so enough dirty rows show every kind.
        if len(listed) >= len(kinds[entity]):
            assert set(listed.kind) == set(kinds[entity]), entity


def test_demo_customers_are_clean_consenting_and_can_redeem(seeded):
    demo = [f"cust{i:03d}" for i in range(1, 11)]
    dirty = dirty_rows(seeded)
    everything = pd.concat(
        [read_entity(seeded, e) for e in ("transactions", "redemptions", "engagement_events")]
    )
    dirty_lines = set(zip(dirty.file, dirty.line.astype(int), strict=True))
    touching = everything[everything.customer_id.isin(demo)]
    assert not any((f, n) in dirty_lines for f, n in zip(touching.file, touching.line, strict=True))
    assert not dirty.id.isin(demo).any()

    customers = read_entity(seeded, "customers")
    customers = customers[customers.customer_id.isin(demo)].set_index("customer_id")
    assert len(customers) == 10
    truth = pq.read_table(seeded / "_truth" / "customers_truth.parquet").to_pandas()
    truth = truth.set_index("customer_id").loc[demo]
    rewards = clean_rows(seeded, "rewards")
    available = rewards[(rewards.active == "true") & (rewards.inventory.astype(int) > 0)]
    for customer_id, row in customers.iterrows():
        assert row.marketing_opt_in == "true"
        assert row.tier in ("gold", "platinum")
        assert row.signup_at < f"{START}T00:00:00Z"
        assert not truth.loc[customer_id, "churned"]
        eligible = available[available.min_tier.map(TIERS.index) <= TIERS.index(row.tier)]
        affordable = eligible.points_cost.astype(int) <= int(row.points_balance)
        assert affordable.sum() >= 3, customer_id


def test_holdout_gets_no_email_and_matches_the_shared_hash(seeded):
    truth = pq.read_table(seeded / "_truth" / "customers_truth.parquet").to_pandas()
    params = json.loads((seeded / "_truth" / "params.json").read_text())
    expected = holdout_mask(truth.customer_id, params["holdout_share"])
    assert (truth.is_holdout.to_numpy() == expected).all()
    assert 0 < expected.sum() < len(truth)
    events = clean_rows(seeded, "engagement_events")
    sent = set(events.customer_id[events.event_type == "sent"])
    holdout = set(truth.customer_id[truth.is_holdout])
    no_consent = set(truth.customer_id[~truth.marketing_opt_in])
    assert sent and not sent & holdout and not sent & no_consent


def test_truth_records_the_planted_structure(seeded):
    truth_dir = seeded / "_truth"
    params = json.loads((truth_dir / "params.json").read_text())
    assert params["seed"] == CONFIG["seed"] and params["last_date"] == str(
        START + timedelta(days=DAYS - 1)
    )
    uplift = params["uplift"]
    assert uplift["relative_increase"] > 0 and uplift["window_days"] > 0
    assert uplift["expected_absolute_uplift_redemptions_per_customer"] > 0
    assert "definition" in uplift
    truth = pq.read_table(truth_dir / "customers_truth.parquet").to_pandas()
    tastes = truth[[f"taste_{c}" for c in params["categories"]]]
    assert tastes.sum(axis=1).to_numpy() == pytest.approx(1.0)
    assert truth.preferred_local_hour.between(8, 20).all()
    assert truth.churned.any() and not truth.churned.all()
    assert truth.churn_date.notna().eq(truth.churned).all()
    rewards = pq.read_table(truth_dir / "rewards_truth.parquet").to_pandas()
    assert len(rewards) == CONFIG["rewards"] and (rewards.popularity > 0).all()


def test_behaviour_follows_the_planted_truth(seeded):
    truth = pq.read_table(seeded / "_truth" / "customers_truth.parquet").to_pandas()
    top_taste = truth.set_index("customer_id").top_category
    purchases = clean_rows(seeded, "transactions")
    purchases = purchases[~purchases.amount.str.startswith("-")]
    counts = purchases.groupby("customer_id").category.agg(["size", lambda c: c.mode()[0]])
    counts.columns = ["purchases", "favourite"]
    regulars = counts[counts.purchases >= 10]
    assert len(regulars) > 50
    assert (regulars.favourite == top_taste.loc[regulars.index]).mean() > 0.6

    redemptions = clean_rows(seeded, "redemptions").reward_id.value_counts()
    top_tenth = max(1, CONFIG["rewards"] // 10)
    assert redemptions.iloc[:top_tenth].sum() / redemptions.sum() >= 0.35

    gone = truth[truth.churned].set_index("customer_id").churn_date
    assert (gone >= START).all()  # churn clocks start at the period start
    after_churn = purchases[purchases.customer_id.isin(gone.index)]
    last_day = after_churn.groupby("customer_id").occurred_at.max().str[:10]
    assert (last_day <= gone.loc[last_day.index].astype(str)).all()


def test_simulate_day_lands_exactly_one_deterministic_day(seeded, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(seeded, first)
    shutil.copytree(seeded, second)
    before = {p.relative_to(first) for p in data_files(first)}
    summary = simulate_day(first, new_customers=12)
    simulate_day(second, new_customers=12)
    day = START + timedelta(days=DAYS)
    assert summary.first_day == summary.last_day == day

    after = {p.relative_to(first) for p in data_files(first)}
    new = sorted(str(p) for p in after - before)
    assert new == sorted(
        f"{entity}/{day}.csv"
        for entity in ("customers", "transactions", "redemptions", "engagement_events")
    )
    for relative in after:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    for relative in before:
        if relative.parts[0] != "_truth":
            assert (first / relative).read_bytes() == (seeded / relative).read_bytes(), relative

    signups = clean_rows(first, "customers")
    signups = signups[signups.file == f"customers/{day}.csv"]
    assert len(signups) == 12
    numbers = signups.customer_id.str[4:].astype(int)
    assert numbers.min() > CONFIG["customers"] and numbers.is_monotonic_increasing
    assert signups.signup_at.str.startswith(str(day)).all()

    transactions = clean_rows(first, "transactions")
    today = transactions[transactions.file == f"transactions/{day}.csv"]
    last_week = transactions.file.value_counts().sort_index().iloc[-8:-1]
    assert len(today) > 0.5 * last_week.mean()
    assert today.occurred_at.str.startswith(str(day)).all()
    assert (
        today.transaction_id.is_unique
        and not today.transaction_id.isin(
            transactions.transaction_id[transactions.file != today.file.iloc[0]]
        ).any()
    )
    assert today.customer_id.isin(clean_rows(first, "customers").customer_id).all()
    check_dirty_rows(first)
    assert (dirty_rows(first).file == f"transactions/{day}.csv").any()
    params = json.loads((first / "_truth" / "params.json").read_text())
    assert params["last_date"] == str(day)

    simulate_day(first)
    assert (first / "transactions" / f"{day + timedelta(days=1)}.csv").exists()


def test_parquet_holds_the_same_rows_as_csv(seeded, tmp_path):
    folder = seed(tmp_path / "data", format="parquet")
    for entity in COLUMNS:
        for csv_path in sorted((seeded / entity).glob("*.csv")):
            parquet_path = folder / entity / (csv_path.stem + ".parquet")
            as_csv = pcsv.read_csv(
                csv_path,
                convert_options=pcsv.ConvertOptions(
                    column_types={c: pa.string() for c in COLUMNS[entity]},
                    strings_can_be_null=False,
                ),
            )
            table = pq.read_table(parquet_path)
            assert table.column_names == COLUMNS[entity]
            as_text = pa.table(
                {c: table[c].cast(pa.string()).fill_null("") for c in table.column_names}
            )
            assert as_text.equals(as_csv), parquet_path


def test_the_seed_script_and_commands_write_the_same_folder(tmp_path):
    """scripts/seed_data.py (the brief's command) and `reward-assets seed` are one path;
    `reward-assets simulate-day` then lands a day on it."""
    root = Path(__file__).resolve().parents[1]
    small = ["--customers", "60", "--rewards", "20", "--days", "5", "--seed", "3"]
    script = [sys.executable, str(root / "scripts" / "seed_data.py")]
    command = [sys.executable, "-m", "reward_assets", "seed"]
    for runner, folder in ((script, "a"), (command, "b")):
        subprocess.run([*runner, "--output", str(tmp_path / folder), *small], check=True)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) > 10
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    before = len(list((tmp_path / "b").rglob("*.*")))
    day = [sys.executable, "-m", "reward_assets", "simulate-day", "--data", str(tmp_path / "b")]
    subprocess.run(day, check=True)
    assert len(list((tmp_path / "b").rglob("*.*"))) > before
    refused = subprocess.run([*day[:-1], str(tmp_path / "nothing")], capture_output=True, text=True)
    assert refused.returncode == 2 and "reward-assets seed" in refused.stderr
