/* dist_nccl.h — NCCL collectives on CUDA device memory, for tensor/dist.c (docs/distributed.md,
 * "On several GPUs"). One communicator per process, one rank per GPU, on the CUDA device
 * selected before dist_nccl_init.
 *
 * Implemented by cuda/dist_nccl.cu when the build has NCCL (the Makefile finds nccl.h with CUDA
 * and MPI on; `make NCCL=0` leaves it out), and by tensor/dist_nccl_off.c otherwise, whose
 * functions say so: dist_nccl_compiled() is false and every Status-returning call fails with
 * STATUS_ERR_DEVICE "NCCL is not compiled into this build".
 *
 * Errors of NCCL and CUDA calls come back as STATUS_ERR_DEVICE with a message naming the call,
 * ncclGetErrorString and NCCL's last error text. The caller (tensor/dist.c) makes an error of
 * the communicator's set-up every rank's (dist_agree) and ends the job on an error of a
 * collective. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "tensor/error.h"

/* The bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES), sent from rank 0 to the others. */
#define DIST_NCCL_ID_BYTES 128

bool dist_nccl_compiled(void);
/* "NCCL 2.28.9" (the library loaded), or "not compiled in". */
const char *dist_nccl_summary(void);
/* A new communicator id (ncclGetUniqueId; rank 0 calls it and broadcasts the bytes). */
Status dist_nccl_unique_id(unsigned char id[DIST_NCCL_ID_BYTES]);
/* "host/PCI bus id" of the current CUDA device (cudaDeviceGetPCIBusId): the same GPU gives the
 * same text on every rank whatever CUDA_VISIBLE_DEVICES numbers it, so ranks can see whether
 * two of them share a GPU (NCCL refuses that). */
Status dist_nccl_gpu_key(char *buf, int cap);
/* Join communicator `id` as rank `rank` of `size` on the current CUDA device
 * (ncclCommInitRank; every rank must call it). STATUS_ERR_DEVICE without a GPU. */
Status dist_nccl_init(const unsigned char id[DIST_NCCL_ID_BYTES], int size, int rank);
/* Whether dist_nccl_init succeeded and dist_nccl_destroy has not been called. */
bool dist_nccl_ready(void);
/* x[0..n) (CUDA device memory) becomes the sum over the ranks, in place (ncclAllReduce, the
 * order of additions NCCL's). Waited for on return. */
Status dist_nccl_allreduce_f32(float *x, int64_t n);
/* In place, on the device: rank r's count[r] floats at x + displ[r] are copied to every rank.
 * ncclAllGather when the counts are equal and laid out in rank order, grouped ncclBroadcasts
 * otherwise. Waited for on return. */
Status dist_nccl_allgatherv_f32(float *x, const int64_t *count, const int64_t *displ);
/* Destroy the communicator (nothing when there is none). */
void dist_nccl_destroy(void);
