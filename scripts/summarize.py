#!/usr/bin/env python
"""A markdown table of finished runs, seeds pooled: mean ± std over runs that differ only in seed.

  python scripts/summarize.py runs/mnist1d_study/*
"""
import collections
import json
import pathlib
import sys

import numpy as np


def method(config: dict) -> str:
  """`CE`, or what was added to it: `LS 0.1 + Mixup 0.2`, prefixed by the label noise."""
  loss, noise = config["loss"], config["data"]["label_noise"]
  parts = [f"{name} {value}" for name, value in (
      ("LS", loss["label_smoothing"]), ("CP", loss["confidence_penalty"]),
      ("Mixup", config["mixup"]["alpha"]), ("CutMix", config["cutmix"]["alpha"])) if value]
  name = " + ".join(parts) or "CE"
  return f"{noise['rate']:.0%} {noise['kind']} noise: {name}" if noise["rate"] else name


def main(workdirs: list[str]) -> None:
  groups = collections.defaultdict(list)
  for workdir in workdirs:
    path = pathlib.Path(workdir) / "results.json"
    if not path.exists():
      continue
    results = json.loads(path.read_text())
    config = results["config"]
    key = (config["data"]["name"], config["model"]["name"], method(config))
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
