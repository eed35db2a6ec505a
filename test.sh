#!/usr/bin/env bash
# Install what is missing (no main job), then run the test suite: ./test.sh [pytest args]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$ROOT/install.sh" --no-job
cd "$ROOT"
exec "${FRCNN_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
