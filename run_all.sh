#!/usr/bin/env bash
# The main job, end to end: extract -> fit -> report on the embedded default (digits, ViT-B-32, openai).
#
#   ./run_all.sh                          # embedded default; sets up .venv on first use
#   ./run_all.sh --pretrained none        # offline: random weights, clearly marked in every result
#   ./run_all.sh --dataset dtd --data-root ~/data --model ViT-B-16 --pretrained openai
#   ./run_all.sh --aug-views 10           # also cache 10 augmented views per train image and train on them
#   ./run_all.sh --tests                  # set up, then run the test suite
# Other options: --work-dir DIR (default work_dir), --shots 1,2,4,8,16, --seeds 1,2,3, --methods LIST.
#
# Every step skips what exists, so a rerun only does what is missing.
set -euo pipefail
cd "$(dirname "$0")"

DATASET=digits MODEL=ViT-B-32 PRETRAINED=openai DATA_ROOT="" WORK=work_dir
SHOTS=1,2,4,8,16 SEEDS=1,2,3 METHODS=cmm,zero_shot,linear_probe,tip_adapter,tip_adapter_f,gda,lp_pp
AUG_VIEWS=0 TRAIN_VIEWS=plain RUN_TESTS=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dataset) DATASET=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --pretrained) PRETRAINED=$2; shift 2 ;;
    --data-root) DATA_ROOT=$2; shift 2 ;;
    --work-dir) WORK=$2; shift 2 ;;
    --shots) SHOTS=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --methods) METHODS=$2; shift 2 ;;
    --aug-views) AUG_VIEWS=$2; TRAIN_VIEWS=aug; shift 2 ;;
    --tests) RUN_TESTS=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/pipeline || setup.cfg -nt .venv/.installed ]]; then
  echo "== setting up .venv (first run only)"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
export PATH="$PWD/.venv/bin:$PATH"

if [[ $RUN_TESTS == 1 ]]; then
  exec python -m pytest -q
fi

CACHE_DIR="$WORK/cache" RUNS_DIR="$WORK/runs" REPORT_DIR="$WORK/report"
echo "== 1/3 extract: $DATASET with $MODEL ($PRETRAINED)"
pipeline extract --dataset "$DATASET" ${DATA_ROOT:+--data-root "$DATA_ROOT"} --model "$MODEL" \
  --pretrained "$PRETRAINED" --cache-dir "$CACHE_DIR" --aug-views "$AUG_VIEWS"
echo "== 2/3 fit: $METHODS, shots $SHOTS, seeds $SEEDS"
pipeline fit --dataset "$DATASET" --model "$MODEL" --pretrained "$PRETRAINED" --cache-dir "$CACHE_DIR" \
  --runs-dir "$RUNS_DIR" --shots "$SHOTS" --seeds "$SEEDS" --method "$METHODS" --train-views "$TRAIN_VIEWS"
echo "== 3/3 report"
pipeline report --runs-dir "$RUNS_DIR" --out "$REPORT_DIR"
echo
echo "tables: $REPORT_DIR/tables"
echo "plots:  $REPORT_DIR/plots"
echo "index:  $REPORT_DIR/README.md"
