#!/usr/bin/env bash
# Issue 9, one command: the three sweeps (teachers, students, digits) and the four studies.
#   ./scripts/reproduce_kd.sh            # 15 + 65 + 10 runs into runs/, then docs/results/<study>/
#   TINY=1 ./scripts/reproduce_kd.sh     # 20-step runs on seeds 0,1 into runs/kd_tiny/ (36 runs),
#                                        # studies with small N, L and attack sets into runs/kd_tiny/results/
# Finished runs are skipped, so an interrupted call resumes. Studies: projection, distillation,
# information, extrapolation (see scripts/study_kd.py and README "Representations and students").
source "$(dirname "${BASH_SOURCE[0]}")/_ensure_env.sh"
if [[ -n "${TINY:-}" ]]; then
  runs=runs/kd_tiny
  results=$runs/results
  training=(--override num_steps=20 --override checkpoint_every_steps=10
            --override log_every_steps=10 --override eval_every_steps=0 --seeds 0,1)
  study=(--examples 20 --draws 4 --attack-examples 50 --epsilons 0.1 --pgd-steps 2 --scales 1,4)
else
  runs=runs
  results=docs/results
  training=()
  study=()
fi
start=$SECONDS
"$PYTHON" scripts/sweep.py configs/sweeps/kd_teachers.py --out "$runs/kd_teachers" "${training[@]}"
"$PYTHON" scripts/sweep.py "configs/sweeps/kd_students.py:teachers=$runs/kd_teachers" \
  --out "$runs/kd_students" "${training[@]}"
"$PYTHON" scripts/sweep.py configs/sweeps/projection_digits.py --out "$runs/projection_digits" \
  "${training[@]}"
"$PYTHON" scripts/study_kd.py all --teachers "$runs/kd_teachers" --students "$runs/kd_students" \
  --digits "$runs/projection_digits" --out "$results" "${study[@]}"
echo "reproduce_kd.sh: done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
