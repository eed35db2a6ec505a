#!/usr/bin/env bash
# The GPU checks that fit the lent GPU machine (one H100/H200, CUDA 13 driver, nvcc 13.0,
# Python 3.12 with numpy, cython and pytest; no package registry, no boost, glog,
# protobuf or OpenBLAS, so no Caffe of ours can be built there):
#   1. build the Cython CPU NMS and the CUDA NMS for that Python with its nvcc, without
#      setuptools (cython, nvcc, g++ directly);
#   2. benchmarks/gpu_check.py: CUDA NMS == CPU NMS (== numpy) on 540 cases, and timings;
#      the GPU layer tests where a CUDA build of Caffe is importable (skipped otherwise).
# Takes about a minute there.  Output under ${OUT:-/tmp/frcnn-gpu-check}.
#   run: bash benchmarks/gpu_check.sh     (device tool: run, timeout_s 300)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=${OUT:-/tmp/frcnn-gpu-check}
mkdir -p "$WORK/build"
PY=${PYTHON:-python3}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
CUDA_ROOT=$(cd "$(dirname "$(readlink -f "$NVCC")")/.." && pwd)
ARCH=${FRCNN_CUDA_ARCH:-90}
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
  "$NVCC" --version | tail -2
  "$PY" --version
} | tee "$WORK/machine.txt"

EXT=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
CUDA_LIB=$(dirname "$(find "$CUDA_ROOT" -name 'libcudart_static.a' | head -1)")
OUTDIR=lib/frcnn/_native
T0=$SECONDS
for name in cpu_nms gpu_nms; do
  "$PY" -m cython -3 --cplus "nms/$name.pyx" -o "$WORK/build/$name.cpp"
done
"$NVCC" -c nms/nms_kernel.cu -o "$WORK/build/nms_kernel.o" -Inms -O3 --std=c++17 \
  -Xcompiler -fPIC -fmad=false -prec-div=true -ftz=false \
  -gencode "arch=compute_$ARCH,code=sm_$ARCH"
g++ -shared -fPIC -O3 -ffp-contract=off -DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION \
  -I"$PYINC" -I"$NPINC" "$WORK/build/cpu_nms.cpp" -o "$OUTDIR/cpu_nms$EXT"
g++ -shared -fPIC -O3 -DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION -I"$PYINC" -I"$NPINC" \
  -I"$CUDA_ROOT/include" -Inms "$WORK/build/gpu_nms.cpp" "$WORK/build/nms_kernel.o" \
  -L"$CUDA_LIB" -lcudart_static -lrt -lpthread -ldl -o "$OUTDIR/gpu_nms$EXT"
echo "[gpu_check] built the CPU and CUDA NMS (sm_$ARCH) in $((SECONDS - T0)) s"

PYTHONPATH=$ROOT/lib:$ROOT/layers${PYTHONPATH:+:$PYTHONPATH} "$PY" benchmarks/gpu_check.py \
  2>&1 | tee "$WORK/gpu_check.log"
