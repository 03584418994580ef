/* tensor.h — the Tensor type, its three memory lifetimes, and the global run context.
 *
 * A Tensor is a contiguous row-major block in PyTorch's dimension order (outermost first), so a
 * PyTorch fixture maps 1:1 onto it. Compute is float32; f16/bf16/i64/i32/u8 exist as storage for
 * loading weights and holding indices. Every tensor carries a device tag; its kernels are reached
 * through that device's function table (tensor/device.h).
 *
 * Memory has three lifetimes, each with one owner (docs/architecture.md):
 *   parameters  — ParamStore: one block per model, carved into named tensors, allocated once;
 *   activations — Arena: per-step bump allocator holding op outputs, tape nodes and gradients of
 *                 intermediates; reset after the optimizer step (no heap allocation per step once
 *                 it has grown to its high-water mark);
 *   scratch     — arena_mark()/arena_release() around an op's temporary buffers.
 *
 * Autograd fields: `requires_grad` says a gradient must be computed for this tensor (set by the
 * user on leaves, propagated by the tape to op outputs); `grad` is its gradient buffer, allocated
 * only when a gradient actually arrives. Frozen weights have requires_grad = false and so never
 * get a buffer, while gradients still flow through them to inputs that do require one. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

#define TENSOR_MAX_DIMS 6

typedef enum { DT_F32 = 0, DT_F16, DT_BF16, DT_I64, DT_I32, DT_U8, DT_COUNT } DType;
/* DEVICE_GUARD is a test instrument, not a user-facing device: the CPU kernels on memory that
 * faults when the host touches it outside the device table (tensor/device_guard.c, docs/guard.md). */
typedef enum { DEVICE_CPU = 0, DEVICE_CUDA = 1, DEVICE_GUARD = 2, DEVICE_COUNT } DeviceKind;

typedef struct Node Node; /* autograd/tape.h */

typedef struct Tensor {
    DType dtype;
    DeviceKind device;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t numel;
    void *data;            /* borrowed: owned by an Arena, a ParamStore or the caller */
    struct Tensor *grad;   /* gradient buffer (same shape, f32), NULL until one arrives */
    bool requires_grad;    /* a gradient must be computed for this tensor */
    bool is_view;          /* data aliases another tensor's storage (tensor_reshape) */
    Node *node;            /* the tape node that produced it; NULL for leaves */
    const char *name;      /* parameter name, or NULL */
} Tensor;

size_t dtype_size(DType dt);
const char *dtype_name(DType dt);
const char *device_name(DeviceKind dev);
/* The host may read and write the device's memory in place: the CPU only. Code that would read
 * tensor data directly (a value check, a host fill) asks this; every other device is reached
 * through its table's copies. */
static inline bool device_host_addressable(DeviceKind dev) { return dev == DEVICE_CPU; }
/* The device runs the CPU kernels (the CPU and the guard device), so choices made for the CPU
 * kernels (Winograd convolution) apply to it too. */
static inline bool device_runs_cpu_kernels(DeviceKind dev) {
    return dev == DEVICE_CPU || dev == DEVICE_GUARD;
}

/* ---- Arena: per-step memory ------------------------------------------------------------- */

typedef struct Arena Arena;

/* Create an arena for `dev` that may grow up to `cap_bytes` (0 = default: $TRMML_ARENA_MB or
 * 16 GiB). Memory comes from the device table's allocator. */
Arena *arena_create(DeviceKind dev, const char *name, size_t cap_bytes);
void arena_destroy(Arena *a);
/* 64-byte aligned, on the arena's device. Growing past the cap is fatal and reports requested
 * and available bytes. */
void *arena_alloc(Arena *a, size_t bytes);
/* Host memory with the same lifetime (released and reset with the arena): tensor headers, tape
 * nodes, geometry saved for backward. On a CPU arena the same as arena_alloc; an arena on
 * another device keeps these in a host arena of its own (each also takes 64 bytes of the device
 * arena, which orders it among the device allocations for arena_release). */
void *arena_alloc_host(Arena *a, size_t bytes);
size_t arena_mark(const Arena *a);            /* position to return to with arena_release */
void arena_release(Arena *a, size_t mark);    /* drop everything allocated after `mark` */
/* Drop everything. If the arena had to grow into several chunks, they are coalesced into one
 * block of the high-water size, written once (so its pages are mapped now), so the next step
 * allocates nothing from the system and takes no page faults in it. */
void arena_reset(Arena *a);
size_t arena_used(const Arena *a);
DeviceKind arena_device(const Arena *a);      /* where the arena's memory lives */
size_t arena_peak(const Arena *a);
size_t arena_system_allocs(const Arena *a);   /* number of system allocations made so far */
/* Guard mode (tests): every allocation is followed by canary words; arena_check_guards returns
 * the number of allocations whose canaries were overwritten (and prints the first few). */
void arena_set_guards(Arena *a, bool on);
int arena_check_guards(const Arena *a);

/* ---- Global context ---------------------------------------------------------------------- */

/* The arena that op outputs are taken from. The default is a CPU arena created on first use. */
Arena *tensor_arena(void);
Arena *tensor_set_arena(Arena *a); /* returns the previous one */
/* The device of the default arena, the one tensor_arena() creates on first use (the CPU unless
 * told otherwise). A command sets it once, before making tensors, to run on --device; replacing
 * a default arena that holds tensors is a CHECK failure. */
