#!/bin/bash
# Builds mamba-ssm and causal-conv1d wheels (as .whl/install.sh does) and installs them into /tmp/site;
# meant to run detached (setsid) while other work goes on. Touches /tmp/kernels_done at the end.
# MAX_JOBS: nvcc jobs per package (default 8; 20 on a 64-core machine).
# The sources are copied to /tmp first: the device tool re-sends the working tree (and the carried
# .whl) with every call, which deleted the build folders of a build still running from .whl
# ("getcwd() failed", "can't create .../build/temp...o"): that is why causal-conv1d, the slower
# build, never produced a wheel in the earlier sessions while mamba-ssm did.
# Prebuilt wheels: where a call has returned the wheels this script built (s8.sh check copies
# them to $OUT) and a later session carries them back in .kw/ (git-excluded; carry [".kw"]), they
# are installed instead, if they import against this machine's torch (the image's torch 2.11,
# CUDA 13, Python 3.12 when they were built); otherwise the build runs as before.
dir=${1:-.whl}
mkdir -p /root/kernel-wheels /tmp/kbuild
start=$(date +%s)
prebuilt=${KERNEL_WHEELS:-.kw}
if ls "$prebuilt"/mamba_ssm-*.whl "$prebuilt"/causal_conv1d-*.whl >/dev/null 2>&1; then
  if python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
       "$prebuilt"/mamba_ssm-*.whl "$prebuilt"/causal_conv1d-*.whl \
     && PYTHONPATH=/tmp/site:$PYTHONPATH python3 -c "import torch, selective_scan_cuda, causal_conv1d_cuda"; then
    cp "$prebuilt"/*.whl /root/kernel-wheels/
    echo "kernels from $prebuilt in $(( $(date +%s) - start )) s: $(ls /root/kernel-wheels)" > /tmp/kernels_done
    exit 0
  fi
  echo "the wheels in $prebuilt do not import here: building" >&2
fi
cp -r "$dir"/causal_conv1d-*/ "$dir"/mamba_ssm-*/ /tmp/kbuild/
(cd /tmp/kbuild/causal_conv1d-*/ && CAUSAL_CONV1D_FORCE_BUILD=TRUE MAX_JOBS=${MAX_JOBS:-8} NVCC_THREADS=1 \
  python3 -m pip wheel -q --no-build-isolation --no-deps -w /root/kernel-wheels . >/tmp/build-cc.log 2>&1) &
(cd /tmp/kbuild/mamba_ssm-*/ && MAMBA_FORCE_BUILD=TRUE MAX_JOBS=${MAX_JOBS:-8} NVCC_THREADS=1 \
  python3 -m pip wheel -q --no-build-isolation --no-deps -w /root/kernel-wheels . >/tmp/build-ms.log 2>&1) &
wait
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site /root/kernel-wheels/*.whl
echo "kernels built in $(( $(date +%s) - start )) s: $(ls /root/kernel-wheels)" > /tmp/kernels_done
