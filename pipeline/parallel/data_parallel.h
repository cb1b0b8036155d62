#ifndef APIARY_PARALLEL_DATA_PARALLEL_H
#define APIARY_PARALLEL_DATA_PARALLEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/data/dataset.h"
#include "pipeline/nn/net.h"
#include "pipeline/parallel/comm.h"

/* Data-parallel training as in PyTorch DDP without SyncBatchNorm: every
 * process keeps a full copy of the network and takes its own slice of each
 * global batch, and the processes sum their gradients before an identical
 * optimizer step.
 *
 * The global batch is split into world x accumulation micro-batches of equal
 * size. Process r takes micro-batches r * accumulation to (r + 1) *
 * accumulation - 1, a contiguous slice. Batch norm normalises each
 * micro-batch with its own statistics. A job of N processes therefore
 * computes the same gradients as one process with train.accumulation_steps N,
 * from the same micro-batches and the same dropout and augmentation draws,
 * with the sums in a different order.
 *
 * The loss is a mean over the known targets of the whole global batch, as in
 * one process: every micro-batch adds its summed loss, summed gradients and
 * known-target count, and the gradients are divided by the total count after
 * the all-reduce. Dividing by the process count instead would weigh a target
 * more in a micro-batch with more unknown labels.
 *
 * The batch-norm running statistics are averaged over the processes after
 * every step, so every process (and every checkpoint) has the same ones. One
 * process with accumulation updates them after every micro-batch instead, so
 * the statistics of the two differ while the trained weights agree up to
 * rounding. */

typedef struct {
    int world;        /* processes */
    int rank;         /* this process */
    int accumulation; /* micro-batches per process and step */
    int global_batch; /* images per optimizer step over all processes */
    int micro_batch;  /* images per forward pass */
    int chunks;       /* micro-batches per step over all processes */
} ap_dp_layout;

/* Check that global_batch splits into world x accumulation micro-batches of
 * at least 2 images (batch norm needs two) and fill layout. */
ap_status ap_dp_layout_init(ap_dp_layout *layout, int global_batch, int world, int rank,
                            int accumulation, ap_error *err);

/* Position in the global batch of this process's micro-batch `micro`
 * (0 <= micro < accumulation). */
size_t ap_dp_micro_offset(const ap_dp_layout *layout, int micro);

/* Random stream of the dropout of micro-batch `micro` at a global step:
 * distinct for every micro-batch of every step, and equal to step when the
 * global batch is one micro-batch. */
uint64_t ap_dp_dropout_stream(const ap_dp_layout *layout, uint64_t step, int micro);

/* The masked, weighted binary cross-entropy of ap_cpu_bce_loss as a sum
 * instead of a mean: returns the summed loss over known targets, counts them
 * in *known, and writes d(sum)/d(logit) to grad. A sum over micro-batches and
 * processes, divided by the summed known count, is then the mean over the
 * whole global batch even when unknown labels are spread unevenly. */
double ap_dp_bce_loss_sum(const float *logits, const int8_t *targets, const float *pos_weight,
                          int count, int labels, float *grad, long *known);

/* One flat buffer that a single all-reduce sums over the processes:
 *   gradients of every trained tensor (summed over micro-batches),
 *   batch-norm running statistics (averaged over processes),
 *   known-target count, loss sum, stop requests,
 *   one status code per rank (zero when that rank's step succeeded). */
typedef struct {
    float *values;
    size_t grad_count;
    size_t state_count;
    size_t count;
    int world;
    int rank;
} ap_dp_bucket;

ap_status ap_dp_bucket_init(ap_dp_bucket *bucket, ap_net *net, int world, int rank, ap_error *err);
void ap_dp_bucket_free(ap_dp_bucket *bucket);
void ap_dp_bucket_clear(ap_dp_bucket *bucket);
/* Add the gradients of the last backward pass. */
void ap_dp_bucket_add_grads(ap_dp_bucket *bucket, ap_net *net);
void ap_dp_bucket_add_loss(ap_dp_bucket *bucket, double loss_sum, long known);
/* Store this process's running statistics, its stop request and its step outcome. */
void ap_dp_bucket_put_state(ap_dp_bucket *bucket, ap_net *net);
void ap_dp_bucket_set_stop(ap_dp_bucket *bucket, bool stop);
void ap_dp_bucket_set_status(ap_dp_bucket *bucket, ap_status status);