void tensor_set_default_device(DeviceKind dev);
DeviceKind tensor_default_device(void); /* the current arena's device */
/* End of a training step: call every step-end hook (the autograd tape registers its reset,
 * since its nodes live in the arena), then reset the current arena. */
void tensor_step_end(void);
/* Register fn to run at every tensor_step_end, before the arena is reset (once per fn). */
typedef void (*TensorStepHook)(void);
void tensor_on_step_end(TensorStepHook fn);

/* ---- Creation (all from the current arena, on the arena's device) ---------------------- */

Tensor *tensor_empty(DType dt, int ndim, const int64_t *shape);   /* uninitialised */
Tensor *tensor_zeros(DType dt, int ndim, const int64_t *shape);
Tensor *tensor_empty_like(const Tensor *t);                       /* f32, same shape */
Tensor *tensor_zeros_like(const Tensor *t);
Tensor *tensor_from_f32(int ndim, const int64_t *shape, const float *src); /* copies host data */
Tensor *tensor_scalar(float v);                                   /* shape [] */
/* A header for data owned elsewhere (caller keeps it alive). */
Tensor *tensor_wrap(DType dt, DeviceKind dev, int ndim, const int64_t *shape, void *data);

/* Shape helpers: SHAPE(3,5,7) is an int64_t array literal; NDIM(3,5,7) its length. */
#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define TENSOR_F32(...) tensor_empty(DT_F32, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))
#define TENSOR_ZEROS(...) tensor_zeros(DT_F32, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

static inline float *tensor_f32(const Tensor *t) {
    CHECK(t && t->dtype == DT_F32, "expected a float32 tensor, got %s",
          t ? dtype_name(t->dtype) : "NULL");
    return (float *)t->data;
}
static inline int64_t *tensor_i64(const Tensor *t) {
    CHECK(t && t->dtype == DT_I64, "expected an int64 tensor, got %s",
          t ? dtype_name(t->dtype) : "NULL");
    return (int64_t *)t->data;
}
int64_t shape_numel(int ndim, const int64_t *shape);
bool tensor_same_shape(const Tensor *a, const Tensor *b);
/* "[3, 5, 7]" in one of a few rotating static buffers (for error messages). */
const char *tensor_shape_str(const Tensor *t);
/* Dimension with negative indexing resolved (-1 = last); CHECKs the range. */
int tensor_dim(const Tensor *t, int dim);

/* Host copies through the device table (explicit; never inside an op). */
void tensor_copy_to_host(float *dst, const Tensor *src);
void tensor_copy_from_host(Tensor *dst, const float *src);
/* A host copy of t's data, any dtype (malloc'd: free it). Host code reads tensors this way, so
 * it runs unchanged whatever device the tensor is on. */
void *tensor_to_host(const Tensor *t);
float tensor_item(const Tensor *t);  /* t's first element (f32), read through the device table */
/* dst = src (same dtype and element count), whichever devices the two are on. */
void tensor_copy(Tensor *dst, const Tensor *src);
void tensor_fill(Tensor *t, float v);

/* Checks used by op wrappers: same device, f32, and the op's name in the message. */
void tensor_check_f32(const char *op, const Tensor *t, const char *argname);
void tensor_check_same_device(const char *op, const Tensor *a, const Tensor *b);

/* ---- ParamStore: model parameters --------------------------------------------------------- */

typedef struct ParamStore ParamStore;

/* Declare parameters with param_add, then allocate them all at once with param_store_finalize.
 * Trainable parameters (requires_grad) also get a persistent, zeroed gradient buffer; frozen ones
 * never do. The store owns the tensors and their memory. */
ParamStore *param_store_create(DeviceKind dev, const char *name);
void param_store_destroy(ParamStore *ps);
/* A frozen copy of a finalized store on `dev` (the same names, dtypes, shapes and values; no
 * gradients): e.g. a device-resident store brought to the host to be written. */
ParamStore *param_store_copy(const ParamStore *ps, DeviceKind dev, const char *name);
Tensor *param_add(ParamStore *ps, const char *name, DType dt, int ndim, const int64_t *shape,
                  bool trainable);
void param_store_finalize(ParamStore *ps);
int param_count(const ParamStore *ps);
Tensor *param_at(const ParamStore *ps, int i);
Tensor *param_find(const ParamStore *ps, const char *name); /* NULL if absent */
int64_t param_numel_trainable(const ParamStore *ps);
void param_zero_grad(ParamStore *ps);
/* Every trainable parameter's gradient at once: the store's gradient block (the buffers in
 * declaration order, with the zero padding between them that param_zero_grad clears) as a
 * float32 (n) header from the current arena on the store's device; NULL when nothing is
 * trainable. For one collective over all gradients (tensor/dist.h). */
Tensor *param_grad_block(const ParamStore *ps);
size_t param_bytes(const ParamStore *ps);

/* ---- RNG: small deterministic generator (xoshiro256**, seeded with splitmix64) ------------ */

typedef struct { uint64_t s[4]; } Rng;
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
double rng_uniform(Rng *r);            /* [0, 1) with 53 bits */
float rng_normal(Rng *r);              /* standard normal (Box-Muller) */
void rng_fill_uniform(Rng *r, float *x, int64_t n, float lo, float hi);
void rng_fill_normal(Rng *r, float *x, int64_t n, float mean, float std);
