/* test_dist.c — several processes under mpirun (tensor/dist.h, docs/distributed.md): the
 * fixed-order all-reduce is exact on every rank. Each test runs build/trmml under
 * `mpirun --oversubscribe -np 2`, one thread per rank; without Open MPI's mpirun, or with a
 * build/trmml made without MPI (make MPI=0), the tests are skipped (counted, never a pass). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test/test.h"

/* "<env> mpirun ... -np N '<exe>' --threads 1" into cmd, or false with the test skipped. The
 * environment lets mpirun run as root (containers, CI); --bind-to none because the tests give
 * each rank one thread themselves. */
static bool mpi_command(char *exe, size_t cap, int np, char *cmd, size_t cmd_cap) {
    if (!test_trmml_path(exe, cap)) return false;
    static char out[4096];
    if (test_run_capture("command -v mpirun 2>/dev/null", out, sizeof out) != 0 || !out[0]) {
        test_skip("mpirun not found (Open MPI: openmpi-bin, scripts/install-deps.sh)");
        return false;
    }
    char probe[4400];
    snprintf(probe, sizeof probe, "'%s' version 2>&1", exe);
    if (test_run_capture(probe, out, sizeof out) != 0 || !strstr(out, "mpi: ") ||
        strstr(out, "mpi: not compiled in")) {
        test_skip("build/trmml was built without MPI (make MPI=0, or no mpicc at build time)");
        return false;
    }
    snprintf(cmd, cmd_cap,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
             "mpirun --oversubscribe --bind-to none -np %d '%s' --threads 1",
             np, exe);
    return true;
}

/* The all-reduce of known vectors (integers with a closed-form sum; hashed values whose sum in
 * rank order each rank recomputes) equals that sum bit for bit on both ranks, for lengths that
 * two ranks do not divide and for one element (a rank that owns nothing). */
TEST(dist_allreduce_exact_on_two_ranks) {
    char exe[4200], mpi[4600], cmd[5000];
    if (!mpi_command(exe, sizeof exe, 2, mpi, sizeof mpi)) return;
    static char out[1 << 14];
    snprintf(cmd, sizeof cmd, "%s dist-check --floats 100001 --rounds 1 2>&1", mpi);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, ", 2 ranks") && strstr(out, "rank 1: host") &&
               strstr(out, "all-reduce: exact on every rank") &&
               strstr(out, "all-reduce of 100001 floats"),
           "mpirun dist-check exit %d: %.3000s", rc, out);
}
