#include <math.h>
#include <stdint.h>

#include "kernels/cpu/asymmetric_loss.h"
#include "kernels/cpu/bce_loss.h"
#include "kernels/cpu/preprocess.h"
#include "pipeline/parallel/data_parallel.h"
#include "pipeline/train/predict.h"
#include "pipeline/train/schedule.h"
#include "pipeline/train/trainer_internal.h"

static bool stop_requested(const trainer *t)
{
    return t->request->stop_requested != NULL && *t->request->stop_requested;
}

/* Augmentation parameters of the whole global batch at step, or NULL
 * without augmentation. Image i of the batch always gets entry i, whichever
 * process trains it. */
static const ap_augment_params *draw_augment(trainer *t, uint64_t step)
{
    const ap_config *cfg = t->cfg;
    if (!cfg->train.augment)
        return NULL;
    ap_augment_draw(cfg->seed ^ STREAM_AUGMENT, step, t->batch, 1, (float)cfg->train.brightness,
                    (float)cfg->train.contrast, t->augment);
    return t->augment;
}

/* Gather, augment and normalise count images into the network input. */
static void load_images(trainer *t, const size_t *indices, int count,
                        const ap_augment_params *augment)
{
    const ap_config *cfg = t->cfg;
    ap_gather_images(&t->data.images, indices, (size_t)count, t->raw);
    ap_gather_labels(&t->data.images, indices, (size_t)count, t->targets);
    ap_cpu_preprocess(t->raw, count, cfg->data.height, cfg->data.width, augment, cfg->data.mean,
                      cfg->data.std, t->input);
}

/* The exponents and clip of train.loss; focal is the symmetric case. */
static ap_asymmetric_params loss_params(const ap_train_config *train)
{
    if (train->loss == AP_LOSS_FOCAL)
        return (ap_asymmetric_params){(float)train->focal_gamma, (float)train->focal_gamma, 0.0f};
    return (ap_asymmetric_params){(float)train->asymmetric_gamma_pos,
                                  (float)train->asymmetric_gamma_neg,
                                  (float)train->asymmetric_clip};
}

/* The train.loss mean over the known targets of count images, with
 * d(mean)/d(logit) in grad when grad is not NULL. */
float trainer_mean_loss(const trainer *t, const float *logits, const int8_t *targets, int count,
                        float *grad)
{
    int labels = t->cfg->data.label_count;
    if (t->cfg->train.loss == AP_LOSS_BCE)
        return ap_cpu_bce_loss(logits, targets, t->pos_weight, count, labels, grad);
    ap_asymmetric_params params = loss_params(&t->cfg->train);
    return ap_cpu_asymmetric_loss(logits, targets, t->pos_weight, count, labels, &params, grad);
}

/* The train.loss sum over the known targets, their count in *known and the
 * undivided gradient in grad, for steps of several micro-batches. */
static double summed_loss(const trainer *t, int count, long *known)
{
    int labels = t->cfg->data.label_count;
    if (t->cfg->train.loss == AP_LOSS_BCE)
        return ap_dp_bce_loss_sum(t->logits, t->targets, t->pos_weight, count, labels, t->d_logits,
                                  known);
    ap_asymmetric_params params = loss_params(&t->cfg->train);
    return ap_cpu_asymmetric_loss_sum(t->logits, t->targets, t->pos_weight, count, labels, &params,
                                      t->d_logits, known);
}

static ap_status diverged(const trainer *t, float loss, ap_error *err)
{
    return ap_error_set(err, AP_ERR_INVALID,
                        "training diverged at step %ld (loss %g); lower train.learning_rate "
                        "or raise train.warmup_epochs",
                        t->position.global_step, (double)loss);
}

static void update_weights(trainer *t)
{
    const ap_config *cfg = t->cfg;
    double lr = ap_lr_at_step(t->position.global_step, t->warmup_steps, t->total_steps,
                              cfg->train.learning_rate, cfg->train.min_learning_rate);
    ap_optimizer_step(&t->opt, t->net, lr, cfg->train.weight_decay, cfg->train.beta1,
                      cfg->train.beta2, cfg->train.epsilon);
}

/* One step of a single process whose global batch is one forward pass: the
 * loss is the mean over the batch's known targets. */
static ap_status train_step_whole(trainer *t, long step_in_epoch, float *loss, ap_error *err)
{
    const ap_config *cfg = t->cfg;
    const size_t *indices = t->permutation + (size_t)step_in_epoch * (size_t)t->batch;
    uint64_t step = (uint64_t)t->position.global_step;

    load_images(t, indices, t->batch, draw_augment(t, step));
    ap_status status =
        ap_net_forward(t->net, t->input, true, cfg->seed ^ STREAM_DROPOUT, step, t->logits, err);
    if (status != AP_OK)
        return status;
    *loss = trainer_mean_loss(t, t->logits, t->targets, t->batch, t->d_logits);
    if (!isfinite(*loss))
        return diverged(t, *loss, err);
    status = ap_net_backward(t->net, t->d_logits, err);
    if (status != AP_OK)
        return status;
    update_weights(t);
    return AP_OK;
}

