#!/usr/bin/env bash
# gpu-check.sh — the prepared GPU validation run (issue 16 item 4; docs/cuda.md "Validate on a
# GPU"): build, the CUDA tests, the embedded miniature trained on the GPU and on the CPU, and
# trmml against PyTorch on the same GPU, in one command that ends within 8 minutes on an H100
# machine with 16 cores.
#
#   scripts/gpu-check.sh fetch-debs [DIR]
#       Here, where apt works: `apt-get download` the Debian packages that the build and
#       build/trmml need and that a non-Debian GPU image may lack — the -dev packages of
#       scripts/install-deps.sh, `make`, and the runtime libraries they depend on, transitively,
#       core packages (libc6, libgcc-s1, libstdc++6, the compiler's libgomp1, ...) excepted — into
#       DIR (default .debs/, git-ignored), with the CLIP vocabulary (../shared/clip/ does not travel
#       to a lent machine). Prints the count and total size.
#   scripts/gpu-check.sh [--dry-run] [--debs DIR] [--out DIR]
#       On the GPU machine, from the repository root:
#       (a) environment: nvidia-smi, nvcc --version, python3's torch and the GPU it sees;
#       (b) build: with --debs, the packages are unpacked with `dpkg -x` into a prefix and the
#           build points at it (EXTRA_CFLAGS/EXTRA_LDFLAGS, BLAS_INC/BLAS_LIB; an RPATH, so no
#           LD_LIBRARY_PATH); make -j$(nproc) into build-gpu/;
#       (c) every cuda_ test and matmul_cuda_parity: none may fail or be skipped;
#       (d) the embedded miniature (scripts/embedded.sh with test/data/embedded-mini, the world
#           sizes of test/test_embedded.c) trained with --device cuda and with --device cpu; every
#           method's final test mAP must agree within MAP_TOL points (below: why not exactly), and
#           each side must learn (test/test_embedded.c's checks: zero-shot mAP above chance + 5,
#           every method's test mAP rising after its first evaluation);
#       (n) NCCL between GPUs (docs/distributed.md, "On several GPUs"): with two GPUs or more, a
#           build with NCCL and Open MPI's mpirun, `mpirun -np 2 trmml --device cuda dist-check`
#           (the nccl path exact and timed beside the host path) and the dist_nccl tests, among
#           them a 2-rank CUDA training against one process and against the host path (none may
#           fail or be skipped); with one GPU, the dist_nccl tests (a one-rank communicator) and
#           the step reported "skipped: one GPU";
#       (e) trmml against PyTorch on the same GPU, by turns (scripts/bench_gpu.py): GEMM against
#           torch.mm (cuBLAS), RN101 448 px image tower, one TRM-ML iteration at C = 80, batch 32,
#           from the feature cache and from images; medians of the rounds;
#       (f) the log DIR/gpu-check.log, the rows DIR/bench.tsv and the report DIR/gpu-validation.md
#           (also written to docs/gpu-validation.md unless --dry-run). DIR: --out, else $OUT (the
#           lent machine's folder that comes back), else build/gpu-check.
#       Steps (c) and (d) run at the same time (neither is timed); (e) runs alone afterwards and
#       gets what is left of the budget. Exit status 1 if any check failed (the report is written
#       all the same), 2 on a usage error, 0 otherwise.
#   --dry-run (a machine without a GPU): every step that needs a GPU is reported SKIPPED, never
#       passed; the rest runs — the build (with the prefix when --debs is given), the cuda_ tests
#       (which skip), the CPU side of (d) at a smaller size, the plumbing of (e) on the CPU (GEMM
#       rows only) and the report — and the exit status is 0 unless one of those failed.
#
# Why a tolerance in (d): cuBLAS and OpenBLAS sum the products of a GEMM in different orders, and
# the GPU's reductions are trees where the CPU's are loops, so every step rounds differently;
# over 120 pretraining steps and 3 epochs per method the trajectories drift apart (a different
# small CLIP, different features) the way two seeds do, only less. Two CPU runs that differ only
# in rounding (OpenBLAS against TRMML_GEMM=naive) ended 0.24 to 1.19 points apart (docs/cuda.md,
# "Validate on a GPU"); the GPU rounds differently in more places (every reduction, the
# convolutions), so MAP_TOL (default 3 points) leaves 2.5 times that. A tolerance alone would let a
# method stuck near chance pass when its CPU mAP is close to chance too, hence the learning checks:
# a real defect (a wrong kernel, a lost gradient) stops learning or moves mAP far more.
# scripts/device-parity.sh compares products byte for byte and is for devices that round alike.
#
# Environment: GPU_CHECK_BUDGET (seconds for the whole run, default 470), GPU_CHECK_BUILD (build
# folder, default build-gpu), MAP_TOL (points, default 3), ROUNDS (benchmark rounds, default 3),
# PYTHON (default python3, on the lent machines the one that holds PyTorch, else /usr/bin/python3
# when python3 cannot import torch), GPU_CHECK_COMMIT (the
# commit to name in the report when the tree has no .git).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
VOCAB_NAME=bpe_simple_vocab_16e6.txt.gz

