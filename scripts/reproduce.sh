#!/usr/bin/env bash
# Every experiment: its sweep(s) into runs/, then its report into docs/results/<name>/ (summary.csv,
# summary.md, PNGs), which docs/experiments/<name>.md shows (scripts/pages.py renders its tables).
#
#   scripts/reproduce.sh                              # every experiment
#   scripts/reproduce.sh strength calibration         # a subset, in the order given
#   scripts/reproduce.sh --print methods noise        # the commands only
#   TINY=1 scripts/reproduce.sh confidence            # a smoke test: 20 steps, seeds 0,1, $TINY_DIR
#
# The environment first (_ensure_env.sh), then scripts/reproduce.py, which reads each experiment's
# steps (sweeps, then report commands) from ls_jax/experiments/reports.py's REPORTS: a new
# experiment is one sweep file and one entry there. TINY and the rest: `scripts/reproduce.py -h`.
source "$(dirname "${BASH_SOURCE[0]}")/_ensure_env.sh"
exec "$PYTHON" scripts/reproduce.py "$@"
