"""argparse types that check a number's range, so a bad option fails before any work."""
from __future__ import annotations

import argparse
import math
from typing import Callable


def bounded(convert: type, low: float, high: float = math.inf, what: str = "a number",
            open_high: bool = False) -> Callable[[str], float]:
    """An argparse type: ``convert(text)`` in [low, high] (``open_high``: [low, high)); ``what``
    describes it in the type's docstring."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            kind = "a whole number" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None
        below = value < high if open_high else value <= high
        if not (math.isfinite(value) and low <= value and below):
            raise argparse.ArgumentTypeError(f"must be {range_text(low, high, open_high)}, got {text}")
        return value

    parse.__doc__ = f"argparse type: {what} {range_text(low, high, open_high)}."
    return parse


def range_text(low: float, high: float, open_high: bool = False) -> str:
    """'>= 1' for an open-ended range, else '[0, 1]' or '[0, 1)'."""
    if math.isinf(high):
        return f">= {low:g}"
    return f"in [{low:g}, {high:g}{')' if open_high else ']'}"
