"""Drawing helpers that several experiments' figures share (matplotlib, imported by `plot`s only)."""
from typing import Any

import numpy as np


def errorbar(ax, x, s: dict[str, np.ndarray], **kwargs: Any):
  """Means with their 95% CIs as error bars (a NaN CI, n < 2, draws the mean alone)."""
  low = np.nan_to_num(s["mean"] - s["ci_low"])
  high = np.nan_to_num(s["ci_high"] - s["mean"])
  return ax.errorbar(x, s["mean"], yerr=[low, high], capsize=3, marker="o", ms=4, **kwargs)


def band(ax, x, s: dict[str, np.ndarray], label: str) -> None:
  """A mean line with its 95% CI band (where the CI exists)."""
  line, = ax.plot(x, s["mean"], marker="o", ms=3, label=label)
  ax.fill_between(x, s["ci_low"], s["ci_high"], color=line.get_color(), alpha=0.2)
