/* prompt.h — the dual prompt learner of DualCoOp and TRM-ML (SPEC §3, §4.1 item 2).
 *
 * Every class c has two prompts, a positive and a negative one. Each is the frozen token
 * embedding of the template "X X ... X {name}." (n_ctx placeholder words, CoOp's layout
 * [SOT][ctx x n_ctx][name][.][EOT][pad]) with rows 1..n_ctx replaced by learned context vectors:
 *   class-specific (CSC, the default): ctx_pos, ctx_neg (C, n_ctx, Wt);
 *   class-agnostic:                    ctx_pos, ctx_neg (n_ctx, Wt), shared by every class.
 * The 2C prompts go through CLIP's frozen text tower; the features, L2-normalised, are
 * G+ = normalize(text(prompt+_c)) and G- = normalize(text(prompt-_c)), each (C, E).
 *
 * The contexts are trainable parameters in a ParamStore the caller provides; the template
 * embeddings and end-of-text positions are constants owned by the learner (computed once from
 * the frozen token embedding). Prompts are assembled each step with tensor_write_rows, so the
 * gradient of the features reaches the contexts only.
 *
 * The text tower runs over classes in chunks of `chunk` classes (2·chunk sequences per call) to
 * bound memory. Two ways to get gradients (docs/dualcoop.md):
 *   taped:     trmml_prompt_features records every chunk on the tape; one backward from the loss
 *              reaches the contexts. Simple; the whole tower's tape is alive at once.
 *   recompute: trmml_prompt_features_detached runs the tower without a tape and returns leaf
 *              features that collect dL/dG from any number of head backward passes (gradient
 *              accumulation over micro-batches); trmml_prompt_backward then re-runs the tower one
 *              chunk at a time with a tape and back-propagates that chunk's rows of dL/dG into
 *              the contexts, releasing the chunk's memory before the next. Peak memory is one
 *              chunk's tape, at the price of one extra forward pass of the tower. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "autograd/tape.h"
#include "clip/model.h"
#include "clip/tokenizer.h"
#include "tensor/tensor.h"

#define TRMML_PROMPT_N_CTX 16        /* SPEC §3: 16 context tokens */
#define TRMML_PROMPT_INIT_STD 0.02f  /* SPEC §3: contexts ~ N(0, 0.02^2) */

typedef struct {
    int64_t n_classes;     /* C */
    int64_t n_ctx;         /* context tokens per prompt (16) */
    int64_t width;         /* Wt, the text tower's width (512) */
    bool class_specific;   /* contexts per class (C, n_ctx, Wt), else shared (n_ctx, Wt) */
    bool positive_only;    /* PVLR's CAP: the positive prompt only (no ctx_neg, G- is NULL) */
    float init_std;        /* contexts ~ N(0, init_std^2) */
} PromptConfig;

typedef struct {
    PromptConfig cfg;
    Tensor *ctx_pos, *ctx_neg;  /* "prompt.ctx_pos", "prompt.ctx_neg": borrowed from the caller's
                                   ParamStore, trainable */
    ParamStore *consts;         /* owned: the template embeddings (frozen), NULL until set */
    Tensor *template_emb;       /* (C, T, Wt) token embeddings of the templates, T = max eot + 1 */
    int64_t *eot;               /* (C) end-of-text position of each template (owned, host) */
    int64_t T;                  /* template length kept (max eot + 1) */
} PromptLearner;

/* SPEC defaults: n_ctx 16, class-specific, std 0.02. */
PromptConfig trmml_prompt_config(int64_t n_classes, int64_t width);
/* Learnable parameters of a config: 2 * (C or 1) * n_ctx * Wt (COCO/RN101: 1,310,720); half
 * that when positive_only. */
int64_t trmml_prompt_num_params(const PromptConfig *cfg);

/* Declare ctx_pos and ctx_neg as trainable float32 parameters in ps (before
 * param_store_finalize). The learner must be zero-initialised or fresh. */
void trmml_prompt_declare(PromptLearner *pl, const PromptConfig *cfg, ParamStore *ps);
/* After finalize: fill the contexts with N(0, init_std^2) from one generator seeded with `seed`,
 * ctx_pos first, then ctx_neg (deterministic for a seed, on any device). */
void trmml_prompt_init(PromptLearner *pl, uint64_t seed);

