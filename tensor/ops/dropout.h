/* dropout.h — inverted dropout.
 *
 * In training, each element is zeroed with probability p and survivors are scaled by 1/(1-p),
 * so the expected output equals the input. The keep mask (f32 0/1, x's shape) is a forward
 * output; when a node is recorded it is out->node->saved[0]. */
#pragma once
#include "tensor/kernel_types.h"
#include "tensor/tensor.h"

/* Training with 0 < p <= 1: a new tensor from the current arena; the mask is drawn from one
 * rng_next(rng) (rng required, advanced once), identically for any thread count. p = 1 gives all
 * zeros. Eval mode or p = 0: returns x itself, records nothing. p outside [0, 1] is a CHECK. */
Tensor *tensor_dropout(Tensor *x, float p, bool training, Rng *rng);

/* The dropout draws of one slice of a batch (a micro-batch, one rank's share): `rng` gives one
 * seed per dropout site (advanced once per call), row0 is the slice's first row in the whole
 * batch. A caller that restarts rng from the step's seed for every slice gives each site the
 * same seed in every slice, so the slices together draw the masks of the whole batch. */
typedef struct {
    Rng rng;
    int64_t row0;
} DropoutDraws;

/* As tensor_dropout for x whose first dimension holds rows d->row0 .. of a batch: element j of
 * row r draws number (d->row0 + r) * (numel / rows) + j of the seed's sequence, the number it
 * has in the whole batch. So a batch's mask does not depend on how it is split into slices.
 * d may be NULL in eval mode or with p = 0. */
Tensor *tensor_dropout_rows(Tensor *x, float p, bool training, DropoutDraws *d);
