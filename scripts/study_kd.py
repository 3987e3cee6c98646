#!/usr/bin/env python
"""Issue 9's studies: summary.md, summary.csv and a PNG figure per study, from finished sweeps.

  python scripts/study_kd.py projection --teachers runs/kd_teachers --digits runs/projection_digits
  python scripts/study_kd.py distillation --teachers runs/kd_teachers --students runs/kd_students
  python scripts/study_kd.py information --teachers runs/kd_teachers
  python scripts/study_kd.py extrapolation --teachers runs/kd_teachers
  python scripts/study_kd.py all --teachers ... --students ... --digits ...

Each study writes `<out>/<study>/` (default `docs/results/<study>/`). The runs come from
configs/sweeps/kd_teachers.py, kd_students.py and projection_digits.py (scripts/reproduce_kd.sh);
the analysis is `ls_jax.experiments.kd_study` on top of `ls_jax.experiments.analysis`. Seeds pair runs throughout.
"""
import argparse
import csv
import math
import pathlib
import shlex
import sys
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from ls_jax.experiments import kd_study  # pylint: disable=g-import-not-at-top

STUDIES = ("projection", "distillation", "information", "extrapolation")
STAT_COLUMNS = ("n", "mean", "std", "ci_low", "ci_high", "seeds", "baseline", "n_paired", "diff",
                "diff_ci_low", "diff_ci_high", "p_value", "verdict", "unpaired_seeds")


# ------------------------------------------------------------------------------------------------
# Writing.


def _number(value: Any, digits: int = 4) -> str:
  if value == "" or value is None:
    return ""
  if isinstance(value, float):
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"
  return str(value)


def _interval(low: Any, high: Any) -> str:
  return "" if low == "" else f"[{_number(low)}, {_number(high)}]"


