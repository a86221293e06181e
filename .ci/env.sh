#!/usr/bin/env bash
# Run a command inside the project's virtual environment, creating it first if it is missing.
#
#   bash .ci/env.sh python train_net.py ...     # any command, run with .venv/bin first on PATH
#
# The environment is pinned (.ci/constraints.txt) and built from the package registry alone:
#   torch 2.14.1 / torchvision 0.29.1 (pip takes them from this machine's disk), Detectron2 0.6 from the
#   `pb1-detectron2==0.6` sdist installed as pure Python (its sdist lacks the C++ sources, so the two setup.py
#   lines that build and package them are changed before install), then our package in editable mode, then
#   MMDetection for the converter's tests (.ci/requirements-mmdet-reference.txt).
# Set CASCADE_DET_VENV to use another location.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CASCADE_DET_VENV:-$root/.venv}"
stamp="$venv/.cascade_det-env-ok"
reference="$root/.ci/requirements-mmdet-reference.txt"
want="$(cat "$root/.ci/constraints.txt" "$reference" "$root/.ci/env.sh" "$root/setup.py" | sha256sum | cut -d' ' -f1)"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[env] building the virtual environment in $venv (about 3 minutes the first time)" >&2
  python3.11 -m venv "$venv"
  pip=("$venv/bin/python" -m pip install --quiet --constraint "$root/.ci/constraints.txt")
  "${pip[@]}" --upgrade pip setuptools wheel
  "${pip[@]}" torch torchvision
  "$venv/bin/python" "$root/.ci/install_detectron2.py" --quiet --constraint "$root/.ci/constraints.txt"
  "${pip[@]}" --no-build-isolation -e "$root[dev]"
  "$venv/bin/python" -m pip install --quiet --no-deps -r "$reference"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
[ $# -gt 0 ] || exit 0
exec "$@"
