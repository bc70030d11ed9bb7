#!/usr/bin/env bash
# Check the declared dependency floors: install the minimum version of every core dependency
# (the ">=" bounds in pyproject.toml) in its own virtual environment and run a fast subset of
# the tests, twice: with every floor, then with the floors and the newest torch
# (TORCH_SPEC, default the CPU build torch==2.13.0), since an old release of skorch or numpy
# must also work with a new torch.
#   VENV_MIN     the virtual environment (default .venv-min)
#   MIN_PYTHON   the interpreter to build it with (default: the first of python3.10,
#                python3.11, python3 that runs; numpy's floor has no wheels past 3.11)
#   MIN_TORCH_SPEC  overrides the torch of the first pass (default: torch's floor)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VENV_MIN:-.venv-min}"
new_torch="${TORCH_SPEC:-torch==2.13.0}"
tests=(tests/test_common.py tests/estimators/test_deep_ensemble.py tests/metrics)

if [ ! -x "$venv/bin/python" ]; then
    python_bin=""
    for candidate in ${MIN_PYTHON:-} python3.10 python3.11 python3; do
        if "$candidate" -c "import sys; assert sys.version_info >= (3, 10)" 2>/dev/null; then
            python_bin="$candidate"
            break
        fi
    done
    if [ -z "$python_bin" ]; then
        echo "test-min: no Python >= 3.10 found; set MIN_PYTHON" >&2
        exit 2
    fi
    "$python_bin" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip

mapfile -t floors < <("$py" scripts/min_requirements.py pyproject.toml)
if [ -n "${MIN_TORCH_SPEC:-}" ]; then
    for i in "${!floors[@]}"; do
        case "${floors[$i]}" in torch==*) floors[$i]="$MIN_TORCH_SPEC" ;; esac
    done
fi
"$py" -m pip install --quiet "${floors[@]}" pytest hypothesis
"$py" -m pip install --quiet --no-deps -e .

run_subset() {
    echo "test-min: $1"
    "$py" -m pip list 2>/dev/null | grep -iE '^(torch|numpy|scikit-learn|skorch|scipy|tqdm) '
    "$py" -m pytest -q -p no:cacheprovider -m "not slow and not gpu" "${tests[@]}"
}

start=$SECONDS
run_subset "every declared floor (${floors[*]})"
"$py" -m pip install --quiet "$new_torch"
run_subset "the floors with $new_torch"
echo "test-min: both passes took $((SECONDS - start)) s after set-up"
