#!/usr/bin/env bash
# The README's MNIST-1D results table: CE, LS, CP, Mixup, and CE vs LS under 20% symmetric label
# noise, 3 seeds each (18 runs, ~8 minutes on 2 CPU cores), then the table.
#   ./scripts/mnist1d_study.sh [runs/mnist1d_study]
source "$(dirname "${BASH_SOURCE[0]}")/_ensure_env.sh"
out="${1:-runs/mnist1d_study}"
methods=(
  "ce|"
  "ls0.1|--config.loss.label_smoothing=0.1"
  "cp0.1|--config.loss.confidence_penalty=0.1"
  "mixup0.2|--config.mixup.alpha=0.2"
  "noise20_ce|--config.data.label_noise.rate=0.2"
  "noise20_ls0.1|--config.data.label_noise.rate=0.2 --config.loss.label_smoothing=0.1"
)
for seed in 0 1 2; do
  for method in "${methods[@]}"; do
    name="${method%%|*}"; flags="${method#*|}"
    workdir="$out/${name}_seed$seed"
    [[ -f "$workdir/results.json" ]] && continue  # Finished runs are kept; rerun to complete.
    # shellcheck disable=SC2086  # $flags is a list of flags.
    "$PYTHON" scripts/train.py --config=configs/mnist1d.py --config.seed=$seed $flags \
      --workdir="$workdir" > /dev/null
  done
done
"$PYTHON" scripts/summarize.py "$out"/*
