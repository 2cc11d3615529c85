#!/usr/bin/env bash
# The GPU check, in one go, on a machine with CUDA and the project checked out:
#   installs the project (and wheels from ./.whl if the machine cannot reach an index), runs the CUDA tests
#   (pytest -m gpu), the GPU benchmark, and the whole suite as CI runs it (its own -m "not slow"; the gpu
#   tests are skipped there, as in CI); logs and result files go to OUT_DIR (default: gpu-results/).
#
#   benchmarks/gpu_check.sh [tests|bench|suite|all]      # default: all, in that order
#
# Environment: OUT_DIR, PYTEST_WORKERS (default 12; needs pytest-xdist, else the suite runs serially),
# BENCH_ARGS (extra options for benchmarks/gpu_extract.py, e.g. "--images 8192").
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
out=${OUT_DIR:-gpu-results}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

exec > >(tee -a "$out/gpu_check.log") 2>&1
if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
  $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -n 3
PATH="$($python -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$python -c 'import torch, torchvision, PIL, open_clip; print("torch", torch.__version__, "cuda", torch.version.cuda,
"torchvision", torchvision.__version__, "pillow", PIL.__version__, "open_clip", open_clip.__version__,
"gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'

status=0
step() { [[ $what == all || $what == "$1" ]]; }
if step tests; then
  echo "== pytest -m gpu"
  $python -m pytest -q -m gpu -p no:cacheprovider tests/gpu tests/fit/test_proker_ape.py || status=1
fi
if step bench; then
  echo "== benchmarks/gpu_extract.py ${BENCH_ARGS:-}"
  (cd benchmarks && $python gpu_extract.py ${BENCH_ARGS:-} 2>&1 | grep -v "Warning\|warn(") || status=1
  cp benchmarks/results/gpu_extract*.json "$out/" 2>/dev/null || true
fi
if step suite; then
  echo "== the whole suite"
  parallel=()
  $python -c "import xdist" 2>/dev/null && parallel=(-n "${PYTEST_WORKERS:-12}")
  $python -m pytest -q "${parallel[@]}" 2>&1 | tail -n 60 | tee "$out/pytest_suite.log"
  last=$(tail -n 1 "$out/pytest_suite.log")
  if [[ $last =~ (failed|error) ]]; then  # the failures again, one by one: parallel runs told apart from real
    echo "== the failures again, serially"
    $python -m pytest -q --lf 2>&1 | tail -n 80 | tee "$out/pytest_suite_rerun.log"
    [[ $(tail -n 1 "$out/pytest_suite_rerun.log") =~ (failed|error) ]] && status=1
  fi
fi
exit $status
