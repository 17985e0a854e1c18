"""The entry points: seeding a data folder and landing one more day.

`generate` seeds a folder from scratch (same config, same bytes); `simulate_day` lands the
day after the last landed one, continuing the seeded truth and id sequences. Both write the
ground truth to `_truth/`: params, customer and reward truth, pending rows, dirty rows.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reward_assets.ingest.contract import TIERS
from reward_assets.seed.catalogue import draw_rewards
from reward_assets.seed.formatting import date_of, epoch_seconds
from reward_assets.seed.frames import Frame
from reward_assets.seed.landing import (
    CUSTOMERS,
    ENGAGEMENT_EVENTS,
    REDEMPTIONS,
    REWARDS,
    SPECS,
    TRANSACTIONS,
    Landed,
    Lander,
    rewards_table,
    write_dirty,
)
from reward_assets.seed.model import (
    BAD_TIMESTAMPS,
    CATEGORIES,
    DAY,
    TIMEZONES,
    Counters,
    Model,
    SeedConfig,
    Summary,
)
from reward_assets.seed.population import Population, draw_customers, draw_signups
from reward_assets.seed.simulation import Window, expected_uplift, simulate_window

Log = Callable[[str], None]


def _day_files(
    entity: str, start: int, end: int, ts: np.ndarray, ext: str
) -> tuple[list[str], np.ndarray]:
    days = np.arange(start // DAY, end // DAY)
    names = [f"{entity}/{date_of(int(d) * DAY)}.{ext}" for d in days]
    bounds = np.searchsorted(ts // DAY, np.append(days, days[-1] + 1), "left")
    bounds[-1] = ts.size
    return names, bounds


class _Clock:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def step(self, name: str, rows: int | None = None) -> None:
        count = f"{rows:>13,} rows" if rows is not None else " " * 18
        self.log(f"[{self.elapsed:6.1f}s] {name:<28}{count}")


def _silent(_: str) -> None:
    pass


def _rng_for_day(seed: int, day: date) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, day.toordinal()])))


def _truth_dir(data_dir: Path) -> Path:
    return data_dir / "_truth"


def _write_frame(frame: Frame, path: Path) -> None:
    pq.write_table(pa.table({k: pa.array(v) for k, v in frame.items()}), path)


def _read_frame(path: Path) -> Frame:
    table = pq.read_table(path)
    return {name: table[name].to_numpy() for name in table.column_names}


def _land_window(
    lander: Lander,
    window: Window,
    counters: Counters,
    start: int,
    end: int,
    clock: _Clock,
    summary: dict[str, Landed],
) -> None:
    ext = lander.file_format
    for spec, frame, counter in (
        (TRANSACTIONS, window.transactions, "transaction"),
        (REDEMPTIONS, window.redemptions, "redemption"),
        (ENGAGEMENT_EVENTS, window.engagement_events, "event"),
    ):
        files, bounds = _day_files(spec.name, start, end, frame["ts"], ext)
        landed = lander.land(spec, frame, getattr(counters, counter), files, bounds)
        setattr(counters, counter, landed.next_id)
        summary[spec.name] = landed
        clock.step(f"wrote {spec.name}", landed.rows)


def _summary(
    data_dir: Path, start: int, end: int, landed: dict[str, Landed], clock: _Clock
) -> Summary:
    return Summary(
        data_dir=data_dir,
        first_day=date_of(start),
        last_day=date_of(end - 1),
        rows={k: v.rows for k, v in landed.items()},
        dirty={k: v.dirty.num_rows for k, v in landed.items()},
        files={k: v.files for k, v in landed.items()},
        seconds=clock.elapsed,
    )


def generate(config: SeedConfig, log: Log = _silent) -> Summary:
    """Seed a data folder from scratch; same config => byte-identical files."""
    clock = _Clock(log)
    data_dir = Path(config.output)
    ext = config.format
    if ext not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, not {ext!r}")
    for name in [s.name for s in SPECS] + ["_truth"]:
        shutil.rmtree(data_dir / name, ignore_errors=True)
    truth = _truth_dir(data_dir)
    truth.mkdir(parents=True)

    model = config.model
    rng = np.random.Generator(np.random.PCG64(config.seed))
    start = epoch_seconds(config.start_date)
    end = start + config.days * DAY
    rewards = draw_rewards(rng, config.rewards, model)
    signups = draw_signups(rng, config.customers, start, end, model)
    numbers = np.arange(1, config.customers + 1, dtype=np.int64)
    churn_from = np.maximum(start, signups + model.churn_grace_days * DAY)
    population, profile = draw_customers(
        rng, numbers, signups, churn_from, config.days, config.holdout_share, rewards, model
    )
    clock.step("drew customers and rewards", config.customers)

    counters = Counters()
    window = simulate_window(
        rng, population, rewards, model, config.uplift, start, end, counters, {}, config.seed
    )
    clock.step("simulated transactions", window.transactions["ts"].size)
    clock.step("simulated redemptions", window.redemptions["ts"].size)
    clock.step("simulated engagement events", window.engagement_events["ts"].size)

    lander = Lander(data_dir, ext, config.dirty_fraction, rng)
    landed: dict[str, Landed] = {}
    landed["customers"] = lander.land(
        CUSTOMERS, profile, 1, [f"customers/customers.{ext}"], np.array([0, config.customers])
    )
    counters.customer = landed["customers"].next_id
    clock.step("wrote customers", landed["customers"].rows)
    landed["rewards"] = lander.land(
        REWARDS, rewards, 1, [f"rewards/rewards.{ext}"], np.array([0, config.rewards])
    )
    clock.step("wrote rewards", landed["rewards"].rows)
    _land_window(lander, window, counters, start, end, clock, landed)

    uplift = expected_uplift(population, window, model, config.uplift, start, end)
    params = {
        "seed": config.seed,
        "customers": config.customers,
        "rewards": config.rewards,
        "days": config.days,
        "start_date": config.start_date.isoformat(),
        "end_date": date_of(end).isoformat(),
        "last_date": date_of(end - 1).isoformat(),
        "format": ext,
        "dirty_fraction": config.dirty_fraction,
        "holdout_share": config.holdout_share,
        "daily_signups": round(int((signups >= start).sum()) / config.days),
        "categories": list(CATEGORIES),
        "tiers": list(TIERS),
        "timezones": [{"timezone": z, "country": c, "share": s} for z, c, s in TIMEZONES],
        "dirty_kinds": {s.name: list(s.dirty_kinds) for s in SPECS},
        "bad_timestamps": list(BAD_TIMESTAMPS),
        "uplift": uplift,
        "model": asdict(model),
        "next_ids": asdict(counters),
    }
    _write_truth(truth, params, population, end, window, append_dirty=False, landed=landed)
    pq.write_table(_rewards_truth(rewards), truth / "rewards_truth.parquet")
    clock.step("wrote truth")
    summary = _summary(data_dir, start, end, landed, clock)
    summary.uplift = uplift
    return summary


def simulate_day(data_dir: Path, new_customers: int | None = None, log: Log = _silent) -> Summary:
    """Land the day after the last landed one, continuing the seeded truth and ids."""
    clock = _Clock(log)
    data_dir = Path(data_dir)
    truth = _truth_dir(data_dir)
    params = json.loads((truth / "params.json").read_text())
    model = Model.from_json(params["model"])
    counters = Counters(**params["next_ids"])
    day = date.fromisoformat(params["last_date"]) + timedelta(days=1)
    start = epoch_seconds(day)
    end = start + DAY
    ext = params["format"]
    rng = _rng_for_day(params["seed"], day)

    rewards = _read_frame(truth / "rewards_truth.parquet")
    population = Population.from_table(pq.read_table(truth / "customers_truth.parquet"))
    n_new = params["daily_signups"] if new_customers is None else new_customers
    signups = np.sort(start + (rng.random(n_new) * DAY).astype(np.int64))
    numbers = counters.customer + np.arange(n_new, dtype=np.int64)
    newcomers, profile = draw_customers(
        rng,
        numbers,
        signups,
        signups + model.churn_grace_days * DAY,
        params["days"],
        params["holdout_share"],
        rewards,
        model,
    )
    population = population.concat(newcomers)
    clock.step("drew new customers", n_new)

    pending = {
        "transactions": _read_frame(truth / "pending_transactions.parquet"),
        "engagement_events": _read_frame(truth / "pending_engagement_events.parquet"),
    }
    uplift = params["uplift"]["relative_increase"]
    window = simulate_window(
        rng, population, rewards, model, uplift, start, end, counters, pending, params["seed"]
    )

    lander = Lander(data_dir, ext, params["dirty_fraction"], rng)
    landed: dict[str, Landed] = {}
    landed["customers"] = lander.land(
        CUSTOMERS, profile, counters.customer, [f"customers/{day}.{ext}"], np.array([0, n_new])
    )
    counters.customer = landed["customers"].next_id
    _land_window(lander, window, counters, start, end, clock, landed)

    params["last_date"] = day.isoformat()
    params["next_ids"] = asdict(counters)
    _write_truth(truth, params, population, end, window, append_dirty=True, landed=landed)
    clock.step("updated truth")
    return _summary(data_dir, start, end, landed, clock)


def _write_truth(
    truth: Path,
    params: dict,
    population: Population,
    landed_until: int,
    window: Window,
    append_dirty: bool,
    landed: dict[str, Landed],
) -> None:
    (truth / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    pq.write_table(population.to_table(landed_until), truth / "customers_truth.parquet")
    _write_frame(window.pending_transactions, truth / "pending_transactions.parquet")
    _write_frame(window.pending_events, truth / "pending_engagement_events.parquet")
    dirty = [landed[s.name].dirty for s in SPECS if s.name in landed]
    write_dirty(dirty, truth / "dirty_rows.csv", append=append_dirty)


def _rewards_truth(rewards: Frame) -> pa.Table:
    table = rewards_table(rewards, np.arange(1, rewards["category"].size + 1))
    extra = {k: pa.array(v) for k, v in rewards.items()}
    return pa.table({"reward_id": table["reward_id"], **extra})
