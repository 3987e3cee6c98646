"""Issue 9's sweep files and studies: the logic on hand-built inputs, then one tiny end-to-end run.

The end-to-end test trains 8 runs of 20 steps (two teachers and two students, seeds 0 and 1) and
runs every study on them with small N, L and attack sets; the full tiny mode (every point of the
three sweeps) is marked slow.
"""
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs.sweeps import kd_teachers
from ls_jax.experiments import analysis, kd_study, sweeps
from ls_jax import models

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# Sweep files.


def test_sweep_names_and_the_seed_placeholder():
  assert sweeps.runs({"config": "configs/mnist1d.py", "seeds": [3],
                      "points": [{"x": "a/{seed}/b", "y": 1, "name": "short"}]}) == [
      sweeps.Run("mnist1d_short_seed3", "configs/mnist1d.py", {"x": "a/3/b", "y": 1}, 3)]
  teachers = sweeps.runs(sweeps.load("configs/sweeps/kd_teachers.py"))
  assert len(teachers) == 15
  assert {r.name for r in teachers} == {
      pathlib.Path(kd_teachers.workdir("out", a, s)).name
      for a in (0.0, 0.1, 0.3) for s in range(5)}
  assert all(r.overrides["checkpoint_every_steps"] == 500 and r.overrides["keep_checkpoints"] == 13
             for r in teachers)
  students = sweeps.runs(sweeps.load("configs/sweeps/kd_students.py:teachers=out"))
  assert len(students) == 65 and len({r.name for r in students}) == 65
  distilled = [r for r in students if "distill.teacher_workdir" in r.overrides]
  assert len(distilled) == 60
  for run in distilled:  # Each student learns from the teacher of its own seed.
    teacher = pathlib.Path(run.overrides["distill.teacher_workdir"])
    assert teacher.parent == pathlib.Path("out").absolute()
    assert teacher.name.endswith(f"_seed{run.seed}") and run.overrides["distill.weight"] == 0.5
  assert "mnist1d-mlp_teacher=ls0.3_T=8_seed4" in {r.name for r in students}
  assert len(sweeps.runs(sweeps.load("configs/sweeps/projection_digits.py"))) == 10
  with pytest.raises(ValueError, match="needs teachers="):
    sweeps.load("configs/sweeps/kd_students.py")


# ------------------------------------------------------------------------------------------------
# Statistics over seeds.


def test_compare_pairs_by_seed_against_scipy():
  a = {0: 0.70, 1: 0.74, 2: 0.71, 3: 0.75, 9: 0.5}
  b = {0: 0.60, 1: 0.66, 2: 0.64, 3: 0.63, 7: 0.9}
  row = kd_study.compare(a, b, "higher")
  common_a, common_b = [0.70, 0.74, 0.71, 0.75], [0.60, 0.66, 0.64, 0.63]
  differences = np.subtract(common_a, common_b)
  half_width = stats.t.ppf(0.975, 3) * differences.std(ddof=1) / 2
  assert row["n"] == 5 and row["mean"] == pytest.approx(np.mean(list(a.values())))
  assert row["n_paired"] == 4 and row["unpaired_seeds"] == "7 9"
  assert row["diff"] == pytest.approx(differences.mean())
  assert row["diff_ci_low"] == pytest.approx(differences.mean() - half_width)
  assert row["p_value"] == pytest.approx(stats.ttest_rel(common_a, common_b).pvalue)
  assert row["verdict"] == "improves"
  assert kd_study.compare(a, b, "lower")["verdict"] == "worse"
  assert kd_study.compare(a)["verdict"] == "" and kd_study.compare(a)["diff"] == ""
  assert kd_study.compare({0: 1.0}, {5: 1.0})["verdict"] == "no common seeds with the baseline"


# ------------------------------------------------------------------------------------------------
# The MI perturbation and samples.