/* Forward and backward of one micro-batch of this process, adding its
 * gradients, summed loss and known-target count to the bucket. */
static ap_status train_micro_batch(trainer *t, const size_t *batch_images,
                                   const ap_augment_params *augment, int micro, ap_error *err)
{
    const ap_config *cfg = t->cfg;
    int count = t->layout.micro_batch;
    size_t offset = ap_dp_micro_offset(&t->layout, micro);
    uint64_t step = (uint64_t)t->position.global_step;

    load_images(t, batch_images + offset, count, augment ? augment + offset : NULL);
    if (t->world > 1)
        ap_dp_tally_mark(&t->tally, batch_images + offset, (size_t)count);
    ap_status status =
        ap_net_forward(t->net, t->input, true, cfg->seed ^ STREAM_DROPOUT,
                       ap_dp_dropout_stream(&t->layout, step, micro), t->logits, err);
    if (status != AP_OK)
        return status;
    long known = 0;
    double loss_sum = summed_loss(t, count, &known);
    status = ap_net_backward(t->net, t->d_logits, err);
    if (status != AP_OK)
        return status;
    ap_dp_bucket_add_grads(&t->bucket, t->net);
    ap_dp_bucket_add_loss(&t->bucket, loss_sum, known);
    return AP_OK;
}

/* One step over several micro-batches, in this process or across the job:
 * the summed gradients over the summed known-target count give the mean over
 * the whole global batch, as train_step_whole computes for one batch. One
 * all-reduce carries the gradients, the running statistics, the stop
 * requests and every rank's outcome, so all processes take the same
 * decisions. */
static ap_status train_step_split(trainer *t, long step_in_epoch, float *loss, bool *stop,
                                  ap_error *err)
{
    const size_t *batch_images = t->permutation + (size_t)step_in_epoch * (size_t)t->batch;
    const ap_augment_params *augment = draw_augment(t, (uint64_t)t->position.global_step);

    ap_dp_bucket_clear(&t->bucket);
    ap_status status = AP_OK;
    for (int micro = 0; micro < t->layout.accumulation && status == AP_OK; micro++)
        status = train_micro_batch(t, batch_images, augment, micro, err);
    ap_dp_bucket_put_state(&t->bucket, t->net);
    ap_dp_bucket_set_stop(&t->bucket, stop_requested(t));
    ap_dp_bucket_set_status(&t->bucket, status);
    ap_error reduce_err = {0};
    ap_status reduced = ap_dp_bucket_reduce(&t->bucket, t->comm, &reduce_err);
    if (status != AP_OK)
        return status;
    if (reduced != AP_OK) {
        *err = reduce_err;
        return reduced;
    }

    ap_status failed = AP_OK;
    int failed_rank = ap_dp_bucket_failed_rank(&t->bucket, &failed);
    if (failed_rank >= 0)
        return ap_error_set(err, failed, "rank %d failed at step %ld; the reason is in its log",
                            failed_rank, t->position.global_step);
    *loss = (float)ap_dp_bucket_loss(&t->bucket);
    if (!isfinite(*loss))
        return diverged(t, *loss, err);
    ap_dp_bucket_apply(&t->bucket, t->net);
    *stop = ap_dp_bucket_stop(&t->bucket);
    update_weights(t);
    return AP_OK;
}

/* One step on the device backend, from the same batch, augmentation,
 * dropout key and learning rate as the CPU path. */
static ap_status device_step(trainer *t, float *loss, bool *stop, ap_error *err)
{
    const ap_config *cfg = t->cfg;
    ap_backend_step step = {
        .images = t->permutation + (size_t)t->position.step_in_epoch * (size_t)t->batch,
        .augment = draw_augment(t, (uint64_t)t->position.global_step),
        .step = (uint64_t)t->position.global_step,
        .dropout_seed = cfg->seed ^ STREAM_DROPOUT,
        .learning_rate = ap_lr_at_step(t->position.global_step, t->warmup_steps, t->total_steps,
                                       cfg->train.learning_rate, cfg->train.min_learning_rate),
        .stop_requested = stop_requested(t),
    };
    if (t->world > 1)
        ap_dp_tally_mark(&t->tally, step.images + ap_dp_micro_offset(&t->layout, 0),
                         (size_t)t->layout.micro_batch * (size_t)t->layout.accumulation);
    ap_status status = t->device.step(t->device.state, &step, loss, stop, err);
    if (status == AP_OK && !isfinite(*loss))
        return diverged(t, *loss, err);
    return status;
}

ap_status trainer_train_step(trainer *t, float *loss, bool *stop, ap_error *err)
{
    if (t->device.step != NULL)
        return device_step(t, loss, stop, err);
    if (t->layout.chunks > 1)
        return train_step_split(t, t->position.step_in_epoch, loss, stop, err);
    ap_status status = train_step_whole(t, t->position.step_in_epoch, loss, err);
    *stop = stop_requested(t);
    return status;
}
