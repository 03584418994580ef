#!/usr/bin/env bash
# device-parity.sh — the whole pipeline on two devices, every product compared byte for byte
# (issue 16; docs/cuda.md "How the device path is proven").
#
#   scripts/device-parity.sh [DEVICE_A [DEVICE_B]]      default: cpu guard
#
# On each device, from one synthetic world: pretrain-clip (the miniature CLIP of
# test/data/embedded-mini, a few steps), embed, zeroshot, zeroshot-eval, extract (train and
# test), train every method from the feature cache and TRM-ML from the images, eval, predict and
# visualize. Then the products are compared: the CLIP it pretrained, the caches, every run's
# checkpoint.safetensors, metrics.jsonl, eval.json and ap.csv, the PNGs, and what each command
# printed. log.txt files are not compared (they hold wall-clock times).
#
# `guard` is the test device of tensor/device_guard.c: the CPU kernels on memory the host cannot
# touch outside the device table, so a host access to device memory crashes here instead of
# working by accident as it would on the CPU. On a GPU machine: scripts/device-parity.sh cpu cuda
# (results then agree only within rounding: compare with scripts/gpu-check.sh instead).
#
# Environment: TRMML (the binary, default build/trmml), PARITY_DIR (work directory, default a
# new one under /tmp, removed at the end unless KEEP=1), PARITY_THREADS (default 1), STEPS
# (pretraining steps, default 12), EPOCHS (per run, default 2).
# Exit status: 0 when everything agrees; 1 listing what differs; 2 when a command failed.
set -euo pipefail

TRMML=$(realpath "${TRMML:-build/trmml}")
A=${1:-cpu}
B=${2:-guard}
THREADS=${PARITY_THREADS:-1}
STEPS=${STEPS:-12}
EPOCHS=${EPOCHS:-2}
CONF=$(realpath test/data/embedded-mini)
DIR=${PARITY_DIR:-$(mktemp -d /tmp/trmml_parity_XXXXXX)}
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"; }
trap cleanup EXIT
mkdir -p "$DIR"

world="$DIR/world"
"$TRMML" synth --out "$world" --train 48 --test 24 --size 64 --seed 0 > /dev/null
ds=(--dataset voc2007 --root "$world" --class-list "$world/classes.txt")
img="$world/VOCdevkit/VOC2007/JPEGImages/$(head -1 "$world/VOCdevkit/VOC2007/ImageSets/Main/test.txt").jpg"

# run_on DEVICE SIDE: the pipeline in $DIR/work, then moved to $DIR/SIDE (a or b). Both devices
# run in the same directory because paths are recorded in caches, configurations and
# checkpoints. A failing command stops the script (status 2).
run_on() (
  local dev=$1 o="$DIR/work"
  local t=("$TRMML" --device "$dev" --threads "$THREADS")
  rm -rf "$o"
  mkdir -p "$o"
  step() { # step NAME command...: stdout to $o/NAME.out, stderr kept for a failure
    local name=$1; shift
    if ! "$@" > "$o/$name.out" 2> "$o/$name.err"; then
      echo "device-parity: $dev: '$name' failed:" >&2
      tail -20 "$o/$name.err" >&2
      exit 2
    fi
  }
  step pretrain "${t[@]}" pretrain-clip --data "$world" --out "$o/clip.safetensors" \
    --config "$CONF/clip-small.conf" --steps "$STEPS"
  step embed "${t[@]}" embed --model "$o/clip.safetensors" --image "$img" --text "a red circle" \
    --dense
  step zeroshot "${t[@]}" zeroshot --model "$o/clip.safetensors" --image "$img" \
    --classes "$(paste -sd, "$world/classes.txt")"
  step zeroshot-eval "${t[@]}" zeroshot-eval --model "$o/clip.safetensors" "${ds[@]}" \
    --split test --size 64
  for split in trainval test; do
    step "extract-$split" "${t[@]}" extract --model "$o/clip.safetensors" "${ds[@]}" \
      --split "$split" --size 64 --out "$o/$split.feat"
  done
  local cached=(--cached "$o/trainval.feat" --cached-test "$o/test.feat")
  local small=(--set input_size=64 --set ffn_hidden=32)
  for m in baseline dualcoop trmml pvlr; do
    local extra=()
    case $m in
      dualcoop) extra=(--cache-any-filter);;
      trmml) extra=(--set head_hidden=32);;
      pvlr) extra=(--set pvlr_heads=4);;
    esac
    step "train-$m" "${t[@]}" train --method "$m" "${ds[@]}" --model "$o/clip.safetensors" \
      --out "$o/run-$m" "${cached[@]}" --ratio 0.5 --epochs "$EPOCHS" --batch 12 \
      "${small[@]}" "${extra[@]}"
  done
  # TRM-ML through the image tower (augmented views), with micro-batches and the MMCP phase.
  step train-trmml-images "${t[@]}" train --method trmml "${ds[@]}" \
    --model "$o/clip.safetensors" --out "$o/run-images" --ratio 0.5 --epochs 1 --batch 12 \
    --micro-batch 5 "${small[@]}" --set head_hidden=32
  for r in baseline dualcoop trmml pvlr images; do
    local run="$o/run-${r}"
    step "eval-$r" "${t[@]}" eval "$run"
    step "predict-$r" "${t[@]}" predict "$run" "$img" --top 3
    if [ "$r" != baseline ]; then
      step "visualize-$r" "${t[@]}" visualize "$run" "$img" --out "$o/maps-$r.png" --top 2
    fi
  done
  mv "$o" "$DIR/$2"
)

run_on "$A" a
run_on "$B" b

# Compare: every product but the logs (wall-clock times) and stderr (timings, paths).
differ=0
n=0
while IFS= read -r f; do
  rel=${f#"$DIR/a/"}
  case "$rel" in *.err|*/log.txt|*.lock) continue;; esac
  n=$((n + 1))
  if [[ "$rel" == *.out ]]; then # printed progress: rates and elapsed times differ run to run
    untimed() { sed -E 's/[0-9.]+ img\/s//; s/elapsed [0-9]+ s//' "$1"; }
    same() { cmp -s <(untimed "$1") <(untimed "$2"); }
  else
    same() { cmp -s "$1" "$2"; }
  fi
  if ! same "$f" "$DIR/b/$rel"; then
    echo "device-parity: $rel differs between $A and $B" >&2
    differ=1
  fi
done < <(find "$DIR/a" -type f | sort)
# The same set of files on both sides.
if ! diff <(cd "$DIR/a" && find . -type f ! -name '*.err' | sort) \
          <(cd "$DIR/b" && find . -type f ! -name '*.err' | sort) > /dev/null; then
  echo "device-parity: the two devices wrote different sets of files" >&2
  differ=1
fi
if [ $differ = 0 ]; then
  echo "device-parity: $A and $B agree on all $n products"
fi
exit $differ
