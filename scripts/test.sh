#!/usr/bin/env bash
# Installs what is needed (once), then runs the test suite. Arguments go to pytest, e.g.
#   ./scripts/test.sh -k losses        ./scripts/test.sh --runslow
source "$(dirname "${BASH_SOURCE[0]}")/_ensure_env.sh"
exec "$PYTHON" -m pytest tests -q -n 2 "$@"
