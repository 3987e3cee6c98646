"""Distillation from CE and LS teachers: is a smoothed teacher a worse teacher?

Sweeps: configs/sweeps/distillation_teachers.py (MNIST-1D CNNs, LS a in {0, 0.1, 0.3}) and
distillation_students.py (MNIST-1D MLPs distilled from the teacher of the same seed at several
temperatures T, plus the MLP without a teacher). The report reads both sweeps' runs together: the
students are the runs that use KD and the runs of the same recipe without it (the student alone);
the others are teachers. Teachers are paired by seed with the CE teacher; each student with the
student trained without a teacher and, for a teacher with a method on, with the student of the CE
teacher at the same T. Published claims are put beside the cells that support them.
"""
import pathlib
from typing import Any

import numpy as np

from ls_jax.experiments import runs as runs_lib
from ls_jax.experiments.runs import Metric
from ls_jax.trainer import methods

KD = methods.BY_NAME["KD"]
TEMPERATURE = "distill.temperature"
NO_TEACHER = "no teacher"
METRICS = (Metric("accuracy", "accuracy", "higher"), Metric("ece", "ece", "lower"))


def _recipe(run: runs_lib.Run) -> tuple:
  return tuple((k, v) for k, v in runs_lib.experiment_key(run["config"])
               if not k.startswith("distill."))


def split_roles(runs: list[runs_lib.Run]) -> tuple[list[runs_lib.Run], list[runs_lib.Run]]:
  """(teachers, students): students use KD, or share the KD runs' recipe without it.

  Raises:
    ValueError: if no run uses KD, or the KD runs differ in more than their teacher and T.
  """
  distilled = [r for r in runs if KD in methods.active(r["config"])]
  if not distilled:
    raise ValueError(f"no run uses KD ({KD.field}): give the students' runs too")
  recipes = list(dict.fromkeys(_recipe(r) for r in distilled))
  if len(recipes) > 1:
    first, second = dict(recipes[0]), dict(recipes[1])
    field = next(k for k in sorted(set(first) | set(second)) if first.get(k) != second.get(k))
    raise ValueError(f"students differ in {field} ({first.get(field)!r} and "
                     f"{second.get(field)!r}), not only in their teacher, T and seed")
  students = [r for r in runs if _recipe(r) == recipes[0]]
  return [r for r in runs if r not in students], students


def student_group(student: runs_lib.Run, teachers_by_name: dict[str, runs_lib.Run]
                  ) -> tuple[str, Any]:
  """`(teacher label, T)` of a student, or `(NO_TEACHER, "")`; its teacher is found by workdir
  name among the teachers.

  Raises:
    ValueError: if the teacher is not among the teachers, or has another seed.
  """
  teacher_workdir = runs_lib.value(student, KD.field)
  if teacher_workdir == KD.off:
    return (NO_TEACHER, "")
  teacher = teachers_by_name.get(pathlib.Path(teacher_workdir).name)
  if teacher is None:
    raise ValueError(f"student {student['workdir']}'s teacher {teacher_workdir} is not among the "
                     "runs given")
  if runs_lib.seed(teacher) != runs_lib.seed(student):
    raise ValueError(f"student {student['workdir']} (seed {runs_lib.seed(student)}) learned from "
                     f"a teacher of seed {runs_lib.seed(teacher)}: the study pairs by seed")
  return (methods.label(teacher["config"]), float(runs_lib.value(student, TEMPERATURE)))


def _student_name(teacher: str, temperature: Any) -> str:
  return f"student alone ({NO_TEACHER})" if teacher == NO_TEACHER else (
      f"student of {teacher} teacher, T={temperature:g}")


def rows(runs: list[runs_lib.Run]) -> list[dict[str, Any]]:
  """The distillation table: teachers by group (vs the CE teacher), students by (teacher, T) vs
  the student alone and vs the student of the CE teacher at the same T, all paired by seed.

  Rows have the descriptive columns `role` (teacher / student), `teacher` (the teacher's method
  label, or NO_TEACHER) and `temperature`.
  """
  teachers, students = split_roles(runs)
  teachers_by_name = {pathlib.Path(t["workdir"]).name: t for t in teachers}
  groups: dict[tuple, list[runs_lib.Run]] = {}
  for s in students:
    groups.setdefault(student_group(s, teachers_by_name), []).append(s)
  for members in groups.values():
    runs_lib.group(members)  # Two copies of one seed are an error.
  result = []
  for metric in METRICS:
    for r in runs_lib.summarize(teachers, [metric]):
      result.append({"role": "teacher", "teacher": "", "temperature": "", **r})
    values = {g: runs_lib.values_by_seed(members, metric) for g, members in groups.items()}
    alone = values.get((NO_TEACHER, ""))
    for g in sorted(values, key=lambda g: (g[0] != NO_TEACHER, g[0] != methods.BASELINE, g)):
      columns = {"role": "student", "teacher": g[0], "temperature": g[1]}
      name = _student_name(*g)
      if g[0] == NO_TEACHER:
        result.append(runs_lib.row(name, metric, values[g], **columns))
        continue
      if alone:
        result.append(runs_lib.row(name, metric, values[g], _student_name(NO_TEACHER, ""), alone,
                                   **columns))
      else:
        result.append({**runs_lib.row(name, metric, values[g], **columns),
                       "verdict": runs_lib.NO_BASELINE})
      ce_student = values.get((methods.BASELINE, g[1]))
      if g[0] != methods.BASELINE and ce_student:
        result.append(runs_lib.row(name, metric, values[g],
                                   _student_name(methods.BASELINE, g[1]), ce_student, **columns))
  return result