# ---- fetch-debs --------------------------------------------------------------------------------
# The packages named here; their runtime dependencies are added by deb_closure. -dev packages
# give headers and the .so link names; what they depend on besides is not needed to compile
# against the few headers the build includes, so only non-dev dependencies are followed.
DEB_ROOTS="make libopenblas-openmp-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev libexpat1-dev
libyajl-dev libcairo2-dev libfontconfig-dev fonts-dejavu-core"
# Present on any Linux that can run a compiler, or not needed: libgomp1 belongs with the compiler
# that links -fopenmp; fontconfig-config (the check writes its own fonts.conf), debconf and the
# like are packaging machinery; cairo's gobject and script-interpreter libraries (and through them
# glib) and pkg-config come with libcairo2-dev, but the build links -lcairo alone and reads no .pc
# file.
DEB_SKIP=" $(echo libc6 libc6-dev libgcc-s1 libstdc++6 gcc-12-base libgomp1 libcrypt1 \
    debconf cdebconf dpkg perl-base tar install-info lsb-base sensible-utils ucf coreutils \
    debianutils fontconfig-config libcairo-gobject2 libcairo-script-interpreter2 pkg-config \
    pkgconf pkgconf-bin libpkgconf3) "

# The closure, level by level (one apt-cache call per level): every dependency of a package in
# the set, the first of each or-group, virtual packages, -dev packages and DEB_SKIP left out.
deb_closure() {
    local level seen=" " next p
    level=$(echo $DEB_ROOTS)
    for p in $level; do seen="$seen$p "; done
    while [ -n "$level" ]; do
        next=""
        for p in $(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
                     --no-replaces --no-enhances $level 2>/dev/null |
                   awk '/^ *\|?(Pre)?Depends:/ { alt = ($1 ~ /^\|/); name = $2
                          if (!skip && name !~ /^</) print name; skip = alt; next }
                        /^[^ ]/ { skip = 0 }'); do
            case "$DEB_SKIP$seen" in *" $p "*) continue;; esac
            case "$p" in *-dev) continue;; esac
            seen="$seen$p "
            next="$next $p"
        done
        level=$(echo $next)
    done
    echo $seen | tr ' ' '\n' | sort
}

