#include "pipeline/parallel/data_parallel.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/bce_loss.h"
#include "pipeline/common/fsutil.h"
#include "pipeline/train/checkpoint.h"
#include "pipeline/train/predict.h"

/* Fields after the gradients and running statistics of a bucket. */
enum { FIELD_KNOWN = 0, FIELD_LOSS, FIELD_STOP, FIELD_COUNT };

/* Maximum length of the text ap_dp_check_same compares, terminator included. */
#define SAME_TEXT_MAX 512

ap_status ap_dp_layout_init(ap_dp_layout *layout, int global_batch, int world, int rank,
                            int accumulation, ap_error *err)
{
    memset(layout, 0, sizeof(*layout));
    if (world < 1 || rank < 0 || rank >= world || accumulation < 1 || global_batch < 1)
        return ap_error_set(err, AP_ERR_INVALID,
                            "invalid data-parallel layout: batch %d, rank %d of %d, %d "
                            "accumulation steps",
                            global_batch, rank, world, accumulation);
    int chunks = world * accumulation;
    if (global_batch % chunks != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "train.batch_size %d does not split evenly into %d micro-batches "
                            "(%d processes x train.accumulation_steps %d); set it to a multiple "
                            "of %d, such as %d",
                            global_batch, chunks, world, accumulation, chunks,
                            (global_batch / chunks + 1) * chunks);
    int micro_batch = global_batch / chunks;
    if (micro_batch < 2)
        return ap_error_set(err, AP_ERR_INVALID,
                            "train.batch_size %d leaves %d image per micro-batch (%d "
                            "processes x train.accumulation_steps %d), but batch norm needs 2; "
                            "raise train.batch_size to at least %d",
                            global_batch, micro_batch, world, accumulation, 2 * chunks);
    layout->world = world;
    layout->rank = rank;
    layout->accumulation = accumulation;
    layout->global_batch = global_batch;
    layout->micro_batch = micro_batch;
    layout->chunks = chunks;
    return AP_OK;
}

size_t ap_dp_micro_offset(const ap_dp_layout *layout, int micro)
{
    size_t chunk = (size_t)layout->rank * (size_t)layout->accumulation + (size_t)micro;
    return chunk * (size_t)layout->micro_batch;
}

uint64_t ap_dp_dropout_stream(const ap_dp_layout *layout, uint64_t step, int micro)
{
    uint64_t chunk = (uint64_t)layout->rank * (uint64_t)layout->accumulation + (uint64_t)micro;
    return step * (uint64_t)layout->chunks + chunk;
}

double ap_dp_bce_loss_sum(const float *logits, const int8_t *targets, const float *pos_weight,
                          int count, int labels, float *grad, long *known)
{
    size_t total = (size_t)count * (size_t)labels;
    double loss_sum = 0.0;
    long known_count = 0;
    for (size_t i = 0; i < total; i++) {
        int target = targets[i];
        float element_grad = 0.0f;
        if (target == 0 || target == 1) {
            float weight = pos_weight != NULL ? pos_weight[i % (size_t)labels] : 1.0f;
            loss_sum += ap_bce_element(logits[i], target, weight, &element_grad);
            known_count++;
        }
        grad[i] = element_grad;
    }
    *known = known_count;
    return loss_sum;
}

static float *bucket_fields(const ap_dp_bucket *bucket)
{
    return bucket->values + bucket->grad_count + bucket->state_count;
}

ap_status ap_dp_bucket_init(ap_dp_bucket *bucket, ap_net *net, int world, int rank, ap_error *err)
{
    memset(bucket, 0, sizeof(*bucket));
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        const ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role == AP_TENSOR_STATE)
            bucket->state_count += tensor->size;
        else
            bucket->grad_count += tensor->size;
    }
    bucket->world = world;
    bucket->rank = rank;
    bucket->count = bucket->grad_count + bucket->state_count + FIELD_COUNT + (size_t)world;
    bucket->values = calloc(bucket->count, sizeof(float));
    if (bucket->values == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the gradient bucket of %zu values",
                            bucket->count);
    return AP_OK;
}

void ap_dp_bucket_free(ap_dp_bucket *bucket)
{
    free(bucket->values);
    memset(bucket, 0, sizeof(*bucket));
}

void ap_dp_bucket_clear(ap_dp_bucket *bucket)
{
    memset(bucket->values, 0, bucket->count * sizeof(float));
}

void ap_dp_bucket_add_grads(ap_dp_bucket *bucket, ap_net *net)
{
    float *out = bucket->values;
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        const ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        for (size_t j = 0; j < tensor->size; j++)
            out[j] += tensor->grad[j];
        out += tensor->size;
    }
}

void ap_dp_bucket_add_loss(ap_dp_bucket *bucket, double loss_sum, long known)
{
    float *fields = bucket_fields(bucket);
    fields[FIELD_KNOWN] += (float)known;
    fields[FIELD_LOSS] += (float)loss_sum;
}