/* Sum the bucket over every process. */
ap_status ap_dp_bucket_reduce(ap_dp_bucket *bucket, ap_comm *comm, ap_error *err);

/* After the reduction: set every grad to the summed gradient over the summed
 * known count (zero when no target was known) and every running statistic to
 * the mean over the processes. */
void ap_dp_bucket_apply(const ap_dp_bucket *bucket, ap_net *net);

/* Mean loss over the known targets of the global batch (0 when none). */
double ap_dp_bucket_loss(const ap_dp_bucket *bucket);
long ap_dp_bucket_known(const ap_dp_bucket *bucket);
/* True when any process was asked to stop. */
bool ap_dp_bucket_stop(const ap_dp_bucket *bucket);
/* The lowest rank whose step failed and its status, or -1 when none did. */
int ap_dp_bucket_failed_rank(const ap_dp_bucket *bucket, ap_status *status);

/* Combine the outcome of one phase over every process, so that all of them
 * go on or all stop. A process whose own status is an error gets it back,
 * with its message left in err. Otherwise the result is AP_OK when every
 * process succeeded, or the status of the lowest failed rank with a message
 * naming that rank and the operation. */
ap_status ap_dp_agree(ap_comm *comm, ap_status status, const char *operation, ap_error *err);

/* Check that every process has the same text (a hash of its settings,
 * data or weights): rank 0 sends its own, and every rank compares it. When
 * any differs, fails with status mismatch on every process, naming the
 * ranks that differ. */
ap_status ap_dp_check_same(ap_comm *comm, const char *text, ap_status mismatch,
                           const char *operation, ap_error *err);

/* SHA-256 of every tensor of net (weights and batch-norm statistics), as hex. */
void ap_dp_net_digest(ap_net *net, char hex[65]);

/* Copy every tensor of net from rank 0 to the other processes. */
ap_status ap_dp_broadcast_net(ap_comm *comm, ap_net *net, ap_error *err);

/* Predict the logits of count images (count x labels) on every process:
 * each predicts its own contiguous share, and one all-reduce sums the
 * shares, which are zero elsewhere. logits must be zeroed by the caller. */
ap_status ap_dp_predict(ap_comm *comm, ap_net *net, const ap_image_set *images,
                        const size_t *indices, size_t count, const float mean[3],
                        const float std[3], float *logits, ap_error *err);

/* Read the process count a checkpoint was written by (metadata world_size;
 * 1 for a checkpoint without it). */
ap_status ap_dp_checkpoint_world(const char *path, long *world, ap_error *err);

/* OpenMP threads for this process: requested when positive, or with several
 * processes on one node an equal share of the cores, since each would
 * otherwise start one thread per core. 0 keeps the OpenMP default. */
int ap_dp_threads(const ap_comm *comm, int requested);

/* Per-image counts of the images this process trained in one epoch, summed
 * over the processes at the end of the epoch to show that the shards were
 * disjoint: every image trained at most once, by one process. */
typedef struct {
    float *counts;
    size_t size;
    long marked; /* images marked by this process since the last clear */
} ap_dp_tally;

ap_status ap_dp_tally_init(ap_dp_tally *tally, size_t image_count, ap_error *err);
void ap_dp_tally_free(ap_dp_tally *tally);
void ap_dp_tally_clear(ap_dp_tally *tally);
void ap_dp_tally_mark(ap_dp_tally *tally, const size_t *images, size_t count);
/* Sum the counts over the processes and check that no image was trained
 * twice and that expected images were trained in all; *distinct receives
 * the number of distinct images. */
ap_status ap_dp_tally_check(ap_dp_tally *tally, ap_comm *comm, long expected, long *distinct,
                            ap_error *err);

#endif