fetch_debs() {
    local dir=${1:-.debs} pkgs n size vocab
    command -v apt-get >/dev/null || { echo "gpu-check: fetch-debs needs apt-get (Debian)" >&2; exit 1; }
    mkdir -p "$dir" || exit 1
    pkgs=$(deb_closure)
    echo "gpu-check: fetching $(echo "$pkgs" | wc -l) packages into $dir:" $pkgs >&2
    rm -f "$dir"/*.deb
    if ! (cd "$dir" && apt-get download $pkgs >/dev/null); then
        echo "gpu-check: apt-get download failed (HINT: apt-get update first)" >&2
        exit 1
    fi
    vocab=${TRMML_VOCAB:-../shared/clip/$VOCAB_NAME}
    if [ -f "$vocab" ]; then
        cp "$vocab" "$dir/$VOCAB_NAME"
    else
        echo "gpu-check: no CLIP vocabulary at $vocab: the tests and the miniature that need it" \
             "will skip or fail on the GPU machine (set TRMML_VOCAB)" >&2
    fi
    n=$(ls "$dir"/*.deb | wc -l)
    size=$(du -cb "$dir"/* | tail -1 | cut -f1)
    printf 'gpu-check: %s: %d packages + vocabulary, %.1f MiB in all\n' "$dir" "$n" \
        "$(echo "$size / 1048576" | bc -l)"
    echo "gpu-check: carry it to the lent machine (carry: [\"$dir\"]) and run there:" \
         "scripts/gpu-check.sh --debs $dir" >&2
}

if [ "${1:-}" = fetch-debs ]; then
    shift
    [ $# -le 1 ] || { echo "usage: scripts/gpu-check.sh fetch-debs [DIR]" >&2; exit 2; }
    fetch_debs "$@"
    exit
fi

# ---- the check: options ------------------------------------------------------------------------
DRY=0
DEBS=""
OUTDIR=${OUT:-build/gpu-check}
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1; shift;;
        --debs) DEBS=${2:?--debs needs a folder}; shift 2;;
        --out) OUTDIR=${2:?--out needs a folder}; shift 2;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
        *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2;;
    esac
done
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/gpu-check.log
: >"$LOG"
BUDGET=${GPU_CHECK_BUDGET:-470}
BUILD=${GPU_CHECK_BUILD:-build-gpu}
MAP_TOL=${MAP_TOL:-3}
ROUNDS=${ROUNDS:-3}
PY=${PYTHON:-python3}
# The python3 that imports torch (Debian's /usr/bin/python3 where python3 is another one).
if [ -z "${PYTHON:-}" ] && ! python3 -c 'import torch' 2>/dev/null && [ -x /usr/bin/python3 ]; then
    PY=/usr/bin/python3
fi
NPROC=$(nproc)
T0=$(date +%s)
WORK=$(mktemp -d /tmp/trmml-gpu-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET - $(elapsed) )); }
# Seconds for a step: its cap, or what is left of the budget (less `reserve`), whichever is less.
allow() { local cap=$1 reserve=${2:-15} l; l=$(( $(left) - reserve )); [ "$l" -lt "$cap" ] && cap=$l
          [ "$cap" -lt 1 ] && cap=1; echo "$cap"; }
say() { echo "== $* [$(elapsed) s]" | tee -a "$LOG" >&2; }
logcmd() { echo "\$ $*" >>"$LOG"; }

# Step results, in order: name, PASS/FAIL/SKIPPED, one line of detail, seconds.
STEPS=()
declare -A RESULT NOTE SECS
record() { STEPS+=("$1"); RESULT[$1]=$2; NOTE[$1]=$3; SECS[$1]=$4; say "$1: $2 — $3"; }
# In a dry run a GPU step never passes.
gpu_result() { if [ $DRY = 1 ] && [ "$1" = PASS ]; then echo SKIPPED; else echo "$1"; fi; }

# The commit: git's, or GPU_CHECK_COMMIT where the tree is a copy without .git (a lent machine).
if COMMIT=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT (with uncommitted changes)"
else
    COMMIT=${GPU_CHECK_COMMIT:-unknown}
fi
say "gpu-check: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT, dry run $DRY, budget $BUDGET s, $NPROC cores, log $LOG"

# ---- (a) environment ---------------------------------------------------------------------------
t=$(date +%s)
{
    echo "--- nvidia-smi"
    timeout 20 nvidia-smi 2>&1 || echo "(nvidia-smi: not available)"
    echo "--- nvcc --version"
    NVCC_BIN=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
    if [ -n "$NVCC_BIN" ]; then "$NVCC_BIN" --version; else echo "(nvcc: not found)"; fi
    echo "--- $PY: torch"
    timeout 60 "$PY" -c 'import torch, sys
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
print("gpu:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible")' 2>&1 ||
        echo "(torch: not importable with $PY)"
    echo "--- uname, CPU"
    uname -srm
    grep -m1 'model name' /proc/cpuinfo
} >"$WORK/env.txt" 2>&1
cat "$WORK/env.txt" >>"$LOG"
GPU_NAME=$(timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
DRIVER=$(timeout 20 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
NVCC_VER=$(sed -n 's/.*release \([0-9.]*\).*/\1/p' "$WORK/env.txt" | head -1)
TORCH_LINE=$(grep -m1 '^python ' "$WORK/env.txt" || echo "torch not importable")
CPU_NAME=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
NVCC_DIR=$(dirname "$(dirname "${NVCC_BIN:-/usr/local/cuda/bin/nvcc}")")
if [ -n "$GPU_NAME" ]; then
    record env "$(gpu_result PASS)" "GPU $GPU_NAME, driver $DRIVER, nvcc ${NVCC_VER:-none}; $TORCH_LINE" $(( $(date +%s) - t ))
elif [ $DRY = 1 ]; then
    record env SKIPPED "no GPU (dry run); nvcc ${NVCC_VER:-none}; $TORCH_LINE" $(( $(date +%s) - t ))
else
    record env FAIL "nvidia-smi lists no GPU; nvcc ${NVCC_VER:-none}; $TORCH_LINE" $(( $(date +%s) - t ))
fi

# ---- (b) build ---------------------------------------------------------------------------------
t=$(date +%s)
MAKEVARS=(BUILD="$BUILD" CUDA_HOME="$NVCC_DIR")
MAKE=make
if [ -n "$DEBS" ]; then
    P=$ROOT/$BUILD-debs # not inside $BUILD: the Makefile includes every *.d found there
    rm -rf "$P" && mkdir -p "$P"
    say "unpacking $(ls "$DEBS"/*.deb 2>/dev/null | wc -l) packages of $DEBS into $P"
    for f in "$DEBS"/*.deb; do
        if command -v dpkg >/dev/null; then dpkg -x "$f" "$P"
        else # no dpkg: the data member of the ar archive (binutils), by its compression
            m=$(ar t "$f" | grep '^data\.tar') &&
                case "$m" in
                    *.xz) ar p "$f" "$m" | tar -xJ -C "$P";;
                    *.zst) ar p "$f" "$m" | tar --zstd -x -C "$P";;
                    *.gz) ar p "$f" "$m" | tar -xz -C "$P";;
                    *) ar p "$f" "$m" | tar -x -C "$P";;
                esac
        fi || echo "gpu-check: could not unpack $f" | tee -a "$LOG" >&2
    done
    # -dev links that point into / (libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13): into the prefix.
    find "$P" -type l | while read -r l; do
        tgt=$(readlink "$l"); case "$tgt" in /*) ln -sfn "$P$tgt" "$l";; esac
    done
    A=x86_64-linux-gnu
    LIBDIRS="$P/usr/lib/$A $P/lib/$A $P/usr/lib/$A/openblas-openmp"
    cflags="-I$P/usr/include -I$P/usr/include/$A"
    ldflags="-Wl,--disable-new-dtags" # RPATH, which also serves the libraries' own dependencies
    for d in $LIBDIRS; do ldflags="$ldflags -L$d -Wl,-rpath-link,$d -Wl,-rpath,$d"; done
    MAKEVARS+=(NO_DEPS=1 "EXTRA_CFLAGS=$cflags" "EXTRA_LDFLAGS=$ldflags"
               BLAS_INC="$P/usr/include/$A/openblas-openmp" BLAS_LIB="$P/usr/lib/$A/openblas-openmp")
    command -v make >/dev/null || MAKE=$P/usr/bin/make
    # The plots' font, from the prefix (the image may have no /etc/fonts).
    mkdir -p "$P/fontconfig-cache"
    printf '<?xml version="1.0"?>\n<fontconfig><dir>%s</dir><cachedir>%s</cachedir></fontconfig>\n' \
        "$P/usr/share/fonts" "$P/fontconfig-cache" >"$P/fonts.conf"
    export FONTCONFIG_FILE=$P/fonts.conf
    [ -f "$DEBS/$VOCAB_NAME" ] && export TRMML_VOCAB=$ROOT/$DEBS/$VOCAB_NAME
fi
[ -z "${TRMML_VOCAB:-}" ] && [ -f "../shared/clip/$VOCAB_NAME" ] && export TRMML_VOCAB=$ROOT/../shared/clip/$VOCAB_NAME
say "building into $BUILD ($MAKE -j$NPROC, $(allow 200) s at most)"
logcmd "$MAKE -j$NPROC ${MAKEVARS[*]} $BUILD/trmml $BUILD/test_trmml"
timeout "$(allow 200)" "$MAKE" -j"$NPROC" "${MAKEVARS[@]}" "$BUILD/trmml" "$BUILD/test_trmml" \
    >"$WORK/build.txt" 2>&1
rc=$?
grep -E '^trmml: CC=' "$WORK/build.txt" | head -1 >>"$LOG"
grep -E 'error:|warning:' "$WORK/build.txt" | head -40 >>"$LOG"
BIN=$ROOT/$BUILD/trmml
TESTBIN=$ROOT/$BUILD/test_trmml
build_ok=0
if [ $rc -ne 0 ]; then
    tail -40 "$WORK/build.txt" >>"$LOG"
    record build FAIL "make exited $rc$([ $rc = 124 ] && echo ' (timeout)'); the last lines are in the log" $(( $(date +%s) - t ))
else
    ldd "$BIN" >"$WORK/ldd.txt" 2>&1
    cat "$WORK/ldd.txt" >>"$LOG"
    missing=$(grep -c 'not found' "$WORK/ldd.txt")
    from_prefix=0
    [ -n "$DEBS" ] && from_prefix=$(grep -c "$P" "$WORK/ldd.txt")
    "$BIN" version >>"$LOG" 2>&1
    if [ "$missing" -gt 0 ]; then
        record build FAIL "built, but $missing libraries are not found at run time (ldd in the log)" $(( $(date +%s) - t ))
    else
        build_ok=1
        record build PASS "make -j$NPROC into $BUILD$([ -n "$DEBS" ] && echo ", $from_prefix libraries resolved in the .deb prefix")" $(( $(date +%s) - t ))
    fi
fi

# ---- (c) CUDA tests and (d) the embedded miniature, side by side -------------------------------
# Threads: the CPU run of (d) gets most cores; the GPU run and the tests need few.
if [ "$NPROC" -ge 8 ]; then T_TEST=4; T_GPU=4; T_CPU=$(( NPROC - 8 )); else T_TEST=1; T_GPU=1; T_CPU=$NPROC; fi
[ "$T_CPU" -lt 1 ] && T_CPU=1
if [ $DRY = 1 ]; then # the CPU side at a smaller size: plumbing, not a comparison
    EMB_ENV=(WORLD_TRAIN=64 WORLD_TEST=32 PRETRAIN_STEPS=16 EPOCHS=1)
else # test/test_embedded.c's sizes
    EMB_ENV=(WORLD_TRAIN=256 WORLD_TEST=128)
fi
run_tests() {
    OMP_NUM_THREADS=$T_TEST timeout "$1" "$TESTBIN" cuda_ matmul_cuda_parity >"$WORK/tests.txt" 2>&1
    echo $? >"$WORK/tests.rc"
}
run_embedded() { # run_embedded DEVICE THREADS SECONDS
    local dev=$1
    printf '#!/bin/sh\nexec "%s" --device %s --threads %s "$@"\n' "$BIN" "$dev" "$2" >"$WORK/trmml-$dev"
    chmod +x "$WORK/trmml-$dev"
    env TRMML="$WORK/trmml-$dev" EMBEDDED_DIR="$WORK/embedded-$dev" \
        EMBEDDED_CONF=test/data/embedded-mini "${EMB_ENV[@]}" \
        timeout "$3" scripts/embedded.sh train --ratio 0.5 >"$WORK/embedded-$dev.txt" 2>&1
    echo $? >"$WORK/embedded-$dev.rc"
}
t=$(date +%s)
if [ $build_ok = 1 ]; then
    budget_cd=$(allow 200 100)
    say "cuda_ tests ($T_TEST threads) and the embedded miniature (cuda: $T_GPU threads, cpu: $T_CPU) at once, $budget_cd s at most"
    run_tests "$budget_cd" </dev/null &
    pids=($!)
    if [ $DRY = 0 ]; then run_embedded cuda "$T_GPU" "$budget_cd" </dev/null & pids+=($!); fi
    run_embedded cpu "$T_CPU" "$budget_cd" </dev/null & pids+=($!)
    wait "${pids[@]}"
fi

# (c): every test of the filter ran and passed, none skipped.
if [ $build_ok = 0 ]; then
    record cuda-tests FAIL "not run: the build failed" 0
else
    cat "$WORK/tests.txt" >>"$LOG"
    rc=$(cat "$WORK/tests.rc")
    expected=$("$TESTBIN" --list | grep -cE '^(cuda_|matmul_cuda_parity)')
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$WORK/tests.txt" | tail -1)
    read -r npass _ nfail _ nskip _ <<<"${summary:-x x x x x x}"
    failed=$(grep '^FAIL ' "$WORK/tests.txt" | cut -d' ' -f2 | tr '\n' ' ')
    skipped=$(grep '^SKIP ' "$WORK/tests.txt" | cut -d' ' -f2 | sed 's/:$//' | tr '\n' ' ')
    detail="$summary of the $expected tests"
    if [ -z "$summary" ]; then
        record cuda-tests FAIL "no summary line: a crash or a timeout (exit $rc); see the log" $(( $(date +%s) - t ))
    elif [ "$nfail" != 0 ] || [ "$rc" != 0 ]; then
        record cuda-tests FAIL "$detail (exit $rc); failed: $failed" $(( $(date +%s) - t ))
    elif [ $DRY = 1 ]; then
        record cuda-tests SKIPPED "no GPU: $detail; skipped: $skipped" $(( $(date +%s) - t ))
    elif [ "$nskip" != 0 ] || [ "$npass" != "$expected" ]; then
        record cuda-tests FAIL "$detail; skipped on a GPU: $skipped" $(( $(date +%s) - t ))
    else
        record cuda-tests PASS "$detail, none skipped" $(( $(date +%s) - t ))
    fi
fi

# (d): the tables of both runs, method by method.
LABELS=("zero-shot CLIP" "baseline (Table 3)" "DualCoOp" "TRM-ML" "PVLR")
map_of() { # map_of FILE LABEL: the mAP column of the table row "  LABEL   mAP CF1 OF1"
    awk -v l="$2" 'substr($0, 1, length(l) + 2) == "  " l {
        rest = substr($0, length(l) + 3)
        if (rest ~ /^ +[0-9]/) { split(rest, f, " "); print f[1]; exit } }' "$1"
}
# learns DEVICE: the learning checks of test/test_embedded.c on one side's run; prints what fails.
# The test asks that a later evaluation beat the first by a point (and, for the one-stage methods,
# the last beat it too); here any later one may, by any margin (the GPU's rounding drift moves
# the trajectories as much as a change of rounding on the CPU does: +-0.8 for TRM-ML).
learns() {
    local txt=$WORK/embedded-$1.txt dir=$WORK/embedded-$1 chance zs m
    chance=$(sed -n 's/.*chance-level mAP (random scores): \([0-9.]*\).*/\1/p' "$txt")
    zs=$(map_of "$txt" "zero-shot CLIP")
    awk -v z="${zs:-0}" -v c="${chance:-100}" 'BEGIN { exit !(z > c + 5) }' ||
        echo "$1: zero-shot mAP ${zs:-?} not above chance ${chance:-?} + 5;"
    for m in baseline dualcoop trmml pvlr; do
        awk '/^eval stage=/ { for (i = 1; i <= NF; i++) if ($i ~ /^mAP=/) v = substr($i, 5) + 0
                               if (n++ == 0) first = v; else if (n == 2 || v > best) best = v }
             END { exit !(n >= 2 && best > first) }' "$dir/runs/$m-r0.5-s0/log.txt" 2>/dev/null ||
            echo "$1: $m did not learn (no evaluation after its first is above it);"
    done
}
EMB_ROWS=()
if [ $build_ok = 0 ]; then
    record embedded FAIL "not run: the build failed" 0