# (source, claim, published result, our baseline ("alone" or "CE teacher"), the verdict that
# supports it, temperatures).
PUBLISHED = (
    ("Müller et al. 2019, §4", "an LS teacher distills into a worse student than a CE teacher",
     "MNIST, % error: CE teacher 0.67 -> student 0.74; LS teacher 0.59 -> student 0.91",
     "CE teacher", "worse", None),
    ("Shen et al. 2021", "LS teachers often still help the student (the incompatibility is "
     "one-sided)", "students of LS teachers beat students without a teacher (ImageNet, CUB)",
     "alone", "improves", None),
    ("Chandrasegaran et al. 2022", "an LS teacher helps at a low T (here T <= 2)",
     "LS teachers give strong students at low T; high T suffers from systematic diffusion",
     "alone", "improves", (1.0, 2.0)),
)


def _compared_with(r: dict[str, Any]) -> str:
  if r["baseline"] == _student_name(NO_TEACHER, ""):
    return "alone"
  return "CE teacher" if r["baseline"].startswith(f"student of {methods.BASELINE} teacher") else ""


def claims(table: list[dict[str, Any]]) -> list[dict[str, str]]:
  """Each published claim beside the (teacher, T) cells where our student accuracy supports it.

  A cell supports a claim only where the paired 95% CI of the student-accuracy difference excludes
  0 in the claimed direction; cells whose CI includes 0 are listed as 'no difference detected', and
  those excluding 0 the other way as 'against'. Only teachers with a method on are cells, and only
  at the claim's temperatures where it names some.
  """
  found_claims = []
  for source, claim, published, baseline, direction, temperatures in PUBLISHED:
    cells: dict[str, list[str]] = {"supports": [], "no difference detected": [], "against": [],
                                   "undetermined": []}
    for r in table:
      if (r["role"] != "student" or r["metric"] != "accuracy" or _compared_with(r) != baseline
          or r["teacher"] in (methods.BASELINE, NO_TEACHER)
          or (temperatures is not None and r["temperature"] not in temperatures)):
        continue
      verdict = r["verdict"]
      kind = ("supports" if verdict == direction else
              "no difference detected" if verdict.startswith("no difference") else
              "against" if verdict in ("improves", "worse") else "undetermined")
      cells[kind].append(f"{r['teacher']} T={r['temperature']:g}")
    found_claims.append({
        "source": source, "claim": claim, "published": published,
        "compared_with": "the student alone" if baseline == "alone" else
                         "the student of the CE teacher, same T",
        "ours": "; ".join(f"{kind}: {', '.join(found)}" for kind, found in cells.items() if found)
                or "no runs"})
  return found_claims


def report(runs: list[runs_lib.Run]) -> runs_lib.Report:
  """Teacher and student accuracy and ECE, the paired gaps, and the published claims."""
  table = rows(runs)
  _, students = split_roles(runs)
  weights = sorted({runs_lib.value(s, "distill.weight") for s in students
                    if KD in methods.active(s["config"])})
  claim_lines = ["| source | claim | published | compared with | ours (paired 95% CI of student "
                 "accuracy) |", "|---|---|---|---|---|"] + [
      f"| {c['source']} | {c['claim']} | {c['published']} | {c['compared_with']} | {c['ours']} |"
      for c in claims(table)]
  sections = [
      "Teachers: each run that is not a student; students: trained with "
      f"`(1 - w) CE + w T^2 KL(teacher_T || student_T)`, w = {', '.join(map(str, weights))}, from "
      "the teacher of the same seed, or without a teacher. Test accuracy and ECE (15 bins). Δ is "
      "paired by seed; the verdict names a direction only where the 95% CI excludes 0.",
      "## Published results beside ours\n\n" + "\n".join(claim_lines),
      "## Teachers and students\n\n" + runs_lib.table(
          table, ("role", "teacher", "temperature", "group", "metric")) + "\n\n"
      + runs_lib.missing_baselines(table)]
  return runs_lib.Report(table, sections, {"distillation": table}, runs)


def plot(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  table = figures["distillation"]
  figure, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
  for ax, metric in zip(axes, ("accuracy", "ece")):
    cells = [r for r in table if r["role"] == "student" and r["metric"] == metric
             and _compared_with(r) == "alone"]
    for teacher in dict.fromkeys(r["teacher"] for r in cells):
      line = sorted((r for r in cells if r["teacher"] == teacher), key=lambda r: r["temperature"])
      x = [r["temperature"] for r in line]
      diff, low, high = (np.array([runs_lib.as_float(r[k]) for r in line])
                         for k in ("diff", "diff_ci_low", "diff_ci_high"))
      ax.errorbar(x, diff, yerr=[np.nan_to_num(diff - low), np.nan_to_num(high - diff)],
                  marker="o", capsize=3, label=f"teacher {teacher}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("distillation temperature T")
    ax.set_ylabel(f"student {metric} − student alone")
  axes[0].legend(fontsize=7)
  return {"distillation": figure}
