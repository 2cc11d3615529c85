#!/usr/bin/env bash
# The GPU check, in one go, on a machine with CUDA and the project checked out:
#   installs the project (and wheels from ./.whl if the machine cannot reach an index), runs the CUDA tests
#   (pytest -m gpu), the whole suite as CI runs it (plus the gpu tests, which CI skips), and the GPU benchmark;
#   logs and result files go to OUT_DIR (default: gpu-results/).
#
#   benchmarks/gpu_check.sh [tests|bench|all]      # default: all
#
# Environment: OUT_DIR, PYTEST_WORKERS (default 8; the suite is process-heavy), BENCH_ARGS (extra options for
# benchmarks/gpu_extract.py, e.g. "--images 8192").
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
out=${OUT_DIR:-gpu-results}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

{
  if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  $python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -n 3
  export PATH="$($python -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  $python -c 'import torch, torchvision, PIL, open_clip; print("torch", torch.__version__, "cuda", torch.version.cuda,
"torchvision", torchvision.__version__, "pillow", PIL.__version__, "open_clip", open_clip.__version__,
"gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
} 2>&1 | tee "$out/setup.log"

status=0
if [[ $what == tests || $what == all ]]; then
  $python -m pytest -q -m gpu -p no:cacheprovider tests/gpu 2>&1 | tee "$out/pytest_gpu.log" || status=1
  # the suite as CI runs it (its own -m "not slow"), on several workers, then the failures again one by one,
  # so that a failure caused by running in parallel is told apart from a real one
  parallel=()
  $python -c "import xdist" 2>/dev/null && parallel=(-n "${PYTEST_WORKERS:-8}")
  $python -m pytest -q "${parallel[@]}" 2>&1 | tail -n 60 | tee "$out/pytest_suite.log"
  if ! grep -qE "^[0-9]+ passed" <(tail -n 1 "$out/pytest_suite.log") || grep -qE "failed|error" <(tail -n 1 "$out/pytest_suite.log"); then
    $python -m pytest -q --lf 2>&1 | tail -n 80 | tee "$out/pytest_suite_rerun.log" || status=1
  fi
fi
if [[ $what == bench || $what == all ]]; then
  (cd benchmarks && $python gpu_extract.py ${BENCH_ARGS:-} 2>&1) | grep -v "Warning\|warn(" | tee "$out/gpu_extract.log" || status=1
  cp benchmarks/results/gpu_extract*.json "$out/" 2>/dev/null || true
fi
exit $status
