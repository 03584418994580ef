// dist_nccl.cu — tensor/dist_nccl.h with NCCL: one communicator per process on the current CUDA
// device, and the all-reduce and all-gather of float32 device memory that tensor/dist.c uses for
// CUDA tensors when the job has several ranks (docs/distributed.md, "On several GPUs").
//
// Every collective runs on the legacy default stream (stream 0), where every kernel, cuBLAS call
// and cudaMemcpy of the backend runs (cuda/common.cuh), so it starts after the kernels that made
// its input; it is waited for before returning, so that an error is reported by the call that
// caused it and a timing of the call is the collective's.
//
// Errors are environment failures (a missing peer, a network error, two ranks on one GPU): each
// call's result becomes STATUS_ERR_DEVICE with the call, ncclGetErrorString and the
// communicator's last error text (ncclGetLastError), for tensor/dist.c to share or end the job
// with.
#include "cuda/common.cuh"

extern "C" {
#include "tensor/dist_nccl.h"
}

#include <nccl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static_assert(DIST_NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "DIST_NCCL_ID_BYTES is NCCL's id size");

static ncclComm_t g_comm;
static int g_size, g_rank;

// STATUS_ERR_DEVICE naming the call, NCCL's name for the result and its last error text.
static Status nccl_error(const char *call, ncclResult_t r) {
    const char *detail = ncclGetLastError(g_comm);
    return error_set(STATUS_ERR_DEVICE, "%s: %s%s%s (NCCL_DEBUG=WARN in the environment prints "
                     "NCCL's own report)", call, ncclGetErrorString(r),
                     detail && *detail ? ": " : "", detail ? detail : "");
}

static Status cuda_error(const char *call, cudaError_t e) {
    (void)cudaGetLastError(); // clear a non-sticky error so later calls are not blamed for it
    return error_set(STATUS_ERR_DEVICE, "%s: %s", call, cudaGetErrorString(e));
}

// Return the Status of an NCCL or CUDA call that failed, naming the statement.
#define NCCL_TRY(stmt)                                                                             \
    do {                                                                                           \
        ncclResult_t r_ = (stmt);                                                                  \
        if (r_ != ncclSuccess) return nccl_error(#stmt, r_);                                       \
    } while (0)
#define CUDA_TRY(stmt)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (stmt);                                                                   \
        if (e_ != cudaSuccess) return cuda_error(#stmt, e_);                                       \
    } while (0)

extern "C" bool dist_nccl_compiled(void) { return true; }

extern "C" const char *dist_nccl_summary(void) {
    static char buf[64];
    int v = 0;
    if (ncclGetVersion(&v) != ncclSuccess) return "compiled in, the library does not answer";
    // NCCL >= 2.9 codes versions as major * 10000 + minor * 100 + patch.
    snprintf(buf, sizeof buf, "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    return buf;
}

extern "C" Status dist_nccl_unique_id(unsigned char id[DIST_NCCL_ID_BYTES]) {
    ncclUniqueId u;
    NCCL_TRY(ncclGetUniqueId(&u));
    memcpy(id, u.internal, DIST_NCCL_ID_BYTES);
    return STATUS_OK;
}

extern "C" Status dist_nccl_gpu_key(char *buf, int cap) {
    CHECK(cap >= 160, "dist_nccl_gpu_key: %d bytes, 160 needed", cap);
    int dev = -1;
    char bus[32] = "";
    CUDA_TRY(cudaGetDevice(&dev));
    CUDA_TRY(cudaDeviceGetPCIBusId(bus, (int)sizeof bus, dev));
    gethostname(buf, 127);
    buf[127] = 0;
    snprintf(buf + strlen(buf), (size_t)cap - strlen(buf), "/%s", bus);
    return STATUS_OK;
}

extern "C" Status dist_nccl_init(const unsigned char id[DIST_NCCL_ID_BYTES], int size, int rank) {
    CHECK(!g_comm, "dist_nccl_init: a communicator exists already");
    CHECK(size >= 1 && rank >= 0 && rank < size, "dist_nccl_init: rank %d of %d", rank, size);
    int n = 0, dev = -1;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return error_set(STATUS_ERR_DEVICE, "NCCL needs a GPU, and none answers on this rank");
    }
    CUDA_TRY(cudaGetDevice(&dev));
    ncclUniqueId u;
    memcpy(u.internal, id, DIST_NCCL_ID_BYTES);
    ncclComm_t comm = nullptr;
    ncclResult_t r = ncclCommInitRank(&comm, size, u, rank);
    if (r != ncclSuccess) {
        char call[96];
        snprintf(call, sizeof call, "ncclCommInitRank (rank %d of %d, cuda:%d)", rank, size, dev);
        return nccl_error(call, r);
    }
    g_comm = comm;
    g_size = size;
    g_rank = rank;
    return STATUS_OK;
}

extern "C" bool dist_nccl_ready(void) { return g_comm != nullptr; }

extern "C" Status dist_nccl_allreduce_f32(float *x, int64_t n) {
    CHECK(g_comm && n >= 0, "dist_nccl_allreduce_f32: no communicator, or n = %lld", (long long)n);
    if (n == 0) return STATUS_OK;
    NCCL_TRY(ncclAllReduce(x, x, (size_t)n, ncclFloat32, ncclSum, g_comm, 0));
    CUDA_TRY(cudaStreamSynchronize(0));
    return STATUS_OK;
}

// Whether count[] is equal for every rank and displ[] is r * count: ncclAllGather's layout.
static bool uniform_layout(const int64_t *count, const int64_t *displ) {
    for (int r = 0; r < g_size; r++)
        if (count[r] != count[0] || displ[r] != r * count[0]) return false;
    return true;
}

extern "C" Status dist_nccl_allgatherv_f32(float *x, const int64_t *count, const int64_t *displ) {
    CHECK(g_comm, "dist_nccl_allgatherv_f32: no communicator");
    if (uniform_layout(count, displ)) {
        if (count[0] > 0)
            NCCL_TRY(ncclAllGather(x + displ[g_rank], x, (size_t)count[0], ncclFloat32, g_comm, 0));
    } else {
        // Uneven shares (dist_share of B rows that the ranks do not divide): rank r broadcasts
        // its rows to their place on every rank; in place on the root, as NCCL allows.
        NCCL_TRY(ncclGroupStart());
        for (int r = 0; r < g_size; r++) {
            if (count[r] == 0) continue;
            ncclResult_t res = ncclBroadcast(x + displ[r], x + displ[r], (size_t)count[r],
                                             ncclFloat32, r, g_comm, 0);
            if (res != ncclSuccess) {
                (void)ncclGroupEnd();
                return nccl_error("ncclBroadcast (an all-gather of uneven shares)", res);
            }
        }
        NCCL_TRY(ncclGroupEnd());
    }
    CUDA_TRY(cudaStreamSynchronize(0));
    return STATUS_OK;
}

extern "C" void dist_nccl_destroy(void) {
    if (!g_comm) return;
    // At exit, after the last collective: a failure here has nothing left to spoil.
    (void)ncclCommDestroy(g_comm);
    g_comm = nullptr;
}
