#!/usr/bin/env python
"""A markdown table of finished runs, seeds pooled: mean ± std over runs that differ only in seed.

  python scripts/summarize.py runs/mnist1d_study/*
"""
import collections
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from ls_jax.metrics_writer import method_name  # pylint: disable=g-import-not-at-top


def main(workdirs: list[str]) -> None:
  groups = collections.defaultdict(list)
  for workdir in workdirs:
    path = pathlib.Path(workdir) / "results.json"
    if not path.exists():
      continue
    results = json.loads(path.read_text())
    config = results["config"]
    key = (config["data"]["name"], config["model"]["name"], method_name(config))
    groups[key].append(results)
  print("| data | model | method | seeds | test acc % | NLL | ECE | mean conf | T (val) "
        "| ECE after TS | NLL after TS |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for (data, model, name), runs in groups.items():
    def stat(get, scale=1.0, digits=3):
      values = np.array([get(r) for r in runs]) * scale
      return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"
    print(f"| {data} | {model} | {name} | {len(runs)} | {stat(lambda r: r['accuracy'], 100, 1)} "
          f"| {stat(lambda r: r['nll'])} | {stat(lambda r: r['ece'])} "
          f"| {stat(lambda r: r['mean_confidence'])} | {stat(lambda r: r['temperature'], 1, 2)} "
          f"| {stat(lambda r: r['temperature_scaled']['ece'])} "
          f"| {stat(lambda r: r['temperature_scaled']['nll'])} |")


if __name__ == "__main__":
  main(sys.argv[1:])
