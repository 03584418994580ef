/* tape.h — reverse-mode automatic differentiation with a tape.
 *
 * While grad mode is on, every differentiable op whose inputs include a tensor that requires a
 * gradient appends a Node to the tape: the op's name, its output, its inputs, the values it saved
 * for backward, and its backward rule. ag_backward() walks the tape from the newest node to the
 * oldest; each node whose output received a gradient calls its rule, which accumulates (+=) into
 * the gradient buffers of exactly those inputs that require a gradient.
 *
 * Two consequences matter for prompt tuning (docs/architecture.md):
 *   - an op none of whose inputs requires a gradient records nothing, so a frozen tower run
 *     forward costs no tape at all;
 *   - a frozen weight (requires_grad = false) never receives a gradient buffer, and rules skip
 *     its gradient kernel entirely, so back-propagating through a frozen layer into its input
 *     costs only the input-gradient path.
 *
 * Nodes and the gradient buffers of intermediates live in the current arena; tensor_step_end()
 * resets both. Parameters' gradient buffers live in their ParamStore and persist (accumulate)
 * across backward calls until param_zero_grad(). */
#pragma once
#include <stdbool.h>

#include "tensor/tensor.h"

#define AG_MAX_INPUTS 8
#define AG_MAX_SAVED 4

typedef void (*BackwardFn)(Node *n);

struct Node {
    const char *op;                   /* for error messages and tape dumps */
    BackwardFn backward;
    Tensor *out;
    int nin;
    Tensor *in[AG_MAX_INPUTS];
    Tensor *saved[AG_MAX_SAVED];      /* values saved by forward (mean, rstd, argmax, probs) */
    int64_t iarg[8];                  /* small integer arguments (dims, flags) */
    double farg[4];                   /* small real arguments (scales, eps) */
    void *extra;                      /* larger argument blocks, allocated in the arena */
    Node *prev;                       /* the node recorded before this one */
};

/* Grad mode (on by default). ag_set_grad_enabled returns the previous value so callers can
 * restore it: `bool g = ag_set_grad_enabled(false); ...; ag_set_grad_enabled(g);` */
bool ag_grad_enabled(void);
bool ag_set_grad_enabled(bool on);

/* Record an op. Returns NULL (and records nothing) when grad mode is off or no input requires a
 * gradient; otherwise marks `out` as requiring a gradient and returns the node, whose saved/iarg/
 * farg fields the caller fills. Use the AG_RECORD macro: AG_RECORD("add", out, add_backward, a, b). */
Node *ag_record(const char *op, Tensor *out, BackwardFn fn, Tensor *const *in, int nin);
#define AG_RECORD(op, out, fn, ...)                                                        \
    ag_record((op), (out), (fn), (Tensor *const[]){__VA_ARGS__},                           \
              (int)(sizeof((Tensor *const[]){__VA_ARGS__}) / sizeof(Tensor *)))

/* True when the tape is recording and `t` requires a gradient — i.e. a rule must produce it. */
static inline bool ag_needs(const Tensor *t) { return t && t->requires_grad; }

/* The gradient buffer of `t` (f32, same shape), allocated zeroed in the current arena when it is
 * first needed. Rules accumulate into it. */
Tensor *ag_grad(Tensor *t);

/* For a rule that writes a whole gradient contribution of t (every element): t's gradient
 * buffer, with *fresh telling whether it was just made for this contribution. A fresh buffer is
 * taken from the arena *without* zeroing it, and the rule must assign (a GEMM with beta 0, a
 * copy) instead of accumulating; otherwise it accumulates as usual. Saves a zeroing pass over
 * every intermediate's gradient (the text tower's backward zeroed about 1.4 GB per call). */
Tensor *ag_grad_fresh(Tensor *t, bool *fresh);

/* Backward from a scalar (seed 1) or from any tensor with an explicit upstream gradient `dout`
 * (same shape). Gradients accumulate into the leaves' buffers. Backward consumes the tape (as
 * PyTorch frees its graph): a second backward needs a new forward. */
void ag_backward(Tensor *loss);
void ag_backward_with(Tensor *out, const Tensor *dout);
/* Backward from several outputs at once (e.g. the parts of a split, or two losses): seeds each
 * output's gradient with its dout, then walks the tape once. */
void ag_backward_many(Tensor *const *outs, Tensor *const *douts, int n);

/* Make a leaf tensor require a gradient. Tensors outside the arena (e.g. owned by the caller)
 * need a persistent buffer: pass `grad` (same shape, f32, zeroed by the caller) or NULL to have
 * one taken from the current arena. ParamStore does this for trainable parameters. */
void ag_set_requires_grad(Tensor *t, Tensor *grad);

/* Set the recorded nodes aside and start an empty tape; ag_tape_restore puts them back (the
 * tape must be empty again by then). Lets a graph wait while other graphs are recorded and
 * consumed — the trainer keeps the text tower's forward graph across the head's micro-batch
 * backward passes. The nodes' memory (the arena below the caller's later marks) must survive. */
typedef struct {
    Node *head;
    int len;
} AgTapeSaved;
AgTapeSaved ag_tape_stash(void);
void ag_tape_restore(AgTapeSaved saved);
/* Forget the tape (the arena reset that follows releases its memory). */
void ag_tape_reset(void);
int ag_tape_length(void);
/* Print the tape, newest first, one line per node (debugging and docs). */
void ag_tape_print(FILE *f);
