# Sourced by train.sh and test.sh: use the active virtualenv/conda env, else create ./.venv, and
# install requirements.txt into it once (again only when requirements.txt changes).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${VIRTUAL_ENV:-}" || -n "${CONDA_PREFIX:-}" ]]; then
  PYTHON="$(command -v python)"
else
  if [[ ! -x "$REPO_ROOT/.venv/bin/python" ]]; then
    echo "ls_jax: creating $REPO_ROOT/.venv" >&2
    "${PYTHON_FOR_VENV:-python3}" -m venv "$REPO_ROOT/.venv"
  fi
  PYTHON="$REPO_ROOT/.venv/bin/python"
fi
STAMP="$("$PYTHON" -c 'import sys; print(sys.prefix)')/.ls_jax_requirements"
if ! cmp -s "$REPO_ROOT/requirements.txt" "$STAMP" 2>/dev/null; then
  echo "ls_jax: installing requirements.txt into $("$PYTHON" -c 'import sys; print(sys.prefix)')" >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check -r "$REPO_ROOT/requirements.txt"
  cp "$REPO_ROOT/requirements.txt" "$STAMP"
fi
cd "$REPO_ROOT"
