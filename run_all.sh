#!/usr/bin/env bash
# The main job, end to end: extract -> fit -> report (run ./run_all.sh --help for the options).
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'TEXT'
Usage: ./run_all.sh [OPTIONS]

The main job, end to end: pipeline extract -> fit -> report, on the embedded default (scikit-learn's digits,
ViT-B-32, openai weights) unless told otherwise. Sets up .venv on first use. Every step skips what exists, so
a rerun only does what is missing.

Options:
  --dataset KEYS          dataset key (digits, dtd, caltech101, ..., folder), or several comma-separated
                          (dtd,eurosat: one cache and one set of runs each)           [digits]
  --data-root DIR         folder holding the datasets (CoOp's DATA layout)
  --model NAME            open_clip model name, hf-hub:org/repo, local-dir:DIR or a config .json  [ViT-B-32]
  --pretrained W          pretrained tag, checkpoint file, or none (random weights, marked everywhere)  [openai]
  --weights-tag TAG       with a checkpoint file: the tag whose preprocessing it needs (e.g. openai)
  --shots LIST            shots per class                                              [1,2,4,8,16]
  --seeds LIST            sampling seeds                                               [1,2,3]
  --methods LIST          methods to fit (also --method)        [cmm,zero_shot,linear_probe,tip_adapter,tip_adapter_f,gda,lp_pp,proker,ape]
  --aug-views V           also cache V augmented views per train image and fit the methods that train on
                          them a second time with them (labels +aug), beside the plain runs  [0]
  --device DEVICE         torch device for extraction and fitting (auto, cpu, cuda)     [auto]
  --work-dir DIR          where cache/, runs/ and report/ go                           [work_dir]
  --tests                 set up, then run the test suite instead
  -h, --help              this text

Environment: RUN_ALL_SKIP_SETUP=1 uses the pipeline command already on PATH instead of setting up .venv.

Examples:
  ./run_all.sh                          # the embedded default
  ./run_all.sh --pretrained none        # offline: random weights, clearly marked in every result
  ./run_all.sh --dataset dtd,eurosat --data-root ~/data --model ViT-B-16 --pretrained openai
  ./run_all.sh --dataset dtd --data-root ~/data --aug-views 10   # plain runs and +aug runs side by side
  ./run_all.sh --pretrained ~/weights/vit_b_32.pt --weights-tag openai
TEXT
}

fail() { echo "run_all.sh: $1" >&2; exit 2; }

DATASET=digits MODEL=ViT-B-32 PRETRAINED=openai WEIGHTS_TAG="" DATA_ROOT="" WORK=work_dir DEVICE=auto
SHOTS=1,2,4,8,16 SEEDS=1,2,3 METHODS=cmm,zero_shot,linear_probe,tip_adapter,tip_adapter_f,gda,lp_pp,proker,ape
AUG_VIEWS=0 RUN_TESTS=0
while [[ $# -gt 0 ]]; do
  option=$1
  case "$option" in
    -h|--help) usage; exit 0 ;;
    --tests) RUN_TESTS=1; shift; continue ;;
    --*=*) set -- "${option%%=*}" "${option#*=}" "${@:2}"; continue ;;  # --opt=value -> --opt value
    --dataset|--model|--pretrained|--weights-tag|--data-root|--work-dir|--shots|--seeds|--methods|--method|\
    --aug-views|--device)
      [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || fail "$option needs a value (see --help)"
      value=$2; shift 2 ;;
    *) fail "unknown option '$option' (see --help)" ;;
  esac
  case "$option" in
    --dataset) DATASET=$value ;;
    --model) MODEL=$value ;;
    --pretrained) PRETRAINED=$value ;;
    --weights-tag) WEIGHTS_TAG=$value ;;
    --data-root) DATA_ROOT=$value ;;
    --work-dir) WORK=$value ;;
    --shots) [[ $value =~ ^[0-9]+(,[0-9]+)*$ ]] || fail "--shots must be a comma-separated list of integers, got '$value'"
             SHOTS=$value ;;
    --seeds) [[ $value =~ ^[0-9]+(,[0-9]+)*$ ]] || fail "--seeds must be a comma-separated list of integers, got '$value'"
             SEEDS=$value ;;
    --methods|--method) METHODS=$value ;;
    --aug-views) [[ $value =~ ^[0-9]+$ ]] || fail "--aug-views must be a whole number, got '$value'"
                 AUG_VIEWS=$value ;;
    --device) DEVICE=$value ;;
  esac
done
FIT_DEVICE=$DEVICE
if [[ $DEVICE == auto ]]; then FIT_DEVICE=cpu; fi

PYTHON=${PYTHON:-python3}
if [[ ${RUN_ALL_SKIP_SETUP:-0} == 1 ]]; then
  command -v pipeline >/dev/null || { echo "run_all.sh: RUN_ALL_SKIP_SETUP=1 but no pipeline command on PATH" >&2; exit 1; }
elif [[ ! -x .venv/bin/pipeline || setup.cfg -nt .venv/.installed || constraints.txt -nt .venv/.installed ]]; then
  echo "== setting up .venv (first run only; the tested versions in constraints.txt)"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
  touch .venv/.installed
fi
export PATH="$PWD/.venv/bin:$PATH"

if [[ $RUN_TESTS == 1 ]]; then
  exec python -m pytest -q
fi

CACHE_DIR="$WORK/cache" RUNS_DIR="$WORK/runs" REPORT_DIR="$WORK/report"
WEIGHTS_NOTE=$PRETRAINED
case "${PRETRAINED,,}" in none|random) WEIGHTS_NOTE="none: RANDOM WEIGHTS, not a CLIP result" ;; esac
echo "== 1/3 extract: $DATASET with $MODEL ($WEIGHTS_NOTE)"
pipeline extract --dataset "$DATASET" ${DATA_ROOT:+--data-root "$DATA_ROOT"} --model "$MODEL" \
  --pretrained "$PRETRAINED" ${WEIGHTS_TAG:+--weights-tag "$WEIGHTS_TAG"} --cache-dir "$CACHE_DIR" \
  --aug-views "$AUG_VIEWS" --device "$DEVICE"
FIT=(pipeline fit --dataset "$DATASET" --model "$MODEL" --pretrained "$PRETRAINED" --cache-dir "$CACHE_DIR"
     --runs-dir "$RUNS_DIR" --shots "$SHOTS" --seeds "$SEEDS" --method "$METHODS" --device "$FIT_DEVICE")
echo "== 2/3 fit: $METHODS, shots $SHOTS, seeds $SEEDS"
"${FIT[@]}" --train-views plain
if (( 10#$AUG_VIEWS > 0 )); then
  echo "== 2/3 fit, again with the $AUG_VIEWS augmented views, the methods that train on them"
  "${FIT[@]}" --train-views aug
fi
echo "== 3/3 report"
pipeline report --runs-dir "$RUNS_DIR" --out "$REPORT_DIR"
echo
echo "tables: $REPORT_DIR/tables"
echo "plots:  $REPORT_DIR/plots"
echo "index:  $REPORT_DIR/README.md"
if [[ ${RUN_ALL_SKIP_SETUP:-0} != 1 ]]; then
  echo "the pipeline command: source .venv/bin/activate (then pipeline --help)"
fi
