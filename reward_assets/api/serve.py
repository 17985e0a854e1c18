"""`reward-assets api` (what `make api` runs): uvicorn on API_HOST:API_PORT."""

import sys

import uvicorn

from reward_assets.email.unsubscribe import UnsafeSecret, signing_secret
from reward_assets.settings import Settings


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("reward-assets api takes no arguments: set API_HOST and API_PORT", file=sys.stderr)
        return 2
    settings = Settings()
    try:
        # The app refuses it too; here the operator gets the reason without a traceback.
        signing_secret(settings)
    except UnsafeSecret as error:
        print(f"reward-assets api: {error}", file=sys.stderr)
        return 1
    uvicorn.run("reward_assets.api.main:app", host=settings.api_host, port=settings.api_port)
    return 0
