#include "pipeline/parallel/comm.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "pipeline/parallel/comm_internal.h"

/* Reads a non-negative integer from the environment, or returns -1 when the
 * variable is unset or does not contain one. */
static long read_env_count(const char *name)
{
    const char *text = getenv(name);
    if (text == NULL || text[0] == '\0')
        return -1;
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < 0 || value > INT_MAX)
        return -1;
    return value;
}

int ap_comm_launcher_rank(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        long value = read_env_count(names[i]);
        if (value >= 0)
            return (int)value;
    }
    return 0;
}

int ap_comm_launcher_size(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        long value = read_env_count(names[i]);
        if (value >= 1)
            return (int)value;
    }
    return 1;
}

/* Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE, MPICH's and Slurm's PMI sets
 * PMI_SIZE, and PMIx launchers (srun --mpi=pmix, prterun) set PMIX_RANK. */
static bool started_by_launcher(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL ||
           getenv("PMIX_RANK") != NULL;
}

static ap_status open_backend(ap_comm *comm, ap_error *err)
{
#ifdef APIARY_HAVE_MPI
    if (started_by_launcher())
        return comm_mpi_open(comm, err);
#else
    if (started_by_launcher() && ap_comm_launcher_size() > 1)
        return ap_error_set(err, AP_ERR_INVALID,
                            "an MPI launcher started %d processes, but this apiary was built "
                            "without MPI, so each would train alone; rebuild with "
                            "libopenmpi-dev installed, or start one process",
                            ap_comm_launcher_size());
#endif
    return AP_OK;
}

ap_status ap_comm_open(int timeout_seconds, ap_comm **out, ap_error *err)
{
    *out = NULL;
    if (timeout_seconds < 1)
        return ap_error_set(err, AP_ERR_INVALID, "collective timeout %d s is not positive",
                            timeout_seconds);
    ap_comm *comm = calloc(1, sizeof(*comm));
    if (comm == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the communicator");
    comm->size = 1;
    comm->local_size = 1;
    comm->timeout_seconds = timeout_seconds;
    ap_status status = open_backend(comm, err);
    if (status != AP_OK) {
        free(comm);
        return status;
    }
    *out = comm;
    return AP_OK;
}

ap_status ap_comm_close(ap_comm *comm, ap_error *err)
{
    if (comm == NULL)
        return AP_OK;
    ap_status status = AP_OK;
#ifdef APIARY_HAVE_MPI
    if (comm->mpi != NULL)
        status = comm_mpi_close(comm, err);
#endif
    free(comm);
    return status;
}

int ap_comm_rank(const ap_comm *comm)
{
    return comm->rank;
}

int ap_comm_size(const ap_comm *comm)
{
    return comm->size;
}

int ap_comm_local_rank(const ap_comm *comm)
{
    return comm->local_rank;
}

int ap_comm_local_size(const ap_comm *comm)
{
    return comm->local_size;
}

const char *ap_comm_backend(const ap_comm *comm)
{
    return comm->mpi != NULL ? "mpi" : "single";
}

bool ap_comm_failed(const ap_comm *comm)
{
    return comm->failed;
}

ap_status ap_comm_allreduce_sum(ap_comm *comm, float *values, size_t count, const char *operation,
                                ap_error *err)
{
#ifdef APIARY_HAVE_MPI
    if (comm->mpi != NULL)
        return comm_mpi_allreduce_sum(comm, values, count, operation, err);
#endif
    return AP_OK;
}

ap_status ap_comm_broadcast(ap_comm *comm, void *data, size_t size, int root, const char *operation,
                            ap_error *err)
{
    if (root < 0 || root >= comm->size)
        return ap_error_set(err, AP_ERR_INVALID, "%s: root rank %d is not in a job of %d",
                            operation, root, comm->size);
#ifdef APIARY_HAVE_MPI
    if (comm->mpi != NULL)
        return comm_mpi_broadcast(comm, data, size, root, operation, err);
#endif
    return AP_OK;
}

ap_status ap_comm_barrier(ap_comm *comm, const char *operation, ap_error *err)
{
#ifdef APIARY_HAVE_MPI
    if (comm->mpi != NULL)
        return comm_mpi_barrier(comm, operation, err);
#endif
    return AP_OK;
}

_Noreturn void ap_comm_abort(ap_comm *comm, int exit_code)
{
#ifdef APIARY_HAVE_MPI
    if (comm != NULL && comm->mpi != NULL)
        comm_mpi_abort(comm, exit_code);
#endif
    exit(exit_code);
}
