/* tensor.c — tensors, the per-step arena, the parameter store and the RNG. */
#include "tensor/tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"

size_t dtype_size(DType dt) {
    static const size_t sz[DT_COUNT] = {4, 2, 2, 8, 4, 1};
    CHECK(dt >= 0 && dt < DT_COUNT, "bad dtype %d", (int)dt);
    return sz[dt];
}

const char *dtype_name(DType dt) {
    static const char *nm[DT_COUNT] = {"float32", "float16", "bfloat16", "int64", "int32", "uint8"};
    return (dt >= 0 && dt < DT_COUNT) ? nm[dt] : "?";
}

const char *device_name(DeviceKind dev) {
    static const char *nm[DEVICE_COUNT] = {"cpu", "cuda", "guard"};
    return (dev >= 0 && dev < DEVICE_COUNT) ? nm[dev] : "?";
}

int64_t shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        CHECK(shape[i] >= 0, "negative dimension %lld at %d", (long long)shape[i], i);
        n *= shape[i];
    }
    return n;
}

/* ---- Arena ------------------------------------------------------------------------------- */

/* The arena is a list of chunks used one after another. A position (mark) is a logical offset:
 * the sum of the capacities of the chunks before the current one plus the bytes used in it. */
#define ARENA_ALIGN 64
#define ARENA_MAX_CHUNKS 64
#define GUARD_WORDS 16                 /* 64 bytes of canary after each guarded allocation */
#define GUARD_MAGIC 0xDEADBEEFu
#define GUARD_HEADER 64                /* guarded allocations start with a header (size) */

typedef struct {
    char *base;
    size_t cap;
} Chunk;

/* An arena on a device the host cannot address (CUDA, the guard device) keeps the objects of
 * arena_alloc_host in a second arena, on the host. Each such object is preceded by a HostRec
 * and takes one ARENA_ALIGN unit of the device arena, so that it has a place in the order of the
 * device allocations: arena_release(mark) drops exactly the host objects allocated after `mark`
 * by walking the chain back from the newest. */
typedef struct HostRec {
    size_t mark;                       /* the device arena's mark when the object was made */
    size_t host_mark;                  /* the host arena's mark before it */
    struct HostRec *prev;
} HostRec;

struct Arena {
    const char *name;
    DeviceKind dev;
    size_t cap_limit;                  /* total bytes the arena may hold */
    Chunk chunk[ARENA_MAX_CHUNKS];
    int nchunks;
    int cur;                           /* chunk in use */
    size_t used;                       /* bytes used in chunk[cur] */
    size_t filled[ARENA_MAX_CHUNKS];   /* bytes used in each earlier chunk when it was left */
    size_t peak;
    size_t system_allocs;
    bool guards;
    struct Arena *host;                /* host objects of a device arena (NULL until the first) */
    HostRec *host_top;                 /* the newest of them */
};

static size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static size_t arena_default_cap(void) {
    const char *env = getenv("TRMML_ARENA_MB");
    if (env && *env) {
        char *end;
        unsigned long long mb = strtoull(env, &end, 10);
        CHECK(*end == '\0' && mb > 0, "TRMML_ARENA_MB='%s' is not a positive integer (MiB)", env);
        return (size_t)mb << 20;
    }
    return (size_t)16 << 30;
}

Arena *arena_create(DeviceKind dev, const char *name, size_t cap_bytes) {
    Arena *a = xcalloc(1, sizeof *a);
    a->name = name ? name : "arena";
    a->dev = dev;
    a->cap_limit = cap_bytes ? cap_bytes : arena_default_cap();
    return a;
}

void arena_destroy(Arena *a) {
    if (!a) return;
    const DeviceTable *t = device_table(a->dev);
    for (int i = 0; i < a->nchunks; i++) t->free(a->chunk[i].base);
    arena_destroy(a->host);
    free(a);
}

static size_t arena_total_cap(const Arena *a) {
    size_t s = 0;
    for (int i = 0; i < a->nchunks; i++) s += a->chunk[i].cap;
    return s;
}

static size_t chunk_offset(const Arena *a, int c) {
    size_t s = 0;
    for (int i = 0; i < c; i++) s += a->chunk[i].cap;
    return s;
}

