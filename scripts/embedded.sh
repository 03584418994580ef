#!/usr/bin/env bash
# embedded.sh — the download-free default (issue 6; docs/embedded.md).
#
#   scripts/embedded.sh train   [--ratio R] [--seed S] [--methods "baseline dualcoop trmml pvlr"]
#                               [--precision fp32|bf16]
#   scripts/embedded.sh results [--ratios "0.1 0.3 0.5 0.7 0.9"] [--seeds "0 1 2"]
#                               (RESULTS_JOBS=N: N cells of the grid at once, one thread each)
#
# train: generate the synthetic world, pretrain the small CLIP on its image–caption pairs,
# evaluate it zero-shot, extract the frozen tower's features, train each method at ratio R from
# the cache and print one table (mAP, CF1, OF1 on the synthetic test split). Every product is
# cached under build/embedded/ and reused when its inputs (configuration files, the binary's
# version line, the world's description) are unchanged, so a second `make train` only prints.
# results: the grid of docs/results.md (ratios x seeds x methods and TRM-ML's Table-3
# components), then docs/results.md and docs/results-map.png.
set -euo pipefail

TRMML=${TRMML:-build/trmml}
OUT=${EMBEDDED_DIR:-build/embedded}
CONF=${EMBEDDED_CONF:-scripts/embedded}  # configuration files (the test uses a miniature set)
mode=${1:-train}
shift || true
ratio=0.3
seed=0
methods="baseline dualcoop trmml pvlr"
precision=fp32
ratios="0.1 0.3 0.5 0.7 0.9"
seeds="0 1 2"
world_train=${WORLD_TRAIN:-4000}
world_test=${WORLD_TEST:-1000}
# Overrides for a miniature run (test/test_embedded.c): world size, pretraining steps and batch,
# epochs per method. Unset: the configuration files' values.
pretrain_steps=${PRETRAIN_STEPS:-}
pretrain_batch=${PRETRAIN_BATCH:-}
epochs=${EPOCHS:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --ratio) ratio=$2; shift 2;;
    --seed) seed=$2; shift 2;;
    --methods) methods=$2; shift 2;;
    --precision) precision=$2; shift 2;;
    --ratios) ratios=$2; shift 2;;
    --seeds) seeds=$2; shift 2;;
    *) echo "embedded.sh: unknown option '$1'" >&2; exit 2;;
  esac
done
case "$mode" in train|results|cell) ;; *) echo "embedded.sh: mode '$mode': expected train or results" >&2; exit 2;; esac

# --precision bf16: the frozen towers' products in bf16 (docs/ops/gemm_bf16.md) for the zero-shot
# evaluation, the features and the runs, kept beside the fp32 ones (suffix -bf16); the world and
# the pretrained CLIP are shared (pretraining is fp32).
sfx=""
[ "$precision" = fp32 ] || sfx="-$precision"
prec=(--precision "$precision")

say() { printf '== %s\n' "$*"; }
now() { date +%s; }
t_start=$(now)
elapsed() { echo "$(( $(now) - t_start )) s"; }

# A cache entry is valid when its stamp file holds the hash of its inputs.
stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
fresh() { [ -f "$1" ] && [ -f "$1.stamp" ] && [ "$(cat "$1.stamp")" = "$2" ]; }
seal() { echo "$2" > "$1.stamp"; }

mkdir -p "$OUT"
version=$("$TRMML" version | head -1)

# 1. The synthetic world (seconds).
world="$OUT/world"
wkey=$(echo "synth seed=0 train=$world_train test=$world_test size=128 $version" | sha256sum | cut -c1-16)
if ! fresh "$world/synth.txt" "$wkey"; then
  say "generating the synthetic world ($world_train train + $world_test test images, 128 px) [$(elapsed)]"
  rm -rf "$world"
  "$TRMML" synth --out "$world" --train "$world_train" --test "$world_test" --size 128 --seed 0 | tail -1
  seal "$world/synth.txt" "$wkey"
fi
ds=(--dataset voc2007 --root "$world" --class-list "$world/classes.txt")

