"""The served ranker: the taste model, EASE's item-item weights, or a blend, chosen on validation.

    score(u, i) = a_u * (customer_vector(u) . reward_vector(i)) + b * (x_u . B[:, i])

`customer_vector`/`reward_vector` are the taste model's (`recommend.taste`), x_u is the
customer's binary redemption row and B the item-item weights (`item_item_weights`), so the
batch and the API compute the item-item term per customer as a sparse row times B. a_u is
`taste_weight` for customers with redemptions and 1 for those without: a new customer's
score is the taste model's cold start whatever the choice. The three candidates:

- taste: a = 1, b = 0;
- ease: a = 0, b = 1 (customers without redemptions still get the taste ranking); B is
  EASE's at dropout 0, else DLAE's (denoising, dropout-regularised) at the chosen dropout;
- blend: a = 1, b = `item_weight`, the weight with the best validation nDCG.

`fit_served_model` tunes each on the same random validation split (`recommend.protocol`),
keeps the best (the simpler one on a tie, in the order above) and refits it on all the data.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from reward_assets.recommend.inputs import positions
from reward_assets.recommend.interactions import Interactions, binary_matrix
from reward_assets.recommend.protocol import HoldOut, lift_over_popularity
from reward_assets.recommend.rankers import Ease, Popularity
from reward_assets.recommend.taste import Log, TasteModel, tune_taste_model

CANDIDATES = ("taste", "ease", "blend")
# EASE's l2 relative to the mean redemptions per reward (the mean diagonal of X'X), so a
# value chosen on the validation split's smaller training part carries over to all data.
EASE_L2 = (1.0, 3.0, 5.0, 10.0, 20.0, 50.0, 200.0)
# DLAE's dropout share, tried with every l2 above: its penalty grows with a reward's
# redemptions, which on rating-like data beats EASE's uniform one and makes the choice of
# l2 less sensitive to the validation part's smaller size.
DROPOUT = (0.0, 0.25, 0.5, 0.67)
# Taste scores are sums of log-probabilities (units), EASE's are regression weights (tenths):
# the grid spans both ends so that either side can dominate.
BLEND_WEIGHTS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
# The share of redemptions held out to choose on: small, so that the training part the
# choice is made on is close in size to the data the chosen model is refitted on (the best
# regularisation shrinks as data grows; at 25% validation chose twice the l2 that was best).
VALIDATION_SHARE = 0.1
# Fewer validation customers than this and a ranker's validation nDCG says nothing.
MIN_VALIDATION_CUSTOMERS = 20


class NotTrainable(ValueError):
    """Too few redemptions to train or validate a ranker: the fallback serves."""


def _silent(_: str) -> None:
    pass


class ServedModel:
    """The ranker every consumer uses; see the module docstring for its score."""

    def __init__(self, taste: TasteModel, choice: str = "taste", **params):
        if choice not in CANDIDATES:
            raise ValueError(f"choice must be one of {CANDIDATES}, not {choice!r}")
        self.taste = taste
        self.choice = choice
        self.params = {
            "l2": float(params.get("l2", 10.0)),
            "dropout": float(params.get("dropout", 0.0)),
        }
        if choice == "blend":
            self.params["item_weight"] = float(params["item_weight"])
        self.item_weights: np.ndarray | None = None
        self._matrix: sp.csr_matrix | None = None

    @property
    def taste_weight(self) -> float:
        return 0.0 if self.choice == "ease" else 1.0

    @property
    def item_weight(self) -> float:
        return {"taste": 0.0, "ease": 1.0}.get(self.choice, self.params.get("item_weight", 0.0))

    @property
    def reward_ids(self) -> list[str]:
        return self.taste.reward_ids

    @property
    def blocks(self) -> dict[str, slice]:
        return self.taste.blocks

    def fit(self, data: Interactions, item_weights: np.ndarray | None = None) -> Self:
        """Fit the item-item weights (or take `item_weights`, `item_item_weights` at the
        same params on `data`); the taste model is fitted on `data` already."""
        if self.item_weight > 0:
            if item_weights is None:
                item_weights = item_item_weights(data, self.params["l2"], self.params["dropout"])
            self.item_weights = item_weights
        self._matrix = data.redemption_matrix
        return self

    # ----------------------------------------------------------------- scoring

    def score(self, customer_index: np.ndarray) -> np.ndarray:
        """Scores of the customers at rows `customer_index` of the data fitted on."""
        if self._matrix is None:
            raise ValueError("score needs the fitted data")
        rows = self._matrix[np.asarray(customer_index)]
        scores = self.taste.score(customer_index) * self._taste_scale(rows)[:, None]
        return scores + self.item_scores(rows)

    def _taste_scale(self, history: sp.csr_matrix) -> np.ndarray:
        return np.where(history.getnnz(axis=1) > 0, self.taste_weight, 1.0).astype(np.float32)

    def item_scores(self, history: sp.csr_matrix) -> np.ndarray:
        """(n, R) item-item term for binary history rows in `reward_ids` order (0 if none)."""
        if self.item_weights is None:
            return np.zeros(history.shape, np.float32)
        return np.asarray(history @ self.item_weights, np.float32) * np.float32(self.item_weight)

    def history(self, customers: pd.DataFrame, redemptions: pd.DataFrame) -> sp.csr_matrix:
        """(len(customers), R) binary: who redeemed which of the model's rewards."""
        return redemption_history(customers, pd.Series(self.reward_ids), redemptions)

    def customer_vectors(
        self,
        customers: pd.DataFrame,
        redemptions: pd.DataFrame,
        category_purchases: pd.DataFrame | None = None,
    ) -> np.ndarray:
        """The taste vectors, scaled by the taste weight for customers with redemptions."""
        vectors = self.taste.customer_vectors(customers, redemptions, category_purchases)
        return vectors * self._taste_scale(self.history(customers, redemptions))[:, None]

    def reward_vectors(self, rewards: pd.DataFrame | None = None) -> np.ndarray:
        return self.taste.reward_vectors(rewards)

    def item_weights_for(self, rewards: pd.DataFrame) -> np.ndarray | None:
        """B scaled by the item weight, rows and columns in the order of `rewards`; rewards
        the model has never seen have no item-item weight (zero)."""
        if self.item_weights is None:
            return None
        at = pd.Index(self.reward_ids).get_indexer(rewards["reward_id"].astype(str))
        padded = np.zeros((len(self.reward_ids) + 1,) * 2, np.float32)
        padded[:-1, :-1] = self.item_weights * np.float32(self.item_weight)
        return padded[np.ix_(at, at)]

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.taste.fingerprint.encode())
        digest.update(json.dumps([self.choice, self.params]).encode())
        if self.item_weights is not None:
            digest.update(np.ascontiguousarray(self.item_weights).tobytes())
        return digest.hexdigest()

    # ----------------------------------------------------------------- persistence

    def save(self, directory: Path) -> None:
        """The taste model's files, `served.json` (choice, params) and `item_weights.npy`."""
        directory = Path(directory)
        self.taste.save(directory)
        meta = {"choice": self.choice, "params": self.params}
        (directory / "served.json").write_text(json.dumps(meta, indent=2) + "\n")
        if self.item_weights is not None:
            np.save(directory / "item_weights.npy", self.item_weights, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> ServedModel:
        directory = Path(directory)
        meta = json.loads((directory / "served.json").read_text())
        model = cls(TasteModel.load(directory), meta["choice"], **meta["params"])
        if (directory / "item_weights.npy").exists():
            model.item_weights = np.load(directory / "item_weights.npy", allow_pickle=False)
        return model


def item_item_weights(data: Interactions, l2: float, dropout: float = 0.0) -> np.ndarray:
    """B on `data`, l2 in units of the mean redemptions per reward.

    Dropout 0 is EASE (`recommend.rankers.Ease`). Otherwise DLAE (Steck 2020, "Autoencoders
    that don't overfit towards the identity"): B = I - P L with P = (G + L)^-1, G = X'X and
    L = diag(dropout / (1 - dropout) * diag(G) + l2), the closed form of a linear
    autoencoder trained with input dropout. Its diagonal is zeroed: a customer's own
    rewards are never ranked, so it would only distort the scores of the others.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), not {dropout}")
    per_reward = data.redemption_matrix.nnz / max(data.n_rewards, 1)
    penalty = l2 * max(per_reward, 1.0)
    if dropout == 0.0:
        return Ease(penalty).fit(data).weights
    gram = data.gram.copy()
    diagonal = dropout / (1.0 - dropout) * np.diag(gram) + penalty
    gram[np.diag_indices_from(gram)] += diagonal
    weights = -np.linalg.inv(gram) * diagonal[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def redemption_history(
    customers: pd.DataFrame, reward_ids: pd.Series, redemptions: pd.DataFrame
) -> sp.csr_matrix:
    """(customers, rewards) binary in the order given; unknown ids are left out."""
    customer = positions(redemptions["customer_id"], customers["customer_id"])
    reward = pd.Index(reward_ids.astype(str)).get_indexer(redemptions["reward_id"].astype(str))
    known = (customer >= 0) & (reward >= 0)
    return binary_matrix((len(customers), len(reward_ids)), customer[known], reward[known])


# --------------------------------------------------------------------------- choosing


def choose_served(
    holdout: HoldOut, k: int = 10, seed: int = 42, log: Log = _silent
) -> tuple[str, dict, dict[str, dict]]:
    """Tune every candidate on `holdout` and pick the best by validation nDCG@k.

    Returns the choice, its parameters (the taste model's under "taste") and every
    candidate's validation metrics with its parameters.
    """
    key = f"ndcg@{k}"
    taste, taste_metrics = tune_taste_model(holdout, k, seed, log)

    def trial(choice: str, weights: np.ndarray, **params) -> tuple[dict, dict]:
        model = ServedModel(taste, choice, **params).fit(holdout.train, weights)
        return params, holdout.evaluate(model, k)

    # One B matrix at a time: only the best is kept for the blend.
    best_weights, ease_params, ease_metrics = None, {}, {key: np.nan}
    for dropout, l2 in itertools.product(DROPOUT, EASE_L2):
        weights = item_item_weights(holdout.train, l2, dropout)
        params, metrics = trial("ease", weights, l2=l2, dropout=dropout)
        if best_weights is None or _or_worst(metrics[key]) > _or_worst(ease_metrics[key]):
            best_weights, ease_params, ease_metrics = weights, params, metrics
    blend = [trial("blend", best_weights, **ease_params, item_weight=w) for w in BLEND_WEIGHTS]
    blend_params, blend_metrics = max(blend, key=lambda result: _or_worst(result[1][key]))
    candidates = {
        "taste": {"params": {}, "metrics": taste_metrics},
        "ease": {"params": ease_params, "metrics": ease_metrics},
        "blend": {"params": blend_params, "metrics": blend_metrics},
    }
    # max keeps the first of equal values: the simpler candidate wins a tie.
    choice = max(CANDIDATES, key=lambda name: _or_worst(candidates[name]["metrics"][key]))
    log(
        "served ranker: "
        + ", ".join(f"{n} {_or_worst(c['metrics'][key]):.4f}" for n, c in candidates.items())
        + f" -> {choice}"
    )
    return choice, {"taste": taste.params, **candidates[choice]["params"]}, candidates


def _or_worst(value: float) -> float:
    return -np.inf if np.isnan(value) else value


def build_served(
    data: Interactions, choice: str, params: dict, taste: TasteModel | None = None
) -> ServedModel:
    """The chosen candidate fitted on `data`; `taste`, its taste model (`params["taste"]`)
    fitted on `data` already, when there is one."""
    rest = {name: value for name, value in params.items() if name != "taste"}
    if taste is None:
        taste = TasteModel(**params["taste"]).fit(data)
    return ServedModel(taste, choice, **rest).fit(data)


def fit_served_model(
    data: Interactions, seed: int = 42, k: int = 10, max_customers: int = 20_000, log: Log = _silent
) -> tuple[ServedModel, dict]:
    """Choose the served ranker on a random validation split of `data`, then fit it on all.

    Raises NotTrainable when too few customers have held-out redemptions to validate on.

    The validation metrics hold every candidate's and popularity's scores on the same
    split (see `ranking_quality`).
    """
    holdout = HoldOut.split(data, "random", seed, max_customers, VALIDATION_SHARE)
    if holdout.customers.size < MIN_VALIDATION_CUSTOMERS:
        raise NotTrainable(
            f"{len(data.redemptions):,} redemptions leave {holdout.customers.size} customers "
            f"to validate on, fewer than the {MIN_VALIDATION_CUSTOMERS} a ranker needs"
        )
    choice, params, candidates = choose_served(holdout, k, seed, log)
    popularity = holdout.evaluate(Popularity().fit(holdout.train), k)
    model = build_served(data, choice, params)
    validation = {
        "k": k,
        "customers": int(holdout.customers.size),
        "train_rows": holdout.train_rows,
        "validation_rows": holdout.test_rows,
        "served": choice,
        "params": params,
        "served_model": candidates[choice]["metrics"],
        "candidates": candidates,
        "popularity": popularity,
    }
    validation["lift_over_popularity"] = lift_over_popularity(validation)
    return model, validation


def validation_table(validation: dict) -> pd.DataFrame:
    """Every served candidate beside popularity: validation nDCG@k, lift and the choice."""
    key = f"ndcg@{validation['k']}"
    rows = [
        {
            "candidate": name,
            "params": json.dumps(candidate["params"]),
            key: candidate["metrics"][key],
            "served": name == validation["served"],
        }
        for name, candidate in validation["candidates"].items()
    ]
    rows.append(
        {"candidate": "popularity (baseline)", "params": "{}", key: validation["popularity"][key]}
    )
    frame = pd.DataFrame(rows)
    frame["lift_over_popularity"] = frame[key] / validation["popularity"][key]
    return frame
