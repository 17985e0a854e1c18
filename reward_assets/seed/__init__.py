"""The synthetic data generator (scripts and tests only; the product never imports it)."""
