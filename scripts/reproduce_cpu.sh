#!/usr/bin/env bash
# Every CPU experiment of issue 8: its sweep(s) into runs/, then its report into docs/results/<exp>/
# (summary.csv, summary.md, PNGs), which the README's "Results" section shows.
#
#   scripts/reproduce_cpu.sh                          # all six experiments, then kd (issue 9)
#   scripts/reproduce_cpu.sh strength calibration     # a subset, in the order given
#   TINY=1 scripts/reproduce_cpu.sh confidence        # smoke: 20 steps, seeds 0,1, in a temp dir
#
# Finished runs are skipped (scripts/sweep.py), so a rerun only redoes the reports. strength,
# confidence, calibration and selective share runs/evidence (one run per name). TINY=1 writes runs
# and reports under $TINY_DIR (default: a new temp dir); there the methods select stage keeps its
# three selection seeds, which the evaluate stage needs.
source "$(dirname "${BASH_SOURCE[0]}")/_ensure_env.sh"
SWEEPS=configs/sweeps
RUNS=runs
RESULTS=docs/results
TINY_ARGS=()
if [[ -n "${TINY:-}" ]]; then
  RUNS="${TINY_DIR:-$(mktemp -d)}"
  RESULTS="$RUNS/results"
  TINY_ARGS=(--override num_steps=20)
  echo "TINY: runs and reports under $RUNS" >&2
fi
SEEDS=(); [[ -n "${TINY:-}" ]] && SEEDS=(--seeds 0,1)

sweep() { "$PYTHON" scripts/sweep.py "$@" "${TINY_ARGS[@]}"; }
report() {  # report EXPERIMENT RUNS [OUT_NAME [--selection DIR]]; OUT_NAME defaults to EXPERIMENT
  "$PYTHON" scripts/report.py "$1" --runs "$2" "${@:4}" --out "$RESULTS/${3:-$1}"
}

# One function per experiment: its sweep(s), then its report.
methods() {
  sweep "$SWEEPS/methods.py:select" --out "$RUNS/methods_select"
  sweep "$SWEEPS/methods.py:evaluate,selection=$RUNS/methods_select" --out "$RUNS/methods" \
    "${SEEDS[@]}"
  report methods "$RUNS/methods" methods --selection "$RUNS/methods_select"
}
strength() {
  sweep "$SWEEPS/strength.py" --out "$RUNS/evidence" "${SEEDS[@]}"
  report strength "$RUNS/evidence"
}
confidence() {  # CE and LS 0.1 of the calibration sweep: same init and data order per seed.
  sweep "$SWEEPS/calibration.py" --out "$RUNS/evidence" --match 'label_smoothing=(0|0\.1)_seed' \
    "${SEEDS[@]}"
  report confidence "$RUNS/evidence"
}
calibration() {
  sweep "$SWEEPS/calibration.py" --out "$RUNS/evidence" "${SEEDS[@]}"
  report calibration "$RUNS/evidence"
}
selective() {
  sweep "$SWEEPS/selective.py" --out "$RUNS/evidence" "${SEEDS[@]}"
  report selective "$RUNS/evidence"
}
noise() {  # From scratch, then fine-tuned from the CE runs (Wei et al.'s warm-up protocol).
  sweep "$SWEEPS/noise.py" --out "$RUNS/noise" "${SEEDS[@]}"
  report noise "$RUNS/noise"
  local name_lr name lr
  for name_lr in noise_finetune:1e-3 noise_finetune_lr1e-4:1e-4; do
    name="${name_lr%%:*}" lr="${name_lr#*:}"
    sweep "$SWEEPS/noise.py:finetune,warmup=$RUNS/noise,learning_rate=$lr" --out "$RUNS/$name" \
      "${SEEDS[@]}"
    report noise "$RUNS/$name" "$name"
  done
}
# Issue 9 (kd) runs its own script; a new experiment adds a function like the ones above (its sweep file, then
# `report NAME RUNS`, with the analysis in ls_jax/reports.py's REPORTS) and list it here.
kd() {  # Issue 9: teachers, students, digits CNNs, then the four studies (scripts/reproduce_kd.sh).
  "$(dirname "${BASH_SOURCE[0]}")/reproduce_kd.sh"
}
EXPERIMENTS=(methods strength confidence calibration selective noise kd)

for experiment in "${@:-${EXPERIMENTS[@]}}"; do
  if [[ ! " ${EXPERIMENTS[*]} " == *" $experiment "* ]]; then
    echo "reproduce_cpu.sh: unknown experiment '$experiment'; choose from: ${EXPERIMENTS[*]}" >&2
    exit 2
  fi
done
for experiment in "${@:-${EXPERIMENTS[@]}}"; do
  echo "== $experiment" >&2
  SECONDS=0
  "$experiment"
  echo "== $experiment took ${SECONDS} s" >&2
done
