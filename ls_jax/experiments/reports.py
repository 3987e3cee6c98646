"""The registry of experiments: one entry per report, read by `scripts/report.py` and
`scripts/reproduce.py`.

Each entry names the experiment's report function (finished runs, as `runs.load` returns them,
plus its options -> `runs.Report`), the function that draws its figures, its title, its steps
(the sweeps that train its runs and the report commands that write docs/results/<name>/, in the
order `scripts/reproduce.sh` runs them) and its options (each a keyword of the report function and
a `--flag` of `scripts/report.py`). A new experiment is one sweep file in `configs/sweeps/`, one
module here and one entry in `REPORTS`: `scripts/reproduce.sh NAME` then runs it.

In a step, `{runs}` is the runs directory (`runs`, or $TINY_DIR in a smoke test). `tiny` holds the
arguments added only under TINY=1 (`scripts/reproduce.py`), where every sweep also trains 20 steps.
"""
from typing import Any, Callable, NamedTuple

from ls_jax.experiments import (calibration, confidence, decisions, distillation, language_model,
                                methods, noise, representations, selective, strength)
from ls_jax.experiments import runs


class Option(NamedTuple):
  """A report option: `name` is the keyword (`--name` with dashes), `type` parses one value."""
  name: str
  type: Callable[[str], Any]
  default: Any
  help: str
  list: bool = False  # Comma-separated values.


# TINY=1: two seeds; the representation runs keep checkpoints along their 20 steps.
TINY_SEEDS = ("--seeds", "0,1")
TINY_CHECKPOINTS = ("--override", "checkpoint_every_steps=10", "--override", "eval_every_steps=0")


class Sweep(NamedTuple):
  """`scripts/sweep.py configs/sweeps/<spec> --out {runs}/<out> <args>`. Finished runs are skipped,
  so experiments that share a sweep (the same `out`) train each run once."""
  spec: str  # A sweep file of configs/sweeps/ with its argument: "methods.py:select".
  out: str
  args: tuple[str, ...] = ()  # E.g. ("--match", REGEX): a subset of the sweep's runs.
  tiny: tuple[str, ...] = TINY_SEEDS  # () keeps the sweep file's seeds under TINY=1.


class Results(NamedTuple):
  """`scripts/report.py <experiment> --out docs/results/<name> <args>`: one output directory."""
  name: str
  args: tuple[str, ...]  # "--runs", "{runs}/methods", ...
  tiny: tuple[str, ...] = ()


class Experiment(NamedTuple):
  report: Callable[..., runs.Report]
  plot: Callable[[dict[str, Any]], dict[str, Any]]
  title: str
  steps: tuple[Sweep | Results, ...]  # In order; `scripts/reproduce.py` runs them.
  options: tuple[Option, ...] = ()

  @property
  def sweeps(self) -> str:
    """The sweep files whose runs it reads (for --help)."""
    return ", then ".join(s.spec.replace("{runs}", "runs") for s in self.steps
                          if isinstance(s, Sweep))


def _one(name: str, sweep: Sweep, *runs_dirs: str) -> tuple[Sweep | Results, ...]:
  """The common case: one sweep, then one report of `name` on `runs_dirs` (default its out)."""
  return (sweep, Results(name, ("--runs", *(runs_dirs or (f"{{runs}}/{sweep.out}",)))))


EVIDENCE = "evidence"  # strength, confidence, calibration and selective: one run per name.
TEACHERS = Sweep("distillation_teachers.py", "distillation_teachers", tiny=TINY_SEEDS
                 + TINY_CHECKPOINTS)  # The CE and LS CNNs that four reports read.
NOISE_FINETUNE = tuple(  # Fine-tuned from the CE runs (Wei et al.'s warm-up protocol).
    step for name, lr in (("noise_finetune", "1e-3"), ("noise_finetune_lr1e-4", "1e-4"))
    for step in _one(name, Sweep(f"noise.py:finetune,warmup={{runs}}/noise,learning_rate={lr}",
                                    name)))


