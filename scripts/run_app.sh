#!/usr/bin/env bash
# Start the kdviz app (sets up .venv first) and warm it before the first visitor (`kdviz app`: streamlit run app.py
# plus one background run of the root page that installs the sample models). Extra arguments go to `streamlit run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/kdviz app "$@"
