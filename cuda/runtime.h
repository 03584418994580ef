/* runtime.h — the CUDA backend's few controls beyond the device table (C API, implemented in
 * cuda/runtime.cu and cuda/gemm.cu; present only in builds with TRMML_CUDA defined).
 * Callers outside cuda/ reach them through tensor/device.h (device_set_allow_tf32, ...); tests
 * may include this header directly. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA DeviceTable (all kernel entries filled; `available` true when a GPU answers). */
struct DeviceTable;
const struct DeviceTable *cuda_device_table(void);
/* Allow TF32 tensor-core math in cuBLAS GEMMs (off by default; TRMML_ALLOW_TF32=1 at start-up
 * turns it on). Returns the previous setting. */
bool cuda_set_allow_tf32(bool on);
/* Synchronise after every kernel launch and report errors against that launch (DEBUG builds, or
 * TRMML_CUDA_SYNC=1). */
bool cuda_sync_each_launch(void);
/* Caching allocator: return every cached device block to the driver; bytes released. */
size_t cuda_allocator_trim(void);
/* Bytes handed out and bytes held in the cache. */
void cuda_allocator_stats(size_t *live_bytes, size_t *cached_bytes);
/* Destroy the cuBLAS handle (tests and orderly shutdown). */
void cuda_gemm_shutdown(void);

#ifdef __cplusplus
}
#endif
