/* shape.c — shape ops: CPU kernels, wrappers and backward rules.
 *
 * reshape is a view: a new header over the same data, so it copies nothing. Its backward adds
 * the view's gradient into the base's gradient (they are separate buffers):  dx += dout.
 *
 * Every other op is one strided copy (StridedCopyGeom in shape_types.h):
 *     out[out_offset + sum_d i_d*out_stride[d]] = inp[in_offset + sum_d i_d*in_stride[d]]
 *   permute:  index space = out's shape, out contiguous, in_stride[d] = x's stride of perm[d];
 *   slice:    index space = the block, inp = x addressed at start along dim, out contiguous;
 *   concat:   one copy per input, inp contiguous, out = the input's block of the result;
 *   split:    one slice per output;  stack: concat of inputs reshaped with a new unit dimension.
 * A copy moves each element once, so the backward of every one of them is the same map read in
 * reverse with accumulation:  dinp[in map] += dout[out map]. Nothing is saved for backward: the
 * geometry is rebuilt from the node's shapes and integer arguments.
 * Adjacent dimensions that are contiguous in both buffers are merged, so concat, split and
 * slice along the outer dimensions become a few long memcpy-like rows. */
#include "tensor/ops/shape.h"

#include <string.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

/* Offsets into inp and out of the first element of row `r`, a row being the innermost
 * dimension of the index space. */
static inline void strided_row_offsets(const StridedCopyGeom *g, int64_t r, int64_t *in_off,
                                       int64_t *out_off) {
    int64_t io = g->in_offset, oo = g->out_offset;
    for (int d = g->ndim - 2; d >= 0; d--) {
        int64_t i = r % g->shape[d];
        r /= g->shape[d];
        io += i * g->in_stride[d];
        oo += i * g->out_stride[d];
    }
    *in_off = io;
    *out_off = oo;
}

static int64_t strided_rows(const StridedCopyGeom *g) {
    int64_t rows = 1;
    for (int d = 0; d < g->ndim - 1; d++) rows *= g->shape[d];
    return rows;
}

void strided_copy_forward_cpu(float *out, const float *inp, const StridedCopyGeom *g) {
    /* out, inp: contiguous buffers addressed through g — assigns the addressed elements of out */
    int64_t inner = g->shape[g->ndim - 1], rows = strided_rows(g);
    int64_t is = g->in_stride[g->ndim - 1], os = g->out_stride[g->ndim - 1];
#pragma omp parallel for schedule(static) if (rows * inner > 32768)
    for (int64_t r = 0; r < rows; r++) {
        int64_t io, oo;
        strided_row_offsets(g, r, &io, &oo);
        const float *src = inp + io;
        float *dst = out + oo;
        if (is == 1 && os == 1) {
            memcpy(dst, src, (size_t)inner * sizeof(float));
        } else {
            for (int64_t j = 0; j < inner; j++) dst[j * os] = src[j * is];
        }
    }
}

void strided_copy_backward_cpu(float *dinp, const float *dout, const StridedCopyGeom *g) {
    /* dinp, dout: contiguous buffers addressed through g — accumulates into dinp */
    int64_t inner = g->shape[g->ndim - 1], rows = strided_rows(g);
    int64_t is = g->in_stride[g->ndim - 1], os = g->out_stride[g->ndim - 1];
    /* The in map is injective, so rows write disjoint elements of dinp: no race. */
#pragma omp parallel for schedule(static) if (rows * inner > 32768)
    for (int64_t r = 0; r < rows; r++) {
        int64_t io, oo;
        strided_row_offsets(g, r, &io, &oo);
        float *dst = dinp + io;
        const float *src = dout + oo;
        for (int64_t j = 0; j < inner; j++) dst[j * is] += src[j * os];
    }
}

/* ---- Geometry ----------------------------------------------------------------------------- */

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= shape[d];
    }
}

/* Drop unit dimensions and merge each pair of neighbours that is contiguous in both buffers,
 * leaving at least one dimension. Does not change the map. */
static void geom_simplify(StridedCopyGeom *g) {
    StridedCopyGeom s = *g;
    s.ndim = 0;
    for (int d = 0; d < g->ndim; d++) {
        if (g->shape[d] == 1) continue;
        int k = s.ndim - 1;
        if (k >= 0 && s.in_stride[k] == g->in_stride[d] * g->shape[d] &&
            s.out_stride[k] == g->out_stride[d] * g->shape[d]) {
            /* dims k and d walk both buffers as one dimension of extent shape[k]*shape[d] */
            s.shape[k] *= g->shape[d];
            s.in_stride[k] = g->in_stride[d];
            s.out_stride[k] = g->out_stride[d];
        } else {
            s.shape[s.ndim] = g->shape[d];
            s.in_stride[s.ndim] = g->in_stride[d];
            s.out_stride[s.ndim] = g->out_stride[d];
            s.ndim++;
        }
    }
    if (s.ndim == 0) {
        s.ndim = 1;
        s.shape[0] = 1;
        s.in_stride[0] = s.out_stride[0] = 1;
    }
    *g = s;
}

