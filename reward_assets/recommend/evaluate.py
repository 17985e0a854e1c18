"""Offline evaluation of the reward rankers on held-out redemptions.

    reward-assets evaluate --data DIR [--k 10] [--split random|temporal]
                                     [--seed 42] [--max-customers 50000] [--json]

Protocol: a seeded random 25% of the redemption rows (or the latest 25% by time) is the
test part. Every candidate's hyper-parameters are chosen on a validation split carved the
same way from the training part (10% of its rows, `served.VALIDATION_SHARE`), then the
candidate is fitted on the whole training part and ranks all rewards for each test
customer, the rewards they redeemed in training left out. Relevant are the test rewards
the customer had not redeemed in training; customers with at least one are evaluated (a
seeded sample of `max_customers` when there are more).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from reward_assets.ingest.landing import ContractError
from reward_assets.recommend.interactions import Interactions
from reward_assets.recommend.protocol import HoldOut
from reward_assets.recommend.rankers import Ease, ItemKNN, Popularity, RandomRanker, Ranker
from reward_assets.recommend.served import VALIDATION_SHARE, build_served, choose_served
from reward_assets.recommend.taste import Log, TasteModel

VALIDATION_CUSTOMERS = 20_000
Grid = dict[str, tuple]


def baselines(seed: int) -> dict[str, tuple[Callable[..., Ranker], Grid]]:
    """The established candidates and the values tried for their one hyper-parameter."""
    return {
        "popularity": (Popularity, {}),
        "random": (RandomRanker, {"seed": (seed,)}),
        "ease": (Ease, {"l2": (10.0, 100.0, 1000.0, 10000.0, 100000.0)}),
        "itemknn": (ItemKNN, {"neighbors": (10, 50, 200)}),
    }


COLUMNS = ("precision", "recall", "ndcg", "map")
HEADERS = {"precision": "P", "recall": "R", "ndcg": "nDCG", "map": "MAP"}


def _silent(_: str) -> None:
    pass


@dataclass
class CandidateResult:
    params: dict
    validation: dict[str, float]  # on the validation split, with the chosen params
    test: dict[str, float]
    seconds: float


@dataclass
class ServedResult:
    name: str  # taste, ease or blend (recommend.served)
    params: dict
    validation: dict[str, dict]  # every served candidate's params and validation metrics
    test: dict[str, float]


@dataclass
class Report:
    k: int
    split: str
    seed: int
    customers: int
    rewards: int
    redemptions: int
    train_rows: int
    test_rows: int
    validation_rows: int  # training rows held out to choose hyper-parameters
    customers_eligible: int  # with at least one relevant test reward
    customers_evaluated: int
    max_customers: int
    uses_purchases: bool
    excluded: dict[str, dict[str, int]]
    candidates: dict[str, CandidateResult]
    validation_winner: str
    served: ServedResult  # what the product would serve, chosen without the test part
    seconds: float

    def headline(self) -> dict[str, float]:
        """The served model's test metrics, and its nDCG@k over popularity's."""
        served = self.served.test
        popularity = self.candidates["popularity"].test[f"ndcg@{self.k}"]
        lift = served[f"ndcg@{self.k}"] / popularity if popularity > 0 else math.nan
        return {**served, f"ndcg@{self.k}_over_popularity": lift}

    @property
    def sampled(self) -> bool:
        return self.customers_evaluated < self.customers_eligible

    def to_dict(self) -> dict:
        """JSON-ready: metrics that could not be computed (no customers) are None."""
        return _finite(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        k = self.k
        how = (
            "seeded random 25% of redemption rows"
            if self.split == "random"
            else "latest 25% of redemption rows by redeemed_at"
        )
        evaluated = f"{self.customers_evaluated:,} customers with a held-out reward"
        if self.sampled:
            evaluated += (
                f" (a seeded sample of {self.customers_evaluated:,} of "
                f"{self.customers_eligible:,}: max_customers = {self.max_customers:,})"
            )
        lines = [
            f"# Offline ranking evaluation (k = {k})",
            "",
            f"- Test part: {how} (seed {self.seed}); training rewards of a customer are "
            "never ranked, relevant = held-out rewards not redeemed in training.",
            f"- Data: {self.customers:,} customers, {self.rewards:,} rewards, "
            f"{self.redemptions:,} redemptions ({self.train_rows:,} train, "
            f"{self.test_rows:,} test); hyper-parameters chosen on {self.validation_rows:,} "
            "training rows held out the same way.",
            f"- Evaluated: {evaluated}.",
            f"- Purchases per category: {'used' if self.uses_purchases else 'not available'}"
            + (
                " (counted over all the data, not cut at the split time)"
                if self.uses_purchases and self.split == "temporal"
                else ""
            )
            + ".",
            f"- Validation winner: **{self.validation_winner}**; took {self.seconds:.1f}s.",
            f"- Served: **{self.served.name}** (chosen on validation among "
            + ", ".join(
                f"{name} {_number(c['metrics'][f'ndcg@{k}'])}"
                for name, c in self.served.validation.items()
            )
            + f"); test nDCG@{k} {_number(self.served.test[f'ndcg@{k}'])}.",
            "",
            f"| candidate | parameters | validation nDCG@{k} | "
            + " | ".join(f"{HEADERS[c]}@{k}" for c in COLUMNS)
            + " |",
            "|---|---|---:|" + "---:|" * len(COLUMNS),
        ]
        for name, result in self.candidates.items():
            params = ", ".join(f"{p}={v:g}" for p, v in result.params.items()) or "-"
            cells = [_number(result.validation[f"ndcg@{k}"])]
            cells += [_number(result.test[f"{c}@{k}"]) for c in COLUMNS]
            lines.append(f"| {name} | {params} | " + " | ".join(cells) + " |")
        if self.excluded:
            lines += ["", "Rows left out of the data (per entity and reason):", ""]
            for entity, reasons in self.excluded.items():
                counts = ", ".join(f"{reason} {n:,}" for reason, n in sorted(reasons.items()))
                lines.append(f"- {entity}: {counts}")
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _finite(value):
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _tune_baseline(
    factory: Callable[..., Ranker], grid: Grid, validation: HoldOut, k: int
) -> tuple[dict, dict[str, float]]:
    """The grid value with the best validation nDCG@k (the first one on ties)."""
    options = [{name: value} for name, values in grid.items() for value in values] or [{}]
    results = [
        (params, validation.evaluate(factory(**params).fit(validation.train), k))
        for params in options
    ]
    return max(results, key=lambda result: _or_worst(result[1][f"ndcg@{k}"]))


def _or_worst(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def evaluate(
    data: Interactions,
    k: int = 10,
    split: str = "random",
    seed: int = 42,
    max_customers: int = 50_000,
    log: Log = _silent,
) -> Report:
    """Compare every candidate under the protocol of this module's docstring."""
    started = time.perf_counter()
    final = HoldOut.split(data, split, seed, max_customers)
    validation = HoldOut.split(
        final.train, split, seed + 1, min(max_customers, VALIDATION_CUSTOMERS), VALIDATION_SHARE
    )
    log(
        f"split: {final.train_rows:,} train / {final.test_rows:,} test rows, "
        f"{final.customers.size:,} of {final.eligible:,} eligible customers evaluated"
    )
    candidates: dict[str, CandidateResult] = {}
    for name, (factory, grid) in baselines(seed).items():
        clock = time.perf_counter()
        params, scores = _tune_baseline(factory, grid, validation, k)
        result = final.evaluate(factory(**params).fit(final.train), k)
        candidates[name] = CandidateResult(params, scores, result, time.perf_counter() - clock)
        log(f"{name}: test ndcg@{k} {result[f'ndcg@{k}']:.4f} ({params or 'no parameters'})")

    clock = time.perf_counter()
    choice, served_params, served_candidates = choose_served(validation, k, seed, log)
    params, scores = served_params["taste"], served_candidates["taste"]["metrics"]
    taste = TasteModel(**params).fit(final.train)
    result = final.evaluate(taste, k)
    candidates["taste_model"] = CandidateResult(params, scores, result, time.perf_counter() - clock)
    log(f"taste_model: test ndcg@{k} {result[f'ndcg@{k}']:.4f}")
    # Served alone, the taste model scores exactly as it does as a candidate.
    served_test = (
        dict(result)
        if choice == "taste"
        else final.evaluate(build_served(final.train, choice, served_params, taste), k)
    )
    served = ServedResult(choice, served_params, served_candidates, served_test)
    log(f"served ({choice}): test ndcg@{k} {served_test[f'ndcg@{k}']:.4f}")

    return Report(
        k=k,
        split=split,
        seed=seed,
        customers=data.n_customers,
        rewards=data.n_rewards,
        redemptions=len(data.redemptions),
        train_rows=final.train_rows,
        test_rows=final.test_rows,
        validation_rows=validation.test_rows,
        customers_eligible=final.eligible,
        customers_evaluated=int(final.customers.size),
        max_customers=max_customers,
        uses_purchases=data.category_purchases is not None and not data.category_purchases.empty,
        excluded=data.excluded,
        candidates=candidates,
        validation_winner=max(
            candidates, key=lambda name: _or_worst(candidates[name].validation[f"ndcg@{k}"])
        ),
        served=served,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reward-assets evaluate",
        description="Offline evaluation of the reward rankers on a landing folder.",
    )
    parser.add_argument("--data", type=Path, required=True, help="landing folder (DATA_DIR)")
    parser.add_argument("--k", type=int, default=10, help="ranking cut-off (default 10)")
    parser.add_argument("--split", choices=("random", "temporal"), default="random")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--max-customers",
        type=int,
        default=50_000,
        help="evaluate a seeded sample of at most this many customers (default 50000)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    if args.k < 1 or args.max_customers < 1:
        parser.error("--k and --max-customers must be at least 1")

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        progress(f"reading {args.data}")
        data = Interactions.from_folder(args.data)
    except ContractError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = evaluate(data, args.k, args.split, args.seed, args.max_customers, progress)
    print(report.to_json() + "\n" if args.json else report.to_markdown(), end="")
    return 0
