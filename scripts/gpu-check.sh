#!/usr/bin/env bash
# The GPU check, ready to run: a randomly initialised model of Llama-3-8B's exact shape in bfloat16 (no hub,
# no weights to download) through the study's real workflow on 8 prompts, every model job, then each job's
# time, peak resident memory and peak GPU memory. CUDA_VISIBLE_DEVICES is honoured.
#   scripts/gpu-check.sh                      # Llama-3-8B's shape on the GPU (about 16 GB on disk, 2x in GPU memory)
#   scripts/gpu-check.sh tiny                 # a tiny shape on the CPU (what the test suite runs)
#   scripts/gpu-check.sh SHAPE --workdir DIR  # keep the run's results, logs and benchmarks in DIR
# Needs the project's environment (`make venv`, or PYTHON=... for another interpreter with its packages).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
exec "${PYTHON:-$root/.venv/bin/python}" "$root/scripts/gpu_check.py" "$@"
