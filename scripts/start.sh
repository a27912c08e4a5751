#!/usr/bin/env bash
# Set up (first run only) and start Inkscribe on http://127.0.0.1:8501 — this machine only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh app
export INKSCRIBE_THREADS="${INKSCRIBE_THREADS:-2}"
exec .venv/bin/streamlit run app.py \
  --server.address "${INKSCRIBE_ADDRESS:-127.0.0.1}" \
  --server.port "${INKSCRIBE_PORT:-8501}" \
  --server.headless true --browser.gatherUsageStats false "$@"
