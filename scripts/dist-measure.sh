#!/usr/bin/env bash
# dist-measure.sh — the measurements of docs/distributed.md, "Measured here", end to end and
# without downloads: one process with 1 and 2 threads against 2 MPI ranks of 1 thread on
#   - extract: the frozen image tower over the synthetic world's training images;
#   - train: TRM-ML for one epoch from the cache, with its evaluation (whole run, and the steps'
#     ms and allreduce_ms from log.txt);
#   - dist-check --rounds R: the all-reduce of one step's gradients (7,129,089 floats).
# It writes the synthetic world (trmml synth) and a random-weight CLIP (trmml bench
# --random-clip, the benchmarks' initialisation) into its folder, then prints a markdown table
# of wall-clock seconds (one column per way of running, each cell the REPEATS runs in order).
#
#   scripts/dist-measure.sh [--out DIR] [--quick]
#
# Environment: TRMML (default build/trmml, built with MPI), ARCH (rn50|rn101, default rn50),
# WORLD_TRAIN / WORLD_TEST (default 64 / 32), SIZE (input pixels, default 224), ROUNDS
# (dist-check rounds, default 20), REPEATS (runs of each timed job, default 2), BATCH (training
# batch, default 32: two steps on 64 images). --quick is a smoke test of the
# plumbing (8 training and 4 test images, batches of 4, 2 rounds, 1 repeat): its numbers mean
# nothing.
#
# Every run has OMP_WAIT_POLICY=passive: with OpenMP's default spin-wait, threads that wait spin
# on the cores the other rank or thread needs (docs/distributed.md measured extract at 1 x 2
# threads 3 times slower with it). The 2-rank runs bind each rank to a core (--bind-to core).
# Open MPI's single-copy transfers are off (OMPI_MCA_btl_vader_single_copy_mechanism=none, as in
# the tests) because a container's default seccomp profile forbids them; set SINGLE_COPY=auto to
# let Open MPI choose on a machine that allows them. Run it when the machine is otherwise idle:
# the table says what the load average was before and after.
set -euo pipefail
cd "$(dirname "$0")/.."

OUTDIR=build/dist-measure
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUTDIR=${2:?--out needs a folder}; shift 2;;
        --quick) QUICK=1; shift;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
        *) echo "dist-measure: unknown argument '$1' (see --help)" >&2; exit 2;;
    esac
done
TRMML=${TRMML:-build/trmml}
ARCH=${ARCH:-rn50}
SIZE=${SIZE:-224}
if [ $QUICK = 1 ]; then
    WORLD_TRAIN=${WORLD_TRAIN:-8}; WORLD_TEST=${WORLD_TEST:-4}; ROUNDS=${ROUNDS:-2}
    REPEATS=${REPEATS:-1}; BATCH=${BATCH:-4}
else
    WORLD_TRAIN=${WORLD_TRAIN:-64}; WORLD_TEST=${WORLD_TEST:-32}; ROUNDS=${ROUNDS:-20}
    REPEATS=${REPEATS:-2}; BATCH=${BATCH:-32} # the configuration's own batch (128) would make
fi                                            # one step of the 64 images: too few for OneCycle

command -v mpirun >/dev/null || { echo "dist-measure: no mpirun (Open MPI: scripts/install-deps.sh)" >&2; exit 1; }
"$TRMML" version | grep -q '^mpi: .* compiled in' ||
    { echo "dist-measure: $TRMML was built without MPI (make with mpicc present)" >&2; exit 1; }

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/dist-measure.log
: >"$LOG"
export OMP_WAIT_POLICY=passive OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ "${SINGLE_COPY:-none}" = auto ] || export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI=(mpirun -np 2 --bind-to core)
WORLD=$OUTDIR/world
MODEL=$OUTDIR/$ARCH-random.safetensors
DATA=(--dataset voc2007 --root "$WORLD" --class-list "$WORLD/classes.txt")

# run LABEL CMD...: CMD with its output in the log; its wall-clock seconds on stdout.
run() {
    local label=$1 t0 t1
    shift
    echo "\$ $*" >>"$LOG"
    t0=$(date +%s.%N)
    if ! "$@" >>"$LOG" 2>&1; then
        echo "dist-measure: $label failed; the end of $LOG:" >&2
        tail -20 "$LOG" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }'
}

# ---- inputs: the world and the checkpoint (made once, kept) ----------------------------------
if [ ! -f "$WORLD/synth.txt" ] || ! grep -q "train=$WORLD_TRAIN\b" "$WORLD/synth.txt" 2>/dev/null; then
    rm -rf "$WORLD"
    run synth "$TRMML" synth --out "$WORLD" --train "$WORLD_TRAIN" --test "$WORLD_TEST" \
        --size "$SIZE" >/dev/null