# 2. The small CLIP (minutes): CLIP's contrastive objective on the world's captions.
clip="$OUT/clip-small.safetensors"
ckey=$( (cat "$CONF/clip-small.conf" "$world/synth.txt"; echo "$version $pretrain_steps $pretrain_batch") | sha256sum | cut -c1-16)
if ! fresh "$clip" "$ckey"; then
  say "pretraining the small CLIP on image-caption pairs ($CONF/clip-small.conf) [$(elapsed)]"
  steps_flag=()
  [ -n "$pretrain_steps" ] && steps_flag+=(--steps "$pretrain_steps")
  [ -n "$pretrain_batch" ] && steps_flag+=(--batch "$pretrain_batch")
  "$TRMML" pretrain-clip --data "$world" --out "$clip" --config "$CONF/clip-small.conf" "${steps_flag[@]}"
  seal "$clip" "$ckey"
  rm -f "$OUT"/zeroshot*.json "$OUT"/*.feat "$OUT"/*.feat.stamp
fi
size=$(sed -n 's/^input_size *= *\([0-9]*\).*/\1/p' "$CONF/features.conf")

# 3. Zero-shot CLIP on the test split.
zs="$OUT/zeroshot$sfx.json"
if ! fresh "$zs" "$ckey"; then
  say "zero-shot evaluation of the small CLIP [$(elapsed)]"
  "$TRMML" zeroshot-eval --model "$clip" "${ds[@]}" --split test --size "$size" --out "$zs" "${prec[@]}" \
    2> "$OUT/zeroshot.log" > /dev/null || { cat "$OUT/zeroshot.log" >&2; exit 1; }
  seal "$zs" "$ckey"
fi

# 4. Features of both splits, with each method's test resampling (bicubic; DualCoOp bilinear).
for resample in bicubic bilinear; do
  for split in trainval test; do
    f="$OUT/$resample-$split$sfx.feat"
    if ! fresh "$f" "$ckey-$size"; then
      say "extracting $split features ($resample, $size px) [$(elapsed)]"
      "$TRMML" extract --model "$clip" "${ds[@]}" --split "$split" --size "$size" \
        --resample "$resample" --out "$f" "${prec[@]}" 2>&1 | tail -1
      seal "$f" "$ckey-$size"
    fi
  done
done

# 5. One run: method, ratio, seed, extra flags (an ablation) -> its eval.json.
run_one() {
  local method=$1 r=$2 s=$3 tag=$4; shift 4
  local run="$OUT/runs/$tag-r$r-s$s$sfx" resample=bicubic
  [ "$method" = dualcoop ] && resample=bilinear
  local key
  key=$( (cat "$CONF/$method.conf"; echo "$ckey $r $s $* $epochs $version") | sha256sum | cut -c1-16)
  if fresh "$run/eval.json" "$key"; then return 0; fi
  say "training $tag at ratio $r, seed $s [$(elapsed)]"
  rm -rf "$run"
  mkdir -p "$OUT/runs"
  local ep=()
  [ -n "$epochs" ] && ep=(--epochs "$epochs")
  "$TRMML" train --method "$method" "${ds[@]}" --ratio "$r" --seed "$s" --model "$clip" \
    --out "$run" --config "$CONF/$method.conf" --set "input_size=$size" \
    --cached "$OUT/$resample-trainval$sfx.feat" --cached-test "$OUT/$resample-test$sfx.feat" \
    --precision "$precision" "${ep[@]}" "$@" \
    > "$run.log" 2>&1 || { tail -20 "$run.log" >&2; exit 1; }
  grep -E '^(eval|epoch)' "$run/log.txt" | tail -2 | sed 's/^/   /' || true
  "$TRMML" eval "$run" > /dev/null
  seal "$run/eval.json" "$key"
}

# The value of a top-level key of a metrics JSON object (the first occurrence: top-level keys
# come before the "top3" object).
metric() { grep -o "\"$2\":[-0-9.eE+]*" "$1" | head -1 | cut -d: -f2; }
fmt() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }

