# The project's image: every service of docker-compose.yml that runs Python uses it (the
# user-code gRPC server and its runs, dagster-webserver, dagster-daemon, the API, init).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home

RUN useradd --create-home --uid 10001 reward

WORKDIR /app

# The install CI runs (`make install`) without the dev extra (pytest, ruff, locust,
# schemathesis: test and benchmark tools, not the product's): a virtual environment, pip
# upgraded, then the project from pyproject.toml at the versions of constraints.txt, the
# lock CI installs from, so every package the image shares with CI is the very version the
# tests ran against. The package is an empty stand-in at this point, so a code change
# reuses this layer instead of reinstalling every dependency.
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir reward_assets && touch reward_assets/__init__.py \
    && python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/python -m pip install --no-cache-dir -c constraints.txt -e '.[celery]'

COPY reward_assets ./reward_assets
COPY dbt_like_sql ./dbt_like_sql
COPY scripts ./scripts
COPY deploy ./deploy
COPY deploy/dagster.yaml deploy/workspace.yaml $DAGSTER_HOME/

# Named volumes mounted on these two folders start with their owner: the non-root user.
RUN mkdir -p /app/data $DAGSTER_HOME/storage \
    && chown -R reward:reward /app/data $DAGSTER_HOME

USER reward
