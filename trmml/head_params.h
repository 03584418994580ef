/* head_params.h — the parameters of the method heads (carl.c, pvlr.c), named "<prefix>.<leaf>"
 * in a caller's ParamStore, so checkpoints and fixtures find them by one naming rule. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "nn/layers.h"
#include "tensor/tensor.h"

/* A float32 parameter "<prefix>.<leaf>" of the given shape (prefix and leaf cut at 120 bytes). */
Tensor *trmml_param_declare(ParamStore *ps, const char *prefix, const char *leaf, int ndim,
                            const int64_t *shape, bool trainable);
/* A Linear layer in -> out with bias, "<prefix>.<leaf>.{weight,bias}" (nn/layers.h). */
void trmml_linear_declare(NnLinear *l, ParamStore *ps, const char *prefix, const char *leaf,
                          int64_t in, int64_t out);
