/* dist.c — the processes of one job (tensor/dist.h): MPI when compiled in (TRMML_MPI, set by the
 * Makefile for this file only) and launched by mpirun or srun; the one-process case otherwise.
 * CUDA tensors' collectives use NCCL (tensor/dist_nccl.h) when dist_device_init made a
 * communicator, and host memory with MPI otherwise.
 *
 * Only the main thread calls MPI (MPI_THREAD_FUNNELED; OpenMP runs inside each rank). MPI's
 * default error handler stays in place: a failed MPI call ends the job with MPI's message. */
#include "tensor/dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/dist_nccl.h"

#ifdef TRMML_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static bool g_agreed; /* a dist_agree has returned a failure */
/* Device collectives: dist_device_init made an NCCL communicator; the host path is forced
 * (dist_force_host_path). */
static bool g_nccl, g_host_forced;
static char g_summary[320];

/* Host buffers of the collectives, grown on demand and kept (a training step allocates nothing
 * once they have grown; dist_finalize frees them): the all-reduce's slices, a non-CPU tensor's
 * host copy, dist_allgather_rows' bytes per rank. */
static void *g_scratch, *g_stage, *g_rows_bytes, *g_rows_layout;
static size_t g_scratch_bytes, g_stage_bytes, g_rows_bytes_cap, g_rows_layout_cap;

static void *grow(void **buf, size_t *cap, size_t bytes) {
    if (bytes > *cap) {
        free(*buf);
        *buf = xmalloc(bytes);
        *cap = bytes;
    }
    return *buf;
}

static void free_buffers(void) {
    free(g_scratch), free(g_stage), free(g_rows_bytes), free(g_rows_layout);
    g_scratch = g_stage = g_rows_bytes = g_rows_layout = NULL;
    g_scratch_bytes = g_stage_bytes = g_rows_bytes_cap = g_rows_layout_cap = 0;
}

void dist_share(int64_t n, int rank, int64_t *lo, int64_t *hi) {
    CHECK(n >= 0 && rank >= 0 && rank < g_size, "dist_share: n %lld, rank %d of %d", (long long)n,
          rank, g_size);
    *lo = n * rank / g_size;
    *hi = n * (rank + 1) / g_size;
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
bool dist_is_root(void) { return g_rank == 0; }
bool dist_failure_agreed(void) { return g_agreed; }

/* A launcher's word that this process is one rank of a job: Open MPI's mpirun, PMIx (srun
 * --mpi=pmix, and mpirun), PMI (MPICH's hydra, srun --mpi=pmi2). */
static bool launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

#ifdef TRMML_MPI

static bool g_mpi; /* MPI_Init was called */
/* The per-rank counts and displacements of the collectives (allocated once, at dist_init). */
static int *g_count, *g_displ, *g_rcount, *g_rdispl;

Status dist_init(int *argc, char ***argv) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    version[strcspn(version, ",\n")] = 0; /* "Open MPI v4.1.4" */
    if (!launched()) {
        snprintf(g_summary, sizeof g_summary, "%.200s compiled in, one process (not launched by "
                 "mpirun or srun)", version);
        return STATUS_OK;
    }
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    g_mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    snprintf(g_summary, sizeof g_summary, "%.200s, %d rank%s", version, g_size,
             g_size == 1 ? "" : "s");
    if (provided < MPI_THREAD_FUNNELED)
        return error_set(STATUS_ERR_DEVICE, "MPI gives thread level %d, trmml needs "
                         "MPI_THREAD_FUNNELED (%d)", provided, MPI_THREAD_FUNNELED);
    g_count = xcalloc((size_t)g_size, sizeof *g_count);
    g_displ = xcalloc((size_t)g_size, sizeof *g_displ);
    g_rcount = xcalloc((size_t)g_size, sizeof *g_rcount);
    g_rdispl = xcalloc((size_t)g_size, sizeof *g_rdispl);
    return STATUS_OK;
}

void dist_finalize(void) {
    if (!g_mpi) return;
    dist_nccl_destroy();
    g_nccl = false;
    MPI_Finalize();
    g_mpi = false;
    free(g_count), free(g_displ), free(g_rcount), free(g_rdispl);
    free_buffers();
}

void dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    if (g_mpi) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

const char *dist_summary(void) { return g_summary; }

void dist_barrier(void) {
    if (g_size > 1) MPI_Barrier(MPI_COMM_WORLD);
}

static int as_int(int64_t v, const char *what) {
    CHECK(v >= 0 && v <= INT_MAX, "dist: %s of %lld exceeds one MPI message (%d)", what,
          (long long)v, INT_MAX);
    return (int)v;
}

