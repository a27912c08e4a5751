#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite: lint, unit, end-to-end, AppTest, browser.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" PYTHONHASHSEED=0
.venv/bin/ruff check .
set +e
.venv/bin/python -m pytest tests -q "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
