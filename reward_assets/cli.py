"""`reward-assets`: the one command an operator needs besides `make` and the Dagster UI.

    reward-assets seed --output ./data/ [...]      synthetic landing data with its truth
    reward-assets simulate-day --data ./data/      one more day of it, new sign-ups included
    reward-assets run [--start D] [--end D]        every asset on the configured stores
    reward-assets evaluate [churn] --data DIR [...] offline evaluation of the rankers (or churn)
    reward-assets email status|uncertain|resolve|pause|resume|explain
    reward-assets api                              the HTTP API on API_HOST:API_PORT

Each command's own `--help` lists its options. Modules are imported only for the command
that runs, so `reward-assets email status` does not pay for Dagster or the models.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# command -> (module, function taking argv and returning the exit code, one-line help)
COMMANDS = {
    "seed": ("reward_assets.seed.cli", "seed", "synthetic landing data and its ground truth"),
    "simulate-day": ("reward_assets.seed.cli", "simulate_day", "land one more day of data"),
    "run": ("reward_assets.pipeline", "main", "materialise every asset and print a summary"),
    "evaluate": ("reward_assets.evaluate", "main", "offline evaluation: rankers, or churn"),
    "email": (
        "reward_assets.email.ctl",
        "main",
        "outbox status, uncertain sends, kill switch, lineage",
    ),
    "api": ("reward_assets.api.serve", "main", "serve the HTTP API"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "usage: reward-assets COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"reward-assets: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, function, _ = COMMANDS[name]
    return getattr(importlib.import_module(module), function)(rest) or 0
