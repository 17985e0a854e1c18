"""Reward recommendations: rankers, the taste model, sets, cold start, evaluation."""
