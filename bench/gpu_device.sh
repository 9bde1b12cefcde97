#!/usr/bin/env bash
# bench/gpu.py in one call of the `device` tool (a lent GPU machine), with its log in $OUT/gpu.log.
#
# That machine's python3 holds PyTorch (its own version, not our pinned 2.14.1), transformers,
# OpenCV, scikit-image and pandas, but not Ray, MLflow, Optuna or segment-anything, and nothing can
# be fetched there. segment-anything (37 KB) travels as a wheel; Ray's is too big to carry, so
# bench/gpu.py runs stages 1-4 there and says that it skipped the search. Before the call, here:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl segment-anything==1.0
#
# then: run(command="bash bench/gpu_device.sh", carry=[".whl"], timeout_s=600)
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "carry .whl with the segment-anything wheel (see the top of bench/gpu_device.sh)" >&2; exit 2; }
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
log="${OUT:-.}/gpu.log"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__)"
  echo "cpus $(nproc)"; } 2>&1 | tee "$log"
timeout 520 python3 bench/gpu.py 2>&1 | tee -a "$log"
