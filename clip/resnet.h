/* resnet.h — CLIP's image tower: ModifiedResNet with attention pooling (SPEC §1.5–1.6).
 *
 * The tower is frozen: every convolution carries its BatchNorm folded in (a weight and a bias
 * computed once at load), and the forward pass runs with grad mode off, so it records no tape.
 * ReLU and the residual add overwrite their inputs and every activation is released as soon as
 * it is dead (see clip_resnet_encode), so the peak is about one block's working set, not the sum
 * over the network. Shapes per image and stage, and measured peaks: docs/clip-model.md.
 *
 * Weights live in the model's compute ParamStore (clip/model.h builds it); the structs here only
 * borrow pointers into it. */
#pragma once
#include <stdint.h>

#include "tensor/tensor.h"

/* Hyper-parameters of a ModifiedResNet, all inferred from state-dict shapes (SPEC §1.4). */
typedef struct {
    int64_t layers[4];   /* Bottleneck blocks per stage: (3,4,6,3) RN50, (3,4,23,3) RN101 */
    int64_t width;       /* stem output channels and layer1 planes: 64 */
    int64_t channels;    /* attention-pool width C = 32 * width (2048) */
    int64_t heads;       /* attention-pool heads: C / 64 (head size 64) */
    int64_t grid;        /* native token grid side g (7); native input side 32 * g (224) */
    int64_t embed_dim;   /* E: output of the attention pool's c_proj (1024 RN50, 512 RN101) */
} ClipResNetConfig;

/* A convolution with its BatchNorm folded in: y = conv(x, weight) + bias. */
typedef struct {
    Tensor *weight;      /* (O, C, KH, KW) */
    Tensor *bias;        /* (O) */
    int64_t stride, pad;
} ClipConv;

typedef struct {
    ClipConv conv1, conv2, conv3; /* 1x1 in->planes, 3x3 planes->planes, 1x1 planes->4*planes */
    ClipConv downsample;          /* 1x1 in->4*planes after an avgpool; weight NULL when absent */
    int64_t stride;               /* 1, or 2 for block 0 of layers 2-4 (anti-aliased avgpool) */
} ClipBottleneck;

typedef struct {
    ClipResNetConfig cfg;
    ClipConv stem[3];
    ClipBottleneck *blocks[4];    /* blocks[L][b], cfg.layers[L] entries each (owned array) */
    Tensor *positional_embedding; /* (g*g + 1, C) */
    Tensor *q_weight, *q_bias, *k_weight, *k_bias, *v_weight, *v_bias; /* (C, C), (C) */
    Tensor *c_weight, *c_bias;    /* c_proj: (E, C), (E) */
    Arena *work;                  /* borrowed scratch arena for intermediates (the model's) */
} ClipResNet;

/* Loading, phase 1: set the config and declare in ps (float32, frozen) the folded convolutions
 * ("<conv>.weight" and "<conv>.bias" under the state-dict names) and the attention-pool tensors. */
void clip_resnet_declare(ClipResNet *v, const ClipResNetConfig *cfg, ParamStore *ps);
/* Loading, phase 2, after param_store_finalize(ps): copy the state dict's tensors up-cast to
 * float32 and fold every BatchNorm (eps 1e-5) into its convolution. sd must already have passed
 * clip_state_dict_check (clip/model.h); a missing key here is a CHECK failure. */
void clip_resnet_fill(ClipResNet *v, const ParamStore *sd);

/* Encode images (B, 3, IH, IW), normalised as CLIP expects, IH and IW multiples of 32. Writes
 * *embedding (B, E), the attention-pooled global feature, and, when dense is non-NULL,
 * *dense (B, H*W + 1, E) = c_proj(v_proj(tokens + pos)) for every token (token 0, the mean token,
 * first; then row-major over the H x W = IH/32 x IW/32 grid). The positional embedding is resized
 * bicubically when the grid is not the native one. Outputs come from the current arena; nothing
 * else remains in it afterwards. Runs with grad mode off: the outputs never require a gradient.
 * The caller's arena also serves as one of the two stacks the trunk alternates between (its
 * peak rises by about one activation), the model's work arena as the other. Not re-entrant
 * (uses the tower's work arena). Bad shapes are CHECK failures. */
void clip_resnet_encode(const ClipResNet *v, Tensor *images, Tensor **embedding, Tensor **dense);

/* The attention pool alone: layer4's output x (B, C, H, W) -> *embedding (B, E) and, when dense
 * is non-NULL, *dense (B, H*W + 1, E). Reads only the pool's tensors of v (cfg.heads, cfg.grid,
 * positional_embedding, q/k/v/c weights and biases). Records a tape when grad mode is on and an
 * input requires a gradient (pretraining, clip/pretrain.c); the grid must then be the native one
 * (the positional-embedding resize has no backward). From the current arena. */
void clip_resnet_attnpool(const ClipResNet *v, Tensor *x, Tensor **embedding, Tensor **dense);

/* The positional embedding (H*W + 1, C) for an H x W grid: row 0 unchanged, rows 1.. resized
 * from the native g x g grid with PyTorch's bicubic (align_corners=False); the stored tensor
 * itself when H = W = g. From the current arena; grad mode must be off (CHECKed by the resize). */
Tensor *clip_resnet_positional_embedding(const ClipResNet *v, int64_t h, int64_t w);

/* Multiply-accumulates of one image through the tower at IH x IW: *conv_macs for the
 * convolutions (SPEC §1.5 quotes 5.37 G for RN50 at 224), *pool_macs for the attention pool's
 * projections and attention, *dense_macs for the extra c_proj over all tokens. */
void clip_resnet_macs(const ClipResNetConfig *cfg, int64_t ih, int64_t iw, double *conv_macs,
                      double *pool_macs, double *dense_macs);

/* Release the block arrays (the tensors belong to the ParamStore). */
void clip_resnet_free(ClipResNet *v);
