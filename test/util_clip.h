/* util_clip.h — a small CLIP with random weights (the real vocabulary size, text width 64 so
 * the head count is inferable, 64-pixel images) for end-to-end tests. */
#pragma once
#include "clip/model.h"
#include "clip/tokenizer.h"

ClipConfig test_small_clip_config(void);
/* A state dict of cfg's model in the released dtypes with random weights: BatchNorm variances
 * and scales positive, logit_scale log(100). Owned by the caller. */
ParamStore *test_random_clip(const ClipConfig *cfg, uint64_t seed);
/* A copy of store `src` (finalized, on the CPU) on device `dev`, trainable or frozen like the
 * source. Owned by the caller. */
ParamStore *test_store_copy(const ParamStore *src, DeviceKind dev);
/* The reduced CLIP of test/fixtures/clip_model.bin (weights from its "sd/" tensors; text heads 2,
 * since width 32 does not fix them) built into a model. NULL, and the running test failed, when
 * it cannot load. Free with clip_model_free. */
ClipModel *test_fixture_clip_model(void);
/* OpenAI's vocabulary from its default path (clip_vocab_path); NULL, and the running test
 * skipped naming the missing vocabulary, when it cannot load. Free with clip_tokenizer_free. */
ClipTokenizer *test_load_vocab(void);
