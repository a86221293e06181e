#!/usr/bin/env bash
# Run a command inside the project's virtual environment, creating it first if it is missing.
#
#   bash .ci/env.sh python train_net.py ...              # the package and what it needs
#   bash .ci/env.sh --with-tests python -m pytest tests  # plus the test tools (pytest, ruff) and MMDetection 3.3.0,
#                                                        # the reference some tests compare with
#   CASCADE_DET_D2=main bash .ci/env.sh ...              # with Detectron2 main (the snapshot in
#                                                        # ../shared/vendor) in place of 0.6
#
# The environment is pinned (.ci/constraints.txt) and built from the package registry alone:
#   torch 2.14.1 / torchvision 0.29.1 (pip takes them from this machine's disk), Detectron2 0.6 from the
#   `pb1-detectron2==0.6` sdist installed as pure Python (its sdist lacks the C++ sources, so the two setup.py
#   lines that build and package them are changed before install), then our package in editable mode.
# Each step prints one line with its time; pip's own output goes to $venv/build.log (shown if a step fails).
# Set CASCADE_DET_VENV to use another location.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CASCADE_DET_VENV:-$root/.venv}"
with_tests=0
if [ "${1:-}" = "--with-tests" ]; then
  with_tests=1
  shift
fi
reference="$root/.ci/requirements-test.txt"
log="$venv/build.log"

step() {  # step "what" command...: run it quietly, print one line with its time, show the log if it fails
  local what="$1" start=$SECONDS
  shift
  printf '[env] %s ...' "$what" >&2
  if ! "$@" >>"$log" 2>&1; then
    printf ' failed; the end of %s:\n' "$log" >&2
    grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -40 >&2
    exit 1
  fi
  printf ' done (%ss)\n' "$((SECONDS - start))" >&2
}

base_want="$(cat "$root/.ci/constraints.txt" "$root/.ci/env.sh" "$root/.ci/install_detectron2.py" "$root/setup.py" \
  | sha256sum | cut -d' ' -f1)"
if [ ! -f "$venv/.base-ok" ] || [ "$(cat "$venv/.base-ok")" != "$base_want" ]; then
  echo "[env] building the virtual environment in $venv (about 2 minutes the first time)" >&2
  rm -rf "$venv"
  python3.11 -m venv "$venv"
  : >"$log"
  pip=("$venv/bin/python" -m pip install --constraint "$root/.ci/constraints.txt")
  step "pip, setuptools, wheel" "${pip[@]}" --upgrade pip setuptools wheel
  step "torch 2.14.1, torchvision 0.29.1 (from local disk)" "${pip[@]}" torch torchvision
  step "Detectron2 0.6 (pure Python)" "$venv/bin/python" "$root/.ci/install_detectron2.py" \
    --constraint "$root/.ci/constraints.txt"
  step "cascade_det and its dependencies" "${pip[@]}" --no-build-isolation -e "$root"
  echo "$base_want" >"$venv/.base-ok"
fi

if [ "$with_tests" = 1 ]; then
  test_want="$(cat "$reference" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$venv/.tests-ok" ] || [ "$(cat "$venv/.tests-ok")" != "$test_want" ]; then
    # --no-deps: mmengine asks for opencv-python, which would shadow our opencv-python-headless; mmcv-lite is MMCV
    # without its compiled kernels (benchmarks/mmdet_reference.py supplies the few that MMDetection calls).
    step "test tools and the MMDetection 3.3.0 reference" "$venv/bin/python" -m pip install --no-deps -r "$reference"
    echo "$test_want" >"$venv/.tests-ok"
  fi
fi
if [ "${CASCADE_DET_D2:-0.6}" = "main" ]; then
  # Detectron2 main, pure Python as 0.6 is, installed beside it and first on the path.
  tarball="$(ls "$root"/../shared/vendor/detectron2-main-*.tar.gz 2>/dev/null | head -1 || true)"
  if [ -z "$tarball" ]; then
    echo "[env] Detectron2 main: no snapshot at $root/../shared/vendor/detectron2-main-*.tar.gz: skipping what" \
      "was asked to run with it (on a user's machine, install Detectron2 main as its guide says)" >&2
    exit 0
  fi
  main_dir="$venv/detectron2-main"
  main_want="$(sha256sum "$tarball" | cut -d' ' -f1)"
  if [ ! -f "$main_dir/.ok" ] || [ "$(cat "$main_dir/.ok")" != "$main_want" ]; then
    rm -rf "$main_dir" "$venv/detectron2-main-src"
    mkdir -p "$venv/detectron2-main-src"
    tar xzf "$tarball" -C "$venv/detectron2-main-src" --strip-components=1
    sed -i '/^ *ext_modules=get_extensions(),$/d' "$venv/detectron2-main-src/setup.py"
    step "Detectron2 main ($(basename "$tarball"), pure Python)" "$venv/bin/python" -m pip install --no-deps \
      --no-build-isolation --target "$main_dir" "$venv/detectron2-main-src"
    echo "$main_want" >"$main_dir/.ok"
  fi
  export PYTHONPATH="$main_dir${PYTHONPATH:+:$PYTHONPATH}"
  export CASCADE_DET_D2=main
fi
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
[ $# -gt 0 ] || exit 0
exec "$@"
