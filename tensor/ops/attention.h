/* attention.h — multi-head scaled dot-product attention and the head split/merge copies.
 *
 * Shapes follow docs/shapes.md: B batch, NH heads, T queries, S keys, HS head size. All functions
 * take contiguous float32 tensors on one device, return a new tensor from the current arena, and
 * record a tape node when an input requires a gradient. Bad shapes are CHECK failures naming the
 * op and the shapes. */
#pragma once
#include <stdbool.h>

#include "tensor/kernel_types.h"
#include "tensor/tensor.h"

/* out (B,NH,T,HSV) = softmax(q kᵀ * scale + mask) v for q (B,NH,T,HS), k (B,NH,S,HS),
 * v (B,NH,S,HSV). causal masks key j > query i and requires T == S. With a gradient to compute,
 * the probabilities (B,NH,T,S) are kept in the arena for backward; otherwise they are scratch. */
Tensor *tensor_attention(Tensor *q, Tensor *k, Tensor *v, bool causal, float scale);

/* x (B,T,NH*HS) -> (B,NH,T,HS): a copy that puts each head's columns in its own block. */
Tensor *tensor_attention_heads_split(Tensor *x, int64_t NH);
/* The same for columns [col0, col0 + NH*HS) of x (B,T,W), e.g. the q, k or v third of a fused
 * in-projection (B,T,3C); the gradient lands in that column range of x's gradient. */
Tensor *tensor_attention_heads_split_cols(Tensor *x, int64_t col0, int64_t NH, int64_t HS);
/* x (B,NH,T,HS) -> (B,T,NH*HS): heads concatenated along the channels (a copy); the inverse of
 * tensor_attention_heads_split. */
Tensor *tensor_attention_heads_merge(Tensor *x);

/* ---- packed sequences, heads in place ---------------------------------------------------- */

/* A run of n consecutive sequences of len rows each (see tensor_attention_packed). */
typedef struct {
    int64_t n, len;
} AttentionGroup;

/* Multi-head attention over sequences of different lengths packed row after row, reading each
 * head where a fused projection put it and writing the heads merged: no split, merge, slice or
 * concatenation copies. The sequences come as ngroups runs: run g holds groups[g].n sequences of
 * groups[g].len rows, R = sum n*len rows in all.
 *   kv (R, Wkv):  keys in columns [kcol, kcol + NH*HS), values in [vcol, vcol + NH*HS).
 *   q (Rq, Wq):   queries in columns [qcol, qcol + NH*HS). Either every row (last_only false:
 *                 Rq = R, each row attends causally to the rows of its own sequence up to
 *                 itself), or one row per sequence (last_only true: Rq = sum n, the sequence's
 *                 last query, which sees all of its keys and needs no mask).
 * Returns (Rq, NH*HS), head h in columns [h*HS, (h+1)*HS): what tensor_attention_heads_merge of
 * per-sequence tensor_attention calls gives. q may be kv (one fused (R, 3C) projection); the
 * gradient of a shared tensor collects all three column ranges. With a gradient to compute the
 * probabilities of every (sequence, head) are kept in the arena for backward. */
Tensor *tensor_attention_packed(Tensor *q, int64_t qcol, Tensor *kv, int64_t kcol, int64_t vcol,
                                const AttentionGroup *groups, int ngroups, int64_t NH, int64_t HS,
                                bool last_only, float scale);
