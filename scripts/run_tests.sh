#!/usr/bin/env bash
# Run the whole test suite (sets up .venv and Chromium first): lint, then every test including slow and browser ones.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_browser.sh
.venv/bin/ruff check kdviz tests bench ui app.py pages scripts examples
.venv/bin/ruff format --check --quiet kdviz tests bench ui app.py pages scripts examples
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
