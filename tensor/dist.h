/* dist.h — the processes of one job: several ranks under MPI when the program was launched by
 * mpirun or srun, one process otherwise (docs/distributed.md).
 *
 * Built with MPI (the Makefile finds mpicc; `make MPI=0` leaves it out), dist_init calls
 * MPI_Init only when a launcher's environment says the process is one rank of a job
 * (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK), so a plain run starts as fast and as quietly as a
 * build without MPI. Without MPI, or before dist_init, every function below is the one-process
 * case: rank 0 of 1, collectives return their input.
 *
 * Determinism. dist_allreduce_sum_* adds the ranks' contributions in rank order, 0 first, the
 * same on every rank and for any network or process placement: each rank owns one slice of the
 * vector, receives that slice from every rank (MPI_Alltoallv), sums it in rank order, and the
 * slices are gathered back (MPI_Allgatherv). It moves 2 (N-1)/N of the vector per rank, as a
 * ring all-reduce does, so no MPI reduction (whose order the standard leaves open) is used.
 *
 * CUDA tensors. dist_allreduce_tensor and dist_allgather_rows run NCCL's collectives on the device
 * pointer when dist_device_init made a communicator (a build with NCCL, every rank on CUDA, and
 * TRMML_NCCL not 0); otherwise they stage the tensor through host memory and use the rank-order
 * sum above. NCCL's sum has its own order of additions (fixed for one communicator, so every rank
 * holds the same bits run after run, but not the rank-order sum's bits).
 *
 * Failures. A collective is entered by every rank or by none, so a rank that fails must not
 * simply return: dist_agree, at the points where a rank may fail alone (a file it reads, an
 * image it decodes), makes the first failing rank's status and message every rank's; a failure
 * that no dist_agree shared ends the job with dist_abort (tools/main.c). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"
#include "tensor/tensor.h"

/* Start: MPI_Init_thread (funneled: only the main thread calls MPI, OpenMP inside ranks) when
 * launched as a rank of a job of more than one. A build without MPI launched as such a rank is
 * STATUS_ERR_USAGE (the ranks would each run the whole job and write the same files). */
Status dist_init(int *argc, char ***argv);
/* MPI_Finalize when dist_init started MPI; nothing otherwise. */
void dist_finalize(void);
/* End the whole job with `code` (MPI_Abort), or exit(code) in one process. */
TRMML_NORETURN void dist_abort(int code);

int dist_rank(void);
int dist_size(void);
bool dist_is_root(void); /* rank 0: the rank that prints and writes */
/* "Open MPI v4.1.4, 2 ranks", "MPI compiled in, one process (not launched by mpirun)", or
 * "not compiled in". */
const char *dist_summary(void);

/* The share [lo, hi) of n items of `rank` (n*rank/size .. n*(rank+1)/size: contiguous, in rank
 * order, sizes differing by at most one; empty when n < size for some ranks). */
void dist_share(int64_t n, int rank, int64_t *lo, int64_t *hi);

void dist_barrier(void);
/* x[0..n) becomes the sum over ranks, added in rank order (bit-identical on every rank). */
void dist_allreduce_sum_f32(float *x, int64_t n);
void dist_allreduce_sum_f64(double *x, int64_t n);
/* The same for a float32 tensor on any device (staged through host memory with the device
 * table's copies when it is not on the CPU). */
void dist_allreduce_tensor(Tensor *t);
/* The rank's own `bytes` at mine, every rank's (bytes_of[r] each, known to all) concatenated in
 * rank order into all (sum bytes_of). mine may lie inside all at its place (in place). */
void dist_allgatherv(const void *mine, size_t bytes, void *all, const size_t *bytes_of);
/* The same, into all on rank 0 only (all is not read elsewhere and may be NULL). */
void dist_gatherv(const void *mine, size_t bytes, void *all, const size_t *bytes_of);
/* out[r] = rank r's v, on every rank. */
void dist_allgather_i64(int64_t v, int64_t *out);
/* Rows: t (B, ...) float32 holds this rank's rows [lo, hi) of dist_share(B); afterwards it holds
 * every rank's rows (CPU in place, other devices staged through host memory). */
void dist_allgather_rows(Tensor *t);
/* bytes at buf from rank `root` to every rank. */
void dist_bcast(void *buf, size_t bytes, int root);

/* Once the command chose its device (tools/flags.c, tool_device_select), on every rank: in a
 * build with NCCL, when the job has several ranks, all on CUDA, each on a GPU of its own (host
 * and PCI bus id), and TRMML_NCCL is not 0, makes the job's NCCL communicator (its id from
 * rank 0 through MPI) on the current GPU. Collective (a no-op after the first call); a failure
 * on any rank is every rank's, with a HINT. One process, or a build without NCCL: nothing. */
Status dist_device_init(DeviceKind dev);
/* This rank's index among the ranks of its node, from the launcher (OMPI_COMM_WORLD_LOCAL_RANK,
 * SLURM_LOCALID, MPI_LOCALRANKID); -1 in one process or when the launcher does not say. */
int dist_local_rank(void);
/* Force the host path (through host memory and MPI) for CUDA tensors' collectives, or allow
 * NCCL again; every rank must make the same call (dist-check compares the two paths). */
void dist_force_host_path(bool on);
/* "nccl" or "mpi": the path the collectives of t take now. */
const char *dist_tensor_path(const Tensor *t);

/* Collective: STATUS_OK when st is OK on every rank; otherwise, on every rank, the status of
 * the lowest failing rank with its message as the last error, prefixed "rank R: ". One
 * process: st unchanged. */
Status dist_agree(Status st);
/* Whether the last failure returned by dist_agree was shared by every rank (so that each rank
 * may end normally, and only rank 0 print it). */
bool dist_failure_agreed(void);
