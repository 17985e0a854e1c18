"""`python -m reward_assets.api` (what `make api` runs): uvicorn on API_HOST:API_PORT."""

import uvicorn

from reward_assets.settings import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run("reward_assets.api.main:app", host=settings.api_host, port=settings.api_port)


if __name__ == "__main__":
    main()
