/* cmd_dist.c — `trmml dist-check`: the processes of an MPI job (tensor/dist.h) answer, the
 * fixed-order all-reduce is exact, the collectives of tensors on --device are exact by the path
 * they take (NCCL for CUDA tensors when the job has it, host memory and MPI otherwise), and how
 * long the all-reduce of a training step's gradients takes on each path (docs/distributed.md). */
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

/* ---- tensors on the command's device ------------------------------------------------------- */

/* A float32 vector of n elements on the current device holding rank me's integers. */
static Tensor *integer_tensor(int me, int64_t n) {
    float *h = xmalloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++) h[i] = (float)integer_part(me, i);
    Tensor *t = tensor_from_f32(1, SHAPE(n), h);
    free(h);
    return t;
}

/* The all-reduce of n integers per rank on the current device: their closed-form sum (exact in
 * any order of additions, so the NCCL and MPI paths must agree bit for bit). */
static Status check_tensor_allreduce(int64_t n) {
    const int N = dist_size();
    Tensor *t = integer_tensor(dist_rank(), n);
    dist_allreduce_tensor(t);
    float *h = xmalloc((size_t)n * sizeof *h);
    tensor_copy_to_host(h, t);
    Status st = STATUS_OK;
    for (int64_t i = 0; i < n && st == STATUS_OK; i++) {
        const float want = (float)((double)N * ((double)(i % 61) - 30.0) + 2.5 * N * (N - 1));
        if (h[i] != want)
            st = error_set(STATUS_ERR_FORMAT, "all-reduce of a %s tensor of %lld integers (%s "
                           "path): element %lld is %.9g, the sum is %.9g", device_name(t->device),
                           (long long)n, dist_tensor_path(t), (long long)i, h[i], want);
    }
    free(h);
    return dist_agree(st);
}

/* The all-gather of B rows of 3 floats: rank r fills its share (dist_share) with its integers,
 * the rest with -1; afterwards every row must be its owner's. */
static Status check_tensor_allgather(int64_t B) {
    const int64_t C = 3;
    float *h = xmalloc((size_t)(B * C) * sizeof *h);
    int64_t lo, hi;
    dist_share(B, dist_rank(), &lo, &hi);
    for (int64_t i = 0; i < B * C; i++)
        h[i] = i / C >= lo && i / C < hi ? (float)integer_part(dist_rank(), i) : -1.0f;
    Tensor *t = tensor_from_f32(2, SHAPE(B, C), h);
    dist_allgather_rows(t);
    tensor_copy_to_host(h, t);
    Status st = STATUS_OK;
    for (int r = 0; r < dist_size() && st == STATUS_OK; r++) {
        dist_share(B, r, &lo, &hi);
        for (int64_t i = lo * C; i < hi * C && st == STATUS_OK; i++)
            if (h[i] != (float)integer_part(r, i))
                st = error_set(STATUS_ERR_FORMAT, "all-gather of %lld rows on %s (%s path): "
                               "element %lld is %.9g, rank %d's is %.9g", (long long)B,
                               device_name(t->device), dist_tensor_path(t), (long long)i, h[i],
                               r, integer_part(r, i));
    }
    free(h);
    return dist_agree(st);
}

/* The checks on the path the job's tensors take, then (on a device with NCCL) on the host path
 * too. Rows: 5 (shares of 2 and 3 on two ranks: uneven) and 4. */
static Status check_tensor_paths(const char **path) {
    Arena *a = tensor_arena();
    const size_t mark = arena_mark(a);
    Tensor *probe = TENSOR_F32(1);
    *path = dist_tensor_path(probe);
    Status st = STATUS_OK;
    for (int forced = 0; forced < 2 && st == STATUS_OK; forced++) {
        if (forced && strcmp(*path, "nccl") != 0) break;
        dist_force_host_path(forced);
        st = check_tensor_allreduce(100003);
        if (st == STATUS_OK) st = check_tensor_allgather(5);
        if (st == STATUS_OK) st = check_tensor_allgather(4);
    }
    dist_force_host_path(false);
    arena_release(a, mark);
    return st;
}

/* Mean seconds of R all-reduces of t (the mean over the ranks of each round, which all start
 * together at a barrier), and the best round. */
static double time_allreduce(void (*reduce)(void *, int64_t), void *x, int64_t n, int64_t rounds,
                             double *best) {
    const int N = dist_size();
    reduce(x, n); /* warm-up: connections, the scratch buffer */
    double total = 0;
    *best = 1e30;
    for (int64_t k = 0; k < rounds; k++) {
        dist_barrier();
        const double t0 = time_now_s();
        reduce(x, n);
        double dt = time_now_s() - t0;
        dist_allreduce_sum_f64(&dt, 1);
        dt /= N;
        total += dt;
        if (dt < *best) *best = dt;
    }
    return total / (double)rounds;
}

