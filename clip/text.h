/* text.h — CLIP's text tower: a causal pre-LN transformer pooled at the end-of-text token
 * (SPEC §1.7).
 *
 * Two entry points: token ids (zero-shot prompts), and already-embedded sequences (prompt
 * tuning: learned context vectors written among the frozen token embeddings). The weights are
 * frozen ParamStore tensors, so back-propagation from the features reaches the embedded input
 * without ever computing a weight gradient.
 *
 * Because the mask is causal, positions after the end-of-text token never influence the pooled
 * feature; both entry points therefore run only the first max(eot) + 1 positions of the batch
 * (identical features, about 3x less work for prompts of ~20 tokens out of 77). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "tensor/tensor.h"

/* Hyper-parameters, inferred from state-dict shapes (SPEC §1.4). */
typedef struct {
    int64_t width;       /* C: 512 */
    int64_t layers;      /* residual blocks: 12 */
    int64_t heads;       /* NH: width / 64 (8); not recoverable from shapes when width % 64 != 0 */
    int64_t context;     /* positions: 77 */
    int64_t vocab;       /* V: 49408 */
    int64_t embed_dim;   /* E: columns of text_projection */
} ClipTextConfig;

typedef struct {
    Tensor *ln_1_weight, *ln_1_bias;          /* (C) */
    Tensor *in_proj_weight, *in_proj_bias;    /* (3C, C), (3C): rows q, k, v */
    Tensor *out_proj_weight, *out_proj_bias;  /* (C, C), (C) */
    Tensor *ln_2_weight, *ln_2_bias;          /* (C) */
    Tensor *c_fc_weight, *c_fc_bias;          /* (4C, C), (4C) */
    Tensor *c_proj_weight, *c_proj_bias;      /* (C, 4C), (C) */
} ClipTextBlock;

typedef struct {
    ClipTextConfig cfg;
    Tensor *token_embedding;       /* (V, C) */
    Tensor *positional_embedding;  /* (context, C) */
    ClipTextBlock *blocks;         /* cfg.layers entries (owned array) */
    Tensor *ln_final_weight, *ln_final_bias; /* (C) */
    Tensor *text_projection;       /* (C, E), applied as x @ P */
    Arena *work;                   /* borrowed scratch arena (the model's) */
} ClipText;

/* Loading, phase 1: set the config and declare the tower's tensors in ps (float32, frozen) under
 * their state-dict names. */
void clip_text_declare(ClipText *t, const ClipTextConfig *cfg, ParamStore *ps);
/* Loading, phase 2, after param_store_finalize(ps): copy the state dict's tensors up-cast to
 * float32. sd must already have passed clip_state_dict_check (clip/model.h). */
void clip_text_fill(ClipText *t, const ParamStore *sd);

/* Point t at the tower's float32 tensors of an already finalized store that holds them under
 * their state-dict names (CHECKs each is present), e.g. the trainable store of clip/pretrain.h.
 * Gradients then reach the weights that require one. t->work is left for the caller to set. */
void clip_text_bind(ClipText *t, const ClipTextConfig *cfg, const ParamStore *ps);

/* The end-of-text position of each sequence of ids (B, T) int64: the index of its largest id
 * (the first one on ties, as torch.argmax). Returns a (B) int64 tensor from the current arena. */
Tensor *clip_text_eot_positions(const Tensor *ids);

/* Features (B, E) of token ids (B, T) int64 with T <= context, ids in [0, V). From the current
 * arena. Records no tape (ids are not differentiable); intermediates are freed as it goes. */
Tensor *clip_text_encode_ids(const ClipText *t, Tensor *ids);

/* Features (B, E) of embedded sequences x (B, T, C), T <= context: token embeddings *before*
 * the positional embedding, which is added here (as CoOp's TextEncoder does), pooled at eot (B)
 * int64 positions in [0, T). When x requires a gradient the graph is recorded and backward fills
 * x's gradient (rows past a sequence's end-of-text position receive zeros); the weights never
 * get one. eot is borrowed and must outlive backward. Otherwise intermediates are freed as it
 * goes. Runs the CLIP_TEXT_BY_LENGTH layout. */
Tensor *clip_text_encode_embedded(const ClipText *t, Tensor *x, Tensor *eot);

/* How the tower lays out a batch. Under the causal mask nothing after a sequence's end-of-text
 * token reaches its features, so all three compute the same features (up to rounding: the
 * products have other row counts) and the same prompt gradients. */
typedef enum {
    /* Each sequence cut at its own end-of-text position and the rows of all of them packed into
     * one matrix (attention per group of equal length); the last block computes keys and values
     * at every row and the rest at the end rows only. */
    CLIP_TEXT_BY_LENGTH,
    /* One pass over the batch cut at its last end-of-text position. */
    CLIP_TEXT_TRUNCATED,
    /* One pass over all T positions, as CLIP's reference code runs. */
    CLIP_TEXT_ALL_POSITIONS,
} ClipTextLayout;

/* As clip_text_encode_embedded with a chosen layout (the tests compare them). */
Tensor *clip_text_encode_embedded_ex(const ClipText *t, Tensor *x, Tensor *eot,
                                     ClipTextLayout layout);

/* Multiply-accumulates of the tower for one sequence of T positions (blocks and projection). */
double clip_text_macs(const ClipTextConfig *cfg, int64_t T);

/* Release the block array (the tensors belong to the ParamStore). */
void clip_text_free(ClipText *t);
