#!/usr/bin/env bash
# Set everything up, then run the test suite (what CI runs). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# Two workers, a test module each at a time (module fixtures are built once), slowest modules first
# (tests/conftest.py): most tests leave one of CI's two cores idle. `-n 0` runs in one process.
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder "$@"
