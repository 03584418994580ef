/* dist_nccl_off.c — tensor/dist_nccl.h in a build without NCCL (make NCCL=0, or no nccl.h, CUDA
 * or MPI at build time): no communicator can be made, and every call that would need one says
 * that NCCL is not compiled in. cuda/dist_nccl.cu replaces this file in a build with NCCL. */
#include "tensor/dist_nccl.h"

static Status not_built(void) {
    return error_set(STATUS_ERR_DEVICE, "NCCL is not compiled into this build (make NCCL=0, or "
                     "no nccl.h, CUDA or MPI at build time); CUDA tensors' collectives go through "
                     "host memory and MPI");
}

bool dist_nccl_compiled(void) { return false; }
const char *dist_nccl_summary(void) { return "not compiled in"; }
Status dist_nccl_unique_id(unsigned char id[DIST_NCCL_ID_BYTES]) {
    (void)id;
    return not_built();
}
Status dist_nccl_gpu_key(char *buf, int cap) {
    (void)buf, (void)cap;
    return not_built();
}
Status dist_nccl_init(const unsigned char id[DIST_NCCL_ID_BYTES], int size, int rank) {
    (void)id, (void)size, (void)rank;
    return not_built();
}
bool dist_nccl_ready(void) { return false; }
Status dist_nccl_allreduce_f32(float *x, int64_t n) {
    (void)x, (void)n;
    return not_built();
}
Status dist_nccl_allgatherv_f32(float *x, const int64_t *count, const int64_t *displ) {
    (void)x, (void)count, (void)displ;
    return not_built();
}
void dist_nccl_destroy(void) {}
