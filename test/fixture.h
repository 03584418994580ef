/* fixture.h — reading PyTorch reference fixtures (written by scripts/fixture_io.py).
 *
 * File layout (little-endian): magic "TRMMLFX1", u32 version (1), u32 count, then per tensor:
 * u16 name length, name bytes, u8 dtype (0 float32, 1 int64), u8 ndim, int64 shape[ndim], data.
 * Names are "<case>/<tensor>", e.g. "add_bcast/out", "add_bcast/da". Files live in
 * test/fixtures/<family>.bin ($TRMML_FIXTURES overrides the folder). */
#pragma once
#include <stdint.h>

#include "tensor/tensor.h"

typedef struct {
    char name[128];
    int dtype;                 /* 0 float32, 1 int64 */
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t numel;
    float *f32;                /* dtype 0 */
    int64_t *i64;              /* dtype 1 */
} FixtureTensor;

typedef struct Fixture Fixture;

/* Open test/fixtures/<family>.bin; NULL with the last error set if missing or corrupt. Fixtures
 * are cached for the life of the test process. */
Fixture *fixture_open(const char *family);
/* The named tensor, or NULL (and the running test fails, naming the fixture and tensor). */
const FixtureTensor *fixture_get(Fixture *fx, const char *name);
/* The named float32 fixture tensor copied into a new arena tensor (NULL if absent). */
Tensor *fixture_tensor(Fixture *fx, const char *name);
/* Copy "<prefix><name>" into every float32 tensor of ps (CHECKs matching sizes). False (and the
 * running test failed, naming the tensor) when one is absent. */
bool fixture_fill_params(Fixture *fx, ParamStore *ps, const char *prefix);
int fixture_count(const Fixture *fx);
const FixtureTensor *fixture_at(const Fixture *fx, int i);
