"""The log of a training run: JSONL records (``log.jsonl``) and TensorBoard scalars (``tb/``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.io.atomic import atomic_path


class RunLog:
    """Rank-0 JSONL log + TensorBoard scalars (a no-op on other ranks)."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.path = out / "log.jsonl"
        self.tb_dir = out / "tb"
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.tb_dir))

    def rewind(self, step: int) -> None:
        """Forget what was logged after ``step`` (a resumed run logs those steps again): the JSONL
        records of later steps are dropped, and TensorBoard purges its later scalars."""
        if not self.enabled:
            return
        if self.path.is_file():
            kept = [ln for ln in self.path.read_text().splitlines(keepends=True)
                    if ln.strip() and json.loads(ln).get("step", 0) <= step]
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(kept))
        if self.tb is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb.close()
            self.tb = SummaryWriter(str(self.tb_dir), purge_step=step + 1)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record``; its numbers (but step, epoch, stage) also go to TensorBoard under its kind."""
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None and "step" in record:
            prefix = record.get("kind", "x")
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch", "stage"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
