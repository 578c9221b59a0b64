"""Checks of the data settings a user types, with messages that name both the API and the CLI spelling."""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import CdpruneError

DEFAULT_VAL_FRACTION = 0.2  # share of each class a folder of class folders holds out for testing


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """`input_shape` as a (C, H, W) tuple of ints with C = 1 or 3, else a CdpruneError."""
    try:
        shape = tuple(int(v) for v in input_shape)
        exact = all(int(v) == v and not isinstance(v, bool) for v in input_shape)
    except (TypeError, ValueError):
        shape, exact = (), False
    if not exact or len(shape) != 3 or shape[0] not in (1, 3) or min(shape[1:]) < 1:
        raise CdpruneError(f"input_shape (--input C,H,W) must be 3 positive integers with C = 1 (grayscale) or "
                           f"3 (RGB), got {input_shape!r}")
    return shape


def check_val_fraction(val_fraction: float) -> float:
    """A fraction strictly between 0 and 1, else a CdpruneError."""
    try:
        value = float(val_fraction)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value < 1.0:
        raise CdpruneError(f"val_fraction (--val-fraction) must be a number between 0 and 1 (exclusive), "
                           f"got {val_fraction!r}")
    return value
