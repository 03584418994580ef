/* cmd_dist.c — `trmml dist-check`: the processes of an MPI job (tensor/dist.h) answer, the
 * fixed-order all-reduce is exact, and how long the all-reduce of a training step's gradients
 * takes (docs/distributed.md). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/clock.h"
#include "tensor/device.h"
#include "tensor/dist.h"
#include "tools/command.h"
#include "tools/flags.h"

typedef struct {
    int64_t floats, rounds;
} DistFlags;

static const KeySpec DIST_FLAGS[] = {
    FLAG_INT(DistFlags, "floats", floats, 1, 1LL << 30, "N",
             "floats in the timed all-reduce (default 7129089: TRM-ML's learnable parameters on "
             "COCO, SPEC §10)"),
    FLAG_INT(DistFlags, "rounds", rounds, 0, 1000, "R", "timed all-reduces (default 5)"),
};

/* A value in [-1, 1) that every rank computes alike for (rank r, element i). */
static double hashed(int r, int64_t i) {
    uint64_t x = ((uint64_t)r << 40) ^ (uint64_t)i ^ 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (double)(x >> 11) / (double)(1ULL << 52) - 1.0;
}

/* Rank r's integer contribution to element i; the sum over N ranks is N((i % 61) - 30) +
 * 5 N(N-1)/2, exact in float32 below 2^24. */
static double integer_part(int r, int64_t i) { return (double)(i % 61) - 30.0 + 5.0 * r; }

/* The checks: integers against their closed-form sum, hashed values against the sum in rank
 * order recomputed here; float32 and float64; n not a multiple of the ranks, and n = 1 (ranks
 * that own nothing). The first mismatch as an error. */
static Status check_allreduce(void) {
    const int N = dist_size(), me = dist_rank();
    const int64_t sizes[] = {1000003, 100003, 1};
    for (int c = 0; c < 3; c++) {
        const int64_t n = sizes[c];
        const bool integers = c == 0;
        float *x = xmalloc((size_t)n * sizeof *x);
        double *y = xmalloc((size_t)n * sizeof *y);
        for (int64_t i = 0; i < n; i++) {
            y[i] = integers ? integer_part(me, i) : hashed(me, i);
            x[i] = (float)y[i];
        }
        dist_allreduce_sum_f32(x, n);
        dist_allreduce_sum_f64(y, n);
        Status st = STATUS_OK;
        for (int64_t i = 0; i < n && st == STATUS_OK; i++) {
            float want32;
            double want64;
            if (integers) {
                want64 = (double)N * ((double)(i % 61) - 30.0) + 2.5 * N * (N - 1);
                want32 = (float)want64;
            } else {
                want32 = (float)hashed(0, i);
                want64 = hashed(0, i);
                for (int r = 1; r < N; r++) {
                    want32 += (float)hashed(r, i);
                    want64 += hashed(r, i);
                }
            }
            if (x[i] != want32 || y[i] != want64)
                st = error_set(STATUS_ERR_FORMAT,
                               "all-reduce of %lld %s: element %lld is %.9g (float32) and %.17g "
                               "(float64), the sum in rank order is %.9g and %.17g",
                               (long long)n, integers ? "integers" : "hashed values", (long long)i,
                               x[i], y[i], want32, want64);
        }
        free(x);
        free(y);
        if ((st = dist_agree(st)) != STATUS_OK) return st;
    }
    return STATUS_OK;
}

COMMAND_AS(dist_check, "dist-check",
           "check an MPI job: ranks, exactness and time of the gradient all-reduce",
           "trmml dist-check [--floats N] [--rounds R]\n"
           "  Run it as the training job will run: mpirun -np N trmml dist-check (or srun). Each\n"
           "  rank reports host, pid and threads; the fixed-order all-reduce of known vectors\n"
           "  must equal their sum in rank order exactly on every rank; then R all-reduces of N\n"
           "  floats are timed (docs/distributed.md). Without mpirun: one process, nothing to\n"
           "  exchange.") {
    DistFlags o = {.floats = 7129089, .rounds = 5};
    const KeyGroup groups[] = {FLAGS_OF(DIST_FLAGS, &o)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    const int N = dist_size();
    char line[256], host[128] = "?";
    gethostname(host, sizeof host - 1);
    snprintf(line, sizeof line, "rank %d: host %s pid %ld threads %d", dist_rank(), host,
             (long)getpid(), device_threads());
    char *lines = xcalloc((size_t)N, sizeof line);
    size_t *bytes_of = xmalloc((size_t)N * sizeof *bytes_of);
    for (int r = 0; r < N; r++) bytes_of[r] = sizeof line;
    dist_allgatherv(line, sizeof line, lines, bytes_of);
    if (dist_is_root()) {
        printf("mpi: %s\n", dist_summary());
        for (int r = 0; r < N; r++) printf("%s\n", lines + (size_t)r * sizeof line);
    }
    free(lines);
    free(bytes_of);
    Status st = check_allreduce();
    if (st != STATUS_OK) return tool_fail(st);
    if (dist_is_root())
        printf("all-reduce: exact on every rank (integers, and hashed values in rank order; "
               "float32 and float64; 1000003, 100003 and 1 elements)\n");
    if (o.rounds == 0 || N == 1) return 0; /* one process: nothing to time */
    float *g = xmalloc((size_t)o.floats * sizeof *g);
    for (int64_t i = 0; i < o.floats; i++) g[i] = (float)hashed(dist_rank(), i);
    dist_allreduce_sum_f32(g, o.floats); /* warm-up: connections, the scratch buffer */
    double total = 0, best = 1e30;
    for (int64_t k = 0; k < o.rounds; k++) {
        dist_barrier();
        const double t0 = time_now_s();
        dist_allreduce_sum_f32(g, o.floats);
        /* Each round's time is the mean over the ranks (all start together at the barrier). */
        double dt = time_now_s() - t0;
        dist_allreduce_sum_f64(&dt, 1);
        dt /= N;
        total += dt;
        if (dt < best) best = dt;
    }
    free(g);
    const double mean = total / (double)o.rounds, bytes = 4.0 * (double)o.floats;
    if (dist_is_root())
        printf("all-reduce of %lld floats (%.1f MB): %.2f ms mean of %lld (best %.2f), "
               "%.2f GB/s per rank moved (2(N-1)/N x %.1f MB)\n",
               (long long)o.floats, bytes / 1e6, 1e3 * mean, (long long)o.rounds, 1e3 * best,
               2.0 * (N - 1) / N * bytes / mean / 1e9,
               2.0 * (N - 1) / N * bytes / 1e6);
    return 0;
}
