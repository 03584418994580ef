/* device.h — the per-device function table through which every kernel is called.
 *
 * Each backend (CPU, CUDA in cuda/, and the guard device, a test instrument in
 * tensor/device_guard.c) fills one DeviceTable at start-up: memory functions plus one function
 * pointer per kernel. The kernel list is written once, in tensor/kernels.def, as an
 * X-macro: KERNEL(name, (argument list)). From that single list come
 *   - the DeviceTable fields (`void (*name)(args)`),
 *   - the CPU table, which must name `name_cpu` for every kernel (a missing or mistyped CPU kernel
 *     is a compile error),
 *   - the completeness check that reports any backend entry left NULL.
 *
 * Op wrappers call kernels as KERNEL_RUN(dev, name, args...). A NULL entry is a hard error that
 * names the op and the backend — never a silent CPU fallback (STYLE.md §2). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"
#include "tensor/kernel_types.h"

typedef struct DeviceTable {
    const char *name;
    bool available;                       /* the backend can run on this machine */
    /* memory */
    void *(*alloc)(size_t bytes);         /* NULL on failure */
    void (*free)(void *p);
    void (*memset0)(void *p, size_t bytes);
    void (*copy_h2d)(void *dst, const void *src, size_t bytes);
    void (*copy_d2h)(void *dst, const void *src, size_t bytes);
    void (*copy_d2d)(void *dst, const void *src, size_t bytes);
    void (*synchronize)(void);
    /* Called by KERNEL_RUN just before and just after every kernel; NULL when the backend needs
     * nothing there (CPU, CUDA). The guard device opens and closes its memory with them. */
    void (*kernel_begin)(void);
    void (*kernel_end)(void);
    /* kernels */
#define KERNEL(name, args) void(*name) args;
#include "tensor/kernels.def"
#undef KERNEL
} DeviceTable;

/* The table of `dev`; CHECKs that the backend was compiled in. */
const DeviceTable *device_table(DeviceKind dev);
/* Abort naming kernel and backend (used by KERNEL_RUN when an entry is NULL). */
TRMML_NORETURN void device_missing_kernel(DeviceKind dev, const char *kernel);
/* Names of the kernels a backend lacks, written to out[] (up to max); returns the count. */
int device_missing_kernels(DeviceKind dev, const char **out, int max);
int device_kernel_count(void);

/* Run kernel `kname` of backend `dev` with the given arguments: KERNEL_RUN(dev, fill, p, 0.f, n).
 * A statement, not an expression (kernels return nothing), bracketed by the backend's
 * kernel_begin/kernel_end when it has them. */
#define KERNEL_RUN(dev, kname, ...)                                                          \
    do {                                                                                     \
        const DeviceTable *kt_ = device_table(dev);                                          \
        if (!kt_->kname) device_missing_kernel((dev), #kname);                               \
        const bool kp_ = kernel_prof_on;                                                     \
        if (kp_) kernel_prof_begin((dev), KERNEL_SLOT(kname));                               \
        if (kt_->kernel_begin) kt_->kernel_begin();                                          \
        kt_->kname(__VA_ARGS__);                                                             \
        if (kt_->kernel_end) kt_->kernel_end();                                              \
        if (kp_) kernel_prof_end((dev));                                                     \
    } while (0)

/* ---- the kernel profiler --------------------------------------------------------------------
 * With TRMML_PROFILE=1 in the environment (read by device_init_profiler at start-up), every
 * KERNEL_RUN adds its wall time to its kernel's total: exclusive time (a kernel run by another
 * kernel is not counted twice) and the number of calls. On a GPU the device is synchronised
 * before and after each kernel, so the times are the kernels' own (and the run is slower). Only
 * the thread that called device_init_profiler counts, and not inside an OpenMP parallel region. bench prints the largest per call
 * (docs/profile.md). Off, a KERNEL_RUN reads one flag. */
extern bool kernel_prof_on;
void device_init_profiler(void);
/* The kernel's position in kernels.def (its table entry's index). */
#define KERNEL_SLOT(kname)                                                                   \
    ((int)((offsetof(DeviceTable, kname) - offsetof(DeviceTable, gemm)) / sizeof(void (*)(void))))
void kernel_prof_begin(DeviceKind dev, int slot);
void kernel_prof_end(DeviceKind dev);
/* Totals since start: seconds[i] and calls[i] for every kernel i < device_kernel_count(). */
void kernel_prof_read(double *seconds, int64_t *calls);
const char *device_kernel_name(int slot);

/* Per layer shape, under TRMML_PROFILE=1 too: an op that knows its shape and its floating-point
 * operations (a convolution, a linear layer, packed attention) adds each call's wall time,
 * inclusive of its kernels, under a label such as "conv 3x3/1 256->256 28x28 b8", so that bench
 * can print where the time goes layer by layer against the GEMM's peak (docs/profile.md).
 * prof_layer_begin returns 0 when nothing is counted (profiler off, another thread, inside a
 * parallel region); prof_layer_end then does nothing. */
uint64_t prof_layer_begin(DeviceKind dev);
void prof_layer_end(DeviceKind dev, uint64_t t0, const char *label, double flop);
/* Up to max entries, in order of first appearance: label, seconds, calls, operations. Returns
 * how many there are. The labels stay valid for the life of the process. */
int prof_layer_read(int max, const char **labels, double *seconds, int64_t *calls, double *flop);

/* Parse "auto", "cpu", "cuda", "cuda:N" and "guard" (the test instrument, docs/guard.md; never
 * chosen by "auto"). On success sets *dev and *index. "auto" resolves to CUDA when a GPU answers
 * and the CPU otherwise. Returns STATUS_ERR_USAGE / STATUS_ERR_DEVICE with a message listing
 * what is available. */
Status device_parse(const char *spec, DeviceKind *dev, int *index);
/* Make GPU `index` the one CUDA kernels and allocations use (cuda:N); a no-op for other
 * devices. STATUS_ERR_DEVICE when there is no such GPU. Call before allocating on the device. */
Status device_use(DeviceKind dev, int index);
/* GPUs that answer (0 without CUDA compiled in, or without a driver). */
int device_cuda_count(void);
/* TF32 tensor-core products in CUDA GEMMs (off by default; --tf32). Returns the previous
 * setting; without CUDA compiled in, does nothing and returns false. */
bool device_set_allow_tf32(bool on);
/* One line describing the compiled-in backends and what this machine offers. */
const char *device_summary(void);

/* Threads used by CPU kernels (OpenMP and OpenBLAS). 0 = library default. */
void device_set_threads(int n);
int device_threads(void);
