#!/usr/bin/env bash
# The test command: lint, types, then the whole suite against real Dovecot.
# Long benchmarks and soak runs are marked `slow`; MAILBACKUP_SLOW=1 runs them in full.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup.sh
.venv/bin/python -m ruff check mailbackup tests scripts
.venv/bin/python -m mypy
.venv/bin/python -m pytest -q "$@"
