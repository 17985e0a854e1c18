"""The learning logic: embeddings, ranking, churn, engagement and send times.

Plain Python with no Dagster import; the assets in `defs/ml` and the API call it.
"""