static void reduce_host(void *x, int64_t n) { dist_allreduce_sum_f32(x, n); }
static void reduce_tensor(void *t, int64_t n) {
    (void)n;
    dist_allreduce_tensor(t);
}

static void print_timing(const char *what, int64_t floats, int64_t rounds, double mean,
                         double best) {
    const int N = dist_size();
    const double bytes = 4.0 * (double)floats;
    if (dist_is_root())
        printf("all-reduce of %lld floats (%.1f MB) %s: %.2f ms mean of %lld (best %.2f), "
               "%.2f GB/s per rank moved (2(N-1)/N x %.1f MB)\n",
               (long long)floats, bytes / 1e6, what, 1e3 * mean, (long long)rounds, 1e3 * best,
               2.0 * (N - 1) / N * bytes / mean / 1e9, 2.0 * (N - 1) / N * bytes / 1e6);
}

/* On a device other than the CPU: the all-reduce of a device tensor through host memory and
 * MPI, and through NCCL when the job has it. */
static void time_device_paths(int64_t floats, int64_t rounds, const char *path) {
    Arena *a = tensor_arena();
    const size_t mark = arena_mark(a);
    Tensor *t = integer_tensor(dist_rank(), floats);
    for (int nccl = 0; nccl < 2; nccl++) {
        if (nccl && strcmp(path, "nccl") != 0) break;
        dist_force_host_path(!nccl);
        double best, mean = time_allreduce(reduce_tensor, t, floats, rounds, &best);
        char what[96];
        snprintf(what, sizeof what, "on %s via %s", device_name(t->device),
                 nccl ? "nccl" : "mpi (through host memory)");
        print_timing(what, floats, rounds, mean, best);
    }
    dist_force_host_path(false);
    arena_release(a, mark);
}

/* The ranks' host, pid, threads and device, printed by rank 0. */
static void report_ranks(DeviceKind dev) {
    const int N = dist_size();
    char line[256], host[128] = "?";
    gethostname(host, sizeof host - 1);
    snprintf(line, sizeof line, "rank %d: host %s pid %ld threads %d device %s local rank %d",
             dist_rank(), host, (long)getpid(), device_threads(), device_name(dev),
             dist_local_rank());
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
}

COMMAND_AS(dist_check, "dist-check",
           "check an MPI job: ranks, exactness and time of the gradient all-reduce",
           "trmml [--device D] dist-check [--floats N] [--rounds R]\n"
           "  Run it as the training job will run: mpirun -np N trmml --device D dist-check (or\n"
           "  srun). Each rank reports host, pid, threads, device and local rank; the\n"
           "  fixed-order all-reduce of known vectors must equal their sum in rank order\n"
           "  exactly on every rank; the all-reduce and all-gather of tensors on D must be exact\n"
           "  on the path they take (nccl for CUDA tensors when the job has NCCL, mpi otherwise;\n"
           "  with nccl, the mpi path is checked too); then R all-reduces of N floats are timed,\n"
           "  in host memory and, on a device other than the CPU, on each path\n"
           "  (docs/distributed.md). TRMML_NCCL=0 keeps CUDA tensors on the mpi path. Without\n"
           "  mpirun: one process, nothing to exchange.") {
    DistFlags o = {.floats = 7129089, .rounds = 5};
    const KeyGroup groups[] = {FLAGS_OF(DIST_FLAGS, &o)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    DeviceKind dev;
    Status st = tool_device_select(&dev);
    if (st != STATUS_OK) return tool_fail(st);
    report_ranks(dev);
    if ((st = check_allreduce()) != STATUS_OK) return tool_fail(st);
    if (dist_is_root())
        printf("all-reduce: exact on every rank (integers, and hashed values in rank order; "
               "float32 and float64; 1000003, 100003 and 1 elements)\n");
    const char *path = "mpi";
    if ((st = check_tensor_paths(&path)) != STATUS_OK) return tool_fail(st);
    if (dist_is_root())
        printf("tensors on %s: path %s; all-reduce of 100003 integers and all-gather of 5 and 4 "
               "rows exact on every rank%s\n", device_name(dev), path,
               strcmp(path, "nccl") == 0 ? " (and on the mpi path, through host memory)" : "");
    if (o.rounds == 0 || dist_size() == 1) return 0; /* one process: nothing to time */
    float *g = xmalloc((size_t)o.floats * sizeof *g);
    for (int64_t i = 0; i < o.floats; i++) g[i] = (float)hashed(dist_rank(), i);
    double best, mean = time_allreduce(reduce_host, g, o.floats, o.rounds, &best);
    free(g);
    print_timing("in host memory", o.floats, o.rounds, mean, best);
    if (dev != DEVICE_CPU) time_device_paths(o.floats, o.rounds, path);
    return 0;
}
