"""Decisions per customer: who to contact, with what, and when. No Dagster import."""
