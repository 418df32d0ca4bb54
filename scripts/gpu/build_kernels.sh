#!/bin/bash
# Builds mamba-ssm and causal-conv1d wheels (as .whl/install.sh does) and installs them into /tmp/site;
# meant to run detached (setsid) while other work goes on. Touches /tmp/kernels_done at the end.
# MAX_JOBS: nvcc jobs per package (default 8; 20 on a 64-core machine).
dir=${1:-.whl}
mkdir -p /root/kernel-wheels
start=$(date +%s)
(cd "$dir"/causal_conv1d-*/ && CAUSAL_CONV1D_FORCE_BUILD=TRUE MAX_JOBS=${MAX_JOBS:-8} NVCC_THREADS=1 \
  python3 -m pip wheel -q --no-build-isolation --no-deps -w /root/kernel-wheels . >/tmp/build-cc.log 2>&1) &
(cd "$dir"/mamba_ssm-*/ && MAMBA_FORCE_BUILD=TRUE MAX_JOBS=${MAX_JOBS:-8} NVCC_THREADS=1 \
  python3 -m pip wheel -q --no-build-isolation --no-deps -w /root/kernel-wheels . >/tmp/build-ms.log 2>&1) &
wait
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site /root/kernel-wheels/*.whl
echo "kernels built in $(( $(date +%s) - start )) s" > /tmp/kernels_done
