"""Ranking metrics against hand-computed values (binary relevance, k = 3)."""

import math

import numpy as np
import pytest

from reward_assets.recommend.metrics import (
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)


def log2(x: float) -> float:
    return math.log2(x)


# Customer a: hits at positions 1 and 3, 2 relevant (fewer than k).
# Customer b: a hit at position 2, 4 relevant (more than k).
# Customer c: no hit, 1 relevant.
HITS = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=bool)
RELEVANT = np.array([2, 4, 1])


def test_precision_divides_hits_by_k():
    assert precision_at_k(HITS, RELEVANT) == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)


def test_recall_divides_hits_by_all_relevant():
    assert recall_at_k(HITS, RELEVANT) == pytest.approx((2 / 2 + 1 / 4 + 0) / 3)


def test_ndcg_ideal_counts_min_k_relevant():
    a = (1 / log2(2) + 1 / log2(4)) / (1 / log2(2) + 1 / log2(3))
    b = (1 / log2(3)) / (1 / log2(2) + 1 / log2(3) + 1 / log2(4))
    assert ndcg_at_k(HITS, RELEVANT) == pytest.approx((a + b + 0) / 3)


def test_map_averages_precision_at_hits_over_min_k_relevant():
    a = (1 / 1 + 2 / 3) / 2
    b = (1 / 2) / 3
    assert map_at_k(HITS, RELEVANT) == pytest.approx((a + b + 0) / 3)


def test_perfect_ranking_with_fewer_relevant_than_k():
    hits = np.array([[1, 0, 0], [1, 1, 0]], dtype=bool)
    metrics = ranking_metrics(hits, np.array([1, 2]))
    assert metrics["ndcg@3"] == pytest.approx(1.0)
    assert metrics["map@3"] == pytest.approx(1.0)
    assert metrics["recall@3"] == pytest.approx(1.0)
    assert metrics["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)


def test_no_hits_scores_zero_everywhere():
    metrics = ranking_metrics(np.zeros((2, 5), dtype=bool), np.array([1, 3]))
    assert metrics == {"precision@5": 0.0, "recall@5": 0.0, "ndcg@5": 0.0, "map@5": 0.0}


def test_customers_without_relevant_items_are_rejected():
    with pytest.raises(ValueError, match="at least one relevant"):
        ndcg_at_k(np.zeros((1, 3), dtype=bool), np.array([0]))
    with pytest.raises(ValueError, match="no customers"):
        ndcg_at_k(np.zeros((0, 3), dtype=bool), np.zeros(0, dtype=int))
