"""The registry of experiments: one entry per report, read by `scripts/report.py`.

Each entry names the experiment's report function (finished runs, as `runs.load` returns them,
plus its options -> `runs.Report`), the function that draws its figures, its title, the sweep
files it reads, and its options (each a keyword of the report function and a `--flag` of
`scripts/report.py`). A new experiment is one sweep file in `configs/sweeps/`, one module here
and one entry in `REPORTS`.
"""
from typing import Any, Callable, NamedTuple

from ls_jax.experiments import (calibration, confidence, distillation, methods, noise,
                                representations, selective, strength)
from ls_jax.experiments import runs


class Option(NamedTuple):
  """A report option: `name` is the keyword (`--name` with dashes), `type` parses one value."""
  name: str
  type: Callable[[str], Any]
  default: Any
  help: str
  list: bool = False  # Comma-separated values.


class Experiment(NamedTuple):
  report: Callable[..., runs.Report]
  plot: Callable[[dict[str, Any]], dict[str, Any]]
  title: str
  sweeps: str  # The sweep files whose runs it reads (for --help and the reproduce script).
  options: tuple[Option, ...] = ()


REPORTS = {
    "methods": Experiment(
        methods.report, methods.plot, "Methods at their picked strengths",
        "methods.py:select, then methods.py:evaluate,selection=<select out>",
        (Option("selection", str, None, "the select stage's runs (strength selection table)"),)),
    "strength": Experiment(strength.report, strength.plot, "Strength", "strength.py"),
    "confidence": Experiment(
        confidence.report, confidence.plot, "Confidence", "calibration.py (its CE and LS runs)",
        (Option("label_smoothing", float, 0.1, "the LS strength compared with CE"),)),
    "calibration": Experiment(
        calibration.report, calibration.plot, "Calibration", "calibration.py",
        (Option("sweep", str, calibration.SWEEP, "the sweep file whose points are shown"),)),
    "selective": Experiment(
        selective.report, selective.plot, "Selective", "selective.py",
        (Option("sweep", str, selective.SWEEP, "the sweep file whose points are shown"),)),
    "noise": Experiment(noise.report, noise.plot, "Noise",
                        "noise.py, or noise.py:finetune,warmup=<its out>"),
    "distillation": Experiment(
        distillation.report, distillation.plot, "Distillation from CE and LS teachers",
        "distillation_teachers.py and distillation_students.py:teachers=<its out>"),
    "projection": Experiment(
        representations.projection_report, representations.plot_projection,
        "Penultimate-layer projections (Müller Fig. 1)",
        "distillation_teachers.py and representations_digits.py",
        (Option("classes", int, (0, 1, 2), "the three classes projected", list=True),
         Option("figure_ls", float, 0.1, "the LS strength shown beside CE in the figure"))),
    "information": Experiment(
        representations.information_report, representations.plot_information,
        "Information about the input in the logits over training", "distillation_teachers.py",
        (Option("class_pair", int, (0, 1), "the two logits of the MI estimate", list=True),
         Option("examples", int, 600, "N of the MI estimate"),
         Option("draws", int, 50, "L, perturbed copies per example"),
         Option("max_shift", int, 2, "MI perturbation: circular shift, samples"),
         Option("noise_std", float, 0.1, "MI perturbation: Gaussian noise std"))),
    "extrapolation": Experiment(
        representations.extrapolation_report, representations.plot_extrapolation,
        "Extrapolation and adversarial inputs", "distillation_teachers.py",
        (Option("scales", float, (1.0, 2.0, 4.0, 8.0, 16.0), "input scales s", list=True),
         Option("epsilons", float, (0.025, 0.05, 0.1, 0.2), "attack budgets", list=True),
         Option("pgd_steps", int, 10, "PGD steps"),
         Option("attack_examples", int, 1000, "test signals probed and attacked"))),
}
