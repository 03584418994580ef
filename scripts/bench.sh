#!/bin/sh
# bench.sh — run trmml's benchmarks and PyTorch's, and write docs/benchmarks.md.
#
#   scripts/bench.sh BIN THREADS          (make bench runs: scripts/bench.sh build/trmml 2)
#
# Runs `BIN --threads THREADS bench`, then scripts/bench_torch.py and
# scripts/bench_torch_train.py THREADS when torch imports (the PyTorch columns stay empty
# otherwise), and joins the rows with scripts/bench_report.py.
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

echo "== trmml: $BIN --threads $THREADS bench $ARGS $FILTER" >&2
# shellcheck disable=SC2086
"$BIN" --threads "$THREADS" bench $ARGS $FILTER >"$TMP/trmml.tsv"

: >"$TMP/torch.tsv"
if "$PY" -c 'import torch' 2>/dev/null; then
    if runs "gemm conv clip"; then
        # A filtered run times only that benchmark's rows (their keys start with its name).
        set -- "$THREADS"
        [ -n "$FILTER" ] && set -- "$THREADS" --case "$FILTER "
        echo "== PyTorch: $PY scripts/bench_torch.py $* $ARGS" >&2
        # shellcheck disable=SC2086
        "$PY" "$HERE/bench_torch.py" "$@" $ARGS >>"$TMP/torch.tsv"
    fi
    if runs "train"; then
        echo "== PyTorch: $PY scripts/bench_torch_train.py $THREADS $ARGS" >&2
        # shellcheck disable=SC2086
        "$PY" "$HERE/bench_torch_train.py" "$THREADS" $ARGS >>"$TMP/torch.tsv"
    fi
    if runs "pretrain"; then
        echo "== PyTorch: $PY scripts/bench_torch_pretrain.py $THREADS $ARGS" >&2
        # shellcheck disable=SC2086
        "$PY" "$HERE/bench_torch_pretrain.py" "$THREADS" $ARGS >>"$TMP/torch.tsv"
    fi
    if runs "pvlr"; then
        echo "== PyTorch: $PY scripts/bench_pvlr_torch.py $THREADS $ARGS" >&2
        # shellcheck disable=SC2086
        "$PY" "$HERE/bench_pvlr_torch.py" "$THREADS" $ARGS >>"$TMP/torch.tsv"
    fi
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
    --threads "$THREADS" --command "$CMD" --out "$OUT" $([ -n "$FILTER" ] && echo --merge)
echo "wrote $OUT" >&2
