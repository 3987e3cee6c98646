#!/usr/bin/env bash
# Every experiment: its sweep(s) into runs/, then its report into docs/results/<name>/ (summary.csv,
# summary.md, PNGs), which the README's "Results" section shows.
#
#   scripts/reproduce.sh                              # every experiment, in the order below
#   scripts/reproduce.sh strength calibration         # a subset, in the order given
#   TINY=1 scripts/reproduce.sh confidence            # a smoke test (see TINY below)
#
# Experiments: methods strength confidence calibration selective noise distillation projection
# information extrapolation. Each is a function below: its sweep file(s) (`scripts/sweep.py`), then
# `scripts/report.py NAME --runs ... --out docs/results/<name>`. A new experiment is one sweep file,
# one entry in ls_jax/experiments/reports.py's REPORTS, and one function here.
#
# TINY=1, the one smoke-test mode (the tests use it): every run trains 20 steps on seeds 0 and 1
# (the methods select stage keeps its three selection seeds, which the evaluate stage needs), and
# the representation reports use small example, draw and attack sets. Runs and reports go under
# $TINY_DIR (default: a new temp dir): runs in $TINY_DIR/<sweep>, reports in $TINY_DIR/results/.
#
# Finished runs are skipped (scripts/sweep.py), so a rerun only redoes the reports. strength,
# confidence, calibration and selective share runs/evidence (one run per name); distillation,
# projection, information and extrapolation share the teachers' runs.
source "$(dirname "${BASH_SOURCE[0]}")/_ensure_env.sh"
SWEEPS=configs/sweeps
RUNS=runs
RESULTS=docs/results
TRAINING=() SEEDS=() REPRESENTATIONS=() INFORMATION=() ATTACKS=()
if [[ -n "${TINY:-}" ]]; then
  RUNS="${TINY_DIR:-$(mktemp -d)}"
  RESULTS="$RUNS/results"
  TRAINING=(--override num_steps=20 --override log_every_steps=10)
  SEEDS=(--seeds 0,1)
  REPRESENTATIONS=(--override checkpoint_every_steps=10 --override eval_every_steps=0)
  INFORMATION=(--examples 20 --draws 4)
  ATTACKS=(--attack-examples 50 --epsilons 0.1 --pgd-steps 2 --scales 1,4)
  echo "TINY: runs and reports under $RUNS" >&2
fi

sweep() { "$PYTHON" scripts/sweep.py "$@" "${TRAINING[@]}"; }
report() {  # report EXPERIMENT OUT_NAME [report.py arguments]
  "$PYTHON" scripts/report.py "$1" --out "$RESULTS/$2" "${@:3}"
}

methods() {
  sweep "$SWEEPS/methods.py:select" --out "$RUNS/methods_select"
  sweep "$SWEEPS/methods.py:evaluate,selection=$RUNS/methods_select" --out "$RUNS/methods" \
    "${SEEDS[@]}"
  report methods methods --runs "$RUNS/methods" --selection "$RUNS/methods_select"
}
strength() {
  sweep "$SWEEPS/strength.py" --out "$RUNS/evidence" "${SEEDS[@]}"
  report strength strength --runs "$RUNS/evidence"
}
confidence() {  # CE and LS 0.1 of the calibration sweep: same init and data order per seed.
  sweep "$SWEEPS/calibration.py" --out "$RUNS/evidence" --match 'label_smoothing=(0|0\.1)_seed' \
    "${SEEDS[@]}"
  report confidence confidence --runs "$RUNS/evidence"
}
calibration() {
  sweep "$SWEEPS/calibration.py" --out "$RUNS/evidence" "${SEEDS[@]}"
  report calibration calibration --runs "$RUNS/evidence"
}
selective() {
  sweep "$SWEEPS/selective.py" --out "$RUNS/evidence" "${SEEDS[@]}"
  report selective selective --runs "$RUNS/evidence"
}
noise() {  # From scratch, then fine-tuned from the CE runs (Wei et al.'s warm-up protocol).
  sweep "$SWEEPS/noise.py" --out "$RUNS/noise" "${SEEDS[@]}"
  report noise noise --runs "$RUNS/noise"
  local name_lr name lr
  for name_lr in noise_finetune:1e-3 noise_finetune_lr1e-4:1e-4; do
    name="${name_lr%%:*}" lr="${name_lr#*:}"
    sweep "$SWEEPS/noise.py:finetune,warmup=$RUNS/noise,learning_rate=$lr" --out "$RUNS/$name" \
      "${SEEDS[@]}"
    report noise "$name" --runs "$RUNS/$name"
  done
}
teachers() {  # The CE and LS CNNs that the four representation and distillation reports read.
  sweep "$SWEEPS/distillation_teachers.py" --out "$RUNS/distillation_teachers" "${SEEDS[@]}" \
    "${REPRESENTATIONS[@]}"
}
distillation() {
  teachers
  sweep "$SWEEPS/distillation_students.py:teachers=$RUNS/distillation_teachers" \
    --out "$RUNS/distillation_students" "${SEEDS[@]}" "${REPRESENTATIONS[@]}"
  report distillation distillation --runs "$RUNS/distillation_teachers" \
    "$RUNS/distillation_students"
}
projection() {
  teachers
  sweep "$SWEEPS/representations_digits.py" --out "$RUNS/representations_digits" "${SEEDS[@]}" \
    "${REPRESENTATIONS[@]}"
  report projection projection --runs "$RUNS/distillation_teachers" \
    "$RUNS/representations_digits"
}
information() {
  teachers
  report information information --runs "$RUNS/distillation_teachers" "${INFORMATION[@]}"
}
extrapolation() {
  teachers
  report extrapolation extrapolation --runs "$RUNS/distillation_teachers" "${ATTACKS[@]}"
}
EXPERIMENTS=(methods strength confidence calibration selective noise distillation projection
             information extrapolation)

for experiment in "${@:-${EXPERIMENTS[@]}}"; do
  if [[ ! " ${EXPERIMENTS[*]} " == *" $experiment "* ]]; then
    echo "reproduce.sh: unknown experiment '$experiment'; choose from: ${EXPERIMENTS[*]}" >&2
    exit 2
  fi
done
for experiment in "${@:-${EXPERIMENTS[@]}}"; do
  echo "== $experiment" >&2
  SECONDS=0
  "$experiment"
  echo "== $experiment took ${SECONDS} s" >&2
done