def markdown_table(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
  """Rows as a markdown table: the `keys` columns, then mean, CI and the paired difference."""
  lines = ["| " + " | ".join(keys) + " | n | mean [95% CI] | vs | Δ (paired) [95% CI] | p | "
           "verdict |", "|" + "---|" * (len(keys) + 6)]
  for r in rows:
    cells = [_number(r.get(k, ""), 3) if isinstance(r.get(k), float) else str(r.get(k, ""))
             for k in keys]
    diff = f"{_number(r['diff'])} {_interval(r['diff_ci_low'], r['diff_ci_high'])}".strip()
    note = f" (unpaired seeds: {r['unpaired_seeds']})" if r["unpaired_seeds"] else ""
    lines.append(f"| {' | '.join(cells)} | {r['n']} | {_number(r['mean'])} "
                 f"{_interval(r['ci_low'], r['ci_high'])} | {r.get('baseline', '')} | {diff} | "
                 f"{_number(r['p_value'], 3)} | {r['verdict']}{note} |")
  return lines + [""]


def write_study(out: pathlib.Path, title: str, header: list[str],
                tables: list[tuple[str, list[dict[str, Any]], list[str]]], figure) -> None:
  """`out/summary.md` (header, then one markdown table per entry), `out/summary.csv`, the PNG."""
  out.mkdir(parents=True, exist_ok=True)
  lines = [f"# {title}", "", *header, ""]
  csv_rows = []
  for heading, rows, keys in tables:
    lines += [f"## {heading}", ""] + markdown_table(rows, keys)
    csv_rows += [{"table": heading, **{k: r.get(k, "") for k in keys},
                  **{k: r.get(k, "") for k in STAT_COLUMNS}} for r in rows]
  figure_path = out / f"{out.name}.png"
  figure.tight_layout()
  figure.savefig(figure_path, dpi=120, bbox_inches="tight")
  plt.close(figure)
  lines += [f"![{title}]({figure_path.name})", ""]
  (out / "summary.md").write_text("\n".join(lines))
  fields = list(dict.fromkeys(k for r in csv_rows for k in r))
  with open(out / "summary.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(csv_rows)
  print(f"wrote {out / 'summary.md'}, {out / 'summary.csv'} and {figure_path}")


def provenance(runs: list[kd_study.Run]) -> list[str]:
  """The command and the machine the runs were trained on (results.json's environment)."""
  trained = sorted({r.results.get("environment", {}).get("cpu_model", "?") for r in runs})
  return [f"Command: `python scripts/study_kd.py {shlex.join(sys.argv[1:])}`",
          f"{len(runs)} runs, trained on: {', '.join(trained)}."]


def _band(ax, x, rows_by_x: list[dict[str, Any]], label: str) -> None:
  """A mean line with its 95% CI band (where the CI exists)."""
  means = np.array([r["mean"] for r in rows_by_x])
  low = np.array([r["ci_low"] if r["ci_low"] != "" else np.nan for r in rows_by_x], float)
  high = np.array([r["ci_high"] if r["ci_high"] != "" else np.nan for r in rows_by_x], float)
  line, = ax.plot(x, means, marker="o", ms=3, label=label)
  ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)


def _ls_label(a: float) -> str:
  return "CE" if a == 0.0 else f"LS {a:g}"


# ------------------------------------------------------------------------------------------------
# The studies.


def projection(args) -> None:
  families = [("MNIST-1D CNN", kd_study.read_runs(args.teachers))]
  if args.digits:
    families.append(("digits CNN", kd_study.read_runs(args.digits)))
  rows, panels, all_runs = [], [], []
  for family, runs in families:
    all_runs += runs
    groups = kd_study.by_label_smoothing(runs)
    shown = (0.0, args.figure_ls if args.figure_ls in groups else max(groups))
    figure_seed = min(set.intersection(*(set(groups[a]) for a in shown if a in groups)))
    values: dict[str, dict[float, dict[int, float]]] = {}
    for a, seeds in groups.items():
      for seed, run in seeds.items():
        model = kd_study.final_model(run.workdir)
        for split in ("train", "test"):
          x, labels = kd_study.split_arrays(run.config, split)
          found = kd_study.project(model, x, labels, args.classes)
          values.setdefault(f"plane, {split}", {}).setdefault(a, {})[seed] = found.plane_tightness
          values.setdefault(f"features, {split}", {}).setdefault(a, {})[seed] = (
              found.feature_tightness)
          if seed == figure_seed and a in shown:
            panels.append((family, a, split, seed, found))
    for space, by_a in values.items():
      rows += kd_study.compare_to_ce(by_a, None, model=family, tightness=space)
  columns = 4
  fig, axes = plt.subplots(len(families), columns, figsize=(3.2 * columns, 3.2 * len(families)),
                           squeeze=False)
  for i, (family, a, split, seed, found) in enumerate(panels):
    ax = axes[i // columns][i % columns]
    for k in args.classes:
      ax.scatter(*found.points[found.labels == k].T, s=3, alpha=0.5, label=f"class {k}")
    ax.scatter(*found.templates.T, marker="x", c="k", s=60, label="templates")
    ax.set_title(f"{family}, {_ls_label(a)}, {split} (seed {seed})", fontsize=8)
    ax.tick_params(labelsize=6)
  axes[0][0].legend(fontsize=6, markerscale=2)
  header = provenance(all_runs) + [
      "",
      f"Penultimate activations of classes {tuple(args.classes)} projected onto the plane through "
      "their three templates (`ls_jax.experiments.analysis.project_onto_template_plane`, final-layer bias "
      "folded in as Müller et al. 2019 do; Fig. 1 there). Tightness "
      "(`ls_jax.experiments.analysis.cluster_tightness`): mean distance to the own class centroid over mean "
      "distance between centroids, in the plane (the figure's three classes) and in the full "
      "penultimate space (every class). Lower is tighter. Δ is paired by seed with CE; the "
      "verdict names a direction only where the 95% CI excludes 0. The figure shows one seed.",
      "",
      "Published: Müller et al. 2019, Fig. 1 (CIFAR-10, CIFAR-100, ImageNet): with LS the "
      "clusters are tighter and equidistant from the other templates, on train and test."]
  write_study(args.out / "projection", "Penultimate-layer projections (Müller Fig. 1)", header,
              [("Cluster tightness", rows, ["model", "tightness", "label_smoothing"])], fig)


def distillation(args) -> None:
  teachers, students = kd_study.read_runs(args.teachers), kd_study.read_runs(args.students)
  rows = kd_study.distillation_rows(teachers, students)
  claims = kd_study.distillation_claims(rows)
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
  for ax, metric in zip(axes, ("accuracy", "ece")):
    cells = [r for r in rows if r["role"] == "student" and r["metric"] == metric
             and r["baseline"] == kd_study.NO_TEACHER]
    for a in sorted({r["label_smoothing"] for r in cells}):
      line = sorted((r for r in cells if r["label_smoothing"] == a), key=lambda r: r["temperature"])
      x = [r["temperature"] for r in line]
      diff = np.array([r["diff"] if r["diff"] != "" else np.nan for r in line], float)
      low = np.array([r["diff_ci_low"] if r["diff_ci_low"] != "" else np.nan for r in line], float)
      high = np.array([r["diff_ci_high"] if r["diff_ci_high"] != "" else np.nan for r in line],
                      float)
      ax.errorbar(x, diff, yerr=[diff - low, high - diff], marker="o", capsize=3,
                  label=f"teacher {_ls_label(a)}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("distillation temperature T")
    ax.set_ylabel(f"student {metric} − no-teacher student")
  axes[0].legend(fontsize=7)
  claim_lines = ["| source | claim | published | compared with | ours (paired 95% CI of student "
                 "accuracy) |", "|---|---|---|---|---|"] + [
      f"| {c['source']} | {c['claim']} | {c['published']} | {c['compared_with']} | {c['ours']} |"
      for c in claims]
  weights = sorted({s.config["distill"]["weight"] for s in students
                    if s.config["distill"]["teacher_workdir"]})
  header = provenance(teachers + students) + [
      "",
      "Teachers: MNIST-1D CNN with label smoothing a; students: MNIST-1D MLP trained with "
      f"`(1 - w) CE + w T^2 KL(teacher_T || student_T)`, w = {', '.join(map(str, weights))}, from "
      "the teacher of the same seed, or without a teacher. Test accuracy and ECE (15 bins). Δ is "
      "paired by seed; the verdict names a direction only where the 95% CI excludes 0.",
      "", "Published results beside ours:", "", *claim_lines]
  write_study(args.out / "distillation", "Distillation from CE and LS teachers", header,
              [("Teachers and students", rows,
                ["role", "metric", "label_smoothing", "temperature"])], fig)


def information(args) -> None:
  teachers = kd_study.read_runs(args.teachers)
  x, labels = kd_study.split_arrays(teachers[0].config, "train")
  x = x[kd_study.balanced_examples(labels, args.class_pair, args.examples)]
  groups = kd_study.by_label_smoothing(teachers)
  curves = {a: {seed: kd_study.information_over_training(
      run.workdir, x, args.class_pair, num_draws=args.draws, max_shift=args.max_shift,
      noise_std=args.noise_std) for seed, run in seeds.items()} for a, seeds in groups.items()}
  steps = sorted(set.intersection(*(set(curve) for by_seed in curves.values()
                                     for curve in by_seed.values())))
  rows = []
  for step in steps:
    rows += kd_study.compare_to_ce({a: {seed: c[step] for seed, c in by_seed.items()}
                                    for a, by_seed in curves.items()}, None, step=step)
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for a in curves:
    _band(ax, steps, [r for r in rows if r["label_smoothing"] == a], _ls_label(a))
  ax.axhline(math.log(args.examples), color="grey", ls=":", lw=0.8, label="log N (ceiling)")
  ax.axhline(math.log(2), color="grey", ls="--", lw=0.8, label="log 2 (class only)")
  ax.set_xlabel("training step")
  ax.set_ylabel("I(X; z_a − z_b) estimate, nats")
  ax.legend(fontsize=7)
  header = provenance(teachers) + [
      "",
      "Müller et al. 2019 §4.1's estimator (`ls_jax.experiments.analysis.gaussian_mutual_information`): X is "
      f"one of N = {args.examples} training examples ({args.examples // 2} of each of classes "
      f"{args.class_pair[0]} and {args.class_pair[1]}, the first in the training split), Y the "
      f"teacher's logit difference z_{args.class_pair[0]} − z_{args.class_pair[1]} on L = "
      f"{args.draws} perturbed copies of each, p(y|x) Gaussian with a per-example mean and a "
      f"pooled variance. The perturbation (our configs have no augmentation; Müller used the "
      f"training augmentation): a circular shift by a uniform integer in [−{args.max_shift}, "
      f"{args.max_shift}] samples plus Gaussian noise of std {args.noise_std:g} (the data std is "
      "about 1), the same draws for every checkpoint and teacher. The estimate lies in [0, log N]; "
      "log 2 is what the class alone carries. Δ is paired by seed with the CE teacher at the same "
      "step.",
      "",
      "Published: Müller et al. 2019, Fig. 7 (CIFAR-10 ResNet-56): the estimate falls during "
      "training with LS and stays higher without."]
  write_study(args.out / "information", "Information about the input in the logits over training",
              header, [("MI estimate (nats) by step", rows, ["step", "label_smoothing"])], fig)


def extrapolation(args) -> None:
  teachers = kd_study.read_runs(args.teachers)
  x, labels = kd_study.split_arrays(teachers[0].config, "test")
  x, labels = x[:args.attack_examples], labels[:args.attack_examples]
  values: dict[str, dict[float, dict[int, float]]] = {}
  for a, seeds in kd_study.by_label_smoothing(teachers).items():
    for seed, run in seeds.items():
      model = kd_study.final_model(run.workdir)
      found = {**kd_study.extrapolation(model, x, args.scales),
               **kd_study.attack_accuracies(model, x, labels, args.epsilons,
                                            pgd_steps=args.pgd_steps)}
      for probe, value in found.items():
        values.setdefault(probe, {}).setdefault(a, {})[seed] = value
  confidence = [r for p in values if p.startswith(("scale", "noise"))
                for r in kd_study.compare_to_ce(values[p], None, probe=p)]
  attacks = [r for p in values if not p.startswith(("scale", "noise"))
             for r in kd_study.compare_to_ce(values[p], "higher", probe=p)]
  fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
  for a in sorted({r["label_smoothing"] for r in confidence}):
    mine = {r["probe"]: r for r in confidence + attacks if r["label_smoothing"] == a}
    _band(axes[0], args.scales, [mine[f"scale={s:g}"] for s in args.scales], _ls_label(a))
    axes[0].errorbar([2 * max(args.scales)], [mine["noise"]["mean"]], fmt="s",
                     color=axes[0].lines[-1].get_color())
    for ax, attack in zip(axes[1:], ("fgsm", "pgd")):
      _band(ax, [0.0, *args.epsilons],
            [mine["clean"]] + [mine[f"{attack} eps={e:g}"] for e in args.epsilons], _ls_label(a))
  axes[0].set_xscale("log", base=2)
  axes[0].set_xlabel(f"input scale s (square at {2 * max(args.scales):g}: matched noise)")
  axes[0].set_ylabel("mean max-softmax confidence")
  for ax, attack in zip(axes[1:], ("FGSM", f"PGD ({args.pgd_steps} steps, random start)")):
    ax.set_xlabel("L-inf epsilon (normalized input units)")
    ax.set_ylabel(f"test accuracy under {attack}")
  axes[0].legend(fontsize=7)
  masking = []
  for r in attacks:
    if r["probe"].startswith("fgsm") and r["verdict"] == "improves":
      pgd = next(p for p in attacks if p["label_smoothing"] == r["label_smoothing"]
                 and p["probe"] == r["probe"].replace("fgsm", "pgd"))
      masking.append(f"- LS {r['label_smoothing']:g}, {r['probe']}: more accurate than CE under "
                     f"FGSM; under PGD at the same epsilon: {pgd['verdict']}.")
  header = provenance(teachers) + [
      "",
      f"MNIST-1D CNN teachers, the first {len(x)} test signals. Confidence: mean max-softmax on "
      f"s·x (normalized inputs, `analysis.scaled_input_confidence`) and on pure noise with the "
      "data's per-coordinate mean and std (`analysis.matched_gaussian_noise`). Attacks on the "
      "plain cross-entropy of the true label: FGSM (`analysis.fgsm`) and PGD (`analysis.pgd`, "
      f"{args.pgd_steps} steps of 2.5·eps/{args.pgd_steps}, uniform random start), eps in the "
      "normalized units the model reads (the data's std is about 1). Δ is paired by seed with CE; "
      "the verdict names a direction only where the 95% CI excludes 0.",
      "",
      "Published: Warde-Farley & Goodfellow 2016 (LS models extrapolate less extremely); Goibert "
      "& Dohmatob 2019 (LS improves FGSM robustness; gradient masking can fake it, so check PGD).",
      "", "Does an FGSM advantage of LS survive PGD?", "",
      *(masking or ["- LS shows no FGSM advantage over CE at any epsilon (CI includes 0 or CE is "
                    "better), so there is nothing for PGD to confirm."])]
  write_study(args.out / "extrapolation", "Extrapolation and adversarial inputs", header,
              [("Confidence away from the data", confidence, ["probe", "label_smoothing"]),
               ("Accuracy under attack", attacks, ["probe", "label_smoothing"])], fig)


def _floats(text: str) -> list[float]:
  return [float(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("study", choices=(*STUDIES, "all"))
  parser.add_argument("--teachers", required=True, help="the kd_teachers.py sweep's --out")
  parser.add_argument("--students", help="the kd_students.py sweep's --out (distillation)")
  parser.add_argument("--digits", help="the projection_digits.py sweep's --out (projection)")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/results"),
                      help="each study writes <out>/<study>/ (default docs/results)")
  parser.add_argument("--classes", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2],
                      help="the projection's three classes (default 0,1,2)")
  parser.add_argument("--figure-ls", type=float, default=0.1,
                      help="the LS strength shown beside CE in the projection figure")
  parser.add_argument("--class-pair", type=lambda t: [int(v) for v in t.split(",")],
                      default=[0, 1], help="the two logits of the MI estimate (default 0,1)")
  parser.add_argument("--examples", type=int, default=600, help="N of the MI estimate")
  parser.add_argument("--draws", type=int, default=50, help="L, perturbed copies per example")
  parser.add_argument("--max-shift", type=int, default=2, help="MI perturbation: shift, samples")
  parser.add_argument("--noise-std", type=float, default=0.1, help="MI perturbation: noise std")
  parser.add_argument("--scales", type=_floats, default=[1.0, 2.0, 4.0, 8.0, 16.0])
  parser.add_argument("--epsilons", type=_floats, default=[0.025, 0.05, 0.1, 0.2])
  parser.add_argument("--pgd-steps", type=int, default=10)
  parser.add_argument("--attack-examples", type=int, default=1000,
                      help="test signals for the probes and attacks (default all 1000)")
  args = parser.parse_args(argv)
  studies = STUDIES if args.study == "all" else (args.study,)
  if "distillation" in studies and not args.students:
    parser.error("the distillation study needs --students")
  try:
    for name in studies:
      globals()[name](args)
  except ValueError as e:
    print(f"study_kd.py: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
