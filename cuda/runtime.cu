// runtime.cu — the CUDA backend's table: device detection, the caching allocator, copies, and
// the binding of every kernel of tensor/kernels.def to its `<name>_cuda` entry.
//
// The table is filled from the same X-macro list as the CPU table, so no entry can be NULL: a
// kernel without a CUDA entry is a link error. `available` is true only when a GPU answers
// (cudaGetDeviceCount succeeds with n > 0); a CUDA-enabled binary on a machine without a driver
// gets false here and runs on the CPU.
//
// Memory: alloc/free go through a caching allocator (cuda/cache_alloc.h) in front of
// cudaMalloc/cudaFree, so re-allocating a size that was freed costs no driver call. Copies are
// synchronous cudaMemcpy on the legacy default stream, which orders them after every kernel
// launched before them; `synchronize` is cudaDeviceSynchronize.
#include "cuda/common.cuh"
#include "cuda/runtime.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cuda/cache_alloc.h"
}

static void *raw_alloc(size_t bytes) {
    void *p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError(); // clear the sticky-free error state of a failed allocation
        return nullptr;
    }
    return p;
}
static void raw_free(void *p) { CUDA_CHECK(cudaFree(p)); }

static CacheAlloc g_cache = {raw_alloc, raw_free, nullptr, {nullptr}, 0, 0, 0, 0};
static pthread_mutex_t g_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void *cuda_alloc(size_t bytes) {
    pthread_mutex_lock(&g_cache_lock);
    void *p = cache_alloc_get(&g_cache, bytes);
    pthread_mutex_unlock(&g_cache_lock);
    return p;
}
static void cuda_free(void *p) {
    // The block may still be read by a kernel in flight; reusing it is safe because every later
    // use is launched on the same stream, after that kernel.
    pthread_mutex_lock(&g_cache_lock);
    cache_alloc_put(&g_cache, p);
    pthread_mutex_unlock(&g_cache_lock);
}

extern "C" size_t cuda_allocator_trim(void) {
    pthread_mutex_lock(&g_cache_lock);
    size_t r = cache_alloc_trim(&g_cache);
    pthread_mutex_unlock(&g_cache_lock);
    return r;
}

extern "C" void cuda_allocator_stats(size_t *live_bytes, size_t *cached_bytes) {
    pthread_mutex_lock(&g_cache_lock);
    if (live_bytes) *live_bytes = g_cache.live_bytes;
    if (cached_bytes) *cached_bytes = g_cache.cached_bytes;
    pthread_mutex_unlock(&g_cache_lock);
}

static void cuda_memset0(void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemset(p, 0, bytes));
}
static void cuda_h2d(void *d, const void *s, size_t n) {
    if (n) CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyHostToDevice));
}
static void cuda_d2h(void *d, const void *s, size_t n) {
    if (n) CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyDeviceToHost));
}
static void cuda_d2d(void *d, const void *s, size_t n) {
    if (n) CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyDeviceToDevice));
}
static void cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

static int g_sync_each = -1;

extern "C" bool cuda_sync_each_launch(void) {
    if (g_sync_each < 0) {
#ifdef TRMML_CUDA_DEBUG_SYNC
        g_sync_each = 1;
#else
        const char *e = getenv("TRMML_CUDA_SYNC");
        g_sync_each = e && strcmp(e, "1") == 0;
#endif
    }
    return g_sync_each == 1;
}

extern "C" int cuda_select_device(int index) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (index >= 0 && index < n) CUDA_CHECK(cudaSetDevice(index));
    return n;
}

static DeviceTable g_table;
static bool g_init;

extern "C" const DeviceTable *cuda_device_table(void) {
    if (!g_init) {
        g_init = true;
        g_table.name = "cuda";
        int n = 0;
        // Without a driver this returns cudaErrorInsufficientDriver / NoDevice: not a GPU.
        g_table.available = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
        (void)cudaGetLastError();
        g_table.alloc = cuda_alloc;
        g_table.free = cuda_free;
        g_table.memset0 = cuda_memset0;
        g_table.copy_h2d = cuda_h2d;
        g_table.copy_d2h = cuda_d2h;
        g_table.copy_d2d = cuda_d2d;
        g_table.synchronize = cuda_sync;
#define KERNEL(name, args) g_table.name = name##_cuda;
#include "tensor/kernels.def"
#undef KERNEL
    }
    return &g_table;
}
