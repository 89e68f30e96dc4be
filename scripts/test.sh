#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: set-up, lint, type check, pytest.
# Interop tests (QEMU guest, tgt, libiscsi) are part of it and fail loudly when a tool is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/setup.sh --test
.venv/bin/ruff check spydk tests bench
.venv/bin/mypy spydk
exec .venv/bin/python -m pytest -q "$@"
