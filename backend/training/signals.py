"""A stop request by SIGTERM (what a job scheduler sends before it kills a job): while active, the
signal only sets a flag, and the training loop saves its state and ends at the next step boundary."""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Optional


class StopRequest:
    """Context manager: SIGTERM sets :attr:`requested` instead of ending the process. Outside the
    main thread (where Python cannot install handlers) it does nothing."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
        self.signals = signals
        self.requested: Optional[str] = None  # the name of the signal received, None until then
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
