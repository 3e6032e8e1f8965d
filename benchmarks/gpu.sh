#!/usr/bin/env bash
# Issue #5's GPU measurements, on a machine with a CUDA GPU and a torch build for it.
#
#   bash benchmarks/gpu.sh check    # the CUDA path against the CPU on the demo tissue (gpu_check.py)
#   bash benchmarks/gpu.sh tests    # the whole test suite with device "auto" = the GPU
#   bash benchmarks/gpu.sh dlpfc    # benchmarks/dlpfc.py --device cuda (5 seeds)
#   bash benchmarks/gpu.sh scale    # benchmarks/scale.py --device cuda (10k, 30k, 100k, 300k)
#
# Results go to $OUT (if set, as on this project's lent GPU machines) or benchmarks/results.
# Where the GPU machine lacks the Python packages, put their wheels in .whl/ (installed into
# /tmp/site) and the datasets in .gpudata/ (or set SPOTSCAPE_DATA); on this project's lent machine:
#   .whl: anndata scanpy scikit-misc igraph texttable array-api-compat donfig google-crc32c
#         legacy-api-wrap natsort pynndescent umap-learn session-info2 scverse-misc zarr numcodecs,
#         and pandas 2.3.3 + pytz + tzdata (the image has pandas 3, which anndata 0.12 does not support)
#         (pip download --no-deps --python-version 3.12 --only-binary=:all: ..., see the device tool's README)
#   .gpudata: dlpfc_subject3_banksy/ copied from ../shared/data (dlpfc stage); for the tests stage
#         SPOTSCAPE_DATA=.gputest holding dlpfc_subject3_banksy/151673.h5ad and
#         stahl2016_mob_and_bc_layers/ (all of it would pass the 64 MiB the tool carries)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ! python3 -c "import anndata, scanpy, skmisc" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
[ -d .gpudata ] && export SPOTSCAPE_DATA="${SPOTSCAPE_DATA:-$PWD/.gpudata}"
R="${OUT:-benchmarks/results}"
mkdir -p "$R"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, anndata, scanpy; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| anndata', anndata.__version__, '| scanpy', scanpy.__version__)"

for stage in "$@"; do
    case "$stage" in
        check) python3 benchmarks/gpu_check.py --out "$R/gpu_check" ;;
        tests) python3 -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$R/gpu_tests.log" ;;
        dlpfc) python3 benchmarks/dlpfc.py --seeds "${SEEDS:-5}" --device cuda --out "$R/dlpfc_gpu" ;;
        scale) python3 benchmarks/scale.py --device cuda --sizes ${SIZES:-10000 30000 100000 300000} --out "$R/scale_gpu" ;;
        *) echo "unknown stage $stage (check | tests | dlpfc | scale)"; exit 2 ;;
    esac
done
