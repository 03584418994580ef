/* device.c — the CPU backend's table, device selection, and thread control.
 *
 * The CPU table is built from tensor/kernels.def: every kernel `k` is bound to `k_cpu`, so the
 * CPU backend is complete by construction. The CUDA table comes from cuda/ when nvcc was found
 * (TRMML_CUDA defined); otherwise CUDA is reported as "not compiled in". The guard table (the
 * CPU kernels on memory the host cannot touch, a test instrument) is in tensor/device_guard.c. */
#include "tensor/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tensor/kernels_cpu.h"
#include "tensor/ops/gemm.h"

/* Blocks of 4 MiB and more (the arenas' chunks, which hold the activations) are aligned to 2 MiB
 * and asked for transparent huge pages: a GEMM packing rows of a (R, 3C) activation 6 KB apart
 * touches a new 4 KiB page per row, and the TLB misses cost the CLIP text tower's products
 * 5-7 % (docs/profile.md). Where the kernel's THP setting is "never" the advice is ignored;
 * TRMML_HUGEPAGES=0 leaves them out (to measure the difference). */
#define CPU_HUGE_BYTES ((size_t)4 << 20)
static bool cpu_huge_pages(void) {
    const char *e = getenv("TRMML_HUGEPAGES"); /* read per large block: a handful per pass */
    return !(e && strcmp(e, "0") == 0);
}