else
    for dev in cuda cpu; do
        [ -f "$WORK/embedded-$dev.txt" ] || continue
        { echo "--- embedded miniature, --device $dev (exit $(cat "$WORK/embedded-$dev.rc"))"
          cat "$WORK/embedded-$dev.txt"; } >>"$LOG"
    done
    rc_cpu=$(cat "$WORK/embedded-cpu.rc")
    if [ "$rc_cpu" != 0 ]; then
        record embedded FAIL "the CPU run failed (exit $rc_cpu$([ "$rc_cpu" = 124 ] && echo ', timeout'))" $(( $(date +%s) - t ))
    elif [ $DRY = 1 ]; then
        for l in "${LABELS[@]}"; do EMB_ROWS+=("$l|-|$(map_of "$WORK/embedded-cpu.txt" "$l")|-|-"); done
        record embedded SKIPPED "no GPU: the CPU side ran (smaller world: ${EMB_ENV[*]})" $(( $(date +%s) - t ))
    else
        rc_gpu=$(cat "$WORK/embedded-cuda.rc")
        bad=""
        for l in "${LABELS[@]}"; do
            g=$(map_of "$WORK/embedded-cuda.txt" "$l"); c=$(map_of "$WORK/embedded-cpu.txt" "$l")
            verdict=$(awk -v g="${g:-x}" -v c="${c:-x}" -v tol="$MAP_TOL" 'BEGIN {
                if (g !~ /^[0-9.]+$/ || c !~ /^[0-9.]+$/) { print "missing"; exit }
                d = g - c; if (d < 0) d = -d; printf "%.2f %s", d, d <= tol ? "ok" : "over" }')
            EMB_ROWS+=("$l|${g:--}|${c:--}|${verdict% *}|${verdict#* }")
            case "$verdict" in *ok) ;; *) bad="$bad $l;";; esac
        done
        nolearn="$(learns cuda) $(learns cpu)"
        if [ "$rc_gpu" != 0 ]; then
            record embedded FAIL "the GPU run failed (exit $rc_gpu$([ "$rc_gpu" = 124 ] && echo ', timeout'))" $(( $(date +%s) - t ))
        elif [ -n "${nolearn// /}" ]; then
            record embedded FAIL "$(echo $nolearn)" $(( $(date +%s) - t ))
        elif [ -n "$bad" ]; then
            record embedded FAIL "mAP differs by more than $MAP_TOL points or is missing:$bad" $(( $(date +%s) - t ))
        else
            record embedded PASS "every method learns on both devices, its mAP within $MAP_TOL points of the CPU's" $(( $(date +%s) - t ))
        fi
    fi
