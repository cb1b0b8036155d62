#ifndef APIARY_PARALLEL_COMM_INTERNAL_H
#define APIARY_PARALLEL_COMM_INTERNAL_H

/* The communicator's fields and its MPI backend, private to pipeline/parallel.
 * comm_mpi.c is compiled only when CMake found MPI (APIARY_HAVE_MPI). */

#include "pipeline/parallel/comm.h"

typedef struct comm_mpi comm_mpi;

struct ap_comm {
    int rank;
    int size;
    int local_rank;
    int local_size;
    int timeout_seconds;
    bool failed;
    comm_mpi *mpi; /* NULL for the single-process communicator */
};

#ifdef APIARY_HAVE_MPI
/* Start MPI and fill comm's ranks and sizes. */
ap_status comm_mpi_open(ap_comm *comm, ap_error *err);
/* Wait for every process, then finalise MPI; free comm->mpi either way. */
ap_status comm_mpi_close(ap_comm *comm, ap_error *err);
ap_status comm_mpi_allreduce_sum(ap_comm *comm, float *values, size_t count, const char *operation,
                                 ap_error *err);
ap_status comm_mpi_broadcast(ap_comm *comm, void *data, size_t size, int root,
                             const char *operation, ap_error *err);
ap_status comm_mpi_barrier(ap_comm *comm, const char *operation, ap_error *err);
_Noreturn void comm_mpi_abort(ap_comm *comm, int exit_code);
#endif

#endif
