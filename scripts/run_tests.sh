#!/usr/bin/env bash
# Run the whole test suite (sets up .venv first): lint, then every test including slow ones.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check kdviz tests bench app.py pages
.venv/bin/python -m pytest "$@"
