"""Seed a data folder with synthetic landing data and its ground truth (the product brief's
command; the same as `reward-assets seed`, whose --help lists every option).

    python scripts/seed_data.py --output ./data/ [--customers 10000] [--days 180] ...
"""

import sys

from reward_assets.seed.cli import seed

if __name__ == "__main__":
    sys.exit(seed())