/* The template ids (C, 77) int64, from the current (CPU) arena: row c is the tokenisation of
 * "X X ... X {name}." with n_ctx placeholders, CoOp's prompt (underscores in names become
 * spaces). STATUS_ERR_USAGE naming the class when a name does not fit in 77 tokens. */
Status trmml_prompt_template_ids(const ClipTokenizer *tok, const char *const *names, int64_t n,
                                 int64_t n_ctx, Tensor **ids);
/* Fix the templates from pre-tokenised ids (C, T) int64 (T <= 77), on token_embedding's device:
 * each row [SOT, n_ctx placeholder ids, name ids, ..., EOT, 0...], whose end-of-text position is
 * its largest id (CLIP's rule) and must lie after the contexts. Computes and keeps the frozen
 * token embeddings (token_embedding (V, Wt)) of the first max(eot) + 1 columns; the placeholder
 * rows are never read. May be called again (replaces the templates). */
void trmml_prompt_set_tokens(PromptLearner *pl, const Tensor *token_embedding, Tensor *ids);
/* trmml_prompt_template_ids + trmml_prompt_set_tokens with m's token embedding. */
Status trmml_prompt_set_classes(PromptLearner *pl, const ClipModel *m, const ClipTokenizer *tok,
                                const char *const *names);

/* The embedded prompts of classes [c0, c0 + n): (2n, T, Wt), rows 0..n-1 positive, n..2n-1
 * negative ((n, T, Wt), positives only, when positive_only), from the current arena; recorded
 * on the tape when the contexts require a gradient.
 * *eot (may be NULL) receives the matching (2n) int64 end-of-text positions. */
Tensor *trmml_prompt_embeddings(const PromptLearner *pl, int64_t c0, int64_t n, Tensor **eot);

/* Taped features: *gpos, *gneg (C, E), L2-normalised (*gneg NULL when positive_only), from the
 * current arena, the tower run in
 * chunks of `chunk` classes (<= 0: all at once). Backward from anything computed from them
 * reaches the contexts. */
void trmml_prompt_features(const PromptLearner *pl, const ClipModel *m, int64_t chunk,
                           Tensor **gpos, Tensor **gneg);
/* Recompute scheme, forward: the same features computed without a tape, returned as leaves
 * that require a gradient (buffers from the current arena), so head backward passes accumulate
 * dL/dG into gpos->grad and gneg->grad. Nothing else stays in the arena. */
void trmml_prompt_features_detached(const PromptLearner *pl, const ClipModel *m, int64_t chunk,
                                    Tensor **gpos, Tensor **gneg);
/* The recompute scheme without the recompute, when every class fits in one chunk (chunk <= 0
 * or >= C) and grad mode is on: the tower runs once WITH a tape, the tape is set aside
 * (ag_tape_stash) into *graph, and the features are returned as leaves exactly as
 * trmml_prompt_features_detached returns them; trmml_prompt_backward_kept then back-propagates
 * through the kept graph: two passes of the tower per step instead of three, at the memory of
 * one taped chunk held across the head's passes. Returns false, having done
 * trmml_prompt_features_detached, when the classes need several chunks. */
typedef struct {
    Tensor *out;        /* (sides*C, E) the taped features: positive rows, then negative rows */
    AgTapeSaved tape;
} PromptGraph;
bool trmml_prompt_features_kept(const PromptLearner *pl, const ClipModel *m, int64_t chunk,
                                Tensor **gpos, Tensor **gneg, PromptGraph *graph);
/* Backward of the kept graph with the rows of gpos->grad and gneg->grad (NULL grads count as
 * zero). Needs an empty tape (run the head's backward passes first). */
void trmml_prompt_backward_kept(const PromptLearner *pl, PromptGraph *graph, const Tensor *gpos,
                                const Tensor *gneg);
/* Recompute scheme, backward: for each chunk, re-run the tower with a tape and back-propagate
 * the chunk's rows of gpos->grad and gneg->grad (a NULL grad counts as zero; gneg NULL when
 * positive_only) into the contexts'
 * gradients (accumulated). Needs an empty tape; releases each chunk's memory before the next. */
void trmml_prompt_backward(const PromptLearner *pl, const ClipModel *m, int64_t chunk,
                           const Tensor *gpos, const Tensor *gneg);

/* Free what the learner owns (not the contexts, which belong to the caller's store). */
void trmml_prompt_free(PromptLearner *pl);
