#!/usr/bin/env bash
# Set up (first time only) and start spydk_tgt with the embedded default configuration.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh" >&2
exec "$here/.venv/bin/spydk" tgt --default-config "$@"