static void *cpu_alloc(size_t bytes) {
    void *p = NULL;
    const bool huge = bytes >= CPU_HUGE_BYTES && cpu_huge_pages();
    if (posix_memalign(&p, huge ? (size_t)2 << 20 : 64, bytes ? bytes : 64) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (huge) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}
static void cpu_free(void *p) { free(p); }
/* Zeroing (gradient buffers, mostly) is bound by memory bandwidth, which one core does not
 * fill: large buffers are cleared in 64 KiB chunks on every OpenMP thread. */
static void cpu_memset0(void *p, size_t bytes) {
#ifdef _OPENMP
    const size_t chunk = (size_t)1 << 16;
    if (bytes >= 16 * chunk && omp_get_max_threads() > 1 && !omp_in_parallel()) {
        const int64_t n = (int64_t)((bytes + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < n; c++) {
            const size_t off = (size_t)c * chunk;
            memset((char *)p + off, 0, bytes - off < chunk ? bytes - off : chunk);
        }
        return;
    }
#endif
    memset(p, 0, bytes);
}
static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}
static void cpu_sync(void) {}

static const DeviceTable cpu_table = {
    .name = "cpu",
    .available = true,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memset0 = cpu_memset0,
    .copy_h2d = cpu_copy,
    .copy_d2h = cpu_copy,
    .copy_d2d = cpu_copy,
    .synchronize = cpu_sync,
#define KERNEL(name, args) .name = name##_cpu,
#include "tensor/kernels.def"
#undef KERNEL
};

#ifdef TRMML_CUDA
const DeviceTable *cuda_device_table(void); /* cuda/runtime.cu */
#endif
const DeviceTable *guard_device_table(void); /* tensor/device_guard.c */

const DeviceTable *device_table(DeviceKind dev) {
    if (dev == DEVICE_CPU) return &cpu_table;
    if (dev == DEVICE_GUARD) return guard_device_table();
#ifdef TRMML_CUDA
    if (dev == DEVICE_CUDA) return cuda_device_table();
#endif
    CHECK(0, "device '%s' is not compiled into this build (rebuild with nvcc present and CUDA=1)",
          device_name(dev));
}

void device_missing_kernel(DeviceKind dev, const char *kernel) {
    check_fail(__FILE__, __LINE__, __func__, "kernel present",
               "op kernel '%s' is missing from the %s backend", kernel, device_name(dev));
}

int device_kernel_count(void) {
    int n = 0;
#define KERNEL(name, args) n++;
#include "tensor/kernels.def"
#undef KERNEL
    return n;
}

int device_missing_kernels(DeviceKind dev, const char **out, int max) {
    const DeviceTable *t = device_table(dev);
    int n = 0;
#define KERNEL(name, args)                                                                 \
    if (!t->name) {                                                                        \
        if (n < max) out[n] = #name;                                                       \
        n++;                                                                               \
    }
#include "tensor/kernels.def"
#undef KERNEL
    return n;
}

static bool cuda_available(void) {
#ifdef TRMML_CUDA
    return cuda_device_table()->available;
#else
    return false;
#endif
}

Status device_parse(const char *spec, DeviceKind *dev, int *index) {
    *index = 0;
    if (!spec || strcmp(spec, "auto") == 0) {
        *dev = cuda_available() ? DEVICE_CUDA : DEVICE_CPU;
        return STATUS_OK;
    }
    if (strcmp(spec, "cpu") == 0) {
        *dev = DEVICE_CPU;
        return STATUS_OK;
    }
    if (strcmp(spec, "guard") == 0) {
        *dev = DEVICE_GUARD;
        return STATUS_OK;
    }
    if (strncmp(spec, "cuda", 4) == 0 && (spec[4] == '\0' || spec[4] == ':')) {
        if (spec[4] == ':') {
            char *end;
            long v = strtol(spec + 5, &end, 10);
            if (*end || end == spec + 5 || v < 0)
                return error_set(STATUS_ERR_USAGE, "--device '%s': expected cuda:N with N >= 0", spec);
            *index = (int)v;
        }
#ifndef TRMML_CUDA
        return error_set(STATUS_ERR_DEVICE,
                         "--device %s: CUDA is not compiled into this build (available: cpu)", spec);
#else
        if (!cuda_available())
            return error_set(STATUS_ERR_DEVICE,
                             "--device %s: CUDA is compiled in but no GPU answers (available: cpu)",
                             spec);
        *dev = DEVICE_CUDA;
        return STATUS_OK;
#endif
    }
    return error_set(STATUS_ERR_USAGE, "--device '%s': expected auto, cpu, cuda or cuda:N (or "
                     "guard, a test instrument: docs/guard.md)", spec);
}

const char *device_summary(void) {
    static char buf[256];
    snprintf(buf, sizeof buf,
             "cpu (%d threads, OpenMP %s, GEMM %s); cuda %s; guard (test instrument)",
             device_threads(),
#ifdef _OPENMP
             "on",
#else
             "off",
#endif
             gemm_backend_name(),
#ifdef TRMML_CUDA
             cuda_available() ? "compiled in, GPU present" : "compiled in, no GPU"
#else
             "not compiled in"
#endif
    );
    return buf;
}

static int g_threads;

void device_set_threads(int n) {
    g_threads = n;
    if (n <= 0) return;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    gemm_set_threads(n);
}

int device_threads(void) {
#ifdef _OPENMP
    return g_threads > 0 ? g_threads : omp_get_max_threads();
#else
    return 1;
#endif
}

#ifdef TRMML_CUDA
int cuda_select_device(int index); /* cuda/runtime.cu: the GPU count; selects index if < count */
#endif

Status device_use(DeviceKind dev, int index) {
    if (dev != DEVICE_CUDA) return STATUS_OK;
#ifdef TRMML_CUDA
    int n = cuda_select_device(index);
    if (index >= n)
        return error_set(STATUS_ERR_DEVICE, "--device cuda:%d: this machine has %d GPU%s (cuda:0 "
                         "to cuda:%d)", index, n, n == 1 ? "" : "s", n - 1);
    return STATUS_OK;
#else
    (void)index;
    return error_set(STATUS_ERR_DEVICE, "--device cuda: CUDA is not compiled into this build");
#endif
}

int device_cuda_count(void) {
#ifdef TRMML_CUDA
    return cuda_select_device(-1); /* the count; a negative index selects nothing */
#else
    return 0;
#endif
}

#ifdef TRMML_CUDA
bool cuda_set_allow_tf32(bool on); /* cuda/gemm.cu */
#endif

bool device_set_allow_tf32(bool on) {
#ifdef TRMML_CUDA
    return cuda_set_allow_tf32(on);
#else
    (void)on;
    return false;
#endif
}

/* ---- the kernel profiler ---------------------------------------------------------------- */

bool kernel_prof_on;

static const char *const KERNEL_NAMES[] = {
#define KERNEL(name, args) #name,
#include "tensor/kernels.def"
#undef KERNEL
};
enum { N_KERNELS = sizeof KERNEL_NAMES / sizeof KERNEL_NAMES[0], PROF_DEPTH = 16 };

static uint64_t prof_ns[N_KERNELS];
static int64_t prof_calls[N_KERNELS];
static int prof_stack[PROF_DEPTH]; /* the kernels running, innermost last */
static int prof_depth;
static uint64_t prof_last; /* when the innermost kernel's time was last charged */
static _Thread_local bool prof_thread; /* the thread that turned the profiler on */

void device_init_profiler(void) {
    const char *e = getenv("TRMML_PROFILE");
    kernel_prof_on = e && strcmp(e, "1") == 0;
    prof_thread = true;
}

const char *device_kernel_name(int slot) {
    return slot >= 0 && slot < N_KERNELS ? KERNEL_NAMES[slot] : "?";
}

static uint64_t prof_now(DeviceKind dev) {
    if (dev == DEVICE_CUDA) device_table(dev)->synchronize();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The totals and the stack are one thread's: kernels run by other threads (inside an OpenMP
 * region, or a loader worker) are not counted. */
static bool prof_counted(void) {
#ifdef _OPENMP
    if (omp_in_parallel()) return false;
#endif
    return prof_thread;
}

void kernel_prof_begin(DeviceKind dev, int slot) {
    if (!prof_counted()) return;
    const uint64_t now = prof_now(dev);
    if (prof_depth > 0) prof_ns[prof_stack[prof_depth - 1]] += now - prof_last; /* pause it */
    CHECK(prof_depth < PROF_DEPTH && slot >= 0 && slot < N_KERNELS,
          "kernel profiler: %s nested %d deep", device_kernel_name(slot), prof_depth);
    prof_stack[prof_depth++] = slot;
    prof_calls[slot]++;
    prof_last = now;
}

void kernel_prof_end(DeviceKind dev) {
    if (!prof_counted() || prof_depth == 0) return;
    const uint64_t now = prof_now(dev);
    prof_ns[prof_stack[--prof_depth]] += now - prof_last;
    prof_last = now;
}

/* The layer table: a label per layer shape, linear search (a model has a few dozen shapes). */
enum { PROF_LAYERS = 256, PROF_LABEL = 80 };
static struct {
    char label[PROF_LABEL];
    uint64_t ns;
    int64_t calls;
    double flop;
} prof_layers[PROF_LAYERS];
static int prof_nlayers;

uint64_t prof_layer_begin(DeviceKind dev) {
    return kernel_prof_on && prof_counted() ? prof_now(dev) : 0;
}

void prof_layer_end(DeviceKind dev, uint64_t t0, const char *label, double flop) {
    if (!t0) return;
    const uint64_t ns = prof_now(dev) - t0;
    int i = 0;
    while (i < prof_nlayers && strcmp(prof_layers[i].label, label) != 0) i++;
    if (i == prof_nlayers) {
        if (prof_nlayers == PROF_LAYERS) return; /* full: later shapes go uncounted */
        snprintf(prof_layers[i].label, PROF_LABEL, "%s", label);
        prof_nlayers++;
    }
    prof_layers[i].ns += ns;
    prof_layers[i].calls++;
    prof_layers[i].flop += flop;
}

int prof_layer_read(int max, const char **labels, double *seconds, int64_t *calls, double *flop) {
    for (int i = 0; i < prof_nlayers && i < max; i++) {
        labels[i] = prof_layers[i].label;
        seconds[i] = 1e-9 * (double)prof_layers[i].ns;
        calls[i] = prof_layers[i].calls;
        flop[i] = prof_layers[i].flop;
    }
    return prof_nlayers;
}

void kernel_prof_read(double *seconds, int64_t *calls) {
    for (int i = 0; i < N_KERNELS; i++) {
        seconds[i] = 1e-9 * (double)prof_ns[i];
        calls[i] = prof_calls[i];
    }
}