size_t arena_mark(const Arena *a) { return chunk_offset(a, a->cur) + a->used; }
size_t arena_used(const Arena *a) { return arena_mark(a); }
DeviceKind arena_device(const Arena *a) { return a->dev; }
size_t arena_peak(const Arena *a) { return a->peak; }
size_t arena_system_allocs(const Arena *a) {
    return a->system_allocs + (a->host ? a->host->system_allocs : 0);
}

static void arena_add_chunk(Arena *a, size_t min_bytes) {
    size_t total = arena_total_cap(a);
    size_t want = min_bytes > ((size_t)64 << 20) ? min_bytes : ((size_t)64 << 20);
    if (total > want) want = total; /* grow geometrically */
    if (total + want > a->cap_limit) want = a->cap_limit > total ? a->cap_limit - total : 0;
    if (want < min_bytes || a->nchunks == ARENA_MAX_CHUNKS)
        fatal_oom(__FILE__, __LINE__, a->name, min_bytes,
                  a->cap_limit > total ? a->cap_limit - total : 0);
    void *p = device_table(a->dev)->alloc(want);
    if (!p) fatal_oom(__FILE__, __LINE__, a->name, want, 0);
    a->chunk[a->nchunks].base = p;
    a->chunk[a->nchunks].cap = want;
    a->nchunks++;
    a->system_allocs++;
}

static void guard_write(char *p, size_t bytes) {
    *(size_t *)p = bytes;
    uint32_t *g = (uint32_t *)(p + GUARD_HEADER + align_up(bytes, 4));
    for (int i = 0; i < GUARD_WORDS; i++) g[i] = GUARD_MAGIC;
}

void *arena_alloc(Arena *a, size_t bytes) {
    size_t need = a->guards ? GUARD_HEADER + align_up(bytes, 4) + 4 * GUARD_WORDS : bytes;
    need = align_up(need ? need : 1, ARENA_ALIGN);
    while (a->nchunks == 0 || a->used + need > a->chunk[a->cur].cap) {
        if (a->cur + 1 < a->nchunks && a->nchunks > 0) {
            a->filled[a->cur] = a->used;
            a->cur++; /* the rest of this chunk is skipped */
            a->used = 0;
            continue;
        }
        if (a->nchunks > 0) a->filled[a->cur] = a->used;
        arena_add_chunk(a, need);
        a->cur = a->nchunks - 1;
        a->used = 0;
    }
    char *p = a->chunk[a->cur].base + a->used;
    a->used += need;
    size_t m = arena_mark(a);
    if (m > a->peak) a->peak = m;
    if (a->guards) {
        CHECK(a->dev == DEVICE_CPU, "arena guards are CPU-only");
        guard_write(p, bytes);
        return p + GUARD_HEADER;
    }
    return p;
}

void *arena_alloc_host(Arena *a, size_t bytes) {
    if (device_host_addressable(a->dev)) return arena_alloc(a, bytes);
    if (!a->host) a->host = arena_create(DEVICE_CPU, a->name, 0);
    const size_t host_mark = arena_mark(a->host), hdr = align_up(sizeof(HostRec), ARENA_ALIGN);
    HostRec *r = arena_alloc(a->host, hdr + bytes);
    r->mark = arena_mark(a);
    arena_alloc(a, 1); /* marks taken from now on are > r->mark */
    r->host_mark = host_mark;
    r->prev = a->host_top;
    a->host_top = r;
    return (char *)r + hdr;
}

void arena_release(Arena *a, size_t mark) {
    CHECK(mark <= arena_mark(a), "arena '%s': release to %zu beyond the current mark %zu", a->name,
          mark, arena_mark(a));
    int c = 0;
    size_t off = 0;
    while (c + 1 < a->nchunks && off + a->chunk[c].cap < mark) off += a->chunk[c++].cap;
    if (a->guards) {
        /* Poison what is released (0xFF bytes are NaN floats), so a pointer kept into released
         * scratch — e.g. a gradient buffer first allocated inside an op's scratch region —
         * turns results into NaN in tests instead of silently reading stale values. */
        for (int k = c; k <= a->cur && k < a->nchunks; k++) {
            size_t from = k == c ? mark - off : 0;
            size_t to = k == a->cur ? a->used : a->filled[k];
            if (to > from) memset(a->chunk[k].base + from, 0xFF, to - from);
        }
    }
    a->cur = c;
    a->used = mark - off;
    size_t host_to = SIZE_MAX;
    for (; a->host_top && a->host_top->mark >= mark; a->host_top = a->host_top->prev)
        host_to = a->host_top->host_mark;
    if (host_to != SIZE_MAX) arena_release(a->host, host_to);
}

