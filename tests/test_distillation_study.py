"""ls_jax.experiments.distillation on hand-built runs: roles, pairing by seed, published claims."""
import numpy as np
import pytest
from scipy import stats

from ls_jax.experiments import distillation
from ls_jax.experiments import runs as runs_lib


def fake_run(name: str, seed: int, accuracy: float, *, a: float = 0.0, teacher: str = "",
             temperature: float = 1.0, model: str = "mlp") -> dict:
  config = {"seed": seed, "model": {"name": model}, "loss": {"label_smoothing": a},
            "distill": {"teacher_workdir": teacher, "temperature": temperature, "weight": 0.5}}
  return {"workdir": f"/runs/{name}", "config": config, "accuracy": accuracy, "ece": 0.05}


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


ALONE = "student alone (no teacher)"


def test_roles_come_from_the_method_table_not_the_directories():
  teachers, students = fake_study()
  found_teachers, found_students = distillation.split_roles(students[::-1] + teachers)
  assert {r["workdir"] for r in found_teachers} == {r["workdir"] for r in teachers}
  assert {r["workdir"] for r in found_students} == {r["workdir"] for r in students}
  with pytest.raises(ValueError, match="no run uses KD"):
    distillation.split_roles(teachers)


def test_rows_pair_students_by_seed_with_no_teacher_and_the_ce_teacher():
  teachers, students = fake_study()
  rows = distillation.rows(teachers + students)
  accuracy = {(r["group"], r["baseline"]): r for r in rows if r["metric"] == "accuracy"}
  ls_teacher = accuracy[("mnist1d cnn1d LS 0.1", "mnist1d cnn1d CE")]
  assert ls_teacher["role"] == "teacher"
  assert ls_teacher["diff"] == pytest.approx(np.mean([0.03, 0.03, 0.04]))
  assert ls_teacher["p_value"] == pytest.approx(
      stats.ttest_rel([0.93, 0.94, 0.96], [0.90, 0.91, 0.92]).pvalue)
  assert ls_teacher["verdict"] == "improves"
  vs_alone = accuracy[("student of LS 0.1 teacher, T=2", ALONE)]
  assert vs_alone["teacher"] == "LS 0.1" and vs_alone["temperature"] == 2.0
  assert vs_alone["diff"] == pytest.approx(np.mean([0.05, 0.06, 0.05]))
  assert vs_alone["verdict"] == "improves"
  vs_ce = accuracy[("student of LS 0.1 teacher, T=2", "student of CE teacher, T=2")]
  assert vs_ce["diff"] == pytest.approx(np.mean([-0.05, -0.04, -0.07]))
  assert vs_ce["verdict"] == "worse"
  assert accuracy[("student of LS 0.1 teacher, T=8", ALONE)]["verdict"] == (
      "no difference detected (n=3)")
  assert ("student of LS 0.1 teacher, T=8", "student of CE teacher, T=8") not in accuracy
  assert accuracy[("student of CE teacher, T=2", ALONE)]["verdict"] == "improves"
  assert accuracy[(ALONE, "")]["mean"] == pytest.approx(0.61)
  claims = {c["source"]: c["ours"] for c in distillation.claims(rows)}
  assert claims["Müller et al. 2019, §4"] == "supports: LS 0.1 T=2"
  assert claims["Shen et al. 2021"] == "supports: LS 0.1 T=2; no difference detected: LS 0.1 T=8"
  assert claims["Chandrasegaran et al. 2022"] == "supports: LS 0.1 T=2"  # T=8 is not a low T.


def test_rows_refuse_unpaired_or_mixed_students():
  teachers, students = fake_study(student_model="cnn1d")
  with pytest.raises(ValueError, match="students differ in model.name"):
    distillation.rows(teachers + students)
  teachers, students = fake_study()
  wrong_seed = fake_run("odd", 0, 0.5, teacher="/x/t0_seed1", temperature=4.0)
  with pytest.raises(ValueError, match="pairs by seed"):
    distillation.rows(teachers + students + [wrong_seed])
  with pytest.raises(ValueError, match="is not among the runs"):
    distillation.rows(teachers + [fake_run("lost", 0, 0.5, teacher="/x/nowhere")])


def test_row_pairs_on_common_seeds_against_scipy():
  a = {0: 0.70, 1: 0.74, 2: 0.71, 3: 0.75, 9: 0.5}
  b = {0: 0.60, 1: 0.66, 2: 0.64, 3: 0.63, 7: 0.9}
  metric = runs_lib.Metric("accuracy", "accuracy", "higher")
  row = runs_lib.row("g", metric, a, "b", b)
  common_a, common_b = [0.70, 0.74, 0.71, 0.75], [0.60, 0.66, 0.64, 0.63]
  differences = np.subtract(common_a, common_b)
  half_width = stats.t.ppf(0.975, 3) * differences.std(ddof=1) / 2
  assert row["n"] == 5 and row["mean"] == pytest.approx(np.mean(list(a.values())))
  assert row["n_paired"] == 4 and row["unpaired_seeds"] == "7 9"
  assert row["diff"] == pytest.approx(differences.mean())
  assert row["diff_ci_low"] == pytest.approx(differences.mean() - half_width)
  assert row["p_value"] == pytest.approx(stats.ttest_rel(common_a, common_b).pvalue)
  assert row["verdict"] == "improves"
  assert runs_lib.row("g", metric._replace(better="lower"), a, "b", b)["verdict"] == "worse"
  assert runs_lib.row("g", metric, a)["verdict"] == "" and runs_lib.row("g", metric, a)["diff"] == ""
  assert runs_lib.row("g", metric, {0: 1.0}, "b", {5: 1.0})["verdict"] == (
      "no common seeds with the baseline")
