#!/usr/bin/env bash
# Set up a local virtual environment (idempotent) and run one job in it.
#   bash scripts/run.sh reproduce the paper reproduction, quick preset (the main job; the
#                                 default): report in reproduction/report.md; extra
#                                 arguments go to benchmarks/reproduce_paper.py
#   bash scripts/run.sh example   the quick-start example
#   bash scripts/run.sh test      the test suite
#   bash scripts/run.sh docs      build the documentation (warnings are errors, gallery run)
#   bash scripts/run.sh setup     only the set-up
#   bash scripts/run.sh test-min  a fast subset of the tests at the declared minimum versions
#                                 (environments .venv-min*; see scripts/test_min.sh)
# TORCH_SPEC overrides the torch requirement (default: the CPU build torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-reproduce}"
shift || true
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
extras="dev"
if [ "$job" = docs ]; then extras="dev,docs"; fi
"$py" -m pip install --quiet -e ".[$extras]"

case "$job" in
    setup) ;;
    reproduce) "$py" benchmarks/reproduce_paper.py --out reproduction "$@" ;;
    example) "$py" examples/quickstart.py ;;
    test) "$py" -m pytest -q ;;
    docs)
        rm -rf docs/_build docs/generated docs/auto_examples
        "$py" -m sphinx -W --keep-going -b html -d docs/_build/doctrees docs docs/_build/html
        echo "documentation built in docs/_build/html" ;;
    *) echo "unknown job '$job': use reproduce, example, test, test-min, docs or setup" >&2
       exit 2 ;;
esac