/* The block [start, start+len) along `dim` of a contiguous tensor of shape `big`, paired with a
 * contiguous tensor of the block's shape. big_is_out: the block is the destination (concat);
 * otherwise the source (slice). */
static StridedCopyGeom block_geom(int ndim, const int64_t *big, int dim, int64_t start,
                                  int64_t len, bool big_is_out) {
    StridedCopyGeom g;
    memset(&g, 0, sizeof g);
    int64_t bstride[TENSOR_MAX_DIMS], sstride[TENSOR_MAX_DIMS];
    g.ndim = ndim;
    for (int d = 0; d < ndim; d++) g.shape[d] = d == dim ? len : big[d];
    contiguous_strides(ndim, big, bstride);
    contiguous_strides(ndim, g.shape, sstride);
    for (int d = 0; d < ndim; d++) {
        g.in_stride[d] = big_is_out ? sstride[d] : bstride[d];
        g.out_stride[d] = big_is_out ? bstride[d] : sstride[d];
    }
    if (big_is_out) g.out_offset = start * bstride[dim];
    else g.in_offset = start * bstride[dim];
    geom_simplify(&g);
    return g;
}

/* out = x permuted by perm: out index (i_0..i_{n-1}) reads x at i_d along x's dim perm[d]. */
static StridedCopyGeom permute_geom(const Tensor *x, const int64_t *perm) {
    StridedCopyGeom g;
    memset(&g, 0, sizeof g);
    int64_t xstride[TENSOR_MAX_DIMS];
    contiguous_strides(x->ndim, x->shape, xstride);
    g.ndim = x->ndim;
    for (int d = 0; d < x->ndim; d++) {
        g.shape[d] = x->shape[perm[d]];
        g.in_stride[d] = xstride[perm[d]];
    }
    contiguous_strides(g.ndim, g.shape, g.out_stride);
    geom_simplify(&g);
    return g;
}

/* ---- reshape (view) ----------------------------------------------------------------------- */

static void reshape_backward(Node *n) {
    Tensor *x = n->in[0];
    /* out and x are the same numbers in the same order. An intermediate x (made by a recorded
     * op) with no gradient yet takes out's gradient buffer as its own: out's gradient is complete
     * when this node runs, and every node that reads it ran before (they were recorded after).
     * A leaf (a parameter, whose gradient lives in its store) or an x that has a gradient
     * already: dx += dout element by element. */
    if (!x->grad && x->node) {
        x->grad = tensor_wrap(DT_F32, x->device, x->ndim, x->shape, n->out->grad->data);
        return;
    }
    KERNEL_RUN(x->device, accumulate, ag_grad(x)->data, n->out->grad->data, x->numel);
}

Tensor *tensor_reshape(Tensor *x, int ndim, const int64_t *shape) {
    CHECK(x != NULL, "reshape: x is NULL");
    CHECK(ndim >= 0 && ndim <= TENSOR_MAX_DIMS, "reshape: ndim %d outside [0, %d]", ndim,
          TENSOR_MAX_DIMS);
    int64_t s[TENSOR_MAX_DIMS], known = 1;
    int infer = -1;
    for (int d = 0; d < ndim; d++) {
        s[d] = shape[d];
        if (s[d] == -1) {
            CHECK(infer < 0, "reshape: %s to a shape with more than one -1 (dims %d and %d)",
                  tensor_shape_str(x), infer, d);
            infer = d;
        } else {
            CHECK(s[d] >= 0, "reshape: %s to a shape with dim %d = %lld", tensor_shape_str(x), d,
                  (long long)s[d]);
            known *= s[d];
        }
    }
    if (infer >= 0) {
        CHECK(known > 0 && x->numel % known == 0,
              "reshape: cannot infer dim %d: %s has %lld elements, the other dims give %lld",
              infer, tensor_shape_str(x), (long long)x->numel, (long long)known);
        s[infer] = x->numel / known;
        known *= s[infer];
    }
    CHECK(known == x->numel, "reshape: %s (%lld elements) to a shape with %lld elements",
          tensor_shape_str(x), (long long)x->numel, (long long)known);
    Tensor *out = tensor_wrap(x->dtype, x->device, ndim, s, x->data);
    out->is_view = true;
    AG_RECORD("reshape", out, reshape_backward, x);
    return out;
}

