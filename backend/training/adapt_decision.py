"""What ``adapt`` makes of k corrections, decided once for the command (backend.training.adapt_command)
and the benchmark (backend.evaluation.adapt_run), so that the benchmark scores what the command publishes.

1. Refit the post-network settings on the corrections (backend.training.style.fit_style).
2. With head training and two corrections or more: when the refit misses the held-out bar the head
   trains under the model's own settings (``StyleFit.kept_base``); unless the settings use the geodesic
   falloff alone (the network unused), leave-one-correction-out chooses the training steps
   (backend.training.adapt.loo_steps, given as ``loo``).
3. The version is refused when its held-out cost (the stop rule's at the chosen steps, else the refit's
   leave-one-out) is not below ``style.MAX_HELD_OUT_COST``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from backend.training.style import MAX_HELD_OUT_COST, RigOutputs, StyleFit, StyleSettings, fit_style

if TYPE_CHECKING:  # backend.training.adapt imports torch; the decision itself does not need it
    from backend.training.adapt import LooSteps

#: Why the head was not trained (``Decision.skipped``).
SKIP_OFF, SKIP_ONE, SKIP_GEODESIC = "off", "one correction", "geodesic falloff alone"


@dataclass
class Decision:
    """refit: the settings refit as made; fit: the fit the version builds on (the base's settings when
    the refit missed the bar and the head trains); loo: the head's stop rule (None when not tried);
    skipped: why it was not tried (None when it was); steps: head training steps (0: none);
    settings: the version's post-network settings; held_out_cost: its leave-one-out cost (1 = the base;
    None with one correction and no head)."""

    refit: StyleFit
    fit: StyleFit
    loo: Optional["LooSteps"]
    skipped: Optional[str]
    steps: int
    settings: StyleSettings
    held_out_cost: Optional[float]

    @property
    def refused(self) -> bool:
        """The held-out corrections do not show the version :data:`~backend.training.style.MIN_GAIN`
        better than the base: ``adapt`` publishes nothing and the base model stays."""
        return self.held_out_cost is not None and self.held_out_cost >= MAX_HELD_OUT_COST

    @property
    def unchanged(self) -> bool:
        """Nothing differs from the base model: no head training, the base's settings."""
        return self.steps == 0 and self.settings == self.refit.reference

    def kept(self) -> StyleSettings:
        """The settings the studio ends up with: the base's when the version is refused."""
        return self.refit.reference if self.refused else self.settings


def decide(outs: Sequence[RigOutputs], reference: StyleSettings, grid: list, train: bool,
           loo: Optional[Callable[[StyleFit], "LooSteps"]]) -> Decision:
    """Decide the adaptation to the corrections' ``outs`` (base model outputs, one per correction).
    ``loo(fit)``: the head's leave-one-correction-out stop rule under ``fit`` (a LooSteps), called only
    when the head may train (None is allowed when ``train`` is False)."""
    refit = fit_style(outs, reference, grid)
    fit, skipped = refit, None
    if not train:
        skipped = SKIP_OFF
    elif len(outs) < 2:
        skipped = SKIP_ONE
    else:
        if refit.refused:
            fit = refit.kept_base()
        if fit.settings.geodesic >= 1.0:
            skipped = SKIP_GEODESIC
    if skipped is not None:
        return Decision(refit, fit, None, skipped, 0, fit.settings, fit.loo_cost)
    found = loo(fit)
    best = int(found.best)
    settings = fit.settings
    if best > 0:
        from backend.training.adapt import head_settings

        settings = head_settings(fit.settings)
    return Decision(refit, fit, found, None, best, settings, float(found.mean[best]))
