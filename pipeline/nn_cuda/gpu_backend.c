#include "pipeline/train/train_backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/asymmetric_loss.h"
#include "kernels/cuda/bce_loss.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/preprocess.h"
#include "pipeline/common/log.h"
#include "pipeline/nn_cuda/gpu_check.h"
#include "pipeline/nn_cuda/gpu_net.h"
#include "pipeline/nn_cuda/gpu_plan.h"
#include "pipeline/train/predict.h"

/* The CUDA training backend: the GPU twin of the trainer's network, the
 * optimizer moments, the data set in GPU memory when it fits, and the
 * NCCL all-reduce of a multi-process job. A step mirrors the CPU trainer's
 * split step (pipeline/train/trainer.c) for any layout: per micro-batch the
 * loss gradient is that of the sum, and after the all-reduce the gradients
 * are divided by the known-target count of the whole global batch. */

/* Floats after the running statistics in the gradient buffer, as in ap_dp_bucket. */
enum { TAIL_LOSS = 0, TAIL_KNOWN, TAIL_STOP, TAIL_STATUS };

/* Gradient bucket size of the all-reduce: large enough to keep NCCL near
 * its bandwidth, small enough that the first bucket starts early in backward. */
#define BUCKET_FLOATS (4u << 20)

/* cuDNN workspace limit per convolution. */
#define WORKSPACE_LIMIT ((size_t)1 << 30)

/* GPU memory left free when deciding whether the data set fits. */
#define MEMORY_MARGIN ((size_t)2 << 30)

typedef struct {
    ap_backend_setup setup;
    int world;
    int rank;
    int device;
    ap_gpu_net *net;
    cudaStream_t stream;
    float **first_moment; /* device, per tensor; NULL for state tensors */
    float **second_moment;
    uint8_t *images;      /* the whole data set on the device, or NULL */
    uint8_t *staged;      /* device: this step's images when the set is not resident */
    uint8_t *host_pixels; /* pinned: staging for staged */
    int32_t *indices;     /* device: positions of this process's share of the batch */
    int32_t *host_indices;
    int8_t *targets; /* device */
    int8_t *host_targets;
    ap_augment_params *augment; /* device */
    ap_augment_params *host_augment;
    float *image_means;
    float *d_logits;
    float *pos_weight;
    float *host_tail;
    size_t tail_count;
    gpu_grad_bucket *buckets;
    size_t bucket_count;
    size_t buckets_started;
    /* Several processes: the all-reduces run on comm_stream, after the work
     * that event marks on the network's stream, so that they overlap the
     * rest of the backward pass. */
    cudaStream_t comm_stream;
    cudaEvent_t event;
#ifdef APIARY_HAVE_NCCL
    ap_nccl *nccl;
#endif
} cuda_backend;

static size_t share_images(const cuda_backend *b)
{
    return (size_t)b->setup.layout->micro_batch * (size_t)b->setup.layout->accumulation;
}

static ap_status alloc_device(void **out, size_t bytes, const char *what, ap_error *err)
{
    *out = NULL;
    cudaError_t status = cudaMalloc(out, bytes > 0 ? bytes : 1);
    if (status != cudaSuccess)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu bytes of GPU memory for %s: %s",
                            bytes, what, cudaGetErrorString(status));
    return AP_OK;
}

static ap_status alloc_pinned(void **out, size_t bytes, const char *what, ap_error *err)
{
    *out = NULL;
    cudaError_t status = cudaMallocHost(out, bytes > 0 ? bytes : 1);
    if (status != cudaSuccess)
        return ap_error_set(err, AP_ERR_NOMEM,
                            "cannot allocate %zu bytes of pinned memory for %s: %s", bytes, what,
                            cudaGetErrorString(status));
    return AP_OK;
}

/* Copies on the network's stream and waits. A plain cudaMemcpy would run on
 * the legacy default stream, which the network's non-blocking stream does
 * not wait for, and a host-to-device copy from pageable memory may return
 * before the data has arrived. */