/* The fixed-order all-reduce (dist.h): rank r owns elements [lo_r, hi_r) of dist_share(n). */
static void allreduce_fixed(void *x, int64_t n, size_t es, MPI_Datatype type, bool f64) {
    as_int(n, "an all-reduce");
    int64_t lo, hi;
    dist_share(n, g_rank, &lo, &hi);
    const int64_t len = hi - lo;
    for (int r = 0; r < g_size; r++) {
        int64_t l, h;
        dist_share(n, r, &l, &h);
        g_count[r] = (int)(h - l); /* my slice r goes to rank r ... */
        g_displ[r] = (int)l;
        g_rcount[r] = (int)len;    /* ... and rank r's copy of my slice arrives at r * len */
        g_rdispl[r] = as_int(r * len, "an all-reduce");
    }
    char *parts = grow(&g_scratch, &g_scratch_bytes, (size_t)(g_size * len) * es);
    MPI_Alltoallv(x, g_count, g_displ, type, parts, g_rcount, g_rdispl, type, MPI_COMM_WORLD);
    /* The sum of my slice, rank 0 first. */
    if (f64) {
        double *out = (double *)x + lo;
        const double *p = (const double *)parts;
        for (int64_t j = 0; j < len; j++) {
            double s = p[j];
            for (int r = 1; r < g_size; r++) s += p[r * len + j];
            out[j] = s;
        }
    } else {
        float *out = (float *)x + lo;
        const float *p = (const float *)parts;
        for (int64_t j = 0; j < len; j++) {
            float s = p[j];
            for (int r = 1; r < g_size; r++) s += p[r * len + j];
            out[j] = s;
        }
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, type, x, g_count, g_displ, type, MPI_COMM_WORLD);
}

void dist_allreduce_sum_f32(float *x, int64_t n) {
    if (g_size > 1 && n > 0) allreduce_fixed(x, n, sizeof(float), MPI_FLOAT, false);
}

void dist_allreduce_sum_f64(double *x, int64_t n) {
    if (g_size > 1 && n > 0) allreduce_fixed(x, n, sizeof(double), MPI_DOUBLE, true);
}

/* Byte counts and displacements of a gather (every rank's bytes_of, in rank order). */
static void byte_layout(const size_t *bytes_of) {
    int64_t off = 0;
    for (int r = 0; r < g_size; r++) {
        g_rcount[r] = as_int((int64_t)bytes_of[r], "a gathered part");
        g_rdispl[r] = as_int(off, "a gather");
        off += (int64_t)bytes_of[r];
    }
    as_int(off, "a gather");
}

void dist_allgatherv(const void *mine, size_t bytes, void *all, const size_t *bytes_of) {
    CHECK(bytes == bytes_of[g_rank], "dist_allgatherv: rank %d gives %zu bytes, the layout says %zu",
          g_rank, bytes, bytes_of[g_rank]);
    if (g_size == 1) {
        if (bytes && mine != all) memmove(all, mine, bytes);
        return;
    }
    byte_layout(bytes_of);
    char *at = (char *)all + g_rdispl[g_rank];
    if (mine == at || bytes == 0)
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, all, g_rcount, g_rdispl, MPI_BYTE,
                       MPI_COMM_WORLD);
    else
        MPI_Allgatherv(mine, (int)bytes, MPI_BYTE, all, g_rcount, g_rdispl, MPI_BYTE,
                       MPI_COMM_WORLD);
}

void dist_gatherv(const void *mine, size_t bytes, void *all, const size_t *bytes_of) {
    CHECK(bytes == bytes_of[g_rank], "dist_gatherv: rank %d gives %zu bytes, the layout says %zu",
          g_rank, bytes, bytes_of[g_rank]);
    if (g_size == 1) {
        if (bytes && mine != all) memmove(all, mine, bytes);
        return;
    }
    byte_layout(bytes_of);
    if (g_rank == 0 && (char *)mine == (char *)all + g_rdispl[0])
        MPI_Gatherv(MPI_IN_PLACE, 0, MPI_BYTE, all, g_rcount, g_rdispl, MPI_BYTE, 0,
                    MPI_COMM_WORLD);
    else
        MPI_Gatherv(mine, (int)bytes, MPI_BYTE, all, g_rcount, g_rdispl, MPI_BYTE, 0,
                    MPI_COMM_WORLD);
}

void dist_allgather_i64(int64_t v, int64_t *out) {
    if (g_size == 1) {
        out[0] = v;
        return;
    }
    MPI_Allgather(&v, 1, MPI_INT64_T, out, 1, MPI_INT64_T, MPI_COMM_WORLD);
}

void dist_bcast(void *buf, size_t bytes, int root) {
    if (g_size > 1) MPI_Bcast(buf, as_int((int64_t)bytes, "a broadcast"), MPI_BYTE, root,
                              MPI_COMM_WORLD);
}