/* ---- permute / transpose (copy) ----------------------------------------------------------- */

static void permute_backward(Node *n) {
    Tensor *x = n->in[0];
    StridedCopyGeom g = permute_geom(x, n->iarg);
    KERNEL_RUN(x->device, strided_copy_backward, ag_grad(x)->data, n->out->grad->data, &g);
}

static Tensor *permute(const char *op, Tensor *x, const int64_t *perm) {
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[perm[d]];
    Tensor *out = tensor_empty(DT_F32, x->ndim, shape);
    StridedCopyGeom g = permute_geom(x, perm);
    if (out->numel > 0) KERNEL_RUN(x->device, strided_copy_forward, out->data, x->data, &g);
    Node *n = AG_RECORD(op, out, permute_backward, x);
    if (n)
        for (int d = 0; d < x->ndim; d++) n->iarg[d] = perm[d];
    return out;
}

Tensor *tensor_permute(Tensor *x, const int *perm) {
    tensor_check_f32("permute", x, "x");
    CHECK(perm != NULL, "permute: perm is NULL");
    int64_t p[TENSOR_MAX_DIMS];
    bool seen[TENSOR_MAX_DIMS] = {false};
    for (int d = 0; d < x->ndim; d++) {
        CHECK(perm[d] >= -x->ndim && perm[d] < x->ndim,
              "permute: perm[%d] = %d out of range for %s", d, perm[d], tensor_shape_str(x));
        p[d] = perm[d] < 0 ? perm[d] + x->ndim : perm[d];
        CHECK(!seen[p[d]], "permute: dim %lld appears twice in perm of %s", (long long)p[d],
              tensor_shape_str(x));
        seen[p[d]] = true;
    }
    return permute("permute", x, p);
}

Tensor *tensor_transpose(Tensor *x, int d0, int d1) {
    tensor_check_f32("transpose", x, "x");
    int a = tensor_dim(x, d0), b = tensor_dim(x, d1);
    int64_t p[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) p[d] = d;
    p[a] = b;
    p[b] = a;
    return permute("transpose", x, p);
}

/* ---- slice / split (copy) ----------------------------------------------------------------- */

/* Node iarg: [0] dim, [1] start. The block's extent is the output's. */
static void slice_backward(Node *n) {
    Tensor *x = n->in[0];
    int dim = (int)n->iarg[0];
    StridedCopyGeom g = block_geom(x->ndim, x->shape, dim, n->iarg[1], n->out->shape[dim], false);
    KERNEL_RUN(x->device, strided_copy_backward, ag_grad(x)->data, n->out->grad->data, &g);
}

static Tensor *slice(const char *op, Tensor *x, int dim, int64_t start, int64_t len) {
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = d == dim ? len : x->shape[d];
    Tensor *out = tensor_empty(DT_F32, x->ndim, shape);
    StridedCopyGeom g = block_geom(x->ndim, x->shape, dim, start, len, false);
    if (out->numel > 0) KERNEL_RUN(x->device, strided_copy_forward, out->data, x->data, &g);
    Node *n = AG_RECORD(op, out, slice_backward, x);
    if (n) {
        n->iarg[0] = dim;
        n->iarg[1] = start;
    }
    return out;
}

Tensor *tensor_slice(Tensor *x, int dim, int64_t start, int64_t len) {
    tensor_check_f32("slice", x, "x");
    int d = tensor_dim(x, dim);
    CHECK(len >= 1 && start >= 0 && start + len <= x->shape[d],
          "slice: [%lld, %lld) outside dim %d of %s", (long long)start, (long long)(start + len),
          d, tensor_shape_str(x));
    return slice("slice", x, d, start, len);
}

void tensor_split(Tensor *x, int dim, const int64_t *sizes, int n, Tensor **outs) {
    tensor_check_f32("split", x, "x");
    CHECK(n >= 1 && sizes != NULL && outs != NULL, "split: %d parts (sizes %p, outs %p)", n,
          (const void *)sizes, (void *)outs);
    int d = tensor_dim(x, dim);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        CHECK(sizes[i] >= 1, "split: sizes[%d] = %lld of %s", i, (long long)sizes[i],
              tensor_shape_str(x));
        total += sizes[i];
    }
    CHECK(total == x->shape[d], "split: sizes sum to %lld but dim %d of %s is %lld",
          (long long)total, d, tensor_shape_str(x), (long long)x->shape[d]);
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        outs[i] = slice("split", x, d, start, sizes[i]);
        start += sizes[i];
    }
}