label() {
  case "$1" in
    zeroshot) echo "zero-shot CLIP";; baseline) echo "baseline (Table 3)";;
    dualcoop) echo "DualCoOp";; trmml) echo "TRM-ML";; pvlr) echo "PVLR";; *) echo "$1";;
  esac
}

if [ "$mode" = train ]; then
  for m in $methods; do run_one "$m" "$ratio" "$seed" "$m"; done
  chance=$(sed -n 's/.*chance-level mAP \([0-9.]*\).*/\1/p' "$OUT/zeroshot.log")
  echo
  echo "Synthetic world, test split ($world_test images, 16 classes), label ratio $ratio, seed $seed," \
    "precision $precision:"
  printf '  %-20s %7s %7s %7s\n' method mAP CF1 OF1
  printf '  %-20s %7s %7s %7s\n' "$(label zeroshot)" "$(fmt "$(metric "$zs" mAP)")" \
    "$(fmt "$(metric "$zs" CF1)")" "$(fmt "$(metric "$zs" OF1)")"
  for m in $methods; do
    e="$OUT/runs/$m-r$ratio-s$seed$sfx/eval.json"
    printf '  %-20s %7s %7s %7s\n' "$(label "$m")" "$(fmt "$(metric "$e" mAP)")" \
      "$(fmt "$(metric "$e" CF1)")" "$(fmt "$(metric "$e" OF1)")"
  done
  echo "  chance-level mAP (random scores): $(fmt "$chance")"
  echo "Runs: $OUT/runs/ (log.txt, metrics.jsonl, curve.png, eval.json). Total $(elapsed)."
  exit 0
fi

# ---- results: the grid ------------------------------------------------------------------------
# TRM-ML's Table-3 components: the baseline, + CARL (no KD, MMCP, MMCL), + KD, + MMCP, full.
ablations=("trmml-carl:--no-kd --no-mmcp --no-mmcl" "trmml-kd:--no-mmcp --no-mmcl" "trmml-mmcp:--no-mmcl")
# One cell of the grid (one ratio, one seed): every method and component. `cell` is the mode the
# parallel grid below runs; by hand: scripts/embedded.sh cell --ratio R --seed S.
grid_cell() {
  for m in $methods; do run_one "$m" "$1" "$2" "$m"; done
  for a in "${ablations[@]}"; do
    # shellcheck disable=SC2086
    run_one trmml "$1" "$2" "${a%%:*}" ${a#*:}
  done
}
if [ "$mode" = cell ]; then
  grid_cell "$ratio" "$seed"
  exit 0
fi
# RESULTS_JOBS=N runs N cells at once, each on one thread (the runs are small: on 2 cores two
# one-thread runs finish more work than one two-thread run). Runs are independent and cached one
# by one, so any schedule gives the same files.
jobs=${RESULTS_JOBS:-1}
if [ "$jobs" -gt 1 ]; then
  for r in $ratios; do for s in $seeds; do echo "$r $s"; done; done |
    OMP_NUM_THREADS=1 xargs -P "$jobs" -n 2 sh -c '"$0" cell --ratio "$1" --seed "$2"' "$0"
else
  for r in $ratios; do for s in $seeds; do grid_cell "$r" "$s"; done; done
fi
chance=$(sed -n 's/.*chance-level mAP \([0-9.]*\).*/\1/p' "$OUT/zeroshot.log")
cmd="make results RESULTS_RATIOS='$ratios' RESULTS_SEEDS='$seeds'"
[ "$jobs" -gt 1 ] && cmd="$cmd RESULTS_JOBS=$jobs"
"$TRMML" results --runs "$OUT/runs" --zeroshot "$zs" --chance "$chance" --ratios "$ratios" \
  --seeds "$seeds" --out "${RESULTS_MD:-docs/results.md}" --plot "${RESULTS_PNG:-docs/results-map.png}" \
  --command "$cmd"
say "wrote ${RESULTS_MD:-docs/results.md} and ${RESULTS_PNG:-docs/results-map.png} [$(elapsed)]"
