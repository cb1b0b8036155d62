#include "pipeline/parallel/comm.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "pipeline/parallel/comm_internal.h"

/* NCCL communicators here are non-blocking (ncclConfig_t.blocking = 0), so
 * that no call can hang past the collective timeout: calls return
 * ncclInProgress and the state is polled with ncclCommGetAsyncError. */

struct ap_nccl {
    ap_comm *comm; /* the MPI communicator that shared the id; marked failed on timeout */
    ncclComm_t nccl;
    int device;
    bool aborted;
};

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void pause_briefly(void)
{
    struct timespec pause = {0, 100000}; /* 0.1 ms */
    nanosleep(&pause, NULL);
}

static ap_status nccl_failure(ap_nccl *nccl, ncclResult_t result, const char *call,
                              const char *operation, int line, ap_error *err)
{
    nccl->comm->failed = true;
    return ap_error_set(err, AP_ERR_BACKEND,
                        "NCCL call %s failed in %s at %s:%d on rank %d, device %d: %s (%s)", call,
                        operation, __FILE__, line, nccl->comm->rank, nccl->device,
                        ncclGetErrorString(result), ncclGetLastError(nccl->nccl));
}

static ap_status abort_on_timeout(ap_nccl *nccl, const char *operation, ap_error *err)
{
    if (!nccl->aborted && nccl->nccl != NULL)
        ncclCommAbort(nccl->nccl);
    nccl->aborted = true;
    nccl->nccl = NULL;
    nccl->comm->failed = true;
    return ap_error_set(err, AP_ERR_BACKEND,
                        "%s timed out after %d s on rank %d (device %d); another process stopped "
                        "or hung, so the NCCL communicator was aborted; check the logs of the "
                        "other ranks or raise train.collective_timeout",
                        operation, nccl->comm->timeout_seconds, nccl->comm->rank, nccl->device);
}

/* Poll until the communicator has no call in progress. */
static ap_status settle(ap_nccl *nccl, ncclResult_t result, const char *call, const char *operation,
                        int line, ap_error *err)
{
    double deadline = now_seconds() + nccl->comm->timeout_seconds;
    while (result == ncclInProgress) {
        if (now_seconds() >= deadline)
            return abort_on_timeout(nccl, operation, err);
        pause_briefly();
        ncclResult_t state = ncclSuccess;
        ncclResult_t query = ncclCommGetAsyncError(nccl->nccl, &state);
        result = query != ncclSuccess ? query : state;
    }
    if (result != ncclSuccess)
        return nccl_failure(nccl, result, call, operation, line, err);
    return AP_OK;
}

#define NCCL_SETTLE(nccl, call, operation, err)                                                    \
    do {                                                                                           \
        ap_status nccl_status = settle((nccl), (call), #call, (operation), __LINE__, (err));       \
        if (nccl_status != AP_OK)                                                                  \
            return nccl_status;                                                                    \
    } while (0)

static ap_status create_comm(ap_nccl *nccl, const ncclUniqueId *id, ap_error *err)
{
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    NCCL_SETTLE(
        nccl, ncclCommInitRankConfig(&nccl->nccl, nccl->comm->size, *id, nccl->comm->rank, &config),
        "creating the NCCL communicator", err);
    return AP_OK;
}

static ap_status share_id(ap_nccl *nccl, ncclUniqueId *id, ap_error *err)
{
    memset(id, 0, sizeof(*id));
    ap_status status = AP_OK;
    if (nccl->comm->rank == 0) {
        ncclResult_t result = ncclGetUniqueId(id);
        if (result != ncclSuccess)
            status = nccl_failure(nccl, result, "ncclGetUniqueId", "creating the NCCL id", __LINE__,
                                  err);
    }
    /* Every rank joins the broadcast, so a failure on rank 0 cannot hang the others. */
    char failed = status != AP_OK;
    ap_error ignored = {0};
    ap_status shared = ap_comm_broadcast(nccl->comm, &failed, sizeof(failed), 0,
                                         "sharing the NCCL id", status != AP_OK ? &ignored : err);
    if (status != AP_OK || shared != AP_OK)
        return status != AP_OK ? status : shared;
    if (failed)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "rank 0 could not create the NCCL id; the reason is in its log");
    return ap_comm_broadcast(nccl->comm, id, sizeof(*id), 0, "sharing the NCCL id", err);
}

ap_status ap_nccl_open(ap_comm *comm, int device, ap_nccl **out, ap_error *err)
{
    *out = NULL;
    ap_nccl *nccl = calloc(1, sizeof(*nccl));
    if (nccl == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the NCCL communicator");
    nccl->comm = comm;
    nccl->device = device;
    cudaError_t set = cudaSetDevice(device);
    if (set != cudaSuccess) {
        free(nccl);
        return ap_error_set(err, AP_ERR_BACKEND, "cudaSetDevice(%d) failed on rank %d: %s", device,
                            comm->rank, cudaGetErrorString(set));
    }
    ncclUniqueId id;
    ap_status status = share_id(nccl, &id, err);
    if (status == AP_OK)
        status = create_comm(nccl, &id, err);
    if (status != AP_OK) {
        ap_nccl_close(nccl);
        return status;
    }
    *out = nccl;
    return AP_OK;
}

ap_status ap_nccl_allreduce_sum(ap_nccl *nccl, float *values, size_t count, void *stream,
                                const char *operation, ap_error *err)
{
    if (nccl->nccl == NULL)
        return ap_error_set(err, AP_ERR_BACKEND, "%s: the NCCL communicator was aborted",
                            operation);
    NCCL_SETTLE(nccl,
                ncclAllReduce(values, values, count, ncclFloat32, ncclSum, nccl->nccl,
                              (cudaStream_t)stream),
                operation, err);
    return AP_OK;
}

ap_status ap_nccl_wait(ap_nccl *nccl, void *stream, const char *operation, ap_error *err)
{
    double deadline = now_seconds() + nccl->comm->timeout_seconds;
    for (;;) {
        cudaError_t query = cudaStreamQuery((cudaStream_t)stream);
        if (query == cudaSuccess)
            return AP_OK;
        if (query != cudaErrorNotReady) {
            nccl->comm->failed = true;
            return ap_error_set(err, AP_ERR_BACKEND, "%s failed on rank %d, device %d: %s (%s)",
                                operation, nccl->comm->rank, nccl->device, cudaGetErrorName(query),
                                cudaGetErrorString(query));
        }
        ncclResult_t state = ncclSuccess;
        if (nccl->nccl != NULL && ncclCommGetAsyncError(nccl->nccl, &state) == ncclSuccess &&
            state != ncclSuccess && state != ncclInProgress)
            return nccl_failure(nccl, state, "ncclAllReduce", operation, __LINE__, err);
        if (now_seconds() >= deadline)
            return abort_on_timeout(nccl, operation, err);
        pause_briefly();
    }
}

void ap_nccl_close(ap_nccl *nccl)
{
    if (nccl == NULL)
        return;
    /* A failed job aborts instead of finalising, which could wait on a hung
     * peer. Errors while closing are ignored: nothing could act on them. */
    if (nccl->nccl != NULL && !nccl->comm->failed) {
        ap_error ignored = {0};
        if (settle(nccl, ncclCommFinalize(nccl->nccl), "ncclCommFinalize",
                   "closing the NCCL communicator", __LINE__, &ignored) == AP_OK)
            ncclCommDestroy(nccl->nccl);
        else if (nccl->nccl != NULL)
            ncclCommAbort(nccl->nccl);
    } else if (nccl->nccl != NULL) {
        ncclCommAbort(nccl->nccl);
    }
    free(nccl);
}
