/* tape.c — the tape, the backward driver and gradient buffers. */
#include "autograd/tape.h"

#include <string.h>

#include "tensor/device.h"

static bool g_grad_enabled = true;
static Node *g_tape;      /* newest node */
static int g_tape_len;

bool ag_grad_enabled(void) { return g_grad_enabled; }

bool ag_set_grad_enabled(bool on) {
    bool prev = g_grad_enabled;
    g_grad_enabled = on;
    return prev;
}

Node *ag_record(const char *op, Tensor *out, BackwardFn fn, Tensor *const *in, int nin) {
    CHECK(nin <= AG_MAX_INPUTS, "%s: %d inputs, at most %d", op, nin, AG_MAX_INPUTS);
    if (!g_grad_enabled) return NULL;
    bool any = false;
    for (int i = 0; i < nin; i++) any |= in[i] && in[i]->requires_grad;
    if (!any) return NULL;
    /* The node lives in the arena (its host memory, whatever the arena's device): the tape must
     * be emptied when tensor_step_end resets it. */
    if (!g_tape) tensor_on_step_end(ag_tape_reset);
    Node *n = arena_alloc_host(tensor_arena(), sizeof *n);
    memset(n, 0, sizeof *n);
    n->op = op;
    n->backward = fn;
    n->out = out;
    n->nin = nin;
    for (int i = 0; i < nin; i++) n->in[i] = in[i];
    n->prev = g_tape;
    g_tape = n;
    g_tape_len++;
    out->requires_grad = true;
    out->node = n;
    return n;
}

Tensor *ag_grad_fresh(Tensor *t, bool *fresh) {
    CHECK(t->requires_grad, "gradient requested for a tensor %s that does not require one",
          tensor_shape_str(t));
    *fresh = !t->grad;
    if (!t->grad) {
        Tensor *g = tensor_empty(DT_F32, t->ndim, t->shape);
        CHECK(g->device == t->device, "gradient of a %s tensor would be taken from a %s arena",
              device_name(t->device), device_name(g->device));
        t->grad = g;
    }
    return t->grad;
}

Tensor *ag_grad(Tensor *t) {
    bool fresh;
    Tensor *g = ag_grad_fresh(t, &fresh);
    if (fresh) device_table(g->device)->memset0(g->data, (size_t)g->numel * sizeof(float));
    return g;
}

void ag_set_requires_grad(Tensor *t, Tensor *grad) {
    tensor_check_f32("ag_set_requires_grad", t, "t");
    CHECK(t->node == NULL, "only leaf tensors can be marked as requiring a gradient");
    t->requires_grad = true;
    if (grad) {
        CHECK(tensor_same_shape(t, grad), "gradient buffer %s does not match tensor %s",
              tensor_shape_str(grad), tensor_shape_str(t));
        t->grad = grad;
    }
}

static void run_tape(void) {
    /* Walk newest to oldest: every consumer of a tensor was recorded after its producer, so a
     * node's output gradient is complete when the node is reached. */
    CHECK(g_tape != NULL, "backward: the tape is empty (no op recorded, or an earlier backward "
                          "already consumed it)");
    for (Node *n = g_tape; n; n = n->prev) {
        if (!n->out->grad) continue; /* no gradient reached this output */
        n->backward(n);
    }
    /* The tape is consumed, as PyTorch frees its graph: walking it again would add every
     * gradient a second time. */
    ag_tape_reset();
}

void ag_backward(Tensor *loss) {
    CHECK(loss->numel == 1, "backward from a non-scalar tensor %s: use ag_backward_with",
          tensor_shape_str(loss));
    CHECK(loss->requires_grad, "backward from a tensor that does not require a gradient "
                               "(no input required one, or grad mode was off)");
    Tensor *g = ag_grad(loss);
    KERNEL_RUN(g->device, fill, g->data, 1.0f, 1);
    run_tape();
}

void ag_backward_with(Tensor *out, const Tensor *dout) {
    CHECK(tensor_same_shape(out, dout), "upstream gradient %s does not match output %s",
          tensor_shape_str(dout), tensor_shape_str(out));
    CHECK(out->requires_grad, "backward from a tensor that does not require a gradient");
    Tensor *g = ag_grad(out);
    KERNEL_RUN(g->device, accumulate, g->data, dout->data, g->numel);
    run_tape();
}

void ag_backward_many(Tensor *const *outs, Tensor *const *douts, int n) {
    for (int i = 0; i < n; i++) {
        CHECK(tensor_same_shape(outs[i], douts[i]), "output %d: upstream gradient %s does not "
              "match output %s", i, tensor_shape_str(douts[i]), tensor_shape_str(outs[i]));
        if (!outs[i]->requires_grad) continue; /* this output does not depend on any input */
        Tensor *g = ag_grad(outs[i]);
        KERNEL_RUN(g->device, accumulate, g->data, douts[i]->data, g->numel);
    }
    run_tape();
}

AgTapeSaved ag_tape_stash(void) {
    AgTapeSaved s = {g_tape, g_tape_len};
    ag_tape_reset();
    return s;
}

void ag_tape_restore(AgTapeSaved saved) {
    CHECK(g_tape == NULL, "ag_tape_restore: the tape holds %d nodes recorded since the stash; "
                          "consume them first", g_tape_len);
    g_tape = saved.head;
    g_tape_len = saved.len;
}

void ag_tape_reset(void) {
    g_tape = NULL;
    g_tape_len = 0;
}

int ag_tape_length(void) { return g_tape_len; }

void ag_tape_print(FILE *f) {
    int i = g_tape_len;
    for (Node *n = g_tape; n; n = n->prev) {
        fprintf(f, "#%d %-16s out %s <-", --i, n->op, tensor_shape_str(n->out));
        for (int k = 0; k < n->nin; k++)
            fprintf(f, " %s%s", tensor_shape_str(n->in[k]),
                    n->in[k] && n->in[k]->requires_grad ? "*" : "");
        fputc('\n', f);
    }
}