Status dist_agree(Status st) {
    if (g_size == 1) return st;
    int mine = st != STATUS_OK ? g_rank : g_size, first = g_size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == g_size) return STATUS_OK;
    /* shared: the failure is one an earlier dist_agree already gave every rank (it is not
     * named twice). */
    static char agreed_msg[1024];
    struct {
        int status, shared;
        char msg[1024];
    } m = {0};
    if (g_rank == first) {
        m.status = (int)st;
        m.shared = g_agreed && strcmp(error_last(), agreed_msg) == 0;
        snprintf(m.msg, sizeof m.msg, "%s", error_last());
    }
    MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, MPI_COMM_WORLD);
    g_agreed = true;
    if (m.shared) error_set((Status)m.status, "%s", m.msg);
    else error_set((Status)m.status, "rank %d: %s", first, m.msg);
    snprintf(agreed_msg, sizeof agreed_msg, "%s", error_last());
    return (Status)m.status;
}

/* This rank's wish for NCCL: on CUDA, and not turned off by TRMML_NCCL=0 (unset or 1: on). */
static Status nccl_wanted(DeviceKind dev, int *want) {
    const char *e = getenv("TRMML_NCCL");
    if (e && strcmp(e, "0") != 0 && strcmp(e, "1") != 0)
        return error_set(STATUS_ERR_USAGE, "TRMML_NCCL='%.40s': expected 0 (CUDA tensors' "
                         "collectives through host memory and MPI) or 1 (NCCL, the default)", e);
    *want = dev == DEVICE_CUDA && !(e && strcmp(e, "0") == 0);
    return STATUS_OK;
}

/* The failing rank's message, with what to do about it. */
static Status nccl_hint(Status st) {
    if (st == STATUS_OK) return st;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", error_last());
    return error_set(st, "%s. HINT: TRMML_NCCL=0 sends CUDA tensors' collectives through host "
                     "memory and MPI instead", msg);
}

static bool g_device_decided; /* dist_device_init has run: it decides once per process */

/* Whether every rank's GPU (host and PCI bus id) differs from every other rank's. */
static Status gpus_distinct(bool *distinct) {
    enum { KEY = 192 };
    char mine[KEY] = {0};
    Status st = dist_agree(dist_nccl_gpu_key(mine, KEY));
    if (st != STATUS_OK) return st;
    char *keys = xcalloc((size_t)g_size, KEY);
    MPI_Allgather(mine, KEY, MPI_CHAR, keys, KEY, MPI_CHAR, MPI_COMM_WORLD);
    *distinct = true;
    for (int a = 0; a < g_size; a++)
        for (int b = a + 1; b < g_size; b++)
            if (strcmp(keys + (size_t)a * KEY, keys + (size_t)b * KEY) == 0) *distinct = false;
    free(keys);
    return STATUS_OK;
}

Status dist_device_init(DeviceKind dev) {
    if (g_size == 1 || g_device_decided || !dist_nccl_compiled()) return STATUS_OK;
    g_device_decided = true;
    int want = 0, all = 0;
    Status st = dist_agree(nccl_wanted(dev, &want));
    if (st != STATUS_OK) return st;
    /* NCCL only when every rank is on CUDA (a rank on another device could not join) and on a
     * GPU of its own (NCCL refuses two ranks on one GPU). */
    MPI_Allreduce(&want, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all) return STATUS_OK;
    bool distinct = false;
    if ((st = gpus_distinct(&distinct)) != STATUS_OK || !distinct) return st;
    unsigned char id[DIST_NCCL_ID_BYTES] = {0};
    st = dist_agree(nccl_hint(g_rank == 0 ? dist_nccl_unique_id(id) : STATUS_OK));
    if (st != STATUS_OK) return st;
    dist_bcast(id, sizeof id, 0);
    st = dist_agree(nccl_hint(dist_nccl_init(id, g_size, g_rank)));
    g_nccl = st == STATUS_OK;
    return st;
}

int dist_local_rank(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
    if (g_size == 1) return -1;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return (int)strtol(v, NULL, 10);
    }
    return -1;
}

#else /* one process: no MPI compiled in */

/* The job's size as the launcher states it (0: not stated). */
static long launched_size(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return strtol(v, NULL, 10);
    }
    return 0;
}


Status dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(g_summary, sizeof g_summary, "not compiled in");
    const long n = launched_size();
    if (launched() && n > 1)
        return error_set(STATUS_ERR_USAGE,
                         "launched as one of %ld ranks, but this trmml was built without MPI "
                         "(make MPI=0, or no mpicc at build time): each rank would run the whole "
                         "job. Rebuild with Open MPI (scripts/install-deps.sh, then make), or run "
                         "without mpirun",
                         n);
    return STATUS_OK;
}

