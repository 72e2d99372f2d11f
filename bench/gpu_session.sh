#!/usr/bin/env bash
# The prepared accelerator session (bench/gpu_session.py), run from the source tree as the GPU machine has it:
# PyTorch preinstalled, the project not pip-installed, nothing to fetch (it needs only torch, numpy, tqdm).
#   bash bench/gpu_session.sh "$OUT"                  # about 8 minutes on one H100/H200
#   bash bench/gpu_session.sh DIR --size tiny --budget 60 --device cpu
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash bench/gpu_session.sh OUT_DIR [options of bench/gpu_session.py]}"
shift
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 bench/gpu_session.py --out "$out" "$@" 2>&1 | tee "$out/session.log"
