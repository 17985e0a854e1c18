"""`reward-assets api` (what `make api` runs): uvicorn on API_HOST:API_PORT."""

import sys

import uvicorn

from reward_assets.settings import Settings


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("reward-assets api takes no arguments: set API_HOST and API_PORT", file=sys.stderr)
        return 2
    settings = Settings()
    uvicorn.run("reward_assets.api.main:app", host=settings.api_host, port=settings.api_port)
    return 0
