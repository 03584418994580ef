/* model.h — a CLIP model (ResNet image tower + text tower) built from a state dict.
 *
 * The state dict is a ParamStore holding CLIP's tensors under their PyTorch names and shapes
 * (SPEC §1.3), in any storage dtype (the checkpoint reader fills it: f16 for most weights in the
 * released files). Loading
 *   1. infers the architecture from the shapes (SPEC §1.4), so RN50, RN101 and reduced members
 *      of the family all load (clip_config_infer);
 *   2. checks every expected key and shape, reporting the first mismatch (clip_state_dict_check);
 *   3. builds a new compute ParamStore of frozen float32 tensors: f16/bf16 up-cast, and every
 *      BatchNorm folded into the convolution before it (so the image tower is convolutions,
 *      ReLUs, average pools and the attention pool only).
 * The state dict is not referenced afterwards and may be destroyed. */
#pragma once
#include <stdbool.h>

#include "clip/resnet.h"
#include "clip/text.h"
#include "tensor/tensor.h"

typedef struct {
    ClipResNetConfig vision;
    ClipTextConfig text;
    int64_t embed_dim;  /* E, shared by both towers */
} ClipConfig;

typedef struct {
    ClipConfig cfg;
    ParamStore *params;   /* the compute store (owned): folded f32 weights, all frozen */
    Arena *work;          /* scratch for the towers' intermediates (owned) */
    ClipResNet visual;
    ClipText text;
    Tensor *logit_scale;  /* [] log of the logit scale (exp ~ 100) */
} ClipModel;

/* Architecture from the state dict's shapes. Fails with STATUS_ERR_FORMAT naming the key for a
 * vision-transformer state dict (visual.proj present), a missing or misshapen key the inference
 * needs, or a positional embedding whose rows are not g*g + 1. cfg->text.heads is width / 64, or
 * 0 when the width is not a multiple of 64 (the caller must then set it). */
Status clip_config_infer(const ParamStore *sd, ClipConfig *cfg);

/* The configurations of the released RN50 and RN101 (SPEC §1.3). */
ClipConfig clip_config_rn50(void);
ClipConfig clip_config_rn101(void);

/* Call fn once per state-dict key of cfg's model (SPEC §1.3), in state-dict order, with its
 * shape and the dtype of the released fp16 files. The §1.3 key list lives only here. */
typedef void (*ClipKeyFn)(void *ctx, const char *name, DType dtype, int ndim,
                          const int64_t *shape);
void clip_state_dict_foreach(const ClipConfig *cfg, ClipKeyFn fn, void *ctx);
/* Declare every key of cfg's model in ps (frozen, released dtypes), e.g. to build a random model
 * for benchmarks or tests. ps must not be finalized yet. */
void clip_state_dict_declare(ParamStore *ps, const ClipConfig *cfg);
/* STATUS_ERR_FORMAT naming the first key of cfg's model that sd lacks or holds in another shape
 * (expected and actual shapes in the message). Extra keys are ignored. */
Status clip_state_dict_check(const ParamStore *sd, const ClipConfig *cfg);

/* Build a model from sd (any device) on the current arena's device: a host state dict is
 * uploaded tensor by tensor. cfg NULL: infer
 * it; otherwise it must match sd's shapes (e.g. an inferred config with text.heads set).
 * On failure *out is NULL and the Status says why. Uses the current arena for temporaries. */
Status clip_model_load(ClipModel **out, const ParamStore *sd, const ClipConfig *cfg);
void clip_model_free(ClipModel *m);

/* Image features: see clip_resnet_encode (embedding (B,E), optional dense (B,HW+1,E)). */
void clip_encode_image(const ClipModel *m, Tensor *images, Tensor **embedding, Tensor **dense);
/* Text features (B,E) from ids (B,T) int64: see clip_text_encode_ids. */
Tensor *clip_encode_text(const ClipModel *m, Tensor *ids);
/* Text features (B,E) from embedded prompts: see clip_text_encode_embedded. */
Tensor *clip_encode_text_embedded(const ClipModel *m, Tensor *x, Tensor *eot);

/* ---- Helpers shared by clip/resnet.c and clip/text.c ------------------------------------ */

/* The state-dict tensor `name` up-cast to float32, in the current arena (CHECKs it exists:
 * clip_state_dict_check has run before the towers are filled). */
Tensor *clip_sd_f32(const ParamStore *sd, const char *name);
/* dst (float32, same shape) = the state-dict tensor `name` up-cast to float32. */
void clip_load_f32(Tensor *dst, const ParamStore *sd, const char *name);

/* The towers' memory discipline. A forward pass is a chain of units (a ResNet block, a
 * transformer block); each unit's ops allocate from the work arena, then only the unit's results
 * are copied back into the caller's arena, over the previous unit's results (which are dead by
 * then), and the work arena is released. So the caller's arena holds one activation at a time
 * and the work arena one unit's intermediates. Only valid when no tape is being recorded. */
typedef struct {
    Arena *out, *work;
    size_t out_mark, work_mark;
} ClipWorkScope;
/* Make `work` the current arena until clip_work_end. out_mark: where the previous unit's results
 * begin in the current arena (they stay readable until clip_work_end). */
ClipWorkScope clip_work_begin(Arena *work, size_t out_mark);
/* Restore the caller's arena, release it to out_mark, copy the n tensors t[i] (in the work
 * arena) into it (t[i] is replaced by its copy), and release the work arena. */
void clip_work_end(const ClipWorkScope *s, Tensor **t, int n);