void ap_dp_bucket_put_state(ap_dp_bucket *bucket, ap_net *net)
{
    float *out = bucket->values + bucket->grad_count;
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        const ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role != AP_TENSOR_STATE)
            continue;
        memcpy(out, tensor->data, tensor->size * sizeof(float));
        out += tensor->size;
    }
}

void ap_dp_bucket_set_stop(ap_dp_bucket *bucket, bool stop)
{
    bucket_fields(bucket)[FIELD_STOP] = stop ? 1.0f : 0.0f;
}

void ap_dp_bucket_set_status(ap_dp_bucket *bucket, ap_status status)
{
    bucket_fields(bucket)[FIELD_COUNT + bucket->rank] = (float)status;
}

ap_status ap_dp_bucket_reduce(ap_dp_bucket *bucket, ap_comm *comm, ap_error *err)
{
    return ap_comm_allreduce_sum(comm, bucket->values, bucket->count, "gradient all-reduce", err);
}

void ap_dp_bucket_apply(const ap_dp_bucket *bucket, ap_net *net)
{
    float known = bucket_fields(bucket)[FIELD_KNOWN];
    float world = (float)bucket->world;
    const float *grads = bucket->values;
    const float *state = bucket->values + bucket->grad_count;
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role == AP_TENSOR_STATE) {
            for (size_t j = 0; j < tensor->size; j++)
                tensor->data[j] = state[j] / world;
            state += tensor->size;
            continue;
        }
        for (size_t j = 0; j < tensor->size; j++)
            tensor->grad[j] = known > 0.0f ? grads[j] / known : 0.0f;
        grads += tensor->size;
    }
}

double ap_dp_bucket_loss(const ap_dp_bucket *bucket)
{
    const float *fields = bucket_fields(bucket);
    return fields[FIELD_KNOWN] > 0.0f ? (double)fields[FIELD_LOSS] / (double)fields[FIELD_KNOWN]
                                      : 0.0;
}

long ap_dp_bucket_known(const ap_dp_bucket *bucket)
{
    return lroundf(bucket_fields(bucket)[FIELD_KNOWN]);
}

bool ap_dp_bucket_stop(const ap_dp_bucket *bucket)
{
    return bucket_fields(bucket)[FIELD_STOP] > 0.0f;
}

int ap_dp_bucket_failed_rank(const ap_dp_bucket *bucket, ap_status *status)
{
    const float *codes = bucket_fields(bucket) + FIELD_COUNT;
    for (int rank = 0; rank < bucket->world; rank++) {
        long code = lroundf(codes[rank]);
        if (code != AP_OK) {
            *status = (ap_status)code;
            return rank;
        }
    }
    return -1;
}

ap_status ap_dp_agree(ap_comm *comm, ap_status status, const char *operation, ap_error *err)
{
    int world = ap_comm_size(comm);
    if (world == 1)
        return status;
    float *codes = calloc((size_t)world, sizeof(float));
    if (codes == NULL)
        return status != AP_OK ? status
                               : ap_error_set(err, AP_ERR_NOMEM,
                                              "cannot allocate %d ranks' "
                                              "outcomes",
                                              world);
    codes[ap_comm_rank(comm)] = (float)status;
    ap_error reduce_err = {0};
    ap_status reduced = ap_comm_allreduce_sum(comm, codes, (size_t)world, operation, &reduce_err);
    int failed_rank = -1;
    for (int rank = 0; rank < world && reduced == AP_OK && failed_rank < 0; rank++)
        if (lroundf(codes[rank]) != AP_OK)
            failed_rank = rank;
    long failed_code = failed_rank >= 0 ? lroundf(codes[failed_rank]) : AP_OK;
    free(codes);

    if (status != AP_OK)
        return status;
    if (reduced != AP_OK) {
        if (err != NULL)
            *err = reduce_err;
        return reduced;
    }
    if (failed_rank < 0)
        return AP_OK;
    return ap_error_set(err, (ap_status)failed_code,
                        "rank %d failed while %s; the reason is in the log of rank %d", failed_rank,
                        operation, failed_rank);
}

ap_status ap_dp_check_same(ap_comm *comm, const char *text, ap_status mismatch,
                           const char *operation, ap_error *err)
{
    int world = ap_comm_size(comm);
    if (world == 1)
        return AP_OK;
    char reference[SAME_TEXT_MAX];
    snprintf(reference, sizeof(reference), "%s", text);
    ap_status status = ap_comm_broadcast(comm, reference, sizeof(reference), 0, operation, err);
    if (status != AP_OK)
        return status;
    float *differs = calloc((size_t)world, sizeof(float));
    if (differs == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %d ranks' outcomes", world);
    differs[ap_comm_rank(comm)] = strncmp(reference, text, sizeof(reference)) != 0 ? 1.0f : 0.0f;
    status = ap_comm_allreduce_sum(comm, differs, (size_t)world, operation, err);

    char ranks[256] = "";
    size_t used = 0;
    int count = 0;
    for (int rank = 1; rank < world && status == AP_OK && used < sizeof(ranks); rank++) {
        if (differs[rank] == 0.0f)
            continue;
        used += (size_t)snprintf(ranks + used, sizeof(ranks) - used, "%s%d", count > 0 ? ", " : "",
                                 rank);
        count++;
    }
    free(differs);
    if (status == AP_OK && count > 0)
        status = ap_error_set(err, mismatch, "%s: rank%s %s differ%s from rank 0", operation,
                              count > 1 ? "s" : "", ranks, count > 1 ? "" : "s");
    return status;
}

void ap_dp_net_digest(ap_net *net, char hex[65])
{
    ap_sha256_ctx *ctx = ap_sha256_begin();
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        const ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        ap_sha256_update(ctx, tensor->data, tensor->size * sizeof(float));
    }
    ap_sha256_end(ctx, hex);
}

