#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/parallel/comm_internal.h"

/* Naming the rank that a timed-out collective waits for: before each
 * collective, every process sends a note carrying the collective's sequence
 * number to every other process on a separate communicator, and sends it
 * again every HEARTBEAT_SECONDS while it waits. A collective that times out
 * then names the ranks whose latest note is older (they never reached it)
 * and those that reached it but fell silent (stopped inside it). That costs
 * size - 1 small messages per collective and process, which is negligible
 * next to a gradient all-reduce for the tens of processes a CPU job runs. */
#define NOTE_TAG          7
#define HEARTBEAT_SECONDS 0.5
#define SILENT_SECONDS    2.0

/* MPI counts are int; larger buffers go in pieces of this many elements. */
#define PIECE_MAX (1 << 28)

struct comm_mpi {
    MPI_Comm world;    /* duplicate of MPI_COMM_WORLD that returns errors */
    MPI_Comm notes;    /* duplicate for the arrival notes */
    long sequence;     /* collectives started by this process */
    long *arrived;     /* per rank: the latest sequence number it announced */
    double *note_time; /* per rank: when its latest note arrived (monotonic seconds) */
    long *inbox;       /* per rank: receive buffer of its next note */
    MPI_Request *receives;
    long *outbox; /* per rank: send buffer of the note to it */
    MPI_Request *sends;
    bool initialized_here; /* MPI_Init was called by this communicator */
};

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static ap_status mpi_failure(ap_comm *comm, int code, const char *operation, ap_error *err)
{
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, text, &length) != MPI_SUCCESS)
        snprintf(text, sizeof(text), "error code %d", code);
    comm->failed = true;
    return ap_error_set(err, AP_ERR_BACKEND, "%s failed on rank %d: MPI: %s", operation, comm->rank,
                        text);
}

static ap_status post_receive(comm_mpi *mpi, int peer)
{
    return MPI_Irecv(&mpi->inbox[peer], 1, MPI_LONG, peer, NOTE_TAG, mpi->notes,
                     &mpi->receives[peer]);
}

/* Record the notes that have arrived and wait for the next ones. */
static void collect_notes(ap_comm *comm)
{
    comm_mpi *mpi = comm->mpi;
    for (;;) {
        int index = MPI_UNDEFINED, done = 0;
        if (MPI_Testany(comm->size, mpi->receives, &index, &done, MPI_STATUS_IGNORE) !=
                MPI_SUCCESS ||
            !done || index == MPI_UNDEFINED)
            return;
        mpi->arrived[index] = mpi->inbox[index];
        mpi->note_time[index] = now_seconds();
        if (post_receive(mpi, index) != MPI_SUCCESS)
            return;
    }
}

/* Tell every other process which collective this one is in. A peer that has
 * not taken the previous note yet is stuck, so it gets none. */
static void send_notes(ap_comm *comm)
{
    comm_mpi *mpi = comm->mpi;
    for (int peer = 0; peer < comm->size; peer++) {
        if (peer == comm->rank)
            continue;
        int sent = 0;
        if (MPI_Test(&mpi->sends[peer], &sent, MPI_STATUS_IGNORE) != MPI_SUCCESS || !sent)
            continue;
        mpi->outbox[peer] = mpi->sequence;
        MPI_Isend(&mpi->outbox[peer], 1, MPI_LONG, peer, NOTE_TAG, mpi->notes, &mpi->sends[peer]);
    }
}

static void announce(ap_comm *comm)
{
    comm->mpi->sequence++;
    send_notes(comm);
}

/* Append rank to a comma-separated list. */
static void list_rank(char *list, size_t size, int *count, int rank)
{
    size_t used = strlen(list);
    if (used < size)
        snprintf(list + used, size - used, "%s%d", *count > 0 ? ", " : "", rank);
    (*count)++;
}

/* longest_gap is the longest time between two polls of this process. */
static ap_status timeout_failure(ap_comm *comm, const char *operation, double longest_gap,
                                 ap_error *err)
{
    comm_mpi *mpi = comm->mpi;
    char missing[256] = "", silent[256] = "";
    int missing_count = 0, silent_count = 0;
    double now = now_seconds();
    for (int peer = 0; peer < comm->size; peer++) {
        if (peer == comm->rank)
            continue;
        if (mpi->arrived[peer] < mpi->sequence)
            list_rank(missing, sizeof(missing), &missing_count, peer);
        else if (now - mpi->note_time[peer] > SILENT_SECONDS)
            list_rank(silent, sizeof(silent), &silent_count, peer);
    }
    comm->failed = true;
    if (longest_gap > SILENT_SECONDS)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "%s timed out after %d s on rank %d, which itself did not run for "
                            "%.1f s of the wait (stopped, or starved of CPU time)",
                            operation, comm->timeout_seconds, comm->rank, longest_gap);
    if (missing_count > 0)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "%s timed out after %d s on rank %d: rank%s %s never reached it "
                            "(crashed, hung, or still busy with earlier work)",
                            operation, comm->timeout_seconds, comm->rank,
                            missing_count > 1 ? "s" : "", missing);
    if (silent_count > 0)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "%s timed out after %d s on rank %d: rank%s %s reached it but stopped "
                            "responding (hung or stopped)",
                            operation, comm->timeout_seconds, comm->rank,
                            silent_count > 1 ? "s" : "", silent);
    return ap_error_set(err, AP_ERR_BACKEND,
                        "%s timed out after %d s on rank %d although every rank reached it and "
                        "responds; the connection between the processes may have failed",
                        operation, comm->timeout_seconds, comm->rank);
}

