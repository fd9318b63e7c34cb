#!/usr/bin/env bash
# Start the kdviz app (sets up .venv first). Extra arguments go to `streamlit run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/streamlit run app.py "$@"
