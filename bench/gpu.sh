#!/usr/bin/env bash
# bench/gpu.sh OUT [bench/gpu.py options]: on a GPU machine with PyTorch and no internet, install what the suite needs
# from a carried wheelhouse (`make wheelhouse`; the folder named by $WHEELHOUSE, default ./wheelhouse, if it exists),
# then run every GPU benchmark with bench/gpu.py. See bench/RESULTS.md, "GPU suite".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELHOUSE=${WHEELHOUSE:-wheelhouse}
if [ -d "$WHEELHOUSE" ]; then
    "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELHOUSE" -r "$WHEELHOUSE/requirements.txt"
    "$PYTHON" -m pip install --quiet --no-index --no-deps "$WHEELHOUSE"/nodeps/*.whl
fi
exec "$PYTHON" bench/gpu.py "$@"
