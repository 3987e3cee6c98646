#!/usr/bin/env python
"""Trains and evaluates one config; the logic lives in `ls_jax.trainer.train`.

  python scripts/train.py --config=configs/mnist1d.py --workdir=runs/mnist1d
  python scripts/train.py --config=configs/mnist1d.py:mlp --config.loss.label_smoothing=0.1 \
      --workdir=runs/mnist1d_mlp_ls0.1

Rerunning with the same --workdir resumes from its latest checkpoint. Multi-host: pass
--coordinator_address/--num_processes/--process_id, or launch under SLURM / on a TPU pod slice,
where `jax.distributed.initialize()` finds them itself (README, "Running at scale").
Every error the user can fix ends in one line on stderr and exit status 2.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from ls_jax.trainer import cli  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  cli.run()
