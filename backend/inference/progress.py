"""Progress reports from a long prediction, and the way a caller stops one.

A caller passes ``progress(stage, fraction)`` to ``Predictor.predict``; the runtime calls it between
its steps (and between the columns of the diffusion solve and the row chunks of the clean-up) with
a short stage name and the share of the whole prediction done, in [0, 1]. To stop the run the
callback raises :class:`Cancelled` (or anything else): the exception leaves ``predict`` and nothing
has been written anywhere.
"""
from __future__ import annotations

from typing import Callable, Optional

#: progress(stage, fraction done in [0, 1])
ProgressFn = Callable[[str, float], None]

#: Where each step of ``Predictor.predict`` starts, as a share of the whole run; the last step
#: ends at 1. Chosen from profiles at 50 000 - 200 000 vertices (docs/runtime.md).
STAGES: dict[str, float] = {
    "checking": 0.0,
    "simplifying": 0.04,
    "features": 0.08,
    "network": 0.35,
    "transfer": 0.55,
    "post-processing": 0.60,
}


class Cancelled(Exception):
    """The caller stopped the prediction (raised by its progress callback)."""


def report(progress: Optional[ProgressFn], stage: str) -> None:
    """Tell ``progress`` (when given) that ``stage`` of :data:`STAGES` starts."""
    if progress is not None:
        progress(stage, STAGES[stage])


def within(progress: Optional[ProgressFn], stage: str, end: str | None) -> Optional[Callable[[float], None]]:
    """A callback for the share (0-1) done inside ``stage``, reported to ``progress`` between the
    start of ``stage`` and the start of ``end`` (None: the end of the run); None without ``progress``."""
    if progress is None:
        return None
    lo = STAGES[stage]
    hi = 1.0 if end is None else STAGES[end]
    return lambda share: progress(stage, lo + (hi - lo) * min(max(float(share), 0.0), 1.0))