fi

# ---- (n) NCCL between GPUs ---------------------------------------------------------------------
# The dist_nccl tests of the test binary: "passed failed skipped" of their summary into NCCL_SUM.
run_nccl_tests() {
    OMP_NUM_THREADS=$T_TEST timeout "$1" "$TESTBIN" dist_nccl >"$WORK/nccl-tests.txt" 2>&1
    cat "$WORK/nccl-tests.txt" >>"$LOG"
    NCCL_SUM=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$WORK/nccl-tests.txt" |
               tail -1 | awk '{ print $1, $3, $5 }')
}
# The dist-check lines worth a note: the path and the two timings of the device all-reduce.
nccl_check_brief() {
    grep -E '^tensors on cuda: path|^all-reduce of .* on cuda via' "$WORK/nccl-check.txt" |
        sed -E 's/^tensors on cuda: path ([a-z]+).*/path \1/; s/^all-reduce of [0-9]+ floats \(([0-9.]+ MB)\) on cuda via ([a-z]+).*: ([0-9.]+) ms mean.*/\2 \3 ms (\1)/' |
        paste -sd ';' -
}
t=$(date +%s)
NGPU=$(timeout 20 nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU ')
if [ $build_ok = 0 ]; then
    record nccl FAIL "not run: the build failed" 0
elif ! "$BIN" version 2>/dev/null | grep -q '^nccl: NCCL .* compiled in$'; then
    record nccl SKIPPED "the build has no NCCL ($("$BIN" version 2>/dev/null | grep -E '^(mpi|nccl):' | paste -sd ';' -)); NCCL needs nccl.h, CUDA and Open MPI's mpicc at build time" $(( $(date +%s) - t ))
elif [ $DRY = 1 ] || [ "$NGPU" -lt 2 ]; then
    run_nccl_tests "$(allow 60 100)"
    read -r p f k <<<"${NCCL_SUM:-x x x}"
    why=$([ $DRY = 1 ] && echo "no GPU (dry run)" || echo "skipped: one GPU")
    if [ "$f" != 0 ]; then
        record nccl FAIL "$why, and the dist_nccl tests failed ($p passed, $f failed, $k skipped)" $(( $(date +%s) - t ))
    else
        record nccl SKIPPED "$why; dist_nccl tests: $p passed, $f failed, $k skipped (the two-GPU ones)" $(( $(date +%s) - t ))
    fi
elif ! command -v mpirun >/dev/null; then
    record nccl SKIPPED "$NGPU GPUs, but no mpirun (Open MPI) on this machine" $(( $(date +%s) - t ))
else
    say "NCCL on 2 of $NGPU GPUs: dist-check and the dist_nccl tests, $(allow 150 100) s at most"
    logcmd "mpirun -np 2 $BIN --threads $T_TEST --device cuda dist-check"
    env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        OMPI_MCA_btl_vader_single_copy_mechanism=none \
        timeout "$(allow 60 100)" mpirun --oversubscribe --bind-to none -np 2 "$BIN" \
        --threads "$T_TEST" --device cuda dist-check >"$WORK/nccl-check.txt" 2>&1
    rc=$?
    cat "$WORK/nccl-check.txt" >>"$LOG"
    run_nccl_tests "$(allow 120 100)"
    read -r p f k <<<"${NCCL_SUM:-x x x}"
    brief=$(nccl_check_brief)
    if [ $rc -ne 0 ] || ! grep -q '^tensors on cuda: path nccl;' "$WORK/nccl-check.txt"; then
        record nccl FAIL "mpirun dist-check exited $rc or did not take the nccl path: ${brief:-see the log}" $(( $(date +%s) - t ))
    elif [ "$f" != 0 ] || [ "$k" != 0 ] || [ "$p" = x ]; then
        record nccl FAIL "dist-check: $brief; dist_nccl tests: $p passed, $f failed, $k skipped" $(( $(date +%s) - t ))
    else
        record nccl PASS "dist-check: $brief; dist_nccl tests: $p passed (2-rank CUDA training against one process and against the host path)" $(( $(date +%s) - t ))
    fi
fi

# ---- (e) trmml against PyTorch on the same device, by turns -------------------------------------
t=$(date +%s)
BENCH_TSV=$OUTDIR/bench.tsv
BENCH_MD=$WORK/bench.md
: >"$BENCH_TSV"
: >"$BENCH_MD"
if [ $build_ok = 0 ]; then
    record bench FAIL "not run: the build failed" 0
else
    if [ $DRY = 1 ]; then bdev=cpu; groups=gemm; rounds=1; else bdev=cuda; groups=gemm,clip,train; rounds=$ROUNDS; fi
    deadline=$(( $(date +%s) + $(allow 600 10) ))
    say "benchmarks on $bdev ($groups), up to $rounds rounds, until $(( deadline - T0 )) s"
    logcmd "$PY scripts/bench_gpu.py --bin $BIN --device $bdev --threads $NPROC --groups $groups --rounds $rounds"
    "$PY" scripts/bench_gpu.py --bin "$BIN" --device "$bdev" --threads "$NPROC" --groups "$groups" \
        --rounds "$rounds" --deadline "$deadline" --tsv "$BENCH_TSV" --md "$BENCH_MD" \
        >"$WORK/bench.txt" 2>&1
    rc=$?
    cat "$WORK/bench.txt" >>"$LOG"
    brief=$(grep -m1 '^bench_gpu: ' "$WORK/bench.txt" | sed 's/^bench_gpu: //')
    if [ $rc -ne 0 ]; then
        record bench FAIL "scripts/bench_gpu.py exited $rc: ${brief:-see the log}" $(( $(date +%s) - t ))
    elif [ $DRY = 1 ]; then
        record bench SKIPPED "no GPU: the plumbing ran on the CPU (GEMM rows): ${brief}" $(( $(date +%s) - t ))
    else
        record bench PASS "$brief" $(( $(date +%s) - t ))
    fi
fi

# ---- (f) the report ----------------------------------------------------------------------------
nfail=0
for s in "${STEPS[@]}"; do [ "${RESULT[$s]}" = FAIL ] && nfail=$((nfail + 1)); done
REPORT=$OUTDIR/gpu-validation.md
{
    echo "# GPU validation record"
    echo
    echo "Generated by \`scripts/gpu-check.sh$([ $DRY = 1 ] && echo ' --dry-run')$([ -n "$DEBS" ] && echo " --debs $DEBS")\`; do not edit by hand"
    echo "(docs/cuda.md, \"Validate on a GPU\", says how to run it on a lent machine)."
    echo
    if [ $DRY = 1 ]; then
        echo "**Dry run on a machine without a GPU: no step below was measured on a GPU.** Every step"
        echo "that needs one is SKIPPED; the build, the CPU side and the report ran."
        echo
    fi
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $COMMIT"
    echo "- GPU: ${GPU_NAME:-none}; driver ${DRIVER:-none}; nvcc ${NVCC_VER:-none}"
    echo "- CPU: $CPU_NAME, $NPROC cores"
    echo "- PyTorch: $TORCH_LINE"
    echo "- Result: $nfail step(s) failed; total $(elapsed) s of a $BUDGET s budget"
    echo
    echo "| step | result | seconds | detail |"
    echo "|---|---|---:|---|"
    for s in "${STEPS[@]}"; do
        echo "| $s | ${RESULT[$s]} | ${SECS[$s]} | $(echo "${NOTE[$s]}" | sed 's/|/\\|/g') |"
    done
    echo
    echo "## Embedded miniature: final test mAP, --device cuda against --device cpu"
    echo
    echo "test/data/embedded-mini, ratio 0.5, seed 0 ($([ $DRY = 1 ] && echo "dry run: ${EMB_ENV[*]}, CPU only" || echo "${EMB_ENV[*]}, as test/test_embedded.c")); tolerance $MAP_TOL points"
    echo "(cuBLAS and OpenBLAS round differently, so the two trajectories drift apart; see the header"
    echo "of scripts/gpu-check.sh)."
    echo
    echo "| method | cuda mAP | cpu mAP | difference | verdict |"
    echo "|---|---:|---:|---:|---|"
    for r in "${EMB_ROWS[@]}"; do echo "| ${r//|/ | } |"; done
    echo
    echo "## trmml against PyTorch on the same device"
    echo
    if [ -s "$BENCH_MD" ]; then cat "$BENCH_MD"; else echo "Not measured."; fi
    echo
    echo "The whole log: gpu-check.log beside this report (in the --out folder of the run)."
} >"$REPORT"
if [ $DRY = 0 ]; then cp "$REPORT" docs/gpu-validation.md; fi
say "report: $REPORT$([ $DRY = 0 ] && echo ' and docs/gpu-validation.md'); $nfail step(s) failed"
for s in "${STEPS[@]}"; do printf '  %-11s %-8s %s\n' "$s" "${RESULT[$s]}" "${NOTE[$s]}" >&2; done
[ $nfail -eq 0 ]