static ap_status copy_and_wait(cuda_backend *b, void *dst, const void *src, size_t bytes,
                               enum cudaMemcpyKind kind, ap_error *err)
{
    AP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, b->stream), err);
    AP_CUDA_CHECK(cudaStreamSynchronize(b->stream), err);
    return AP_OK;
}

/* Upload the decoded data set once when it fits beside the network, so
 * epochs read images from GPU memory. */
static ap_status upload_images(cuda_backend *b, ap_error *err)
{
    const ap_image_set *set = b->setup.images;
    /* The preprocessing kernel reads int32 image positions. */
    if (set->count > (size_t)INT32_MAX)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the data set has %zu images; train.device=cuda handles at most %d",
                            set->count, INT32_MAX);
    size_t bytes = set->count * (size_t)set->height * (size_t)set->width * 3;
    size_t free_bytes = 0, total_bytes = 0;
    AP_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), err);
    if (bytes + MEMORY_MARGIN > free_bytes) {
        AP_INFO("data set of %.1f MB does not fit in the %.1f MB of free GPU memory; images are "
                "copied per step",
                (double)bytes / 1e6, (double)free_bytes / 1e6);
        return AP_OK;
    }
    GPU_TRY(alloc_device((void **)&b->images, bytes, "the data set", err));
    GPU_TRY(copy_and_wait(b, b->images, set->pixels, bytes, cudaMemcpyHostToDevice, err));
    AP_INFO("data set of %zu images (%.1f MB) uploaded to GPU %d", set->count, (double)bytes / 1e6,
            b->device);
    return AP_OK;
}

