"""Drawing helpers that several experiments' figures share (matplotlib, imported by `plot`s only)."""
from typing import Any

import matplotlib
import matplotlib.colors
import matplotlib.patches
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


# --- Reliability diagrams (Guo et al. 2017, Fig. 1), shared by scripts/plot_calibration.py and the
# calibration experiment's reliability.png.

# A bin of fewer examples than this is too small to judge: its accuracy is a binomial proportion
# whose standard error is sqrt(p (1 - p) / n) <= 0.5 / sqrt(n), i.e. up to 0.09 at n = 30 (a 95%
# interval of about +-0.18, a fifth of the axis), and a bin of 1-3 examples reads 0 or 1. Such a
# bin is drawn grey and hatched, and no line or point passes through it.
MIN_COUNT = 30
SMALL_COLOR = (0.7, 0.7, 0.7)
SMALL_HATCH = "////"
COUNTS_YLABEL = "fraction of\nexamples\n(count above)"


def small_bins(counts, min_count: int = MIN_COUNT) -> np.ndarray:
  """Which bins hold fewer than `min_count` examples (empty ones included)."""
  return np.asarray(counts, np.float64) < min_count


def _values(bins: dict[str, Any], name: str) -> np.ndarray:
  return np.asarray([np.nan if v is None else v for v in bins[name]], np.float64)


def reliability(ax, bins: dict[str, Any], *, counts_ax=None, scaled: dict[str, Any] | None = None,
                points: bool = False, min_count: int = MIN_COUNT, color: Any = "C0",
                min_alpha: float = 0.08) -> dict[str, Any]:
  """One reliability diagram of results.json-style `bins` (edges, mean_confidence, accuracy, count).

  Draws on `ax`: a bar per bin at its accuracy (opacity: its count relative to the fullest bin, at
  least `min_alpha`), grey and hatched where the bin has fewer than `min_count` examples; the
  diagonal; with `points`, each judged bin's (mean confidence, accuracy); with `scaled` (the same
  run's temperature-scaled bins), their accuracy as a step line, broken (NaN) at each of *their*
  bins that is too small. On `counts_ax`, if given: each bin's share of the examples as a bar, with
  its count written above it (set a y-margin there, or share it, for the text's headroom).

  Returns what it drew: `small` (bool per bin), `bars`, `line` (the scaled step line or None; its
  y data has one value per edge), `scaled_small`, `count_bars` and `count_texts` (one per bin).
  """
  edges = np.asarray(bins["edges"], np.float64)
  width = np.diff(edges)
  counts = np.asarray(bins["count"], np.float64)
  accuracy = _values(bins, "accuracy")
  small = small_bins(counts, min_count)
  alpha = np.maximum(counts / max(counts.max(), 1.0), min_alpha)
  rgb = np.asarray(matplotlib.colors.to_rgb(color))
  faces = [(*(SMALL_COLOR if s else rgb), a) for s, a in zip(small, alpha)]
  edge_colors = [SMALL_COLOR if s else rgb for s in small]
  bars = ax.bar(edges[:-1], np.nan_to_num(accuracy), width, align="edge", color=faces,
                edgecolor=edge_colors, linewidth=0.6)
  for bar, s in zip(bars, small):
    if s:
      bar.set_hatch(SMALL_HATCH)
  # Legend entries for both kinds of bar (empty patches: nothing drawn).
  ax.add_patch(matplotlib.patches.Rectangle(
      (0, 0), 0, 0, facecolor=(*rgb, 0.6), edgecolor=rgb, linewidth=0.6,
      label="accuracy per bin (opacity: its size)"))
  ax.add_patch(matplotlib.patches.Rectangle(
      (0, 0), 0, 0, facecolor=(*SMALL_COLOR, min_alpha), edgecolor=SMALL_COLOR, hatch=SMALL_HATCH,
      linewidth=0.6, label=f"bin of < {min_count} examples: too few to judge"))
  ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
  drawn = {"small": small, "bars": bars, "line": None, "scaled_small": None}
  if points:
    judged = ~small
    ax.plot(_values(bins, "mean_confidence")[judged], accuracy[judged], "C3.", ms=4,
            label="(mean confidence, accuracy)")
  if scaled is not None:
    scaled_small = small_bins(scaled["count"], min_count)
    y = np.where(scaled_small, np.nan, _values(scaled, "accuracy"))
    # One value per edge (the last repeated), so that the last bin has its own step too.
    drawn["line"], = ax.step(edges, np.append(y, y[-1]), where="post", color="#DD8452",
                             label="after temperature scaling")
    drawn["scaled_small"] = scaled_small
  if counts_ax is not None:
    share = counts / max(counts.sum(), 1.0)
    drawn["count_bars"] = counts_ax.bar(
        edges[:-1], share, width, align="edge", edgecolor="white", linewidth=0.5,
        color=[SMALL_COLOR if s else "#55A868" for s in small])
    drawn["count_texts"] = [
        counts_ax.annotate(f"{c:.0f}", (left + w / 2, s), xytext=(0, 1.5),
                           textcoords="offset points", ha="center", va="bottom", rotation=90,
                           fontsize=5.5, color=SMALL_COLOR if tiny else "0.15")
        for left, w, s, c, tiny in zip(edges[:-1], width, share, counts, small)]
    counts_ax.set_ymargin(0.6)
  return drawn


def label_grid_cell(ax, counts_ax, *, first_column: bool, xlabel: str, ylabel: str) -> None:
  """Axis labels of one diagram-over-counts cell of a grid with shared axes: the x label under the
  counts, the y labels only in the first column."""
  ax.tick_params(labelbottom=False)
  counts_ax.set_xlabel(xlabel)
  if first_column:
    ax.set_ylabel(ylabel)
    counts_ax.set_ylabel(COUNTS_YLABEL, fontsize=9)
  else:
    ax.tick_params(labelleft=False)
    counts_ax.tick_params(labelleft=False)
