"""Helpers for sweep files: lists of override dicts, combined as big_vision's sweeps combine them.

  sweep("loss.label_smoothing", [0.0, 0.1])   -> [{"loss.label_smoothing": 0.0}, {... 0.1}]
  product(A, B)                               -> every a | b, A's order outermost
  zip_(A, B)                                  -> a_i | b_i, pairwise (same lengths)

Keys are config fields without the `config.` prefix. The special key `config` chooses the config
file (with its `:variant`) for that point instead of the sweep's base config.
"""
import itertools


def sweep(field: str, values) -> list[dict]:
  """One axis: `[{field: v} for v in values]`."""
  return [{field: value} for value in values]


def _merged(dicts) -> dict:
  merged = {}
  for d in dicts:
    clash = set(merged) & set(d)
    if clash:
      raise ValueError(f"sweep axes both set {sorted(clash)[0]!r}")
    merged.update(d)
  return merged


def product(*axes: list[dict]) -> list[dict]:
  """The Cartesian product of the axes, each point the union of one dict from every axis."""
  return [_merged(points) for points in itertools.product(*axes)]


def zip_(*axes: list[dict]) -> list[dict]:
  """Points taken together by position: `zip_(A, B)[i] = A[i] | B[i]`; the axes must be as long."""
  lengths = {len(axis) for axis in axes}
  if len(lengths) > 1:
    raise ValueError(f"zip_ needs axes of one length, got lengths {[len(a) for a in axes]}")
  return [_merged(points) for points in zip(*axes)]


def concat(*axes: list[dict]) -> list[dict]:
  """The points of every axis, one after another (a union of sub-sweeps)."""
  return [point for axis in axes for point in axis]
