"""Issue 9's studies from finished runs: projections, distillation, information, extrapolation.

The runs come from configs/sweeps/kd_teachers.py (MNIST-1D CNN teachers, a in {0, 0.1, 0.3}, every
500-step checkpoint kept), kd_students.py (MLP students of the teacher with the same seed) and
projection_digits.py (digits CNN, CE and LS 0.1). results.json gives the distillation table; the
checkpoints give the rest, through `ls_jax.experiments.analysis`. Everything here returns rows (dicts) and
arrays; scripts/study_kd.py writes them to summary.csv / summary.md and draws the figures.

Runs are paired by seed, as in `ls_jax.experiments.study`: the same seed gives the same init and data order,
and a student of seed s learns from the teacher of seed s. A group's number is its mean over
seeds with a Student-t 95% interval; a comparison is the paired difference with its t interval and
`ls_jax.experiments.study.verdict` (a direction only where the interval excludes 0).
"""
import functools
import json
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ls_jax.experiments import analysis, study
from ls_jax.trainer import finished_runs, input_pipeline
from ls_jax import statistics

# Forward passes on the host run in batches of this many inputs (bounded memory on any model).
_BATCH = 4096


class Run(NamedTuple):
  """A finished run: its directory, its resolved config and its results.json."""
  workdir: pathlib.Path
  config: dict[str, Any]
  results: dict[str, Any]


def read_runs(directory: str) -> list[Run]:
  """Every finished run (with results.json) directly under `directory`, by name.

  Raises:
    ValueError: if there is none.
  """
  workdirs = study.find_workdirs([str(directory)])
  if not workdirs:
    raise ValueError(f"no finished run (results.json) under {directory}")
  return [Run(w, json.loads((w / "config.json").read_text()),
              json.loads((w / "results.json").read_text())) for w in workdirs]


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  """The steps of the run's complete checkpoints, ascending."""
  return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").glob("*")
                if p.name.isdigit())