/* Spin briefly, since the other processes usually arrive within
 * microseconds, then sleep so that a long wait does not hold a core. */
static void pause_after(long polls)
{
    if (polls < 200)
        return;
    struct timespec pause = {0, polls < 2200 ? 50 * 1000 : 1000 * 1000};
    nanosleep(&pause, NULL);
}

static ap_status wait_for(ap_comm *comm, MPI_Request *request, const char *operation, ap_error *err)
{
    double start = now_seconds(), beat = start, last = start, longest_gap = 0.0;
    for (long polls = 0;; polls++) {
        int done = 0;
        int code = MPI_Test(request, &done, MPI_STATUS_IGNORE);
        if (code != MPI_SUCCESS)
            return mpi_failure(comm, code, operation, err);
        collect_notes(comm);
        if (done)
            return AP_OK;
        double now = now_seconds();
        longest_gap = now - last > longest_gap ? now - last : longest_gap;
        last = now;
        if (now - start >= comm->timeout_seconds)
            return timeout_failure(comm, operation, longest_gap, err);
        if (now - beat >= HEARTBEAT_SECONDS) {
            send_notes(comm);
            beat = now;
        }
        pause_after(polls);
    }
}

static ap_status check_usable(ap_comm *comm, const char *operation, ap_error *err)
{
    if (comm->failed)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "%s: an earlier collective failed, so the processes are out of step",
                            operation);
    return AP_OK;
}

ap_status comm_mpi_allreduce_sum(ap_comm *comm, float *values, size_t count, const char *operation,
                                 ap_error *err)
{
    ap_status status = check_usable(comm, operation, err);
    for (size_t start = 0; start < count && status == AP_OK; start += PIECE_MAX) {
        int piece = (int)(count - start < PIECE_MAX ? count - start : PIECE_MAX);
        MPI_Request request;
        announce(comm);
        int code = MPI_Iallreduce(MPI_IN_PLACE, values + start, piece, MPI_FLOAT, MPI_SUM,
                                  comm->mpi->world, &request);
        if (code != MPI_SUCCESS)
            return mpi_failure(comm, code, operation, err);
        status = wait_for(comm, &request, operation, err);
    }
    return status;
}

ap_status comm_mpi_broadcast(ap_comm *comm, void *data, size_t size, int root,
                             const char *operation, ap_error *err)
{
    ap_status status = check_usable(comm, operation, err);
    for (size_t start = 0; start < size && status == AP_OK; start += PIECE_MAX) {
        int piece = (int)(size - start < PIECE_MAX ? size - start : PIECE_MAX);
        MPI_Request request;
        announce(comm);
        int code =
            MPI_Ibcast((char *)data + start, piece, MPI_BYTE, root, comm->mpi->world, &request);
        if (code != MPI_SUCCESS)
            return mpi_failure(comm, code, operation, err);
        status = wait_for(comm, &request, operation, err);
    }
    return status;
}

ap_status comm_mpi_barrier(ap_comm *comm, const char *operation, ap_error *err)
{
    ap_status status = check_usable(comm, operation, err);
    if (status != AP_OK)
        return status;
    MPI_Request request;
    announce(comm);
    int code = MPI_Ibarrier(comm->mpi->world, &request);
    if (code != MPI_SUCCESS)
        return mpi_failure(comm, code, operation, err);
    return wait_for(comm, &request, operation, err);
}

static ap_status start_mpi(comm_mpi *mpi, ap_error *err)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "MPI was already finalised in this process; open the communicator "
                            "only once");
    if (initialized)
        return AP_OK;
    /* Only the main thread calls MPI; OpenMP threads never do. */
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "MPI_Init_thread failed; check that mpirun started this process");
    mpi->initialized_here = true;
    return AP_OK;
}

