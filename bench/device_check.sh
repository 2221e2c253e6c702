#!/usr/bin/env bash
# One GPU session's checks and figures as one JSON report (rows: bench/device_check.py).
#   bash bench/device_check.sh [--dry-run] [--out FILE] [--only ROW,ROW]
# --dry-run runs every row on the CPU at small sizes: the same JSON, for checking the script.
# A bare GPU machine has its own Python with a CUDA torch; what it lacks travels as wheels in
# .whl/ (`make device-wheels`) and is installed into a private folder, never over its torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# The wheels are built for Python 3.12 (`make device-wheels`); any other Python goes without.
if compgen -G ".whl/*.whl" >/dev/null \
  && "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  SITE=${DEVICE_SITE:-/tmp/device-check-site}
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
exec "$PYTHON" -m bench.device_check "$@"
