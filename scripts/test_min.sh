#!/usr/bin/env bash
# Check the declared dependency floors: install the minimum version of every core dependency
# (the ">=" bounds in pyproject.toml) and run a fast subset of the tests, twice, each in its
# own virtual environment: with every floor (.venv-min), then with the floors and the newest
# torch (.venv-min-torch; TORCH_SPEC, default the CPU build torch==2.13.0), since an old
# release of skorch or numpy must also work with a new torch. Two environments rather than
# one with torch swapped, because a CUDA build of torch leaves packages (triton, nvidia-*)
# that break another torch.
#   VENV_MIN        prefix of the two environments (default .venv-min)
#   MIN_PYTHON      the interpreter to build them with (default: the first of python3.10,
#                   python3.11, python3 that runs; numpy's floor has no wheels past 3.11)
#   MIN_TORCH_SPEC  overrides the torch of the first pass (default: torch's floor)
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="${VENV_MIN:-.venv-min}"
new_torch="${TORCH_SPEC:-torch==2.13.0}"
tests=(tests/test_common.py tests/estimators/test_deep_ensemble.py
       tests/estimators/test_sample_weight.py tests/metrics)

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
mapfile -t floors < <("$python_bin" scripts/min_requirements.py pyproject.toml)

# run_pass VENV TORCH_REQUIREMENT DESCRIPTION
run_pass() {
    local venv="$1" torch_req="$2" pins=() pin
    for pin in "${floors[@]}"; do
        case "$pin" in torch==*) pins+=("$torch_req") ;; *) pins+=("$pin") ;; esac
    done
    if [ ! -x "$venv/bin/python" ]; then
        "$python_bin" -m venv "$venv"
    fi
    local py="$venv/bin/python"
    "$py" -m pip install --quiet --upgrade pip
    "$py" -m pip install --quiet "${pins[@]}" pytest hypothesis
    "$py" -m pip install --quiet --no-deps -e .
    echo "test-min: $3 (${pins[*]})"
    "$py" -m pip list 2>/dev/null | grep -iE '^(torch|numpy|scikit-learn|skorch|scipy|tqdm) '
    local start=$SECONDS
    "$py" -m pytest -q -p no:cacheprovider -m "not slow and not gpu" "${tests[@]}"
    echo "test-min: tests took $((SECONDS - start)) s"
}

floor_torch=""
for pin in "${floors[@]}"; do
    case "$pin" in torch==*) floor_torch="$pin" ;; esac
done
run_pass "$prefix" "${MIN_TORCH_SPEC:-$floor_torch}" "every declared floor"
run_pass "$prefix-torch" "$new_torch" "the floors with the newest torch"
