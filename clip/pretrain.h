/* pretrain.h — training a small CLIP from scratch on image–caption pairs (issue 6), with CLIP's
 * own objective: symmetric InfoNCE between the L2-normalised image and caption embeddings, scaled
 * by a learnable temperature exp(logit_scale) clamped to 100.
 *
 * The model is the same ModifiedResNet and text transformer as the released checkpoints, with
 * every tensor held under its state-dict name (clip_state_dict_foreach) in one float32 store:
 * convolutions without bias, BatchNorm in training mode (batch statistics; running statistics
 * updated as torch does, momentum 0.1), the attention pool and the whole text tower trainable.
 * Saving writes that store as safetensors, so the result loads through clip_model_load exactly
 * like RN50.pt (BatchNorm folded with the running statistics).
 *
 *     ClipPretrainConfig cfg = clip_pretrain_default_config();
 *     ClipPretrain *p = clip_pretrain_create(&cfg);   // CLIP's initialisation from cfg.seed
 *     float loss = clip_pretrain_step(p, images, ids); // images (B,3,S,S) normalised, ids (B,77)
 *     clip_pretrain_save(p, "small.safetensors");
 *
 * docs/pretraining.md explains the choices (sizes, augmentation, schedule) and the measurements. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "clip/model.h"
#include "clip/tokenizer.h"
#include "nn/optim.h"
#include "tensor/tensor.h"

typedef struct {
    ClipConfig clip;       /* architecture (vision.grid = input_size / 32) */
    int64_t input_size;    /* S: square training side, a multiple of 32 */
    int64_t batch;         /* image–caption pairs per step (the InfoNCE batch) */
    int64_t steps;         /* optimizer steps */
    int64_t warmup;        /* linear warm-up steps, then cosine decay to min_lr */
    double lr, min_lr, weight_decay, beta1, beta2, eps;
    double grad_clip;      /* global gradient-norm clip (0: off) */
    int64_t shift;         /* random translation of each image, at most ±shift pixels */
    uint64_t seed;         /* initialisation, shuffling, augmentation */
    int64_t log_every;     /* steps between progress lines */
} ClipPretrainConfig;

/* The embedded default: vision width 32, one Bottleneck per stage, 64 px, text width 128 with 4
 * blocks and 2 heads, E = 128, batch 128 (see docs/pretraining.md for why). */
ClipPretrainConfig clip_pretrain_default_config(void);

/* Read `key = value` lines (# comments) into cfg, overriding its fields; keys are the field
 * names above plus vision_width, vision_layers (four comma-separated counts), text_width,
 * text_layers, text_heads, embed_dim. STATUS_ERR_USAGE naming the file, line and key for an
 * unknown key or a bad value; then validates the whole configuration. */
Status clip_pretrain_config_load(const char *path, ClipPretrainConfig *cfg);
/* STATUS_ERR_USAGE naming the first invalid field. Also derives clip.vision.grid/channels/heads. */
Status clip_pretrain_config_validate(ClipPretrainConfig *cfg);
/* Print every field as `key = value` lines (the resolved configuration). */
void clip_pretrain_config_print(const ClipPretrainConfig *cfg, FILE *f);

typedef struct ClipPretrain ClipPretrain;

/* A model initialised as OpenAI's CLIP initialises its parameters, with an AdamW optimizer
 * (weight decay on matrices and convolution kernels only). The config must have validated. */
ClipPretrain *clip_pretrain_create(const ClipPretrainConfig *cfg);
void clip_pretrain_free(ClipPretrain *p);

/* The store of every state-dict tensor (float32; BN counters int64). */
ParamStore *clip_pretrain_params(ClipPretrain *p);

/* Image embeddings (B, E) in training mode (batch statistics, running statistics updated),
 * recorded on the tape; images (B, 3, S, S). */
Tensor *clip_pretrain_encode_image(ClipPretrain *p, Tensor *images);
/* Caption embeddings (B, E) of ids (B, T) int64, recorded on the tape. */
Tensor *clip_pretrain_encode_text(ClipPretrain *p, Tensor *ids);
/* The symmetric InfoNCE loss [] of image and caption embeddings (B, E), pair i matching i:
 * (CE(s * I T^T, arange) + CE(s * T I^T, arange)) / 2 with I, T row-normalised, s = exp(ls). */
Tensor *clip_pretrain_loss(ClipPretrain *p, Tensor *img, Tensor *txt);

/* One optimizer step on a batch; returns the loss before the step and, when acc is non-NULL,
 * the in-batch image→caption retrieval accuracy. Sets the learning rate from the schedule.
 * Uses (and releases) the current arena. A non-finite loss skips the update and is returned. */
float clip_pretrain_step(ClipPretrain *p, Tensor *images, Tensor *ids, float *acc);
int64_t clip_pretrain_steps_done(const ClipPretrain *p);

/* Write the state dict as safetensors (temporary file, fsync, rename). */
Status clip_pretrain_save(ClipPretrain *p, const char *path);

/* ---- image–caption data ------------------------------------------------------------------- */

/* Pairs held in memory: images decoded once and resized (bicubic, Pillow-exact) to S x S as
 * bytes, captions tokenised once. */
typedef struct {
    int64_t n, size;     /* pairs, side S */
    uint8_t *pixels;     /* (n, S, S, 3) RGB */
    int64_t *ids;        /* (n, 77) token ids */
} ClipPairs;

/* The images paths[0..n) (in this order) with their captions from `captions` ("<id>\t<caption>"
 * lines, as `trmml synth` writes; an image's id is its file name without directory and
 * extension): every image must have a caption. Errors name the file and line. Decoding runs on
 * the OpenMP threads. The caller lists the images (tools/cmd_pretrain.c: the trainval split of
 * the VOC-layout tree, so clip/ needs no dataset reader). */
Status clip_pairs_load(const char *const *paths, int64_t n, const char *captions,
                       const ClipTokenizer *tok, int64_t size, ClipPairs *out);
void clip_pairs_free(ClipPairs *p);
/* A training batch of pairs idx[0..count): *images (count, 3, S, S) normalised as CLIP expects,
 * each shifted by a random offset in [-shift, shift]² with edge replication, and *ids
 * (count, 77) int64, from the current arena. `seed` makes the offsets reproducible. */
void clip_pairs_batch(const ClipPairs *p, const int64_t *idx, int64_t count, int64_t shift,
                      uint64_t seed, Tensor **images, Tensor **ids);
