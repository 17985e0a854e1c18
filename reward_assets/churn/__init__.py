"""Churn: features as of a date, the model, its scores and drivers."""
