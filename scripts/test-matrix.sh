#!/bin/sh
# test-matrix.sh — run the test suite under every GEMM this CPU can run and under 1 and 2 threads
# (make test-matrix; docs/testing.md "The test matrix"). Not part of `make test` or CI, which
# keep the environment as it is.
#
#   scripts/test-matrix.sh TEST_BINARY [FILTER...]
#
# Configurations: each OpenBLAS core type the CPU's flags allow (OPENBLAS_CORETYPE forced, with
# OPENBLAS_L2_SIZE unset), the environment's own setting, and TRMML_GEMM=naive (the
# double-accumulating oracle), each with 1 and 2 threads. One summary line per configuration;
# the exit status is non-zero when any configuration failed. Full logs go to
# build/test-matrix/<name>.log.
set -u
bin=${1:?usage: scripts/test-matrix.sh TEST_BINARY [FILTER...]}
shift
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) return 0;; esac; return 1; }

# OpenBLAS 0.3.21's x86-64 kernels, oldest first; each needs the instructions named.
cores="Prescott"
has avx2 && has fma && cores="$cores Haswell Zen"
has avx512f && has avx512bw && has avx512vl && has avx512dq && cores="$cores SkylakeX"
has avx512_bf16 && cores="$cores Cooperlake"

logdir=build/test-matrix
rm -rf "$logdir"
mkdir -p "$logdir"
# Copies, so that a rebuild while the matrix runs does not change the binaries under it (the
# command-line tests look for trmml next to the test binary).
cp "$bin" "$logdir/test_trmml" && cp "$(dirname "$bin")/trmml" "$logdir/trmml" || exit 1
bin=$logdir/test_trmml
model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | sed 's/^[^:]*: *//')
echo "test-matrix: CPU: ${model:-unknown}; environment: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}"
failed=0
run() { # name threads env-assignments...
    name=$1 threads=$2
    shift 2
    log="$logdir/$name-t$threads.log"
    start=$(date +%s)
    env "$@" OMP_NUM_THREADS="$threads" TRMML_TEST_MEASURE=1 "$bin" $FILTERS >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    gemm=$(sed -n 's/^backend: cpu ([0-9]* threads, OpenMP [a-z]*, GEMM \([^)]*\)).*/\1/p' "$log" | head -1)
    summary=$(tail -n 1 "$log")
    printf '%-24s threads=%d  %-30s %-36s %4ds\n' "$name" "$threads" "[${gemm:-?}]" "$summary" "$secs"
    if [ $rc -ne 0 ]; then
        failed=1
        grep '^FAIL' "$log" | sed 's/^/    /'
    fi
}
FILTERS="$*"
for t in 1 2; do
    run environment "$t"
    for c in $cores; do run "$c" "$t" -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE="$c"; done
    run naive "$t" TRMML_GEMM=naive
done
# The normwise checks (test/tolerance.h): the worst measured max|got - ref| / scale of each test in
# each configuration, beside its bound: the numbers docs/testing.md and the test comments quote.
echo "normwise checks: worst measured error / scale per configuration (bound in the last column)"
for f in "$logdir"/*.log; do
    cfg=$(basename "$f" .log)
    sed -n 's/^measure: \([^:]*\): .*: \([^ ]*\) of scale [^ ]* (bound \([^)]*\))$/\1 \2 \3/p' "$f" |
        awk -v cfg="$cfg" '{ if (!($1 in w) || $2 > w[$1]) w[$1] = $2; b[$1] = $3 }
            END { for (t in w) printf "%s %s %s %s\n", t, cfg, w[t], b[t] }'
done | sort | awk '{ if ($1 != last) { if (last != "") printf "  %-48s%s  bound %s\n", last, row, bound;
                       last = $1; row = "" }
                     row = row sprintf(" %s=%.2g", $2, $3); bound = $4 }
                   END { if (last != "") printf "  %-48s%s  bound %s\n", last, row, bound }'
[ $failed -eq 0 ] && echo "test-matrix: every configuration passed" || echo "test-matrix: FAILED (logs in $logdir/)"
exit $failed
