/* parity.h — the table-driven kernel parity harness of test/test_cuda.c, for other backends.
 *
 * The cases (one per kernel behaviour, together calling every kernel of tensor/kernels.def) and
 * their runner live in test_cuda.c; the CUDA tests run them per family, the guard device's test
 * (test/test_guard.c) all at once. */
#pragma once
#include <stdbool.h>

#include "tensor/tensor.h"

/* Run every parity case on `ref` and on `got` and compare what they wrote: bit for bit when
 * `exact` (two backends running the same kernels), else within each case's tolerance. Also fails
 * the running test when some kernel is called by no case. */
void parity_run_all(DeviceKind ref, DeviceKind got, bool exact);