REPORTS = {
    "methods": Experiment(
        methods.report, methods.plot, "Methods at their picked strengths",
        (Sweep("methods.py:select", "methods_select", tiny=()),  # Its 3 seeds: evaluate needs them.
         Sweep("methods.py:evaluate,selection={runs}/methods_select", "methods"),
         Results("methods", ("--runs", "{runs}/methods", "--selection", "{runs}/methods_select"))),
        (Option("selection", str, None, "the select stage's runs (strength selection table)"),)),
    "strength": Experiment(strength.report, strength.plot, "Strength",
                           _one("strength", Sweep("strength.py", EVIDENCE))),
    "confidence": Experiment(  # CE and LS 0.1 of the calibration sweep: same init and data order.
        confidence.report, confidence.plot, "Confidence",
        _one("confidence", Sweep("calibration.py", EVIDENCE,
                                 ("--match", r"label_smoothing=(0|0\.1)_seed"))),
        (Option("label_smoothing", float, 0.1, "the LS strength compared with CE"),)),
    "calibration": Experiment(
        calibration.report, calibration.plot, "Calibration",
        _one("calibration", Sweep("calibration.py", EVIDENCE)),
        (Option("sweep", str, calibration.SWEEP, "the sweep file whose points are shown"),)),
    "selective": Experiment(
        selective.report, selective.plot, "Selective",
        _one("selective", Sweep("selective.py", EVIDENCE)),
        (Option("sweep", str, selective.SWEEP, "the sweep file whose points are shown"),)),
    "noise": Experiment(noise.report, noise.plot, "Noise",
                        _one("noise", Sweep("noise.py", "noise")) + NOISE_FINETUNE),
    "distillation": Experiment(
        distillation.report, distillation.plot, "Distillation from CE and LS teachers",
        (TEACHERS, *_one("distillation", Sweep(
            "distillation_students.py:teachers={runs}/distillation_teachers",
            "distillation_students", tiny=TEACHERS.tiny),
                         "{runs}/distillation_teachers", "{runs}/distillation_students"))),
    "projection": Experiment(
        representations.projection_report, representations.plot_projection,
        "Penultimate-layer projections (Müller Fig. 1)",
        (TEACHERS, *_one("projection", Sweep("representations_digits.py",
                                             "representations_digits", tiny=TEACHERS.tiny),
                         "{runs}/distillation_teachers", "{runs}/representations_digits")),
        (Option("classes", int, (0, 1, 2), "the three classes projected", list=True),
         Option("figure_ls", float, 0.1, "the LS strength shown beside CE in the figure"))),
    "information": Experiment(
        representations.information_report, representations.plot_information,
        "Information about the input in the logits over training",
        (TEACHERS, Results("information", ("--runs", "{runs}/distillation_teachers"),
                           tiny=("--examples", "20", "--draws", "4"))),
        (Option("class_pair", int, (0, 1), "the two logits of the MI estimate", list=True),
         Option("examples", int, 600, "N of the MI estimate"),
         Option("draws", int, 50, "L, perturbed copies per example"),
         Option("max_shift", int, 2, "MI perturbation: circular shift, samples"),
         Option("noise_std", float, 0.1, "MI perturbation: Gaussian noise std"))),
    "extrapolation": Experiment(
        representations.extrapolation_report, representations.plot_extrapolation,
        "Extrapolation and adversarial inputs",
        (TEACHERS, Results("extrapolation", ("--runs", "{runs}/distillation_teachers"),
                           tiny=("--attack-examples", "50", "--epsilons", "0.1", "--pgd-steps",
                                 "2", "--scales", "1,4"))),
        (Option("scales", float, (1.0, 2.0, 4.0, 8.0, 16.0), "input scales s", list=True),
         Option("epsilons", float, (0.025, 0.05, 0.1, 0.2), "attack budgets", list=True),
         Option("pgd_steps", int, 10, "PGD steps"),
         Option("attack_examples", int, 1000, "test signals probed and attacked"))),
    "decisions": Experiment(  # Binary tasks; TS is post hoc, from the same runs.
        decisions.report, decisions.plot, "Decisions at a cost threshold: binary CE, LS, focal, TS",
        _one("decisions", Sweep("decisions.py", "decisions"))),
    "language_model": Experiment(  # One run at a time: each already uses both cores.
        language_model.report, language_model.plot, "Language model: CE against LS",
        _one("language_model", Sweep("lm.py", "lm", ("--parallel", "1")))),
}
