#!/usr/bin/env bash
# Set up (first run only) and start Inkscribe on http://127.0.0.1:8501 — this machine only.
# Afterwards `.venv/bin/inkscribe app` starts it from any folder; flags go to `streamlit run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh app
exec .venv/bin/inkscribe app "$@"
