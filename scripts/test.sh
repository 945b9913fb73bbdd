#!/usr/bin/env bash
# Set up (idempotent) and run the test suite without the slow and GPU tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -m "not slow and not gpu" -q "$@"