ap_status ap_dp_broadcast_net(ap_comm *comm, ap_net *net, ap_error *err)
{
    ap_status status = AP_OK;
    for (size_t i = 0; i < ap_net_tensor_count(net) && status == AP_OK; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        status = ap_comm_broadcast(comm, tensor->data, tensor->size * sizeof(float), 0,
                                   "broadcasting the weights of rank 0", err);
    }
    return status;
}

ap_status ap_dp_predict(ap_comm *comm, ap_net *net, const ap_image_set *images,
                        const size_t *indices, size_t count, const float mean[3],
                        const float std[3], float *logits, ap_error *err)
{
    size_t world = (size_t)ap_comm_size(comm), rank = (size_t)ap_comm_rank(comm);
    size_t labels = (size_t)images->label_count;
    size_t first = count * rank / world, end = count * (rank + 1) / world;
    ap_status status = AP_OK;
    if (end > first)
        status = ap_predict_logits(net, images, indices + first, end - first, mean, std,
                                   logits + first * labels, err);
    if (world == 1)
        return status;
    status = ap_dp_agree(comm, status, "predicting", err);
    if (status == AP_OK)
        status = ap_comm_allreduce_sum(comm, logits, count * labels, "gathering the logits", err);
    return status;
}

ap_status ap_dp_checkpoint_world(const char *path, long *world, ap_error *err)
{
    ap_st_file file = {0};
    *world = 1;
    ap_status status = ap_safetensors_read(path, &file, err);
    const char *text = status == AP_OK ? ap_st_meta_get(&file, "world_size") : NULL;
    if (text != NULL) {
        char *end = NULL;
        errno = 0;
        *world = strtol(text, &end, 10);
        if (end == text || *end != '\0' || errno != 0 || *world < 1)
            status =
                ap_error_set(err, AP_ERR_FORMAT,
                             "%s: metadata world_size \"%s\" is not a process count", path, text);
    }
    ap_st_file_free(&file);
    return status;
}

int ap_dp_threads(const ap_comm *comm, int requested)
{
    int local = ap_comm_local_size(comm);
    if (requested > 0 || local <= 1)
        return requested;
    int available = omp_get_num_procs();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    /* A launcher that binds each process to its own cores (Open MPI's mpirun
     * does by default) has already narrowed the processors OpenMP reports. */
    if (online > 0 && available < online)
        return available;
    return available / local > 1 ? available / local : 1;
}

ap_status ap_dp_tally_init(ap_dp_tally *tally, size_t image_count, ap_error *err)
{
    memset(tally, 0, sizeof(*tally));
    tally->counts = calloc(image_count + 1, sizeof(float));
    if (tally->counts == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the shard tally of %zu images",
                            image_count);
    tally->size = image_count;
    return AP_OK;
}

void ap_dp_tally_free(ap_dp_tally *tally)
{
    free(tally->counts);
    memset(tally, 0, sizeof(*tally));
}

void ap_dp_tally_clear(ap_dp_tally *tally)
{
    memset(tally->counts, 0, tally->size * sizeof(float));
    tally->marked = 0;
}

void ap_dp_tally_mark(ap_dp_tally *tally, const size_t *images, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (images[i] < tally->size)
            tally->counts[images[i]] += 1.0f;
    tally->marked += (long)count;
}

ap_status ap_dp_tally_check(ap_dp_tally *tally, ap_comm *comm, long expected, long *distinct,
                            ap_error *err)
{
    ap_status status = ap_comm_allreduce_sum(comm, tally->counts, tally->size,
                                             "summing the images each process trained", err);
    if (status != AP_OK)
        return status;
    long total = 0, seen = 0;
    for (size_t image = 0; image < tally->size; image++) {
        long count = lroundf(tally->counts[image]);
        if (count > 1)
            return ap_error_set(err, AP_ERR_BACKEND,
                                "image %zu was trained %ld times in one epoch, so the processes "
                                "did not split the epoch into disjoint shards",
                                image, count);
        total += count;
        seen += count > 0;
    }
    *distinct = seen;
    if (total != expected)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "the processes trained %ld images in this epoch, expected %ld", total,
                            expected);
    return AP_OK;
}