void dist_finalize(void) { free_buffers(); }

void dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    exit(code);
}

const char *dist_summary(void) { return g_summary[0] ? g_summary : "not compiled in"; }
void dist_barrier(void) {}
void dist_allreduce_sum_f32(float *x, int64_t n) { (void)x, (void)n; }
void dist_allreduce_sum_f64(double *x, int64_t n) { (void)x, (void)n; }

void dist_allgatherv(const void *mine, size_t bytes, void *all, const size_t *bytes_of) {
    CHECK(bytes == bytes_of[0], "dist_allgatherv: %zu bytes, the layout says %zu", bytes,
          bytes_of[0]);
    if (bytes && mine != all) memmove(all, mine, bytes);
}

void dist_gatherv(const void *mine, size_t bytes, void *all, const size_t *bytes_of) {
    dist_allgatherv(mine, bytes, all, bytes_of);
}

void dist_allgather_i64(int64_t v, int64_t *out) { out[0] = v; }
void dist_bcast(void *buf, size_t bytes, int root) { (void)buf, (void)bytes, (void)root; }
Status dist_agree(Status st) { return st; }
Status dist_device_init(DeviceKind dev) {
    (void)dev;
    return STATUS_OK;
}
int dist_local_rank(void) { return -1; }

#endif

void dist_force_host_path(bool on) { g_host_forced = on; }

/* Whether t's collectives run on NCCL: a communicator exists, t is on CUDA, not forced off. */
static bool use_nccl(const Tensor *t) {
    return g_nccl && !g_host_forced && t->device == DEVICE_CUDA;
}

const char *dist_tensor_path(const Tensor *t) { return use_nccl(t) ? "nccl" : "mpi"; }

/* A collective that failed on this rank cannot return a Status (it runs inside a step) and
 * leaves the other ranks waiting in it: this rank names the failure and ends the job, as main
 * does with a failure no dist_agree shared. */
static void nccl_or_end(Status st) {
    if (st == STATUS_OK) return;
    fprintf(stderr, "trmml: rank %d: %s\n", g_rank, error_last());
    dist_abort(1);
}

void dist_allreduce_tensor(Tensor *t) {
    CHECK(t && t->dtype == DT_F32, "dist_allreduce_tensor: a float32 tensor, got %s",
          t ? dtype_name(t->dtype) : "NULL");
    if (g_size == 1 || t->numel == 0) return;
    if (t->device == DEVICE_CPU) {
        dist_allreduce_sum_f32(t->data, t->numel);
        return;
    }
    if (use_nccl(t)) {
        nccl_or_end(dist_nccl_allreduce_f32(t->data, t->numel));
        return;
    }
    /* Another device without NCCL: through host memory, in rank order. */
    float *host = grow(&g_stage, &g_stage_bytes, (size_t)t->numel * sizeof(float));
    tensor_copy_to_host(host, t);
    dist_allreduce_sum_f32(host, t->numel);
    tensor_copy_from_host(t, host);
}

void dist_allgather_rows(Tensor *t) {
    CHECK(t && t->dtype == DT_F32 && t->ndim >= 1, "dist_allgather_rows: a float32 tensor");
    if (g_size == 1) return;
    const int64_t B = t->shape[0], per = B ? t->numel / B : 0;
    size_t *bytes_of = grow(&g_rows_bytes, &g_rows_bytes_cap, (size_t)g_size * sizeof(size_t));
    for (int r = 0; r < g_size; r++) {
        int64_t lo, hi;
        dist_share(B, r, &lo, &hi);
        bytes_of[r] = (size_t)((hi - lo) * per) * sizeof(float);
    }
    int64_t lo, hi;
    dist_share(B, g_rank, &lo, &hi);
    if (use_nccl(t)) {
        int64_t *count =
            grow(&g_rows_layout, &g_rows_layout_cap, 2 * (size_t)g_size * sizeof(int64_t));
        int64_t *displ = count + g_size;
        for (int r = 0; r < g_size; r++) {
            count[r] = (int64_t)(bytes_of[r] / sizeof(float));
            displ[r] = r == 0 ? 0 : displ[r - 1] + count[r - 1];
        }
        nccl_or_end(dist_nccl_allgatherv_f32(t->data, count, displ));
        return;
    }
    float *host = t->device == DEVICE_CPU
                      ? (float *)t->data
                      : grow(&g_stage, &g_stage_bytes, (size_t)t->numel * sizeof(float));
    if (t->device != DEVICE_CPU) tensor_copy_to_host(host, t);
    dist_allgatherv(host + lo * per, bytes_of[g_rank], host, bytes_of);
    if (t->device != DEVICE_CPU) tensor_copy_from_host(t, host);
}