void arena_reset(Arena *a) {
    if (a->nchunks > 1) {
        /* Coalesce: one block of the high-water size, so later steps make no system calls. */
        const DeviceTable *t = device_table(a->dev);
        for (int i = 0; i < a->nchunks; i++) t->free(a->chunk[i].base);
        size_t want = align_up(a->peak, (size_t)1 << 20);
        if (want > a->cap_limit) want = a->cap_limit;
        a->chunk[0].base = t->alloc(want);
        if (!a->chunk[0].base) fatal_oom(__FILE__, __LINE__, a->name, want, 0);
        /* Touch it now. A fresh block from the system is mapped page by page on first write
         * (a minor fault and a zero-filled page per 4 KiB), and the next step, the first to use
         * it, would take all those faults — on the CPU a 180 MiB work arena is ~46,000 faults
         * in the second call of the text tower. Here they land in the reset that ends the
         * first step instead, which already paid for growing the arena. */
        t->memset0(a->chunk[0].base, want);
        a->chunk[0].cap = want;
        a->nchunks = 1;
        a->system_allocs++;
    }
    a->cur = 0;
    a->used = 0;
    if (a->host) arena_reset(a->host);
    a->host_top = NULL;
}

void arena_set_guards(Arena *a, bool on) {
    CHECK(arena_mark(a) == 0, "arena '%s': guards can only be switched on an empty arena", a->name);
    a->guards = on;
}

int arena_check_guards(const Arena *a) {
    if (!a->guards) return 0;
    int bad = 0;
    for (int c = 0; c <= a->cur && c < a->nchunks; c++) {
        size_t end = c == a->cur ? a->used : a->filled[c];
        size_t off = 0;
        while (off < end) {
            char *p = a->chunk[c].base + off;
            size_t bytes = *(size_t *)p;
            size_t need = align_up(GUARD_HEADER + align_up(bytes, 4) + 4 * GUARD_WORDS, ARENA_ALIGN);
            if (off + need > end) break;
            const uint32_t *g = (const uint32_t *)(p + GUARD_HEADER + align_up(bytes, 4));
            for (int i = 0; i < GUARD_WORDS; i++) {
                if (g[i] != GUARD_MAGIC) {
                    if (bad < 5)
                        fprintf(stderr, "arena '%s': write past the end of a %zu-byte allocation "
                                        "(guard word %d = 0x%08x)\n", a->name, bytes, i, g[i]);
                    bad++;
                    break;
                }
            }
            off += need;
        }
    }
    return bad;
}

/* ---- Context ------------------------------------------------------------------------------ */

static Arena *g_arena;
static Arena *g_default_arena; /* the one tensor_arena() made itself, on g_default_dev */
static DeviceKind g_default_dev = DEVICE_CPU;

Arena *tensor_arena(void) {
    if (!g_arena) g_arena = g_default_arena = arena_create(g_default_dev, "activations", 0);
    return g_arena;
}

void tensor_set_default_device(DeviceKind dev) {
    g_default_dev = dev;
    if (!g_default_arena || g_default_arena->dev == dev) return;
    /* The default arena was made on another device: replace it, if nothing lives in it. */
    CHECK(g_arena == g_default_arena && arena_used(g_arena) == 0,
          "tensor_set_default_device(%s): the default arena is in use", device_name(dev));
    arena_destroy(g_default_arena);
    g_arena = g_default_arena = NULL;
}

DeviceKind tensor_default_device(void) { return g_arena ? g_arena->dev : g_default_dev; }

Arena *tensor_set_arena(Arena *a) {
    Arena *prev = g_arena;
    g_arena = a;
    return prev;
}

