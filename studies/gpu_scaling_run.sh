#!/usr/bin/env bash
# The training_cost and sampler_cost studies on a lent GPU machine, as run for
# data/training_cost/gpu (one NVIDIA H200): flow training at every L on CUDA, one process per
# L sharing the GPU, then every sampler per L with the CUDA-trained flows.  The log of the
# run is written beside the data (OUT/log.txt).
#
# Usage, from the repository root, in an environment with the package installed (torch with
# CUDA):
#   bash studies/gpu_scaling_run.sh [OUT]          # OUT defaults to data/training_cost/gpu
# Knobs (environment): LS (lattice sizes), N_STEPS, BUDGET (training seconds per L),
# SAMPLE_STEPS, TRAIN_TIMEOUT, SAMPLE_TIMEOUT.
set -uo pipefail
OUT=${1:-data/training_cost/gpu}
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-.numba_cache} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
mkdir -p "$OUT"
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, numba, numpy, xarray; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numba', numba.__version__, 'numpy', numpy.__version__, 'xarray', xarray.__version__)"
nproc
echo "== training, L = ${LS:-6 8 10 12 14 16 18 20} on cuda, one process per L"
# shellcheck disable=SC2086
time timeout "${TRAIN_TIMEOUT:-240}" python -m studies.training_cost \
    --device cuda --L ${LS:-6 8 10 12 14 16 18 20} --n-steps "${N_STEPS:-8000}" \
    --time-budget-s "${BUDGET:-120}" --backend process --workers 8 --out "$OUT"
echo "== every sampler per L with the CUDA-trained flows"
time timeout "${SAMPLE_TIMEOUT:-150}" python -m studies.sampler_cost --out "$OUT" \
    --backend process --workers 8 --n-steps "${SAMPLE_STEPS:-50000}"
} 2>&1 | grep -v "it/s\]\|task/s\]" | tee "$OUT/log.txt"
