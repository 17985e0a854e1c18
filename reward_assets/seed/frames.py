"""`Frame`, the generator's table of rows, and the row operations the stages share.

A frame is a dict of aligned numpy columns, one row per index: draws and the simulation
produce frames, and landing turns them into Arrow tables in the contract's columns.
"""

from __future__ import annotations

import numpy as np

Frame = dict[str, np.ndarray]


def concat(frames: list[Frame]) -> Frame:
    return {k: np.concatenate([f[k] for f in frames]) for k in frames[-1]}


def take(frame: Frame, index: np.ndarray | slice) -> Frame:
    return {k: v[index] for k, v in frame.items()}