def test_perturb_is_a_bounded_circular_shift_plus_noise():
  x = np.arange(2 * 7, dtype=np.float32).reshape(2, 7)
  np.testing.assert_array_equal(kd_study.perturb(np.random.default_rng(0), x, 0, 0.0), x)
  for seed in range(20):
    shifted = kd_study.perturb(np.random.default_rng(seed), x, 2, 0.0)
    for row, original in zip(shifted, x):
      assert any(np.array_equal(row, np.roll(original, s)) for s in range(-2, 3))
  shifts_seen = {next(s for s in range(-2, 3) if np.array_equal(
      kd_study.perturb(np.random.default_rng(seed), x, 2, 0.0)[0], np.roll(x[0], s)))
                 for seed in range(40)}
  assert shifts_seen == {-2, -1, 0, 1, 2}
  noise = kd_study.perturb(np.random.default_rng(1), np.zeros((400, 50, 1)), 0, 0.3)
  assert noise.shape == (400, 50, 1) and noise.std() == pytest.approx(0.3, rel=0.02)
  with pytest.raises(ValueError, match="max_shift and noise_std must be >= 0"):
    kd_study.perturb(np.random.default_rng(0), x, -1, 0.0)


def test_balanced_examples():
  labels = np.array([1, 0, 2, 1, 0, 1, 0])
  np.testing.assert_array_equal(kd_study.balanced_examples(labels, (0, 1), 4), [1, 4, 0, 3])
  with pytest.raises(ValueError, match="class 2 has 1 examples"):
    kd_study.balanced_examples(labels, (0, 2), 4)
  with pytest.raises(ValueError, match="even and >= 4"):
    kd_study.balanced_examples(labels, (0, 1), 5)


def linear_model(kernel: np.ndarray) -> kd_study.SavedModel:
  """logits = x @ kernel, as a SavedModel (no network needed)."""
  return kd_study.SavedModel(None, {"kernel": jnp.asarray(kernel)}, lambda v, x: x @ v["kernel"])


def test_logit_difference_draws_are_the_perturbed_logit_gaps():
  rng = np.random.default_rng(0)
  kernel, x = rng.normal(size=(6, 3)), rng.normal(size=(5, 6)).astype(np.float32)
  draws = kd_study.logit_difference_draws(linear_model(kernel), x, (2, 0), num_draws=4,
                                          max_shift=1, noise_std=0.1, seed=7)
  replay = np.random.default_rng(7)
  expected = np.stack([kd_study.perturb(replay, x, 1, 0.1) @ (kernel[:, 2] - kernel[:, 0])
                       for _ in range(4)], axis=1)
  assert draws.shape == (5, 4)
  np.testing.assert_allclose(draws, expected, rtol=1e-4, atol=1e-5)
  # Same seed, same perturbations: a model whose gap ignores the input carries no information.
  constant = linear_model(np.zeros((6, 3)))
  assert np.ptp(kd_study.logit_difference_draws(constant, x, (2, 0), num_draws=4, max_shift=1,
                                                noise_std=0.1, seed=7)) == 0


# ------------------------------------------------------------------------------------------------
# Projection of a real model's features.