def split_arrays(config: dict[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
  """(inputs as the model reads them, labels) of the run's `train` or `test` split.

  `train` is the training slice of the config (`data.train_split`, without the validation slice);
  labels are the dataset's own, without the label noise a config may inject.
  """
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
  data = {**config["data"], "label_noise": {"rate": 0.0, "kind": "symmetric"}}
  part = getattr(_dataset(json.dumps(data, sort_keys=True), config["num_classes"]), split)
  inputs = np.asarray(input_pipeline.normalize(part.images, data["name"], jnp.float32))
  return inputs, part.labels


@functools.lru_cache(maxsize=4)
def _dataset(data_json: str, num_classes: int) -> input_pipeline.Dataset:
  data = ml_collections.ConfigDict(json.loads(data_json))
  return input_pipeline.load_dataset(data, num_classes=num_classes, seed=0)


class SavedModel(NamedTuple):
  """A checkpointed model: `logits(x)` runs it jitted, in batches, and returns NumPy."""
  model: Any
  variables: dict[str, Any]
  apply: Callable[..., jax.Array]

  def logits_fn(self, x: jax.Array) -> jax.Array:
    """JAX logits, for use inside other JAX functions (attacks, probes)."""
    return self.apply(self.variables, x)

  def logits(self, x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(self.apply(self.variables, x[i:i + _BATCH]))
                           for i in range(0, len(x), _BATCH)])

  def features(self, x: np.ndarray) -> np.ndarray:
    return np.concatenate([
        np.asarray(analysis.penultimate_features(self.model, self.variables, x[i:i + _BATCH])[0])
        for i in range(0, len(x), _BATCH)], dtype=np.float64)


def saved_models(workdir: pathlib.Path, steps: Sequence[int]):
  """Yields `(step, SavedModel)` for each step, sharing one jitted apply (one compilation)."""
  apply = None
  for step in steps:
    model, variables = finished_runs.saved_model(workdir, step)
    if apply is None:
      apply = jax.jit(functools.partial(model.apply, train=False))
    yield step, SavedModel(model, variables, apply)


def final_model(workdir: pathlib.Path) -> SavedModel:
  steps = checkpoint_steps(workdir)
  if not steps:
    raise ValueError(f"run {workdir} has no checkpoint")
  return next(saved_models(workdir, steps[-1:]))[1]


# ------------------------------------------------------------------------------------------------
# Groups of seeds and their paired comparisons.


def compare(values: dict[int, float], baseline: Optional[dict[int, float]] = None,
            better: Optional[str] = None) -> dict[str, Any]:
  """A group's mean over seeds with its 95% t interval, and its paired difference to `baseline`.

  Args:
    values: {seed: value} of the group.
    baseline: {seed: value} of the group compared against (None: no comparison). Only the seeds
      both have are paired; the others are listed in `unpaired_seeds`.
    better: 'higher', 'lower' or None, for `study.verdict`.

  Returns:
    The row fields of `ls_jax.experiments.study.summarize`: n, mean, std, ci_low, ci_high, seeds, n_paired,
    diff, diff_ci_low, diff_ci_high, p_value, verdict, unpaired_seeds ('' where not compared).
  """
  if not values:
    raise ValueError("compare needs at least one seed's value.")
  summary = statistics.summarize([values[s] for s in sorted(values)])
  row = {"n": summary.n, "mean": summary.mean, "std": summary.std, "ci_low": summary.ci_low,
         "ci_high": summary.ci_high, "seeds": " ".join(map(str, sorted(values))), "n_paired": "",
         "diff": "", "diff_ci_low": "", "diff_ci_high": "", "p_value": "", "verdict": "",
         "unpaired_seeds": ""}
  if baseline is None:
    return row
  common = sorted(set(values) & set(baseline))
  row["unpaired_seeds"] = " ".join(map(str, sorted(set(values) ^ set(baseline))))
  if not common:
    row["verdict"] = "no common seeds with the baseline"
    return row
  comparison = statistics.paired_comparison([values[s] for s in common],
                                            [baseline[s] for s in common])
  row.update(n_paired=comparison.n, diff=comparison.mean_difference, diff_ci_low=comparison.ci_low,
             diff_ci_high=comparison.ci_high, p_value=comparison.p_value,
             verdict=study.verdict(comparison, better))
  return row


def by_label_smoothing(runs: list[Run]) -> dict[float, dict[int, Run]]:
  """{a: {seed: run}}, a ascending.

  Raises:
    ValueError: if two runs share a and seed (two copies of one run).
  """
  groups: dict[float, dict[int, Run]] = {}
  for run in runs:
    a, seed = float(run.config["loss"]["label_smoothing"]), int(run.config["seed"])
    if seed in groups.setdefault(a, {}):
      raise ValueError(f"two runs with a={a:g} and seed {seed}: {groups[a][seed].workdir} and "
                       f"{run.workdir}")
    groups[a][seed] = run
  return dict(sorted(groups.items()))


def compare_to_ce(values: dict[float, dict[int, float]], better: Optional[str], **fields
                  ) -> list[dict[str, Any]]:
  """Rows for {a: {seed: value}}: each a's statistics, and for a > 0 its paired difference to a = 0.

  `fields` (e.g. `metric="accuracy"`) go at the front of every row.
  """
  baseline = values.get(0.0)
  return [{**fields, "label_smoothing": a, "baseline": "CE" if a != 0.0 and baseline else "",
           **compare(by_seed, baseline if a != 0.0 else None, better)}
          for a, by_seed in values.items()]


# ------------------------------------------------------------------------------------------------
# a. Projections onto the plane of three templates (Müller et al. 2019, Fig. 1).


class Projection(NamedTuple):
  """One model's examples of three classes in the plane of their templates.

  Attributes:
    points: (n, 2) coordinates (`analysis.project_onto_template_plane`, bias folded in).
    labels: (n,) their classes, among the three.
    templates: (3, 2) the templates' own coordinates.
    plane_tightness: `analysis.cluster_tightness` of `points` (the figure's clusters).
    feature_tightness: the same in the full penultimate space, over every class.
  """
  points: np.ndarray
  labels: np.ndarray
  templates: np.ndarray
  plane_tightness: float
  feature_tightness: float


def project(model: SavedModel, x: np.ndarray, labels: np.ndarray,
            class_ids: Sequence[int]) -> Projection:
  """The Müller Fig. 1 projection of `x`'s examples of `class_ids`, with both tightness numbers."""
  features = model.features(x)
  kernel, bias = analysis.head_kernel_and_bias(model.variables)
  keep = np.isin(labels, class_ids)
  points = analysis.project_onto_template_plane(features[keep], kernel, class_ids, bias)
  templates = analysis.template_plane(kernel, class_ids, bias).template_coordinates
  return Projection(points, labels[keep], templates,
                    analysis.cluster_tightness(points, labels[keep], class_ids),
                    analysis.cluster_tightness(features, labels))


# ------------------------------------------------------------------------------------------------
# c. Information about the input in the logits, over training (Müller et al. 2019, §4.1).


def balanced_examples(labels: np.ndarray, class_pair: Sequence[int], num_examples: int
                      ) -> np.ndarray:
  """Indices of the first `num_examples / 2` examples of each of the two classes, in split order.

  Raises:
    ValueError: on an odd or too small `num_examples`, or a class with too few examples.
  """
  if num_examples < 4 or num_examples % 2:
    raise ValueError(f"num_examples must be even and >= 4, got {num_examples}.")
  if len(class_pair) != 2 or class_pair[0] == class_pair[1]:
    raise ValueError(f"class_pair must be two different classes, got {tuple(class_pair)}.")
  indices = []
  for k in class_pair:
    members = np.flatnonzero(labels == k)
    if len(members) < num_examples // 2:
      raise ValueError(f"class {k} has {len(members)} examples, fewer than the "
                       f"{num_examples // 2} asked for.")
    indices.append(members[:num_examples // 2])
  return np.concatenate(indices)


def perturb(rng: np.random.Generator, x: np.ndarray, max_shift: int, noise_std: float
            ) -> np.ndarray:
  """A random circular shift and Gaussian noise: the augmentation of the MI estimate.

  Example i becomes `roll(x_i, s_i, axis=0) + noise_std * e_i` with `s_i` uniform on the integers
  in `[-max_shift, max_shift]` and `e_i ~ N(0, I)`, all independent. The shift moves the pattern
  along the signal (axis 1 of `x`), as MNIST-1D's generator does when it places a digit.

  Args:
    rng: NumPy generator.
    x: (n, length, ...) float inputs.
    max_shift: the largest shift in samples, >= 0.
    noise_std: the noise's standard deviation, >= 0.

  Returns:
    float32 (n, length, ...) perturbed inputs.
  """
  if x.ndim < 2:
    raise ValueError(f"x must have shape (n, length, ...), got {x.shape}.")
  if max_shift < 0 or noise_std < 0:
    raise ValueError(f"max_shift and noise_std must be >= 0, got {max_shift} and {noise_std}.")
  shifts = rng.integers(-max_shift, max_shift + 1, size=len(x))
  positions = (np.arange(x.shape[1])[None, :] - shifts[:, None]) % x.shape[1]
  positions = positions.reshape(positions.shape + (1,) * (x.ndim - 2))
  shifted = np.take_along_axis(x, np.broadcast_to(positions, x.shape), axis=1)
  return (shifted + noise_std * rng.standard_normal(x.shape)).astype(np.float32)


def logit_difference_draws(model: SavedModel, x: np.ndarray, class_pair: Sequence[int], *,
                           num_draws: int, max_shift: int, noise_std: float, seed: int
                           ) -> np.ndarray:
  """(N, L) samples `y_(x,l) = z_a - z_b` of `L` perturbed copies (`perturb`) of each example.

  A fixed `seed` draws the same perturbations for every model: checkpoints and teachers are
  compared on common random numbers.
  """
  rng = np.random.default_rng(seed)
  draws = np.stack([perturb(rng, x, max_shift, noise_std) for _ in range(num_draws)], axis=1)
  logits = model.logits(draws.reshape((-1,) + x.shape[1:])).reshape(len(x), num_draws, -1)
  return logits[..., class_pair[0]].astype(np.float64) - logits[..., class_pair[1]]


def information_over_training(workdir: pathlib.Path, x: np.ndarray, class_pair: Sequence[int], *,
                              num_draws: int, max_shift: int, noise_std: float, seed: int = 0
                              ) -> dict[int, float]:
  """{step: `analysis.gaussian_mutual_information` of the logit difference} per checkpoint."""
  return {step: analysis.gaussian_mutual_information(logit_difference_draws(
      model, x, class_pair, num_draws=num_draws, max_shift=max_shift, noise_std=noise_std,
      seed=seed)) for step, model in saved_models(workdir, checkpoint_steps(workdir))}


# ------------------------------------------------------------------------------------------------
# d. Extrapolation away from the data and adversarial inputs.


def extrapolation(model: SavedModel, x: np.ndarray, scales: Sequence[float], seed: int = 0
                  ) -> dict[str, float]:
  """Mean max-softmax confidence on `s * x` per scale (`scale=s`) and on matched noise (`noise`)."""
  x = jnp.asarray(x)
  confidences = analysis.scaled_input_confidence(model.logits_fn, x, scales)
  noise = analysis.matched_gaussian_noise(jax.random.key(seed), x)
  result = {f"scale={s:g}": float(c) for s, c in zip(scales, confidences)}
  result["noise"] = float(analysis.mean_max_confidence(model.logits_fn(noise)))
  return result


def attack_accuracies(model: SavedModel, x: np.ndarray, labels: np.ndarray,
                      epsilons: Sequence[float], *, pgd_steps: int, seed: int = 0,
                      batch_size: int = 500) -> dict[str, float]:
  """Accuracy on clean inputs, and under FGSM and PGD at each L-infinity budget.

  PGD: `pgd_steps` sign steps of size `2.5 * epsilon / pgd_steps` from a uniform random start in
  the ball (Madry et al. 2018's step rule), on the plain cross-entropy of the true label.
  Keys: `clean`, `fgsm eps=e`, `pgd eps=e`.
  """
  if any(not e > 0 for e in epsilons):
    raise ValueError(f"epsilons must be > 0 (clean accuracy is reported anyway), got {epsilons}.")
  logits_fn = model.logits_fn
  result = {"clean": analysis.accuracy_under_attack(logits_fn, lambda xb, yb: xb, x, labels,
                                                    batch_size=batch_size)}
  key = jax.random.key(seed)
  for e in epsilons:
    result[f"fgsm eps={e:g}"] = analysis.accuracy_under_attack(
        logits_fn, functools.partial(analysis.fgsm, logits_fn, epsilon=e), x, labels,
        batch_size=batch_size)
    result[f"pgd eps={e:g}"] = analysis.accuracy_under_attack(
        logits_fn, functools.partial(analysis.pgd, logits_fn, epsilon=e,
                                     step_size=2.5 * e / pgd_steps, num_steps=pgd_steps, rng=key),
        x, labels, batch_size=batch_size)
  return result


# ------------------------------------------------------------------------------------------------
# b. Distillation: teachers, students, and the student without a teacher.

NO_TEACHER = "no teacher"
DISTILLATION_METRICS = (study.Metric("accuracy", "accuracy", "higher"),
                        study.Metric("ece", "ece", "lower"))


def student_group(student: Run, teachers_by_name: dict[str, Run]) -> tuple[Any, ...]:
  """`(teacher a, T)` of a student, or `(NO_TEACHER,)`; its teacher is found by workdir name.

  Raises:
    ValueError: if the teacher is not among the teachers, or has another seed.
  """
  teacher_workdir = student.config["distill"]["teacher_workdir"]
  if not teacher_workdir:
    return (NO_TEACHER,)
  teacher = teachers_by_name.get(pathlib.Path(teacher_workdir).name)
  if teacher is None:
    raise ValueError(f"student {student.workdir}'s teacher {teacher_workdir} is not among the "
                     "teachers given")
  if teacher.config["seed"] != student.config["seed"]:
    raise ValueError(f"student {student.workdir} (seed {student.config['seed']}) learned from a "
                     f"teacher of seed {teacher.config['seed']}: the study pairs by seed")
  return (float(teacher.config["loss"]["label_smoothing"]),
          float(student.config["distill"]["temperature"]))


def distillation_rows(teachers: list[Run], students: list[Run]) -> list[dict[str, Any]]:
  """The distillation table: teachers by a, students by (teacher a, T), with paired differences.

  Rows (one per group and metric): `role` teacher / student; teachers are compared with the CE
  teacher, students with the student trained without a teacher (`baseline` = 'no teacher') and,
  for an LS teacher, also with the student of the CE teacher at the same T (`baseline` = 'CE
  teacher, same T'), all paired by seed.

  Raises:
    ValueError: if students differ in anything but their teacher, T and seed, or a student's teacher
      is missing or has another seed.
  """
  recipes = {tuple((k, v) for k, v in study.experiment_key(s.config)
                   if not k.startswith("distill.")) for s in students}
  if len(recipes) > 1:
    first, second = (dict(r) for r in list(recipes)[:2])
    field = next(k for k in sorted(set(first) | set(second)) if first.get(k) != second.get(k))
    raise ValueError(f"students differ in {field} ({first.get(field)!r} and "
                     f"{second.get(field)!r}), not only in their teacher, T and seed")
  teachers_by_name = {t.workdir.name: t for t in teachers}
  groups: dict[tuple, dict[int, Run]] = {}
  for s in students:
    groups.setdefault(student_group(s, teachers_by_name), {})[int(s.config["seed"])] = s
  rows = []
  for metric in DISTILLATION_METRICS:
    values = {a: {seed: float(run.results[metric.key]) for seed, run in runs.items()}
              for a, runs in by_label_smoothing(teachers).items()}
    rows += [{"role": "teacher", **row, "temperature": "", "baseline": "CE teacher" if (
        row["label_smoothing"] != 0.0) else ""}
             for row in compare_to_ce(values, metric.better, metric=metric.name)]
    student_values = {g: {seed: float(run.results[metric.key]) for seed, run in runs.items()}
                      for g, runs in groups.items()}
    alone = student_values.get((NO_TEACHER,))
    for group in sorted(student_values, key=lambda g: (g != (NO_TEACHER,), g)):
      fields = {"role": "student", "metric": metric.name,
                "label_smoothing": group[0] if group != (NO_TEACHER,) else NO_TEACHER,
                "temperature": group[1] if len(group) > 1 else ""}
      if group == (NO_TEACHER,):
        rows.append({**fields, **compare(student_values[group]), "baseline": ""})
        continue
      rows.append({**fields, **compare(student_values[group], alone, metric.better),
                   "baseline": NO_TEACHER if alone else ""})
      ce_student = student_values.get((0.0, group[1]))
      if group[0] != 0.0 and ce_student:
        rows.append({**fields, **compare(student_values[group], ce_student, metric.better),
                     "baseline": "CE teacher, same T"})
  return rows


# (source, claim, published result, our baseline, the verdict that supports it, temperatures).
PUBLISHED_DISTILLATION = (
    ("Müller et al. 2019, §4", "an LS teacher distills into a worse student than a CE teacher",
     "MNIST, % error: CE teacher 0.67 -> student 0.74; LS teacher 0.59 -> student 0.91",
     "CE teacher, same T", "worse", None),
    ("Shen et al. 2021", "LS teachers often still help the student (the incompatibility is "
     "one-sided)", "students of LS teachers beat students without a teacher (ImageNet, CUB)",
     NO_TEACHER, "improves", None),
    ("Chandrasegaran et al. 2022", "an LS teacher helps at a low T (here T <= 2)",
     "LS teachers give strong students at low T; high T suffers from systematic diffusion",
     NO_TEACHER, "improves", (1.0, 2.0)),
)


def distillation_claims(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
  """Each published claim beside the (teacher a, T) cells where our student accuracy supports it.

  A cell supports a claim only where the paired 95% CI of the student-accuracy difference excludes
  0 in the claimed direction; cells whose CI includes 0 are listed as 'no difference detected', and
  those excluding 0 the other way as 'against'. Only LS teachers (a > 0) are cells, and only at the
  claim's temperatures where it names some.
  """
  claims = []
  for source, claim, published, baseline, direction, temperatures in PUBLISHED_DISTILLATION:
    cells: dict[str, list[str]] = {"supports": [], "no difference detected": [], "against": [],
                                   "undetermined": []}
    for row in rows:
      if (row["role"] != "student" or row["metric"] != "accuracy" or row["baseline"] != baseline
          or row["label_smoothing"] in (0.0, NO_TEACHER)
          or (temperatures is not None and row["temperature"] not in temperatures)):
        continue
      verdict = row["verdict"]
      kind = ("supports" if verdict == direction else
              "no difference detected" if verdict.startswith("no difference") else
              "against" if verdict in ("improves", "worse") else "undetermined")
      cells[kind].append(f"a={row['label_smoothing']:g} T={row['temperature']:g}")
    claims.append({"source": source, "claim": claim, "published": published,
                   "compared_with": f"student of {baseline}",
                   "ours": "; ".join(f"{kind}: {', '.join(found)}"
                                     for kind, found in cells.items() if found) or "no runs"})
  return claims