static ap_status find_ranks(ap_comm *comm, ap_error *err)
{
    comm_mpi *mpi = comm->mpi;
    int code = MPI_Comm_dup(MPI_COMM_WORLD, &mpi->world);
    if (code == MPI_SUCCESS)
        code = MPI_Comm_set_errhandler(mpi->world, MPI_ERRORS_RETURN);
    if (code == MPI_SUCCESS)
        code = MPI_Comm_dup(mpi->world, &mpi->notes);
    if (code == MPI_SUCCESS)
        code = MPI_Comm_rank(mpi->world, &comm->rank);
    if (code == MPI_SUCCESS)
        code = MPI_Comm_size(mpi->world, &comm->size);
    MPI_Comm node = MPI_COMM_NULL;
    if (code == MPI_SUCCESS)
        code =
            MPI_Comm_split_type(mpi->world, MPI_COMM_TYPE_SHARED, comm->rank, MPI_INFO_NULL, &node);
    if (code == MPI_SUCCESS)
        code = MPI_Comm_rank(node, &comm->local_rank);
    if (code == MPI_SUCCESS)
        code = MPI_Comm_size(node, &comm->local_size);
    if (node != MPI_COMM_NULL)
        MPI_Comm_free(&node);
    if (code != MPI_SUCCESS)
        return mpi_failure(comm, code, "setting up the MPI communicator", err);
    return AP_OK;
}

static ap_status allocate_notes(ap_comm *comm, ap_error *err)
{
    comm_mpi *mpi = comm->mpi;
    size_t size = (size_t)comm->size;
    mpi->arrived = calloc(size, sizeof(long));
    mpi->note_time = calloc(size, sizeof(double));
    mpi->inbox = calloc(size, sizeof(long));
    mpi->outbox = calloc(size, sizeof(long));
    mpi->receives = malloc(size * sizeof(MPI_Request));
    mpi->sends = malloc(size * sizeof(MPI_Request));
    if (!mpi->arrived || !mpi->note_time || !mpi->inbox || !mpi->outbox || !mpi->receives ||
        !mpi->sends)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the state of %d MPI processes",
                            comm->size);
    for (int peer = 0; peer < comm->size; peer++) {
        mpi->receives[peer] = MPI_REQUEST_NULL;
        mpi->sends[peer] = MPI_REQUEST_NULL;
        mpi->note_time[peer] = now_seconds();
        if (peer == comm->rank)
            continue;
        int code = post_receive(mpi, peer);
        if (code != MPI_SUCCESS)
            return mpi_failure(comm, code, "posting the arrival notes", err);
    }
    return AP_OK;
}

static void free_state(comm_mpi *mpi)
{
    free(mpi->arrived);
    free(mpi->note_time);
    free(mpi->inbox);
    free(mpi->outbox);
    free(mpi->receives);
    free(mpi->sends);
    free(mpi);
}

ap_status comm_mpi_open(ap_comm *comm, ap_error *err)
{
    comm->mpi = calloc(1, sizeof(*comm->mpi));
    if (comm->mpi == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the MPI communicator");
    comm->mpi->world = MPI_COMM_NULL;
    comm->mpi->notes = MPI_COMM_NULL;
    ap_status status = start_mpi(comm->mpi, err);
    if (status == AP_OK)
        status = find_ranks(comm, err);
    if (status == AP_OK)
        status = allocate_notes(comm, err);
    if (status != AP_OK) {
        /* Other processes may be waiting in MPI; only abort ends them all. */
        comm->failed = true;
    }
    return status;
}

/* Every process sends one note per collective, and all of them ran the same
 * collectives, so after the closing barrier each peer's notes up to this
 * sequence number are on their way. Taking them all lets every send finish. */
static ap_status drain_notes(ap_comm *comm, ap_error *err)
{
    comm_mpi *mpi = comm->mpi;
    double deadline = now_seconds() + comm->timeout_seconds;
    for (long polls = 0;; polls++) {
        collect_notes(comm);
        int received = 1, sent = 0;
        for (int peer = 0; peer < comm->size; peer++)
            if (peer != comm->rank && mpi->arrived[peer] < mpi->sequence)
                received = 0;
        MPI_Testall(comm->size, mpi->sends, &sent, MPI_STATUSES_IGNORE);
        if (received && sent)
            break;
        if (now_seconds() >= deadline)
            return timeout_failure(comm, "closing the communicator", 0.0, err);
        pause_after(polls);
    }
    for (int peer = 0; peer < comm->size; peer++) {
        if (mpi->receives[peer] == MPI_REQUEST_NULL)
            continue;
        MPI_Cancel(&mpi->receives[peer]);
        MPI_Wait(&mpi->receives[peer], MPI_STATUS_IGNORE);
    }
    return AP_OK;
}

ap_status comm_mpi_close(ap_comm *comm, ap_error *err)
{
    comm_mpi *mpi = comm->mpi;
    ap_status status = AP_OK;
    if (!comm->failed)
        status = comm_mpi_barrier(comm, "closing the communicator", err);
    if (status == AP_OK)
        status = drain_notes(comm, err);
    if (status != AP_OK || comm->failed) {
        /* MPI may still write into the note buffers, and MPI_Finalize may
         * wait for a hung process, so both are left alone. */
        comm->mpi = NULL;
        return status;
    }
    MPI_Comm_free(&mpi->notes);
    MPI_Comm_free(&mpi->world);
    if (mpi->initialized_here)
        MPI_Finalize();
    free_state(mpi);
    comm->mpi = NULL;
    return AP_OK;
}

_Noreturn void comm_mpi_abort(ap_comm *comm, int exit_code)
{
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    exit(exit_code);
}
