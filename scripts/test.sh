#!/usr/bin/env bash
# Installs what is needed (once), then runs the tests. Arguments go to pytest. Without a test path
# among them, the whole suite (tests/) runs, as CI does; with one, just that:
#   ./scripts/test.sh                  ./scripts/test.sh -k losses         ./scripts/test.sh --runslow
#   ./scripts/test.sh tests/test_noise.py                ./scripts/test.sh tests/test_losses.py::test_x -x
# Paths are taken relative to the directory you run it from.
args=()
has_path=false
for arg in "$@"; do
  file="${arg%%::*}"  # A node id's file: tests/test_losses.py::test_x.
  if [[ "$arg" != -* && -e "$file" ]]; then
    has_path=true
    arg="$(realpath "$file")${arg:${#file}}"
  fi
  args+=("$arg")
done
source "$(dirname "${BASH_SOURCE[0]}")/_ensure_env.sh"  # Then in the repository root.
if ! $has_path; then
  args=(tests "${args[@]}")
fi
exec "$PYTHON" -m pytest -q -n 2 "${args[@]}"
