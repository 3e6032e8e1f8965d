#!/usr/bin/env bash
# Creates the peers' own virtual environment (never the package's): the spatial-domain
# tools users pick today, from PyPI, plus spotscape itself so that every tool runs under
# the same Python, torch and clustering code.
#   bash benchmarks/peers/setup.sh [VENV]      (default benchmarks/peers/.venv)
# Optional: WITH_R=1 also installs Debian's R + mclust and rpy2 (for GraphST/STAGATE's
# own mclust clustering); needs root and Debian's package registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$here/.venv}"
python3 -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install -q --upgrade pip
# CPU torch first, so that no peer's requirement pulls a several-GB CUDA build.
"$pip" install -q torch==2.13.0
"$pip" install -q -e "$repo"
# Each peer on its own line: one that fails to install is reported and the rest go on.
# harmonypy: BANKSY's recipe for several samples, and the "+ Harmony" rows (a prebuilt wheel).
for pkg in graphst-modern stagate-modern spagcn-modern pybanksy paste-modern harmonypy; do
  if "$pip" install -q "$pkg" "torch==2.13.0" >"$venv/install-$pkg.log" 2>&1; then
    echo "installed $pkg"
  else
    echo "FAILED $pkg (see $venv/install-$pkg.log)"
  fi
done
# SpaceFlow pins torch-sparse/torch-scatter, compiled extensions that need a compiler and a
# matching torch; torch_geometric runs SpaceFlow's GCNConv/DeepGraphInfomax without them, so
# install it without its pins (tools.py adds the one-line networkx shim it needs).
if "$pip" install -q --no-deps SpaceFlow >"$venv/install-SpaceFlow.log" 2>&1 \
   && "$pip" install -q gudhi cmcrameri "torch==2.13.0" >>"$venv/install-SpaceFlow.log" 2>&1; then
  echo "installed SpaceFlow (without torch-sparse/torch-scatter)"
else
  echo "FAILED SpaceFlow (see $venv/install-SpaceFlow.log)"
fi
if [ "${WITH_R:-0}" = "1" ]; then
  apt-get install -y -q r-base-core r-cran-mclust >"$venv/install-r.log" 2>&1 \
    && "$pip" install -q "rpy2==3.5.17" >>"$venv/install-r.log" 2>&1 \
    && echo "installed R + mclust + rpy2" || echo "FAILED R/mclust (see $venv/install-r.log)"
fi
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE "^(torch|graphst|stagate|spagcn|pybanksy|banksy|paste|spaceflow|harmonypy|rpy2|numpy|scipy|anndata|scanpy) " || true
