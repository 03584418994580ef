#!/bin/sh
# bench.sh — run trmml's benchmarks and PyTorch's, and write docs/benchmarks.md.
#
#   scripts/bench.sh BIN THREADS          (make bench runs: scripts/bench.sh build/trmml 2)
#
# Runs `BIN --device cpu --threads THREADS bench` (the CPU: GPU rows come from
# scripts/gpu-check.sh), then scripts/bench_torch.py and
# scripts/bench_torch_train.py THREADS when torch imports (the PyTorch columns stay empty
# otherwise), each as installed and with glibc's malloc tuned, and joins the rows with
# scripts/bench_report.py. Benchmarks measure the user's machine: make bench runs this with
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so OpenBLAS picks its own kernel for this CPU
# (the report records which).
# Environment: BENCH_ARGS extra arguments for both (e.g. --quick for a smoke test),
# BENCH_FILTER one benchmark of `trmml bench --list` (make bench FILTER=train): only it and its
# PyTorch counterpart run, and its table replaces the one of that name in the report,
# BENCH_OUT the report path (default docs/benchmarks.md), PYTHON (default /usr/bin/python3).
set -eu
if [ $# -ne 2 ]; then
    echo "usage: scripts/bench.sh BIN THREADS" >&2
    exit 2
fi
BIN=$1
THREADS=$2
PY=${PYTHON:-/usr/bin/python3}
ARGS=${BENCH_ARGS:-}
FILTER=${BENCH_FILTER:-}
OUT=${BENCH_OUT:-docs/benchmarks.md}
HERE=$(cd "$(dirname "$0")" && pwd)

# The command that made the report, as a reader would retype it.
if [ -n "${MAKELEVEL:-}" ]; then
    CMD="make bench"
    [ "$THREADS" != 2 ] && CMD="$CMD THREADS=$THREADS"
else
    CMD="scripts/bench.sh $BIN $THREADS"
fi
[ -n "$FILTER" ] && CMD="$CMD FILTER=$FILTER"
[ -n "$ARGS" ] && CMD="BENCH_ARGS='$ARGS' $CMD"
# Which PyTorch scripts a filtered run needs.
runs() { [ -z "$FILTER" ] || case " $1 " in *" $FILTER "*) true;; *) false;; esac; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

echo "== trmml: $BIN --device cpu --threads $THREADS bench $ARGS $FILTER" >&2
# shellcheck disable=SC2086
"$BIN" --device cpu --threads "$THREADS" bench $ARGS $FILTER >"$TMP/trmml.tsv"

: >"$TMP/torch.tsv"
: >"$TMP/torch-tuned.tsv"
# Each PyTorch script runs twice: as installed, and in its best configuration here, with glibc
# told never to return memory to the system (PyTorch's allocator frees and re-maps its large
# activations every iteration otherwise: page faults). The report compares with the faster.
torch_run() {
    echo "== PyTorch: $PY $* $ARGS (default, then $TUNED)" >&2
    # shellcheck disable=SC2086
    "$PY" "$@" $ARGS >>"$TMP/torch.tsv"
    # shellcheck disable=SC2086
    GLIBC_TUNABLES=$TUNED "$PY" "$@" $ARGS >>"$TMP/torch-tuned.tsv"
}
TUNED=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
if "$PY" -c 'import torch' 2>/dev/null; then
    if runs "gemm conv clip"; then
        # A filtered run times only that benchmark's rows (their keys start with its name).
        set -- "$THREADS"
        [ -n "$FILTER" ] && set -- "$THREADS" --case "$FILTER "
        torch_run "$HERE/bench_torch.py" "$@"
    fi
    if runs "train"; then torch_run "$HERE/bench_torch_train.py" "$THREADS"; fi
    if runs "pretrain"; then torch_run "$HERE/bench_torch_pretrain.py" "$THREADS"; fi
    if runs "pvlr"; then torch_run "$HERE/bench_pvlr_torch.py" "$THREADS"; fi
else
    echo "== PyTorch not importable with $PY: the report has no PyTorch columns" >&2
fi
# The loader is compared with PIL (+ torch's DataLoader when importable) on the same images.
if runs "loader" && "$PY" -c 'import PIL, numpy' 2>/dev/null; then
    echo "== PIL loader: $PY scripts/bench_loader_torch.py $THREADS $ARGS" >&2
    # shellcheck disable=SC2086
    "$PY" "$HERE/bench_loader_torch.py" "$THREADS" $ARGS >>"$TMP/torch.tsv" || true
fi

# shellcheck disable=SC2046
"$PY" "$HERE/bench_report.py" --trmml "$TMP/trmml.tsv" --torch "$TMP/torch.tsv" \
    --torch-tuned "$TMP/torch-tuned.tsv" --tuned "$TUNED" --threads "$THREADS" --command "$CMD" --out "$OUT" $([ -n "$FILTER" ] && echo --merge)
echo "wrote $OUT" >&2