/* ---- concat / stack (copy) ---------------------------------------------------------------- */

/* Node iarg: [0] dim. Input i's block starts after the extents of inputs 0..i-1. */
static void concat_backward(Node *n) {
    int dim = (int)n->iarg[0];
    const Tensor *out = n->out;
    int64_t start = 0;
    for (int i = 0; i < n->nin; i++) {
        Tensor *t = n->in[i];
        if (ag_needs(t)) {
            StridedCopyGeom g = block_geom(out->ndim, out->shape, dim, start, t->shape[dim], true);
            KERNEL_RUN(t->device, strided_copy_backward, ag_grad(t)->data, out->grad->data, &g);
        }
        start += t->shape[dim];
    }
}

Tensor *tensor_concat(Tensor *const *tensors, int n, int dim) {
    CHECK(tensors != NULL && n >= 1, "concat: %d tensors", n);
    Tensor *t0 = tensors[0];
    tensor_check_f32("concat", t0, "tensors[0]");
    int d = tensor_dim(t0, dim);
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, t0->shape, sizeof shape);
    shape[d] = 0;
    bool any_grad = false;
    for (int i = 0; i < n; i++) {
        Tensor *t = tensors[i];
        tensor_check_f32("concat", t, "tensors[i]");
        tensor_check_same_device("concat", t0, t);
        CHECK(t->ndim == t0->ndim, "concat: tensors[%d] %s and tensors[0] %s differ in rank", i,
              tensor_shape_str(t), tensor_shape_str(t0));
        for (int k = 0; k < t0->ndim; k++)
            CHECK(k == d || t->shape[k] == t0->shape[k],
                  "concat along dim %d: tensors[%d] %s and tensors[0] %s differ in dim %d", d, i,
                  tensor_shape_str(t), tensor_shape_str(t0), k);
        shape[d] += t->shape[d];
        any_grad |= t->requires_grad;
    }
    /* A tape node holds at most AG_MAX_INPUTS inputs: join groups first, then the groups. The
     * gradient is the same; the price is one extra copy of the data. */
    if (n > AG_MAX_INPUTS && any_grad && ag_grad_enabled()) {
        Tensor *parts[AG_MAX_INPUTS];
        int per = (n + AG_MAX_INPUTS - 1) / AG_MAX_INPUTS, np = 0;
        for (int i = 0; i < n; i += per)
            parts[np++] = tensor_concat(tensors + i, n - i < per ? n - i : per, d);
        return tensor_concat(parts, np, d);
    }
    Tensor *out = tensor_empty(DT_F32, t0->ndim, shape);
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        StridedCopyGeom g = block_geom(out->ndim, out->shape, d, start, tensors[i]->shape[d], true);
        if (tensors[i]->numel > 0)
            KERNEL_RUN(out->device, strided_copy_forward, out->data, tensors[i]->data, &g);
        start += tensors[i]->shape[d];
    }
    /* With more than AG_MAX_INPUTS inputs, grad mode is off or no input needs a gradient. */
    Node *node = any_grad && ag_grad_enabled()
                     ? ag_record("concat", out, concat_backward, tensors, n) : NULL;
    if (node) node->iarg[0] = d;
    return out;
}

Tensor *tensor_stack(Tensor *const *tensors, int n, int dim) {
    CHECK(tensors != NULL && n >= 1, "stack: %d tensors", n);
    Tensor *t0 = tensors[0];
    tensor_check_f32("stack", t0, "tensors[0]");
    CHECK(t0->ndim < TENSOR_MAX_DIMS, "stack: tensors of rank %d leave no room for a new dim",
          t0->ndim);
    int d = dim < 0 ? dim + t0->ndim + 1 : dim;
    CHECK(d >= 0 && d <= t0->ndim, "stack: dim %d out of range for tensors of shape %s", dim,
          tensor_shape_str(t0));
    /* Each input viewed with a unit dimension at d, then joined along d. */
    int64_t shape[TENSOR_MAX_DIMS];
    for (int k = 0, j = 0; k <= t0->ndim; k++) shape[k] = k == d ? 1 : t0->shape[j++];
    Tensor **views = arena_alloc_host(tensor_arena(), (size_t)n * sizeof *views);
    for (int i = 0; i < n; i++) {
        tensor_check_f32("stack", tensors[i], "tensors[i]");
        CHECK(tensor_same_shape(tensors[i], t0), "stack: tensors[%d] %s and tensors[0] %s differ",
              i, tensor_shape_str(tensors[i]), tensor_shape_str(t0));
        views[i] = tensor_reshape(tensors[i], t0->ndim + 1, shape);
    }
    return tensor_concat(views, n, d);
}