fi
[ -f "$MODEL" ] || run random-clip "$TRMML" bench --random-clip "$ARCH" --out "$MODEL" >/dev/null
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- extract: 1 x 1, 1 x 2, 2 x 1 (the three files must be the same bytes) -------------------
extract() { # extract OUT PREFIX...: the training split into OUT
    local out=$1
    shift
    "$@" extract --model "$MODEL" "${DATA[@]}" --split trainval --size "$SIZE" --out "$out"
}
declare -A T
for i in $(seq "$REPEATS"); do
    T[ex11]+="$(run extract-1x1 extract "$OUTDIR/a11.feat" "$TRMML" --threads 1) "
    T[ex12]+="$(run extract-1x2 extract "$OUTDIR/a12.feat" "$TRMML" --threads 2) "
    T[ex21]+="$(run extract-2x1 extract "$OUTDIR/a21.feat" "${MPI[@]}" "$TRMML" --threads 1) "
done
same="the same bytes"
cmp -s "$OUTDIR/a11.feat" "$OUTDIR/a12.feat" && cmp -s "$OUTDIR/a11.feat" "$OUTDIR/a21.feat" ||
    same="DIFFERENT bytes"
"$TRMML" --threads 2 extract --model "$MODEL" "${DATA[@]}" --split test --size "$SIZE" \
    --out "$OUTDIR/test.feat" >>"$LOG" 2>&1

# ---- train TRM-ML one epoch from the cache, with its evaluation --------------------------------
train() { # train RUN PREFIX...
    local dir=$OUTDIR/runs/$1
    shift
    rm -rf "$dir"
    "$@" train --method trmml "${DATA[@]}" --ratio 0.3 --model "$MODEL" --epochs 1 --no-mmcp \
        ${BATCH:+--batch "$BATCH"} \
        --set "input_size=$SIZE" --cached "$OUTDIR/a11.feat" --cached-test "$OUTDIR/test.feat" \
        --out "$dir"
}
# "a-b" over the values of key (ms=, allreduce_ms=) in a run's step lines, in seconds.
steps() {
    awk -v k="$2" '/^step=/ { for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) {
                       v = substr($i, length(k) + 2) / 1000; if (n++ == 0 || v < lo) lo = v
                       if (v > hi) hi = v } }
                   END { if (n) printf(lo == hi ? "%.2f" : "%.2f-%.2f", lo, hi); else printf "-" }' \
        "$OUTDIR/runs/$1/log.txt"
}
for i in $(seq "$REPEATS"); do
    T[tr12]+="$(run train-1x2 train one-$i "$TRMML" --threads 2) "
    T[tr21]+="$(run train-2x1 train two-$i "${MPI[@]}" "$TRMML" --threads 1) "
    T[st12]+="$(steps one-$i ms) "
    T[st21]+="$(steps two-$i ms) "
    T[ar21]+="$(steps two-$i allreduce_ms) "
done

# ---- dist-check: the all-reduce of one step's gradients --------------------------------------
"${MPI[@]}" "$TRMML" --threads 1 dist-check --rounds "$ROUNDS" >"$OUTDIR/dist-check.txt" 2>&1 ||
    { cat "$OUTDIR/dist-check.txt" >&2; exit 1; }
cat "$OUTDIR/dist-check.txt" >>"$LOG"
AR=$(sed -n 's/^all-reduce of 7129089 floats (28.5 MB) in host memory: \(.*\) per rank moved.*/\1/p' \
     "$OUTDIR/dist-check.txt")
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the table -------------------------------------------------------------------------------
cells() { echo "$1" | sed 's/ *$//; s/ /, /g'; }
cat <<EOF
$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')),
load average $LOAD0 before and $LOAD1 after; random-weight $ARCH at $SIZE px, the synthetic world
($WORLD_TRAIN training, $WORLD_TEST test images), OMP_WAIT_POLICY=passive, wall-clock seconds of
$REPEATS run(s) each$([ $QUICK = 1 ] && echo ' (--quick: a smoke test, not a measurement)'):

| job | 1 rank × 1 thread | 1 rank × 2 threads | 2 ranks × 1 thread |
|---|---:|---:|---:|
| extract $WORLD_TRAIN images | $(cells "${T[ex11]}") | $(cells "${T[ex12]}") | $(cells "${T[ex21]}") |
| train TRM-ML, 1 epoch + evaluation, whole run | - | $(cells "${T[tr12]}"); steps $(cells "${T[st12]}") s | $(cells "${T[tr21]}"); steps $(cells "${T[st21]}") s, of which the all-reduce $(cells "${T[ar21]}") s |
| all-reduce of 7,129,089 floats (\`dist-check --rounds $ROUNDS\`) | - | - | ${AR:-see dist-check.txt} |

The three extractions wrote $same. Logs: $LOG.
EOF
