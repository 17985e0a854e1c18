"""`python -m reward_assets.evaluate` (and `reward-assets evaluate`): the offline
evaluations. `churn ...` evaluates churn (`churn/evaluate.py`); anything else is the
ranking evaluation as before (`recommend/evaluate.py`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["churn"]:
        from reward_assets.churn.evaluate import main as churn

        return churn(args[1:])
    from reward_assets.recommend.evaluate import main as ranking

    return ranking(args)


if __name__ == "__main__":
    sys.exit(main())