static ap_status allocate_moments(cuda_backend *b, ap_error *err)
{
    size_t count = ap_gpu_net_tensor_count(b->net);
    b->first_moment = calloc(count, sizeof(float *));
    b->second_moment = calloc(count, sizeof(float *));
    if (b->first_moment == NULL || b->second_moment == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the optimizer state");
    for (size_t i = 0; i < count; i++) {
        const ap_gpu_tensor *tensor = ap_gpu_net_tensor_at(b->net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        size_t bytes = tensor->size * sizeof(float);
        GPU_TRY(alloc_device((void **)&b->first_moment[i], bytes, tensor->name, err));
        GPU_TRY(alloc_device((void **)&b->second_moment[i], bytes, tensor->name, err));
    }
    return AP_OK;
}

static ap_status allocate_buffers(cuda_backend *b, ap_error *err)
{
    const ap_image_set *set = b->setup.images;
    size_t share = share_images(b);
    size_t micro = (size_t)b->setup.layout->micro_batch;
    size_t labels = (size_t)set->label_count;
    size_t pixels = (size_t)set->height * (size_t)set->width * 3;
    if (b->images == NULL) {
        GPU_TRY(alloc_device((void **)&b->staged, share * pixels, "image staging", err));
        GPU_TRY(alloc_pinned((void **)&b->host_pixels, share * pixels, "image staging", err));
    }
    GPU_TRY(alloc_device((void **)&b->indices, share * sizeof(int32_t), "batch indices", err));
    GPU_TRY(alloc_pinned((void **)&b->host_indices, share * sizeof(int32_t), "batch indices", err));
    GPU_TRY(alloc_device((void **)&b->targets, share * labels, "targets", err));
    GPU_TRY(alloc_pinned((void **)&b->host_targets, share * labels, "targets", err));
    GPU_TRY(
        alloc_device((void **)&b->augment, share * sizeof(ap_augment_params), "augmentation", err));
    GPU_TRY(alloc_pinned((void **)&b->host_augment, share * sizeof(ap_augment_params),
                         "augmentation", err));
    GPU_TRY(alloc_device((void **)&b->image_means, micro * sizeof(float), "image means", err));
    GPU_TRY(alloc_device((void **)&b->d_logits, micro * labels * sizeof(float), "logit gradients",
                         err));
    GPU_TRY(alloc_device((void **)&b->pos_weight, labels * sizeof(float), "positive weights", err));
    GPU_TRY(copy_and_wait(b, b->pos_weight, b->setup.pos_weight, labels * sizeof(float),
                          cudaMemcpyHostToDevice, err));
    b->tail_count = TAIL_STATUS + (size_t)b->world;
    return alloc_pinned((void **)&b->host_tail, b->tail_count * sizeof(float), "step totals", err);
}

static ap_status plan_buckets(cuda_backend *b, ap_error *err)
{
    size_t count = ap_gpu_net_tensor_count(b->net), trained = 0;
    size_t *offsets = calloc(count, sizeof(size_t));
    size_t *sizes = calloc(count, sizeof(size_t));
    ap_status status = AP_OK;
    if (offsets == NULL || sizes == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot plan the gradient buckets");
    const float *grads = ap_gpu_net_grad_buffer(b->net);
    for (size_t i = 0; i < count && status == AP_OK; i++) {
        const ap_gpu_tensor *tensor = ap_gpu_net_tensor_at(b->net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        offsets[trained] = (size_t)(tensor->grad - grads);
        sizes[trained] = tensor->size;
        trained++;
    }
    if (status == AP_OK)
        status = gpu_grad_buckets_plan(offsets, sizes, trained, BUCKET_FLOATS, &b->buckets,
                                       &b->bucket_count, err);
    free(offsets);
    free(sizes);
    return status;
}

/* Make stream `waiting` wait for the work queued so far on stream `done`. */
static ap_status order_streams(cuda_backend *b, cudaStream_t done, cudaStream_t waiting,
                               ap_error *err)
{
    AP_CUDA_CHECK(cudaEventRecord(b->event, done), err);
    AP_CUDA_CHECK(cudaStreamWaitEvent(waiting, b->event, 0), err);
    return AP_OK;
}

/* Start the all-reduce of every bucket whose gradients are final. Called
 * during the last backward pass of a step; the reduction then overlaps the
 * backward pass of the earlier layers. Every rank starts the same buckets
 * in the same order, since NCCL pairs collectives by their order. */
static ap_status start_ready_buckets(void *context, size_t first, ap_error *err)
{
    cuda_backend *b = context;
#ifdef APIARY_HAVE_NCCL
    float *grads = ap_gpu_net_grad_buffer(b->net);
    if (b->buckets_started < b->bucket_count && b->buckets[b->buckets_started].begin >= first)
        GPU_TRY(order_streams(b, b->stream, b->comm_stream, err));
    while (b->buckets_started < b->bucket_count && b->buckets[b->buckets_started].begin >= first) {
        const gpu_grad_bucket *bucket = &b->buckets[b->buckets_started];
        GPU_TRY(ap_nccl_allreduce_sum(b->nccl, grads + bucket->begin, bucket->end - bucket->begin,
                                      b->comm_stream, "gradient all-reduce", err));
        b->buckets_started++;
    }
#else
    (void)b;
    (void)first;
    (void)err;
#endif
    return AP_OK;
}

/* Gather the positions, labels and augmentation of this process's share of
 * the global batch into pinned memory and copy them to the device. */
static ap_status stage_batch(cuda_backend *b, const ap_backend_step *step, ap_error *err)
{
    const ap_dp_layout *layout = b->setup.layout;
    const ap_image_set *set = b->setup.images;
    size_t share = share_images(b);
    size_t first = ap_dp_micro_offset(layout, 0);
    size_t labels = (size_t)set->label_count;
    const size_t *images = step->images + first;
    for (size_t i = 0; i < share; i++)
        b->host_indices[i] = b->images != NULL ? (int32_t)images[i] : (int32_t)i;
    ap_gather_labels(set, images, share, b->host_targets);
    AP_CUDA_CHECK(cudaMemcpyAsync(b->indices, b->host_indices, share * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, b->stream),
                  err);
    AP_CUDA_CHECK(cudaMemcpyAsync(b->targets, b->host_targets, share * labels,
                                  cudaMemcpyHostToDevice, b->stream),
                  err);
    if (step->augment != NULL) {
        memcpy(b->host_augment, step->augment + first, share * sizeof(ap_augment_params));
        AP_CUDA_CHECK(cudaMemcpyAsync(b->augment, b->host_augment,
                                      share * sizeof(ap_augment_params), cudaMemcpyHostToDevice,
                                      b->stream),
                      err);
    }
    if (b->images != NULL)
        return AP_OK;
    size_t pixels = (size_t)set->height * (size_t)set->width * 3;
    ap_gather_images(set, images, share, b->host_pixels);
    AP_CUDA_CHECK(cudaMemcpyAsync(b->staged, b->host_pixels, share * pixels, cudaMemcpyHostToDevice,
                                  b->stream),
                  err);
    return AP_OK;
}

/* The train.loss sum over the known targets of the last forward pass:
 * d(sum)/d(logit) into d_logits, and the sum and the known count added to
 * totals[0] and totals[1], as the CPU trainer's split step computes them.
 * Focal is the asymmetric loss with equal exponents and no clip. */
static ap_status add_loss(cuda_backend *b, const int8_t *targets, int count, float *totals,
                          ap_error *err)
{
    const ap_train_config *train = &b->setup.cfg->train;
    const float *logits = ap_gpu_net_logits(b->net);
    int labels = b->setup.cfg->data.label_count;
    if (train->loss == AP_LOSS_BCE)
        return ap_cuda_bce_loss_sum(logits, targets, b->pos_weight, count, labels, b->d_logits,
                                    totals, b->stream, err);
    ap_asymmetric_params params = {(float)train->asymmetric_gamma_pos,
                                   (float)train->asymmetric_gamma_neg,
                                   (float)train->asymmetric_clip};
    if (train->loss == AP_LOSS_FOCAL)
        params = (ap_asymmetric_params){(float)train->focal_gamma, (float)train->focal_gamma, 0.0f};
    return ap_cuda_asymmetric_loss_sum(logits, targets, b->pos_weight, count, labels, &params,
                                       b->d_logits, totals, b->stream, err);
}

static ap_status run_micro_batch(cuda_backend *b, const ap_backend_step *step, int micro,
                                 ap_error *err)
{
    const ap_config *cfg = b->setup.cfg;
    const ap_dp_layout *layout = b->setup.layout;
    int count = layout->micro_batch;
    size_t offset = (size_t)micro * (size_t)count; /* within this process's share */
    const uint8_t *source = b->images != NULL ? b->images : b->staged;
    float *tail = ap_gpu_net_grad_buffer(b->net) + ap_gpu_net_grad_count(b->net) +
                  ap_gpu_net_state_count(b->net);

    GPU_TRY(ap_cuda_preprocess(source, b->indices + offset, count, cfg->data.height,
                               cfg->data.width, step->augment != NULL ? b->augment + offset : NULL,
                               cfg->data.mean, cfg->data.std, b->image_means,
                               ap_gpu_net_input(b->net), b->stream, err));
    GPU_TRY(ap_gpu_net_forward(b->net, true, step->dropout_seed,
                               ap_dp_dropout_stream(layout, step->step, micro), err));
    GPU_TRY(add_loss(b, b->targets + offset * (size_t)cfg->data.label_count, count,
                     tail + TAIL_LOSS, err));
    bool last = micro == layout->accumulation - 1;
    return ap_gpu_net_backward(b->net, b->d_logits, micro > 0,
                               last && b->world > 1 ? start_ready_buckets : NULL, b, err);
}

/* Sum the running statistics, totals, stop requests and outcomes over the
 * processes, after the gradient buckets that backward started. */
static ap_status reduce_step(cuda_backend *b, float *tail, ap_error *err)
{
#ifdef APIARY_HAVE_NCCL
    GPU_TRY(start_ready_buckets(b, 0, err));
    GPU_TRY(ap_gpu_net_pack_state(b->net, err));
    GPU_TRY(order_streams(b, b->stream, b->comm_stream, err));
    float *state = ap_gpu_net_grad_buffer(b->net) + ap_gpu_net_grad_count(b->net);
    GPU_TRY(ap_nccl_allreduce_sum(b->nccl, state, ap_gpu_net_state_count(b->net) + b->tail_count,
                                  b->comm_stream, "gradient all-reduce", err));
    GPU_TRY(ap_nccl_wait(b->nccl, b->comm_stream, "gradient all-reduce", err));
    GPU_TRY(order_streams(b, b->comm_stream, b->stream, err));
    GPU_TRY(ap_gpu_net_unpack_state(b->net, (float)b->world, err));
#else
    (void)b;
    (void)tail;
    return ap_error_set(err, AP_ERR_INVALID,
                        "multi-GPU training needs NCCL, and this apiary was built without it");
#endif
    return AP_OK;
}

static ap_status update_weights(cuda_backend *b, const ap_backend_step *step, ap_error *err)
{
    const ap_config *cfg = b->setup.cfg;
    ap_optimizer *opt = b->setup.opt;
    float *grads = ap_gpu_net_grad_buffer(b->net);
    const float *known =
        grads + ap_gpu_net_grad_count(b->net) + ap_gpu_net_state_count(b->net) + TAIL_KNOWN;
    GPU_TRY(ap_cuda_divide_by_count(grads, ap_gpu_net_grad_count(b->net), known, b->stream, err));
    opt->step++;
    for (size_t i = 0; i < ap_gpu_net_tensor_count(b->net); i++) {
        const ap_gpu_tensor *tensor = ap_gpu_net_tensor_at(b->net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        ap_adamw_args args = {
            .learning_rate = (float)step->learning_rate,
            .beta1 = (float)cfg->train.beta1,
            .beta2 = (float)cfg->train.beta2,
            .epsilon = (float)cfg->train.epsilon,
            .weight_decay =
                tensor->role == AP_TENSOR_WEIGHT ? (float)cfg->train.weight_decay : 0.0f,
            .step = opt->step,
        };
        GPU_TRY(ap_cuda_adamw(tensor->data, tensor->grad, b->first_moment[i], b->second_moment[i],
                              tensor->size, &args, b->stream, err));
    }
    return AP_OK;
}

/* The lowest failed rank, as ap_dp_bucket_failed_rank finds it. */
static ap_status check_ranks(const cuda_backend *b, uint64_t step, ap_error *err)
{
    for (int rank = 0; rank < b->world; rank++) {
        long code = lroundf(b->host_tail[TAIL_STATUS + rank]);
        if (code != 0)
            return ap_error_set(err, code > 0 ? (ap_status)code : AP_ERR_BACKEND,
                                "rank %d failed at step %llu; the reason is in its log", rank,
                                (unsigned long long)step);
    }
    return AP_OK;
}

static ap_status cuda_step(void *state, const ap_backend_step *step, float *loss, bool *stop,
                           ap_error *err)
{
    cuda_backend *b = state;
    float *tail = ap_gpu_net_grad_buffer(b->net) + ap_gpu_net_grad_count(b->net) +
                  ap_gpu_net_state_count(b->net);
    AP_CUDA_CHECK(cudaMemsetAsync(tail, 0, b->tail_count * sizeof(float), b->stream), err);
    /* Reset before anything can fail, so that reduce_step starts every
     * bucket even when this rank failed before its last backward pass. */
    b->buckets_started = 0;
    ap_status status = stage_batch(b, step, err);
    for (int micro = 0; micro < b->setup.layout->accumulation && status == AP_OK; micro++)
        status = run_micro_batch(b, step, micro, err);
    if (b->world > 1) {
        /* Every rank joins the all-reduce, failed or not, so none waits in vain. */
        memset(b->host_tail, 0, b->tail_count * sizeof(float));
        b->host_tail[TAIL_STOP] = step->stop_requested ? 1.0f : 0.0f;
        b->host_tail[TAIL_STATUS + b->rank] = (float)status;
        AP_CUDA_CHECK(cudaMemcpyAsync(tail + TAIL_STOP, b->host_tail + TAIL_STOP,
                                      (b->tail_count - TAIL_STOP) * sizeof(float),
                                      cudaMemcpyHostToDevice, b->stream),
                      err);
        ap_error reduce_err = {0};
        ap_status reduced = reduce_step(b, tail, &reduce_err);
        if (status == AP_OK && reduced != AP_OK) {
            *err = reduce_err;
            status = reduced;
        }
    }
    if (status != AP_OK)
        return status;

    AP_CUDA_CHECK(cudaMemcpyAsync(b->host_tail, tail, b->tail_count * sizeof(float),
                                  cudaMemcpyDeviceToHost, b->stream),
                  err);
    AP_CUDA_CHECK(cudaStreamSynchronize(b->stream), err);
    GPU_TRY(check_ranks(b, step->step, err));
    float known = b->host_tail[TAIL_KNOWN];
    *loss = known > 0.0f ? (float)((double)b->host_tail[TAIL_LOSS] / (double)known) : 0.0f;
    *stop = b->world > 1 ? b->host_tail[TAIL_STOP] > 0.0f : step->stop_requested;
    /* As on the CPU, a diverged step leaves the weights alone; the trainer stops. */
    if (!isfinite(*loss))
        return AP_OK;
    return update_weights(b, step, err);
}

/* Computes the logits of count images from the resident set or through the
 * staging buffer, in batches of the network's size. The last batch repeats
 * its final image, as ap_predict_logits does. */
static ap_status predict_share(cuda_backend *b, const size_t *indices, size_t count, float *logits,
                               ap_error *err)
{
    const ap_config *cfg = b->setup.cfg;
    const ap_image_set *set = b->setup.images;
    size_t batch = (size_t)ap_gpu_net_batch(b->net);
    size_t labels = (size_t)set->label_count;
    size_t pixels = (size_t)set->height * (size_t)set->width * 3;
    for (size_t start = 0; start < count; start += batch) {
        size_t valid = count - start < batch ? count - start : batch;
        for (size_t i = 0; i < batch; i++) {
            size_t image = indices[start + (i < valid ? i : valid - 1)];
            b->host_indices[i] = b->images != NULL ? (int32_t)image : (int32_t)i;
            if (b->images == NULL)
                memcpy(b->host_pixels + i * pixels, set->pixels + image * pixels, pixels);
        }
        AP_CUDA_CHECK(cudaMemcpyAsync(b->indices, b->host_indices, batch * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, b->stream),
                      err);
        if (b->images == NULL)
            AP_CUDA_CHECK(cudaMemcpyAsync(b->staged, b->host_pixels, batch * pixels,
                                          cudaMemcpyHostToDevice, b->stream),
                          err);
        GPU_TRY(ap_cuda_preprocess(b->images != NULL ? b->images : b->staged, b->indices,
                                   (int)batch, cfg->data.height, cfg->data.width, NULL,
                                   cfg->data.mean, cfg->data.std, b->image_means,
                                   ap_gpu_net_input(b->net), b->stream, err));
        GPU_TRY(ap_gpu_net_forward(b->net, false, 0, 0, err));
        AP_CUDA_CHECK(cudaMemcpyAsync(logits + start * labels, ap_gpu_net_logits(b->net),
                                      valid * labels * sizeof(float), cudaMemcpyDeviceToHost,
                                      b->stream),
                      err);
        /* The pinned staging buffers are rewritten by the next batch. */
        AP_CUDA_CHECK(cudaStreamSynchronize(b->stream), err);
    }
    return AP_OK;
}

/* Each process predicts its contiguous share and one all-reduce sums the
 * shares, as ap_dp_predict does on the CPU. */
static ap_status cuda_predict(void *state, const size_t *indices, size_t count, float *logits,
                              ap_error *err)
{
    cuda_backend *b = state;
    size_t world = (size_t)b->world, rank = (size_t)b->rank;
    size_t labels = (size_t)b->setup.images->label_count;
    size_t first = count * rank / world, end = count * (rank + 1) / world;
    ap_status status = AP_OK;
    if (end > first)
        status = predict_share(b, indices + first, end - first, logits + first * labels, err);
    if (world == 1)
        return status;
    status = ap_dp_agree(b->setup.comm, status, "predicting", err);
    if (status == AP_OK)
        status = ap_comm_allreduce_sum(b->setup.comm, logits, count * labels,
                                       "gathering the logits", err);
    return status;
}

/* Queues the copies of every moment on the network's stream, after the
 * last optimizer step, and waits for them. */
static ap_status copy_moments(cuda_backend *b, bool to_host, ap_error *err)
{
    ap_optimizer *opt = b->setup.opt;
    enum cudaMemcpyKind kind = to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
    for (size_t i = 0; i < ap_gpu_net_tensor_count(b->net); i++) {
        const ap_gpu_tensor *tensor = ap_gpu_net_tensor_at(b->net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        size_t bytes = tensor->size * sizeof(float);
        void *first_dst = to_host ? (void *)opt->first_moment[i] : (void *)b->first_moment[i];
        const void *first_src = to_host ? (void *)b->first_moment[i] : (void *)opt->first_moment[i];
        void *second_dst = to_host ? (void *)opt->second_moment[i] : (void *)b->second_moment[i];
        const void *second_src =
            to_host ? (void *)b->second_moment[i] : (void *)opt->second_moment[i];
        AP_CUDA_CHECK(cudaMemcpyAsync(first_dst, first_src, bytes, kind, b->stream), err);
        AP_CUDA_CHECK(cudaMemcpyAsync(second_dst, second_src, bytes, kind, b->stream), err);
    }
    AP_CUDA_CHECK(cudaStreamSynchronize(b->stream), err);
    return AP_OK;
}

static ap_status cuda_to_host(void *state, ap_error *err)
{
    cuda_backend *b = state;
    GPU_TRY(ap_gpu_net_download(b->net, b->setup.net, err));
    return copy_moments(b, true, err);
}

static ap_status cuda_from_host(void *state, ap_error *err)
{
    cuda_backend *b = state;
    GPU_TRY(ap_gpu_net_upload(b->net, b->setup.net, err));
    return copy_moments(b, false, err);
}

/* Errors while tearing down are ignored: nothing could act on them. */
static void cuda_destroy(void *state)
{
    cuda_backend *b = state;
    if (b == NULL)
        return;
#ifdef APIARY_HAVE_NCCL
    /* First, because a failed communicator is aborted here, which ends any
     * all-reduce kernel that the stream synchronisations would wait for. */
    ap_nccl_close(b->nccl);
#endif
    if (b->comm_stream != NULL)
        cudaStreamSynchronize(b->comm_stream);
    if (b->stream != NULL)
        cudaStreamSynchronize(b->stream);
    for (size_t i = 0; b->first_moment != NULL && i < ap_gpu_net_tensor_count(b->net); i++) {
        cudaFree(b->first_moment[i]);
        cudaFree(b->second_moment[i]);
    }
    free(b->first_moment);
    free(b->second_moment);
    cudaFree(b->images);
    cudaFree(b->staged);
    cudaFree(b->indices);
    cudaFree(b->targets);
    cudaFree(b->augment);
    cudaFree(b->image_means);
    cudaFree(b->d_logits);
    cudaFree(b->pos_weight);
    cudaFreeHost(b->host_pixels);
    cudaFreeHost(b->host_indices);
    cudaFreeHost(b->host_targets);
    cudaFreeHost(b->host_augment);
    cudaFreeHost(b->host_tail);
    free(b->buckets);
    if (b->comm_stream != NULL)
        cudaStreamDestroy(b->comm_stream);
    if (b->event != NULL)
        cudaEventDestroy(b->event);
    ap_gpu_net_destroy(b->net);
    free(b);
}

/* One GPU per process: the process's rank on its node picks the device. */
static ap_status pick_device(cuda_backend *b, ap_error *err)
{
    char reason[160] = "";
    int devices = ap_gpu_device_count(reason, sizeof(reason));
    if (devices == 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "train.device is cuda, but no CUDA device is available (%s)", reason);
    int local_rank = ap_comm_local_rank(b->setup.comm);
    int local_size = ap_comm_local_size(b->setup.comm);
    if (local_size > devices)
        AP_WARN("%d processes on this node share %d GPUs; start one process per GPU", local_size,
                devices);
    b->device = local_rank % devices;
    AP_CUDA_CHECK(cudaSetDevice(b->device), err);
    return AP_OK;
}

static ap_status open_multi_gpu(cuda_backend *b, ap_error *err)
{
    if (b->world == 1)
        return AP_OK;
#ifdef APIARY_HAVE_NCCL
    AP_CUDA_CHECK(cudaStreamCreateWithFlags(&b->comm_stream, cudaStreamNonBlocking), err);
    AP_CUDA_CHECK(cudaEventCreateWithFlags(&b->event, cudaEventDisableTiming), err);
    GPU_TRY(ap_nccl_open(b->setup.comm, b->device, &b->nccl, err));
    return plan_buckets(b, err);
#else
    return ap_error_set(err, AP_ERR_INVALID,
                        "train.device is cuda with %d processes, but this apiary was built "
                        "without NCCL; install NCCL and MPI and rebuild, or start one process",
                        b->world);
#endif
}

static ap_status open_backend(cuda_backend *b, ap_error *err)
{
    const ap_config *cfg = b->setup.cfg;
    GPU_TRY(pick_device(b, err));
    ap_gpu_options options = {
        .device = b->device,
        .deterministic = cfg->train.deterministic,
        .grad_tail = TAIL_STATUS + (size_t)b->world,
        .workspace_limit = WORKSPACE_LIMIT,
    };
    GPU_TRY(ap_gpu_precision_parse(cfg->train.precision, &options.precision, err));
    GPU_TRY(ap_gpu_net_create(b->setup.spec, b->setup.layout->micro_batch, b->setup.net, &options,
                              &b->net, err));
    b->stream = ap_gpu_net_stream(b->net);
    GPU_TRY(allocate_moments(b, err));
    GPU_TRY(copy_moments(b, false, err));
    GPU_TRY(upload_images(b, err));
    GPU_TRY(allocate_buffers(b, err));
    GPU_TRY(open_multi_gpu(b, err));
    AP_INFO("training on GPU %d in %s%s", b->device, cfg->train.precision,
            cfg->train.deterministic ? ", deterministic" : "");
    return AP_OK;
}

ap_status ap_train_backend_cuda(const ap_backend_setup *setup, ap_train_backend *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    cuda_backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the CUDA backend");
    b->setup = *setup;
    b->world = ap_comm_size(setup->comm);
    b->rank = ap_comm_rank(setup->comm);
    ap_status status = open_backend(b, err);
    if (status != AP_OK) {
        cuda_destroy(b);
        return status;
    }
    *out = (ap_train_backend){
        .name = "cuda",
        .state = b,
        .step = cuda_step,
        .predict = cuda_predict,
        .to_host = cuda_to_host,
        .from_host = cuda_from_host,
        .destroy = cuda_destroy,
    };
    return AP_OK;
}
