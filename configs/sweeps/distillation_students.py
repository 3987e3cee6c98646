"""Distillation students: MNIST-1D MLPs distilled from the CE and LS CNN teachers of the same seed.

  python scripts/sweep.py configs/sweeps/distillation_teachers.py --out runs/distillation_teachers
  python scripts/sweep.py configs/sweeps/distillation_students.py:teachers=runs/distillation_teachers \
      --out runs/distillation_students

The student is the MNIST-1D MLP: weaker than its teacher, the CNN (68% versus 94% test accuracy in
Greydanus 2020), though not smaller in parameters (15,210 versus 5,210; the MLP lacks the CNN's
translation equivariance, not width). A student well below its teacher has room to gain from soft
targets, which is what the comparison needs. Student seed s learns from teacher seed s (`{seed}`
in the teacher path), so every (teacher a, T) is paired by seed with the student trained without
a teacher.

Points: teachers a in {0, 0.1, 0.3} x T in {1, 2, 4, 8}, plus the student alone: 13 points x 5
seeds = 65 runs. The weight on the distillation term is w = 0.5 for all: an even mix of the two
terms of Hinton et al. (2015)'s loss `(1 - w) CE + w T^2 KL`. Both count, so a harmful teacher
can show up as a worse student, and a useful one as a better student, without retuning w per T
(the T^2 factor already keeps the soft term's gradients on one scale across T).
Names: `mnist1d-mlp_teacher=ls0.1_T=4_seed3`, and `mnist1d-mlp_seed3` for the student alone.
"""
import pathlib

from configs.common import parse_arg
from configs.sweeps import distillation_teachers as teachers_sweep

CONFIG = "configs/mnist1d.py:mlp"
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
WEIGHT = 0.5


def get_sweep(arg: str = "") -> dict:
  options = parse_arg(arg, teachers="")
  if not options.teachers:
    raise ValueError("distillation_students.py needs teachers=<the distillation_teachers.py sweep's --out>")
  # Absolute: train.py runs with the repository as its working directory.
  teachers = str(pathlib.Path(options.teachers).absolute())
  points = [{"distill.teacher_workdir": teachers_sweep.workdir(teachers, a, "{seed}"),
             "distill.temperature": t, "distill.weight": WEIGHT, "name": f"teacher=ls{a:g}_T={t:g}"}
            for a in teachers_sweep.LABEL_SMOOTHING for t in TEMPERATURES]
  return {"config": CONFIG, "points": [{}, *points], "seeds": teachers_sweep.SEEDS}