def test_project_matches_the_features_computed_by_hand():
  model = models.get_model("mlp", num_classes=4, hidden_sizes=(8, 5))
  x = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
  labels = np.arange(30) % 4
  variables = model.init(jax.random.key(0), x)
  saved = kd_study.SavedModel(model, variables, jax.jit(lambda v, x: model.apply(v, x)))
  found = kd_study.project(saved, x, labels, (0, 1, 3))
  p = variables["params"]
  hidden = np.maximum(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
  features = np.maximum(hidden @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
  keep = labels != 2
  kernel, bias = p["head"]["kernel"], p["head"]["bias"]
  np.testing.assert_allclose(found.points, analysis.project_onto_template_plane(
      features[keep], kernel, (0, 1, 3), bias), rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(found.labels, labels[keep])
  assert found.feature_tightness == pytest.approx(analysis.cluster_tightness(features, labels),
                                                  rel=1e-4)
  assert found.plane_tightness == pytest.approx(
      analysis.cluster_tightness(found.points, labels[keep]), rel=1e-9)


# ------------------------------------------------------------------------------------------------
# The distillation table on hand-built results.


def fake_run(name: str, seed: int, accuracy: float, *, a: float = 0.0, teacher: str = "",
             temperature: float = 1.0, model: str = "mlp") -> kd_study.Run:
  config = {"seed": seed, "model": {"name": model}, "loss": {"label_smoothing": a},
            "distill": {"teacher_workdir": teacher, "temperature": temperature, "weight": 0.5}}
  return kd_study.Run(pathlib.Path("/runs") / name, config, {"accuracy": accuracy, "ece": 0.05})


def fake_study(student_model="mlp"):
  teachers = [fake_run(f"t{a:g}_seed{s}", s, acc, a=a, model="cnn1d")
              for a, accs in ((0.0, (0.90, 0.91, 0.92)), (0.1, (0.93, 0.94, 0.96)))
              for s, acc in enumerate(accs)]
  students = [fake_run(f"alone{s}", s, acc) for s, acc in enumerate((0.60, 0.62, 0.61))]
  students += [fake_run(f"ce{s}", s, acc, teacher=f"/elsewhere/t0_seed{s}", temperature=2.0)
               for s, acc in enumerate((0.70, 0.72, 0.73))]
  students += [fake_run(f"ls{s}", s, acc, teacher=f"/elsewhere/t0.1_seed{s}", temperature=2.0,
                        model=student_model if s == 2 else "mlp")
               for s, acc in enumerate((0.65, 0.68, 0.66))]
  students += [fake_run(f"ls_hot{s}", s, acc, teacher=f"/elsewhere/t0.1_seed{s}", temperature=8.0)
               for s, acc in enumerate((0.61, 0.61, 0.62))]
  return teachers, students


def test_distillation_rows_pair_students_by_seed_with_no_teacher_and_the_ce_teacher():
  rows = kd_study.distillation_rows(*fake_study())
  accuracy = {(r["role"], r["label_smoothing"], r["temperature"], r["baseline"]): r
              for r in rows if r["metric"] == "accuracy"}
  ls_teacher = accuracy[("teacher", 0.1, "", "CE teacher")]
  assert ls_teacher["diff"] == pytest.approx(np.mean([0.03, 0.03, 0.04]))
  assert ls_teacher["verdict"] == "improves"
  vs_alone = accuracy[("student", 0.1, 2.0, "no teacher")]
  assert vs_alone["diff"] == pytest.approx(np.mean([0.05, 0.06, 0.05]))
  assert vs_alone["verdict"] == "improves"
  vs_ce = accuracy[("student", 0.1, 2.0, "CE teacher, same T")]
  assert vs_ce["diff"] == pytest.approx(np.mean([-0.05, -0.04, -0.07]))
  assert vs_ce["verdict"] == "worse"
  assert accuracy[("student", 0.1, 8.0, "no teacher")]["verdict"] == "no difference detected (n=3)"
  assert ("student", 0.1, 8.0, "CE teacher, same T") not in accuracy  # No CE student at T=8.
  assert accuracy[("student", 0.0, 2.0, "no teacher")]["verdict"] == "improves"
  assert accuracy[("student", "no teacher", "", "")]["mean"] == pytest.approx(0.61)
  claims = {c["source"]: c["ours"] for c in kd_study.distillation_claims(rows)}
  assert claims["Müller et al. 2019, §4"] == "supports: a=0.1 T=2"
  assert claims["Shen et al. 2021"] == "supports: a=0.1 T=2; no difference detected: a=0.1 T=8"
  assert claims["Chandrasegaran et al. 2022"] == "supports: a=0.1 T=2"  # T=8 is not a low T.


def test_distillation_rows_refuse_unpaired_or_mixed_students():
  teachers, students = fake_study(student_model="cnn1d")
  with pytest.raises(ValueError, match="students differ in model.name"):
    kd_study.distillation_rows(teachers, students)
  teachers, students = fake_study()
  wrong_seed = fake_run("odd", 0, 0.5, teacher="/x/t0_seed1", temperature=4.0)
  with pytest.raises(ValueError, match="pairs by seed"):
    kd_study.distillation_rows(teachers, students + [wrong_seed])
  with pytest.raises(ValueError, match="is not among the teachers"):
    kd_study.distillation_rows(teachers, [fake_run("lost", 0, 0.5, teacher="/x/nowhere")])


# ------------------------------------------------------------------------------------------------
# End to end: the sweeps, tiny, and every study on them.


def run_script(*args):
  # Without conftest's 8 fake devices: the runs train as a user's would, on one CPU device.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                        check=False, env=env)
  assert done.returncode == 0, done.stdout + done.stderr
  return done


TINY_TRAINING = ["--override", "num_steps=20", "--override", "checkpoint_every_steps=10",
                 "--override", "log_every_steps=10", "--override", "eval_every_steps=0",
                 "--seeds", "0,1"]
TINY_STUDY = ["--examples", "20", "--draws", "4", "--attack-examples", "50", "--epsilons", "0.1",
              "--pgd-steps", "2", "--scales", "1,4"]


def train_tiny(out: pathlib.Path, teacher_match: str, student_match: str, digits: bool) -> None:
  run_script("scripts/sweep.py", "configs/sweeps/kd_teachers.py", "--out", out / "teachers",
             "--match", teacher_match, *TINY_TRAINING)
  run_script("scripts/sweep.py", f"configs/sweeps/kd_students.py:teachers={out / 'teachers'}",
             "--out", out / "students", "--match", student_match, *TINY_TRAINING)
  if digits:
    run_script("scripts/sweep.py", "configs/sweeps/projection_digits.py", "--out", out / "digits",
               *TINY_TRAINING)


def test_the_studies_run_end_to_end_on_tiny_sweeps(tmp_path):
  train_tiny(tmp_path, "smoothing=(0|0.3)_", "mlp_seed|teacher=ls0.3_T=4_", digits=False)
  assert len(list(tmp_path.glob("*/*/results.json"))) == 8
  assert sorted(p.name for p in (tmp_path / "teachers/mnist1d_loss.label_smoothing=0_seed0/"
                                 "checkpoints").iterdir()) == ["10", "20"]
  run_script("scripts/study_kd.py", "all", "--teachers", tmp_path / "teachers", "--students",
             tmp_path / "students", "--out", tmp_path / "results", *TINY_STUDY)
  for study in ("projection", "distillation", "information", "extrapolation"):
    for name in ("summary.md", "summary.csv", f"{study}.png"):
      assert (tmp_path / "results" / study / name).stat().st_size > 0
  distillation = (tmp_path / "results/distillation/summary.md").read_text()
  assert "| student | accuracy | 0.300 | 4.000 | 2 |" in distillation
  assert "Müller et al. 2019, §4" in distillation and "w = 0.5" in distillation
  information = (tmp_path / "results/information/summary.md").read_text()
  assert "| 10 | 0.300 | 2 |" in information and "| 20 | 0.000 | 2 |" in information
  extrapolation = (tmp_path / "results/extrapolation/summary.md").read_text()
  assert "| pgd eps=0.1 | 0.300 | 2 |" in extrapolation and "| noise | 0.000 | 2 |" in extrapolation


@pytest.mark.slow
def test_every_point_of_the_three_sweeps_runs_tiny(tmp_path):
  """The full tiny mode of scripts/reproduce_kd.sh: 6 + 26 + 4 runs, then every study."""
  train_tiny(tmp_path, ".", ".", digits=True)
  assert len(list(tmp_path.glob("*/*/results.json"))) == 36
  run_script("scripts/study_kd.py", "all", "--teachers", tmp_path / "teachers", "--students",
             tmp_path / "students", "--digits", tmp_path / "digits", "--out",
             tmp_path / "results", *TINY_STUDY)
  projection = (tmp_path / "results/projection/summary.md").read_text()
  assert "| digits CNN | plane, test | 0.100 | 2 |" in projection
  claims = (tmp_path / "results/distillation/summary.md").read_text()
  assert "Chandrasegaran" in claims
