"""`python -m reward_assets COMMAND ...`: the same as the `reward-assets` command."""

import sys

from reward_assets.cli import main

sys.exit(main())
