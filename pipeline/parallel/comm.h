#ifndef APIARY_PARALLEL_COMM_H
#define APIARY_PARALLEL_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/common/status.h"

/* A communicator between the processes of a data-parallel job, one process
 * per device. Started by an MPI launcher (mpirun), apiary built with MPI uses
 * MPI_COMM_WORLD; otherwise the communicator has one process and every
 * collective returns at once.
 *
 * Every collective waits at most the timeout given to ap_comm_open for the
 * other processes. When the wait runs out, the call fails with AP_ERR_BACKEND
 * and a message naming the ranks that never reached that collective or
 * stopped responding in it. The communicator is then marked failed, because
 * the job cannot continue, so the caller should report the error and call
 * ap_comm_abort. Every process must call the same collectives in the same
 * order with the same sizes. */

typedef struct ap_comm ap_comm;

/* Open the communicator of this process: MPI_Init_thread when the
 * environment shows an MPI launcher (OMPI_COMM_WORLD_SIZE, PMI_SIZE or
 * PMIX_RANK), else a single-process communicator without MPI, so a plain run
 * pays nothing. Fails when a launcher started several processes but apiary
 * was built without MPI. */
ap_status ap_comm_open(int timeout_seconds, ap_comm **out, ap_error *err);

/* Close the communicator. After a clean run every process waits for the
 * others and MPI is finalised. After a failed collective MPI is neither
 * finalised nor given back its buffers, because MPI_Finalize could wait
 * forever for a hung process. */
ap_status ap_comm_close(ap_comm *comm, ap_error *err);

int ap_comm_rank(const ap_comm *comm);
int ap_comm_size(const ap_comm *comm);
/* Rank and process count on this node, to pick a device or a share of the cores. */
int ap_comm_local_rank(const ap_comm *comm);
int ap_comm_local_size(const ap_comm *comm);
/* "mpi" or "single". */
const char *ap_comm_backend(const ap_comm *comm);
/* True after a collective failed or timed out. */
bool ap_comm_failed(const ap_comm *comm);

/* Replace values on every process by their element-wise sum over all
 * processes. operation names the call in messages ("gradient all-reduce"). */
ap_status ap_comm_allreduce_sum(ap_comm *comm, float *values, size_t count, const char *operation,
                                ap_error *err);

/* Copy size bytes of data from process root to every other process. */
ap_status ap_comm_broadcast(ap_comm *comm, void *data, size_t size, int root, const char *operation,
                            ap_error *err);

/* Wait until every process has reached this call. */
ap_status ap_comm_barrier(ap_comm *comm, const char *operation, ap_error *err);

/* End every process of the job with exit_code (MPI_Abort), or only this one
 * for a single-process communicator. Does not return. */
_Noreturn void ap_comm_abort(ap_comm *comm, int exit_code);

/* Rank and process count that an MPI launcher put in the environment, read
 * without starting MPI: 0 and 1 when no launcher started this process. A
 * value that is not a number counts as absent. */
int ap_comm_launcher_rank(void);
int ap_comm_launcher_size(void);

#ifdef APIARY_HAVE_NCCL
/* NCCL communicator over the GPUs of the job's processes, one GPU each
 * (comm_nccl.c, built when CMake found NCCL and MPI). Rank 0 creates the
 * NCCL unique id and ap_comm_broadcast shares it. Every wait is bounded by
 * the ap_comm's collective timeout: when it runs out, the NCCL communicator
 * is aborted (ncclCommAbort), comm is marked failed and the error names
 * this rank and its device. stream arguments are cudaStream_t values. */
typedef struct ap_nccl ap_nccl;

ap_status ap_nccl_open(ap_comm *comm, int device, ap_nccl **out, ap_error *err);
/* Queue an in-place sum of count floats of device memory on stream. */
ap_status ap_nccl_allreduce_sum(ap_nccl *nccl, float *values, size_t count, void *stream,
                                const char *operation, ap_error *err);
/* Wait until the work queued on stream has finished. */
ap_status ap_nccl_wait(ap_nccl *nccl, void *stream, const char *operation, ap_error *err);
void ap_nccl_close(ap_nccl *nccl);
#endif

#endif
