#!/usr/bin/env bash
# The scaling study on a lent GPU machine (one H200 here), as run for the results in
# data/scaling/gpu: flow training at every L on CUDA (one process per L sharing the GPU),
# then every sampler per L with the CUDA-trained flows.  Usage, from the repository root:
#   OUT=/some/dir bash analysis/gpu_scaling_run.sh
# Needs python3 with torch (CUDA), numba, numpy, scipy, xarray, h5py, matplotlib, tqdm;
# wheels in .whl/ (e.g. h5netcdf) are installed to /tmp/site first if present.
set -uo pipefail
export PYTHONPATH="$PWD:/tmp/site" NUMBA_CACHE_DIR=/tmp/numba_cache PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
OUT=${OUT:-runs/gpu}
W=${WORK:-/tmp/scaling}
mkdir -p "$OUT" "$W"
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, numba, numpy, xarray; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numba', numba.__version__, 'numpy', numpy.__version__, 'xarray', xarray.__version__)"
nproc
echo "== training, L = 6..20 on cuda, one process per L"
# shellcheck disable=SC2086
time timeout "${TRAIN_TIMEOUT:-240}" python3 analysis/flow_training_scaling.py \
    --device "${DEVICE:-cuda}" --L ${LS:-6 8 10 12 14 16 18 20} --n-steps "${N_STEPS:-8000}" \
    --time-budget-s "${BUDGET:-150}" --backend process --workers 8 --out "$W"
echo "== every sampler per L with the CUDA-trained flows"
time timeout "${SAMPLE_TIMEOUT:-150}" python3 analysis/sampler_scaling.py --out "$W" \
    --backend process --workers 8 --n-steps "${SAMPLE_STEPS:-50000}"
} 2>&1 | grep -v "it/s\]\|task/s\]" | tee "$OUT/log.txt"
cp "$W"/*.csv "$W"/*.json "$OUT"/ 2>/dev/null
tar czf "$OUT/figures.tgz" -C "$W" figures 2>/dev/null
tar czf "$OUT/tasks.tgz" --exclude='*.pt' --exclude='*.nc' --exclude='*.ckpt' -C "$W" training_scan sampler_scan 2>/dev/null
ls -la "$OUT"