/* Layers above the core that keep pointers into the arena (the autograd tape) register here;
 * the core itself knows nothing of them (docs/architecture.md). */
#define MAX_STEP_HOOKS 8
static TensorStepHook g_step_hooks[MAX_STEP_HOOKS];
static int g_nstep_hooks;

void tensor_on_step_end(TensorStepHook fn) {
    for (int i = 0; i < g_nstep_hooks; i++)
        if (g_step_hooks[i] == fn) return;
    CHECK(g_nstep_hooks < MAX_STEP_HOOKS, "more than %d step-end hooks", MAX_STEP_HOOKS);
    g_step_hooks[g_nstep_hooks++] = fn;
}

void tensor_step_end(void) {
    for (int i = 0; i < g_nstep_hooks; i++) g_step_hooks[i]();
    arena_reset(tensor_arena());
}

/* ---- Creation ----------------------------------------------------------------------------- */

static Tensor *tensor_header(DType dt, DeviceKind dev, int ndim, const int64_t *shape) {
    CHECK(ndim >= 0 && ndim <= TENSOR_MAX_DIMS, "ndim %d outside [0, %d]", ndim, TENSOR_MAX_DIMS);
    Tensor *t = arena_alloc_host(tensor_arena(), sizeof(Tensor));
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->device = dev;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = shape_numel(ndim, shape);
    return t;
}

Tensor *tensor_empty(DType dt, int ndim, const int64_t *shape) {
    Arena *a = tensor_arena();
    Tensor *t = tensor_header(dt, a->dev, ndim, shape);
    t->data = arena_alloc(a, (size_t)t->numel * dtype_size(dt));
    return t;
}

Tensor *tensor_zeros(DType dt, int ndim, const int64_t *shape) {
    Tensor *t = tensor_empty(dt, ndim, shape);
    device_table(t->device)->memset0(t->data, (size_t)t->numel * dtype_size(dt));
    return t;
}

Tensor *tensor_empty_like(const Tensor *t) { return tensor_empty(DT_F32, t->ndim, t->shape); }
Tensor *tensor_zeros_like(const Tensor *t) { return tensor_zeros(DT_F32, t->ndim, t->shape); }

Tensor *tensor_from_f32(int ndim, const int64_t *shape, const float *src) {
    Tensor *t = tensor_empty(DT_F32, ndim, shape);
    tensor_copy_from_host(t, src);
    return t;
}

Tensor *tensor_scalar(float v) {
    Tensor *t = tensor_empty(DT_F32, 0, NULL);
    tensor_copy_from_host(t, &v);
    return t;
}

Tensor *tensor_wrap(DType dt, DeviceKind dev, int ndim, const int64_t *shape, void *data) {
    Tensor *t = tensor_header(dt, dev, ndim, shape);
    t->data = data;
    return t;
}

