#!/usr/bin/env bash
# Set up a local virtual environment (idempotent) and run one job in it.
#   bash scripts/run.sh example   the quick-start example
#   bash scripts/run.sh test      the test suite
#   bash scripts/run.sh setup     only the set-up
#   bash scripts/run.sh test-min  a fast subset of the tests at the declared minimum versions
#                                 (environments .venv-min*; see scripts/test_min.sh)
# TORCH_SPEC overrides the torch requirement (default: the CPU build torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-example}"
if [ "$job" = "test-min" ]; then
    exec bash scripts/test_min.sh
fi
venv="${VENV:-.venv}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet "$torch_spec"
"$py" -m pip install --quiet -e ".[dev]"

case "$job" in
    setup) ;;
    example) "$py" examples/quickstart.py ;;
    test) "$py" -m pytest -q ;;
    *) echo "unknown job '$job': use example, test, test-min or setup" >&2; exit 2 ;;
esac
