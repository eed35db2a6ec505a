#!/usr/bin/env bash
# Install everything squeezenet-frcnn needs, then run the main job.
#
#   ./install.sh            install (idempotent; a second run takes seconds) and run the main
#                           job (frcnn demo: 10 to 16 minutes on 2 cores, by the CPU)
#   ./install.sh --no-job   install only
#
# Steps: Debian packages (only those missing), a virtual environment in .venv (or
# $FRCNN_VENV), the Python packages of requirements.txt, Caffe with this project's
# layers (built once, cached in ~/.cache/squeezenet-frcnn or $FRCNN_CACHE), and this
# package in editable mode with its Cython kernels (and the CUDA NMS where nvcc is found).
#
# Caffe for the GPU: FRCNN_CUDA=auto (default: a complete system CUDA toolkit, else the
# CPU), pip (CUDA 13.0 from PyPI into the environment), system, or 0 (CPU).  The value
# given is kept for later runs in the same environment.  FRCNN_CUDA_ARCH picks the GPUs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${FRCNN_VENV:-$ROOT/.venv}
RUN_JOB=1
for arg in "$@"; do
  case $arg in
    --no-job) RUN_JOB=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(
  build-essential patch protobuf-compiler libprotobuf-dev libgoogle-glog-dev libgflags-dev
  libhdf5-dev libopenblas-dev libboost-system-dev libboost-thread-dev
  libboost-filesystem-dev libboost-regex-dev libboost-python-dev
)

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

cd "$ROOT"
T0=$SECONDS

step "Python and virtual environment ($VENV)"
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
pyver=$("$PYTHON" -c 'import sys; print("%d%d" % sys.version_info[:2])')
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" || die "could not create $VENV"
PY=$VENV/bin/python
"$PY" --version

step "Python packages (requirements.txt)"
# numpy first (the Caffe build compiles against it); the rest downloads and installs in the
# background while the Debian packages install and Caffe builds (about a minute saved on a
# fresh machine), and is waited for before this package's own install.
req_stamp=$(stamp_of requirements.txt)
PIP_PID=
PIP_LOG=$VENV/.frcnn-requirements.log
if [ "$(cat "$VENV/.frcnn-requirements" 2>/dev/null)" != "$req_stamp" ]; then
  numpy_req=$(grep -E '^numpy([<>=!~ ]|$)' requirements.txt || echo numpy)
  "$PY" -m pip install -q --disable-pip-version-check "$numpy_req" \
    || die "pip install $numpy_req failed"
  "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt > "$PIP_LOG" 2>&1 &
  PIP_PID=$!
  trap '[ -z "$PIP_PID" ] || kill "$PIP_PID" 2>/dev/null || true' EXIT
  echo "installing in the background (log $PIP_LOG)"
else
  echo "up to date"
fi
wait_for_pip() {
  [ -n "$PIP_PID" ] || return 0
  if ! wait "$PIP_PID"; then
    cat "$PIP_LOG" >&2
    die "pip install -r requirements.txt failed (log above, also in $PIP_LOG)"
  fi
  PIP_PID=
  echo "$req_stamp" > "$VENV/.frcnn-requirements"
  echo "Python packages (requirements.txt): installed"
}

step "Debian packages"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: install these Debian packages: ${missing[*]}"
    SUDO=(sudo)
  fi
  "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || die "apt-get install failed for: ${missing[*]}"
else
  echo "all ${#APT_PACKAGES[@]} present"
fi

ls /usr/lib/*/libboost_python"$pyver".so >/dev/null 2>&1 \
  || die "Caffe's Python bindings need Boost.Python for Python ${pyver:0:1}.${pyver:1} (libboost_python$pyver.so); Debian 12 ships it for Python 3.11: run with PYTHON=python3.11"

cuda_mode=${FRCNN_CUDA:-$(cat "$VENV/.frcnn-cuda" 2>/dev/null || echo auto)}
step "Caffe (FRCNN_CUDA=$cuda_mode; Python layers, ROIPooling, SmoothL1Loss)"
"$PY" caffe_ext/build_caffe.py || die "the Caffe build failed (see above)"

step "squeezenet-frcnn (editable, Cython kernels)"
wait_for_pip
# The CUDA NMS builds with Caffe's toolkit where Caffe has one (the pip toolkit is in the
# environment, where setup.py would not look), and not at all in a CPU-only choice.
caffe_cuda=$("$PY" - <<'EOF'
import json, pathlib, sysconfig
record = pathlib.Path(sysconfig.get_paths()["purelib"]) / "caffe" / "_frcnn_build.json"
cuda = json.loads(record.read_text()).get("cuda") if record.exists() else None
print(cuda["root"] if cuda else "")
EOF
)
if [ -n "$caffe_cuda" ]; then
  export CUDA_HOME=$caffe_cuda
elif [ "$(cat "$VENV/.frcnn-cuda" 2>/dev/null)" = 0 ]; then
  export FRCNN_NO_CUDA=1
fi
# sources only: the build writes nms/*.c and *.cpp (cythonize), which would change it
pkg_stamp=$( (stamp_of setup.py pyproject.toml nms/*.pyx nms/*.py nms/*.cu nms/*.h; echo "${CUDA_HOME:-} ${FRCNN_NO_CUDA:-}") \
  | sha256sum | cut -c1-16)
unbuilt=0
for pyx in nms/*.pyx; do
  name=$(basename "$pyx" .pyx)
  [[ -e $pyx && $name != gpu_* ]] || continue
  ls lib/frcnn/_native/"$name".*so >/dev/null 2>&1 || unbuilt=1
done
if [ "$(cat "$VENV/.frcnn-package" 2>/dev/null)" != "$pkg_stamp" ] || ((unbuilt)) \
   || ! "$PY" -c "import frcnn.cli, rpn, roi_data_layer" 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation -e . \
    || die "pip install -e . failed"
  echo "$pkg_stamp" > "$VENV/.frcnn-package"
fi
"$VENV/bin/frcnn" info || die "the installed environment is incomplete (see above)"
echo "installed in $((SECONDS - T0))s"

if ((RUN_JOB)); then
  step "Main job: synthetic dataset -> train SqueezeNet Faster R-CNN -> evaluate -> detect"
  "$VENV/bin/frcnn" demo --out "$ROOT/output/demo"
fi