bool tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *tensor_shape_str(const Tensor *t) {
    static char buf[8][96];
    static int slot;
    char *s = buf[slot++ & 7];
    if (!t) return strcpy(s, "NULL");
    int n = snprintf(s, 96, "[");
    for (int i = 0; i < t->ndim; i++)
        n += snprintf(s + n, 96 - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    snprintf(s + n, 96 - n, "]");
    return s;
}

int tensor_dim(const Tensor *t, int dim) {
    int d = dim < 0 ? dim + t->ndim : dim;
    CHECK(d >= 0 && d < t->ndim, "dim %d out of range for a tensor of shape %s", dim,
          tensor_shape_str(t));
    return d;
}

void tensor_copy_to_host(float *dst, const Tensor *src) {
    device_table(src->device)->copy_d2h(dst, src->data, (size_t)src->numel * dtype_size(src->dtype));
}

void tensor_copy_from_host(Tensor *dst, const float *src) {
    device_table(dst->device)->copy_h2d(dst->data, src, (size_t)dst->numel * dtype_size(dst->dtype));
}

void *tensor_to_host(const Tensor *t) {
    size_t bytes = (size_t)t->numel * dtype_size(t->dtype);
    void *h = xmalloc(bytes ? bytes : 1);
    device_table(t->device)->copy_d2h(h, t->data, bytes);
    return h;
}

float tensor_item(const Tensor *t) {
    tensor_check_f32("item", t, "t");
    CHECK(t->numel >= 1, "tensor_item: an empty tensor %s", tensor_shape_str(t));
    float v;
    device_table(t->device)->copy_d2h(&v, t->data, sizeof v);
    return v;
}

void tensor_copy(Tensor *dst, const Tensor *src) {
    CHECK(dst->dtype == src->dtype && dst->numel == src->numel,
          "tensor_copy: %s %s into %s %s", dtype_name(src->dtype), tensor_shape_str(src),
          dtype_name(dst->dtype), tensor_shape_str(dst));
    size_t bytes = (size_t)src->numel * dtype_size(src->dtype);
    if (dst->device == src->device) device_table(dst->device)->copy_d2d(dst->data, src->data, bytes);
    else if (src->device == DEVICE_CPU) device_table(dst->device)->copy_h2d(dst->data, src->data, bytes);
    else if (dst->device == DEVICE_CPU) device_table(src->device)->copy_d2h(dst->data, src->data, bytes);
    else { /* between two devices: through the host */
        void *h = tensor_to_host(src);
        device_table(dst->device)->copy_h2d(dst->data, h, bytes);
        free(h);
    }
}

void tensor_fill(Tensor *t, float v) {
    tensor_check_f32("fill", t, "t");
    KERNEL_RUN(t->device, fill, t->data, v, t->numel);
}

void tensor_check_f32(const char *op, const Tensor *t, const char *argname) {
    CHECK(t != NULL, "%s: argument '%s' is NULL", op, argname);
    CHECK(t->dtype == DT_F32, "%s: argument '%s' must be float32, got %s %s", op, argname,
          dtype_name(t->dtype), tensor_shape_str(t));
}

void tensor_check_same_device(const char *op, const Tensor *a, const Tensor *b) {
    CHECK(a->device == b->device, "%s: tensors on different devices (%s %s vs %s %s)", op,
          device_name(a->device), tensor_shape_str(a), device_name(b->device), tensor_shape_str(b));
}

/* ---- ParamStore --------------------------------------------------------------------------- */

struct ParamStore {
    const char *name;
    DeviceKind dev;
    Tensor **params;
    int n, cap;
    void *block, *grad_block;
    size_t bytes, grad_bytes;
    bool finalized;
};

ParamStore *param_store_create(DeviceKind dev, const char *name) {
    ParamStore *ps = xcalloc(1, sizeof *ps);
    ps->dev = dev;
    ps->name = name ? name : "params";
    return ps;
}

void param_store_destroy(ParamStore *ps) {
    if (!ps) return;
    const DeviceTable *t = device_table(ps->dev);
    if (ps->block) t->free(ps->block);
    if (ps->grad_block) t->free(ps->grad_block);
    for (int i = 0; i < ps->n; i++) {
        free((char *)ps->params[i]->name);
        free(ps->params[i]->grad);
        free(ps->params[i]);
    }
    free(ps->params);
    free(ps);
}

ParamStore *param_store_copy(const ParamStore *ps, DeviceKind dev, const char *name) {
    CHECK(ps->finalized, "param_store_copy: store '%s' is not finalized", ps->name);
    ParamStore *c = param_store_create(dev, name);
    for (int i = 0; i < ps->n; i++) {
        const Tensor *t = ps->params[i];
        param_add(c, t->name, t->dtype, t->ndim, t->shape, false);
    }
    param_store_finalize(c);
    for (int i = 0; i < ps->n; i++)
        if (ps->params[i]->numel) tensor_copy(c->params[i], ps->params[i]);
    return c;
}

Tensor *param_add(ParamStore *ps, const char *name, DType dt, int ndim, const int64_t *shape,
                  bool trainable) {
    CHECK(!ps->finalized, "param store '%s': param_add('%s') after finalize", ps->name, name);
    CHECK(name && *name, "parameter needs a name");
    CHECK(param_find(ps, name) == NULL, "param store '%s': duplicate parameter '%s'", ps->name, name);
    CHECK(ndim >= 0 && ndim <= TENSOR_MAX_DIMS, "parameter '%s': ndim %d", name, ndim);
    CHECK(!trainable || dt == DT_F32, "parameter '%s': trainable parameters must be float32", name);
    Tensor *t = xcalloc(1, sizeof *t);
    t->dtype = dt;
    t->device = ps->dev;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = shape_numel(ndim, shape);
    t->requires_grad = trainable;
    size_t len = strlen(name) + 1;
    t->name = memcpy(xmalloc(len), name, len);
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 16;
        ps->params = xrealloc(ps->params, ps->cap * sizeof *ps->params);
    }
    ps->params[ps->n++] = t;
    return t;
}

