/* head_params.c — parameters of the method heads by one naming rule (trmml/head_params.h). */
#include "trmml/head_params.h"

#include <stdio.h>

Tensor *trmml_param_declare(ParamStore *ps, const char *prefix, const char *leaf, int ndim,
                            const int64_t *shape, bool trainable) {
    char name[256];
    snprintf(name, sizeof name, "%.120s.%.120s", prefix, leaf);
    return param_add(ps, name, DT_F32, ndim, shape, trainable);
}

void trmml_linear_declare(NnLinear *l, ParamStore *ps, const char *prefix, const char *leaf,
                          int64_t in, int64_t out) {
    char name[256];
    snprintf(name, sizeof name, "%.120s.%.120s", prefix, leaf);
    nn_linear_declare(l, ps, name, in, out, true, true);
}