void param_store_finalize(ParamStore *ps) {
    CHECK(!ps->finalized, "param store '%s' finalized twice", ps->name);
    size_t bytes = 0, gbytes = 0;
    for (int i = 0; i < ps->n; i++) {
        Tensor *t = ps->params[i];
        bytes += align_up((size_t)t->numel * dtype_size(t->dtype), ARENA_ALIGN);
        if (t->requires_grad) gbytes += align_up((size_t)t->numel * sizeof(float), ARENA_ALIGN);
    }
    const DeviceTable *dt = device_table(ps->dev);
    ps->block = bytes ? dt->alloc(bytes) : NULL;
    if (bytes && !ps->block) fatal_oom(__FILE__, __LINE__, ps->name, bytes, 0);
    ps->grad_block = gbytes ? dt->alloc(gbytes) : NULL;
    if (gbytes && !ps->grad_block) fatal_oom(__FILE__, __LINE__, ps->name, gbytes, 0);
    if (bytes) dt->memset0(ps->block, bytes);
    if (gbytes) dt->memset0(ps->grad_block, gbytes);
    ps->bytes = bytes;
    ps->grad_bytes = gbytes;
    size_t off = 0, goff = 0;
    for (int i = 0; i < ps->n; i++) {
        Tensor *t = ps->params[i];
        t->data = (char *)ps->block + off;
        off += align_up((size_t)t->numel * dtype_size(t->dtype), ARENA_ALIGN);
        if (t->requires_grad) {
            Tensor *g = xcalloc(1, sizeof *g);
            *g = *t;
            g->dtype = DT_F32;
            g->requires_grad = false;
            g->grad = NULL;
            g->data = (char *)ps->grad_block + goff;
            goff += align_up((size_t)t->numel * sizeof(float), ARENA_ALIGN);
            t->grad = g;
        }
    }
    ps->finalized = true;
}

int param_count(const ParamStore *ps) { return ps->n; }

Tensor *param_at(const ParamStore *ps, int i) {
    CHECK(i >= 0 && i < ps->n, "parameter index %d outside [0, %d)", i, ps->n);
    return ps->params[i];
}

Tensor *param_find(const ParamStore *ps, const char *name) {
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->params[i]->name, name) == 0) return ps->params[i];
    return NULL;
}

int64_t param_numel_trainable(const ParamStore *ps) {
    int64_t n = 0;
    for (int i = 0; i < ps->n; i++)
        if (ps->params[i]->requires_grad) n += ps->params[i]->numel;
    return n;
}

void param_zero_grad(ParamStore *ps) {
    if (ps->grad_block) device_table(ps->dev)->memset0(ps->grad_block, ps->grad_bytes);
}

Tensor *param_grad_block(const ParamStore *ps) {
    CHECK(ps->finalized, "param store '%s': gradient block before finalize", ps->name);
    if (!ps->grad_block) return NULL;
    return tensor_wrap(DT_F32, ps->dev, 1, SHAPE((int64_t)(ps->grad_bytes / sizeof(float))),
                       ps->grad_block);
}

size_t param_bytes(const ParamStore *ps) { return ps->bytes + ps->grad_bytes; }

/* ---- RNG ---------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(Rng *r) { return (rng_next(r) >> 11) * 0x1.0p-53; }

float rng_normal(Rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void rng_fill_uniform(Rng *r, float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)rng_uniform(r);
}

void rng_fill_normal(Rng *r, float *x, int64_t n, float mean, float std) {
    for (int64_t i = 0; i < n; i++) x[i] = mean + std * rng_normal(r);
}
