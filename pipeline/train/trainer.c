#include "pipeline/train/trainer.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "kernels/cpu/rng.h"
#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/parallel/comm.h"
#include "pipeline/parallel/data_parallel.h"
#include "pipeline/train/model_card.h"
#include "pipeline/train/run_data.h"
#include "pipeline/train/run_files.h"
#include "pipeline/train/run_lock.h"
#include "pipeline/train/run_settings.h"
#include "pipeline/train/schedule.h"
#include "pipeline/train/train_backend.h"
#include "pipeline/train/train_state.h"
#include "pipeline/train/trainer_internal.h"

/* Positive weights from label frequencies are capped so a label with very
 * few positives cannot dominate the loss. */
#define POS_WEIGHT_MAX 50.0f

/* Exit code of a job whose processes can no longer work in step: apiary's
 * runtime-failure code (AP_EXIT_FAILURE in pipeline/cli/cli.h). */
#define ABORT_EXIT_CODE 1

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

ap_status ap_run_dir(const ap_config *cfg, char *out, size_t out_size, ap_error *err)
{
    return ap_path_join(out, out_size, cfg->output_dir, cfg->run_name, err);
}

static void run_path(const trainer *t, const char *name, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/%s", t->run_dir, name);
}

static bool is_root(const trainer *t)
{
    return t->rank == 0;
}

/* Combine the outcome of a phase over the processes so that all go on or all
 * stop; a no-op in a single process. */
static ap_status agree(trainer *t, ap_status status, const char *operation, ap_error *err)
{
    return ap_dp_agree(t->comm, status, operation, err);
}

static ap_status check_device(const ap_config *cfg, ap_error *err)
{
    return ap_train_device_check(cfg, err);
}

/* Open the communicator, give the log its rank and check that the global
 * batch splits over the processes, before any file is touched. */
static ap_status open_comm(trainer *t, ap_error *err)
{
    const ap_config *cfg = t->cfg;
    ap_status status = ap_comm_open(cfg->train.collective_timeout, &t->comm, err);
    if (status != AP_OK)
        return status;
    t->rank = ap_comm_rank(t->comm);
    t->world = ap_comm_size(t->comm);
    ap_log_set_rank(t->rank);
    if (t->rank > 0 && ap_log_threshold < AP_LOG_WARN)
        ap_log_threshold = AP_LOG_WARN;
    if (t->world > 1)
        AP_INFO("data-parallel training over %d processes (%s), %d on this node", t->world,
                ap_comm_backend(t->comm), ap_comm_local_size(t->comm));
    t->batch = cfg->train.batch_size;
    status = ap_dp_layout_init(&t->layout, t->batch, t->world, t->rank,
                               cfg->train.accumulation_steps, err);
    return agree(t, status, "splitting the batch", err);
}

static ap_status check_run_state(trainer *t, bool *complete, bool *has_checkpoint, ap_error *err)
{
    return ap_run_check_state(t->cfg, t->run_dir, t->request->resume, t->world, complete,
                              has_checkpoint, err);
}

/* A training that starts from the first epoch moves the log of an earlier
 * start aside rather than append to it. When resume was requested, the
 * earlier start's checkpoint is missing, and the warning names it. */
static ap_status set_aside_earlier_log(trainer *t, ap_error *err)
{
    char moved_to[AP_PATH_MAX + 80];
    ap_status status = ap_run_set_aside_log(t->run_dir, moved_to, sizeof(moved_to), err);
    if (status != AP_OK || moved_to[0] == '\0')
        return status;
    if (t->request->resume)
        AP_WARN("no checkpoint %s/checkpoint.safetensors to resume from, so training starts from "
                "the first epoch; the log of the earlier start is moved to %s",
                t->run_dir, moved_to);
    else
        AP_WARN("%s/%s is the log of an earlier start without a checkpoint; training starts from "
                "the first epoch, and that log is moved to %s",
                t->run_dir, AP_RUN_LOG_FILE, moved_to);
    return AP_OK;
}

/* A finished run whose model or card is missing or altered is finished
 * again from its final checkpoint: *complete becomes false and *rewrite
 * true. Without a checkpoint it is an error. */
static ap_status check_finished_outputs(trainer *t, bool *complete, bool has_checkpoint,
                                        bool *rewrite, ap_error *err)
{
    ap_error problem = {0};
    if (ap_run_check_complete(t->run_dir, &problem) == AP_OK)
        return AP_OK;
    if (!has_checkpoint)
        return ap_error_set(err, problem.code,
                            "%s, and it has no checkpoint to write the model from; choose a new "
                            "run_name (--set run_name=NAME), or remove %s/%s and train the run "
                            "again",
                            problem.message, t->run_dir, AP_RUN_COMPLETE_FILE);
    AP_WARN("%s; writing the model and card again from the final checkpoint "
            "%s/checkpoint.safetensors",
            problem.message, t->run_dir);
    *complete = false;
    *rewrite = true;
    return AP_OK;
}

/* Rank 0 inspects the run folder and sends what it found to the other processes. */
static ap_status find_run_state(trainer *t, bool *complete, bool *has_checkpoint, bool *rewrite,
                                ap_error *err)
{
    ap_status status = AP_OK;
    if (is_root(t)) {
        status = ap_mkdirs(t->run_dir, err);
        if (status == AP_OK)
            status = ap_run_lock(t->run_dir, &t->lock_fd, err);
        if (status == AP_OK)
            status = check_run_state(t, complete, has_checkpoint, err);
        if (status == AP_OK && *complete)
            status = check_finished_outputs(t, complete, *has_checkpoint, rewrite, err);
        if (status == AP_OK && !*complete && !*has_checkpoint)
            status = set_aside_earlier_log(t, err);
        if (status == AP_OK)
            status = ap_run_remove_stale_temps(t->run_dir, err);
    }
    status = agree(t, status, "checking the run folder", err);
    unsigned char flags[3] = {*complete, *has_checkpoint, *rewrite};
    if (status == AP_OK)
        status = ap_comm_broadcast(t->comm, flags, sizeof(flags), 0, "sharing the run state", err);
    *complete = flags[0];
    *has_checkpoint = flags[1];
    *rewrite = flags[2];
    return status;
}

/* A finished run's model is written again only from the checkpoint of its
 * last epoch, never by training on from an earlier one. */
static ap_status check_final_checkpoint(const trainer *t, ap_error *err)
{
    if (t->position.epoch == t->cfg->train.epochs && t->position.step_in_epoch == 0)
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "%s/checkpoint.safetensors is at epoch %ld step %ld, not at the end of "
                        "the run's %d epochs, so it cannot give the finished model; choose a new "
                        "run_name (--set run_name=NAME), or remove %s/%s and resume the run",
                        t->run_dir, t->position.epoch + 1, t->position.global_step,
                        t->cfg->train.epochs, t->run_dir, AP_RUN_COMPLETE_FILE);
}

static ap_status write_config_copy(const trainer *t, ap_error *err)
{
    char path[AP_PATH_MAX + 64];
    run_path(t, "config.yaml", path, sizeof(path));
    char *yaml = ap_config_to_yaml(t->cfg);
    if (yaml == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot encode the config for %s", path);
    ap_status status = ap_write_atomic(path, yaml, strlen(yaml), err);
    free(yaml);
    return status;
}

static void compute_pos_weights(trainer *t)
{
    for (int label = 0; label < t->cfg->data.label_count; label++) {
        long pos, neg, unknown;
        ap_run_data_label_counts(&t->data, AP_SPLIT_TRAIN, label, &pos, &neg, &unknown);
        float weight = 1.0f;
        if (t->cfg->train.pos_weight == AP_POS_WEIGHT_AUTO && pos > 0)
            weight = fminf((float)neg / (float)pos, POS_WEIGHT_MAX);
        if (weight <= 0.0f)
            weight = 1.0f;
        t->pos_weight[label] = weight;
    }
}

/* Buffers of one forward pass (a micro-batch), and augmentation parameters
 * for the whole global batch, drawn alike by every process. */
static ap_status allocate_step_buffers(trainer *t, ap_error *err)
{
    size_t batch = (size_t)t->layout.micro_batch;
    size_t pixels = (size_t)t->cfg->data.width * (size_t)t->cfg->data.height * 3;
    size_t labels = (size_t)t->cfg->data.label_count;
    t->permutation = malloc(t->data.part_count[AP_SPLIT_TRAIN] * sizeof(size_t));
    t->raw = malloc(batch * pixels);
    t->input = malloc(batch * pixels * sizeof(float));
    t->logits = malloc(batch * labels * sizeof(float));
    t->d_logits = malloc(batch * labels * sizeof(float));
    t->targets = malloc(batch * labels);
    t->augment = malloc((size_t)t->batch * sizeof(ap_augment_params));
    if (!t->permutation || !t->raw || !t->input || !t->logits || !t->d_logits || !t->targets ||
        !t->augment)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate training buffers for batch %zu",
                            batch);
    ap_status status = AP_OK;
    if (t->layout.chunks > 1)
        status = ap_dp_bucket_init(&t->bucket, t->net, t->world, t->rank, err);
    if (status == AP_OK && t->world > 1)
        status = ap_dp_tally_init(&t->tally, t->data.images.count, err);
    return status;
}

/* Every process draws the same order, so each takes its own slice of the same batches. */
static void shuffle_epoch(trainer *t, long epoch)
{
    size_t count = t->data.part_count[AP_SPLIT_TRAIN];
    memcpy(t->permutation, t->data.part_images[AP_SPLIT_TRAIN], count * sizeof(size_t));
    for (size_t i = count - 1; i > 0; i--) {
        size_t j = ap_rng_u64(t->cfg->seed, STREAM_SHUFFLE + (uint64_t)epoch, i) % (i + 1);
        size_t swap = t->permutation[i];
        t->permutation[i] = t->permutation[j];
        t->permutation[j] = swap;
    }
}

/* Bring the device backend's weights and optimizer state to the host copy
 * that checkpoints, model files and digests read. */
static ap_status sync_to_host(trainer *t, ap_error *err)
{
    return t->device.to_host != NULL ? t->device.to_host(t->device.state, err) : AP_OK;
}

/* Rank 0 writes the checkpoint, with the job's process count so that a
 * resume can check it; the others wait for the outcome. */
static ap_status save_checkpoint(trainer *t, ap_error *err)
{
    ap_status status = sync_to_host(t, err);
    if (status == AP_OK && is_root(t)) {
        char path[AP_PATH_MAX + 64], world[16];
        run_path(t, "checkpoint.safetensors", path, sizeof(path));
        snprintf(world, sizeof(world), "%d", t->world);
        ap_st_meta extra[] = {{"world_size", world}};
        status = ap_train_state_save(path, t->net, &t->opt, &t->position, extra, 1, err);
    }
    return agree(t, status, "saving the checkpoint", err);
}

/* Check that the processes trained disjoint shards of the epoch: every image
 * at most once, and a global batch per step in all. */
static ap_status check_shards(trainer *t, long epoch_steps, ap_error *err)
{
    if (t->world == 1)
        return AP_OK;
    long distinct = 0;
    ap_status status =
        ap_dp_tally_check(&t->tally, t->comm, epoch_steps * t->batch, &distinct, err);
    if (status == AP_OK)
        AP_DEBUG("epoch %ld shards: %d processes trained %ld distinct images, %ld of them on "
                 "rank 0",
                 t->position.epoch + 1, t->world, distinct, t->tally.marked);
    return status;
}

/* Train the rest of the current epoch; returns AP_ERR_INTERRUPTED after
 * saving a checkpoint when a stop was requested. */
static ap_status run_epoch(trainer *t, double *mean_loss, double *images_per_second, ap_error *err)
{
    const ap_config *cfg = t->cfg;
    shuffle_epoch(t, t->position.epoch);
    if (t->world > 1)
        ap_dp_tally_clear(&t->tally);
    double window_start = now_seconds(), epoch_start = window_start;
    long window_steps = 0, epoch_steps = 0;
    while (t->position.step_in_epoch < t->steps_per_epoch) {
        float loss = 0.0f;
        bool stop = false;
        ap_status status = trainer_train_step(t, &loss, &stop, err);
        if (status != AP_OK)
            return status;
        t->position.step_in_epoch++;
        t->position.global_step++;
        t->position.epoch_loss_sum += loss;
        t->position.epoch_loss_steps++;
        window_steps++;
        epoch_steps++;
        if (t->position.global_step % cfg->train.log_every == 0) {
            double now = now_seconds();
            double lr = ap_lr_at_step(t->position.global_step - 1, t->warmup_steps, t->total_steps,
                                      cfg->train.learning_rate, cfg->train.min_learning_rate);
            status = trainer_log_step(
                t, loss, lr, (double)(window_steps * t->batch) / (now - window_start), err);
            if (status != AP_OK)
                return status;
            window_start = now;
            window_steps = 0;
        }
        if (stop) {
            status = save_checkpoint(t, err);
            if (status != AP_OK)
                return status;
            const char *command = t->request->continue_command;
            return ap_error_set(err, AP_ERR_INTERRUPTED,
                                "stopped by a signal at epoch %ld step %ld; the checkpoint in "
                                "%s is saved, so rerun %s to continue from it",
                                t->position.epoch + 1, t->position.global_step, t->run_dir,
                                command != NULL ? command : "the command with --resume");
        }
    }
    double seconds = now_seconds() - epoch_start;
    t->train_seconds += seconds;
    t->train_images += epoch_steps * t->batch;
    /* The sum and count come from the checkpoint for the steps trained
     * before a resume, so the mean covers the whole epoch. */
    long loss_steps = t->position.epoch_loss_steps;
    *mean_loss = loss_steps > 0 ? t->position.epoch_loss_sum / (double)loss_steps : NAN;
    *images_per_second = seconds > 0 ? (double)(epoch_steps * t->batch) / seconds : 0.0;
    return check_shards(t, epoch_steps, err);
}

static ap_status write_model_files(trainer *t, ap_train_outcome *outcome, ap_error *err)
{
    ap_status status = ap_train_state_save(outcome->model_path, t->net, NULL, NULL, NULL, 0, err);
    char weights_hash[65];
    if (status == AP_OK)
        status = ap_sha256_file(outcome->model_path, weights_hash, err);
    if (status != AP_OK)
        return status;

    ap_model_card_info info = {
        .cfg = t->cfg,
        .spec = &t->spec,
        .param_total = ap_net_param_total(t->net),
        .data = &t->data,
        .weights_file = AP_RUN_MODEL_FILE,
        .weights_sha256 = weights_hash,
        .epochs = t->position.epoch,
        .steps = t->position.global_step,
        .images_per_second = outcome->images_per_second,
        .validation_metrics = t->last_val_metrics,
    };
    status = ap_model_card_write(outcome->card_path, &info, err);
    if (status != AP_OK)
        return status;

    /* The marker comes last, after the weights and card are durable. */
    return ap_run_mark_complete(t->run_dir, t->position.epoch, t->position.global_step,
                                weights_hash, err);
}

static ap_status write_final_outputs(trainer *t, ap_train_outcome *outcome, ap_error *err)
{
    /* A run resumed after its last epoch has not evaluated in this process. */
    if (t->last_val_metrics == NULL) {
        double val_loss = 0.0;
        ap_status status = trainer_evaluate(t, AP_SPLIT_VAL, &val_loss, &t->last_val_metrics, err);
        if (status != AP_OK)
            return status;
    }
    ap_status status = sync_to_host(t, err);
    if (status == AP_OK && is_root(t))
        status = write_model_files(t, outcome, err);
    return agree(t, status, "writing the model", err);
}

/* The global batch is split into per-process micro-batches, each with its
 * own batch-norm statistics, so a job continues only with the process count
 * it started with. */
static ap_status check_checkpoint_world(const trainer *t, const char *path, ap_error *err)
{
    long saved = 1;
    ap_status status = ap_dp_checkpoint_world(path, &saved, err);
    if (status == AP_OK && saved != t->world)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "%s was written by a job of %ld process%s, but this job has %d; "
                              "resume with %ld (mpirun -np %ld), or start a new run "
                              "(--set run_name=NAME)",
                              path, saved, saved == 1 ? "" : "es", t->world, saved, saved);
    return status;
}

static ap_status load_checkpoint(trainer *t, const char *expected_hash, ap_error *err)
{
    char path[AP_PATH_MAX + 64];
    run_path(t, "checkpoint.safetensors", path, sizeof(path));
    ap_status status = check_checkpoint_world(t, path, err);
    if (status == AP_OK)
        status = ap_train_state_load(path, t->net, &t->opt, &t->position, err);
    if (status != AP_OK)
        return status;
    /* ap_run_check_state compared the settings with the checkpoint's before
     * any file was written; this guards a checkpoint replaced since then. */
    if (strcmp(t->position.config_hash, expected_hash) != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s was written with different settings than %s, and the run's "
                            "config.yaml did not show which (it was missing or edited); resume "
                            "with the config the run started with, or choose a new run_name "
                            "(--set run_name=NAME)",
                            path, t->cfg->source_path);
    AP_INFO("resuming from %s at epoch %ld step %ld", path, t->position.epoch + 1,
            t->position.global_step);
    return AP_OK;
}

/* Copy rank 0's weights, optimizer moments and position to the other processes. */
static ap_status share_training_state(trainer *t, ap_error *err)
{
    ap_status status = ap_dp_broadcast_net(t->comm, t->net, err);
    for (size_t i = 0; i < t->opt.tensor_count && status == AP_OK; i++) {
        const ap_net_tensor *tensor = ap_net_tensor_at(t->net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        size_t size = tensor->size * sizeof(float);
        status = ap_comm_broadcast(t->comm, t->opt.first_moment[i], size, 0,
                                   "broadcasting the optimizer state", err);
        if (status == AP_OK)
            status = ap_comm_broadcast(t->comm, t->opt.second_moment[i], size, 0,
                                       "broadcasting the optimizer state", err);
    }
    if (status == AP_OK)
        status = ap_comm_broadcast(t->comm, &t->opt.step, sizeof(t->opt.step), 0,
                                   "broadcasting the optimizer state", err);
    if (status == AP_OK)
        status = ap_comm_broadcast(t->comm, &t->position, sizeof(t->position), 0,
                                   "broadcasting the training position", err);
    return status;
}

/* Start from the initial weights, or continue from the checkpoint. In a job,
 * rank 0 reads the checkpoint and sends it to the others. A fresh start
 * checks instead that every process initialised the same weights. */
static ap_status restore_or_start(trainer *t, bool has_checkpoint, ap_error *err)
{
    char expected_hash[65];
    ap_run_settings_hash(t->cfg, expected_hash);
    memset(&t->position, 0, sizeof(t->position));
    memcpy(t->position.config_hash, expected_hash, sizeof(expected_hash));

    ap_status status = AP_OK;
    if (has_checkpoint && is_root(t))
        status = load_checkpoint(t, expected_hash, err);
    status = agree(t, status, "loading the checkpoint", err);
    if (status != AP_OK || t->world == 1)
        return status;
    if (has_checkpoint)
        return share_training_state(t, err);
    char digest[65];
    ap_dp_net_digest(t->net, digest);
    return ap_dp_check_same(t->comm, digest, AP_ERR_BACKEND,
                            "comparing the initial weights of the processes", err);
}

/* Every process must train the same network on the same data and split. */
static ap_status check_same_inputs(trainer *t, ap_error *err)
{
    char config_hash[65], fingerprint[256];
    ap_run_settings_hash(t->cfg, config_hash);
    snprintf(fingerprint, sizeof(fingerprint), "config %s manifest %s split %s images %zu",
             config_hash, t->data.manifest_hash, t->data.split_hash, t->data.images.count);
    return ap_dp_check_same(t->comm, fingerprint, AP_ERR_INVALID,
                            "comparing the settings and data of the processes", err);
}

/* oneDNN's reference kernels are orders of magnitude slower than its jit
 * ones; name each one so a slow run on an unusual CPU is explained. */
static void warn_reference_primitives(const ap_net *net)
{
    if (ap_net_reference_count(net) == 0)
        return;
    for (size_t i = 0; i < ap_net_primitive_count(net); i++) {
        ap_net_primitive primitive;
        if (ap_net_primitive_at(net, i, &primitive, NULL) == AP_OK && primitive.reference)
            AP_WARN("slow oneDNN reference kernel for %s %s (%s): %s", primitive.layer,
                    primitive.pass, primitive.kind, primitive.memories);
    }
}

/* Write data_report.json for a load that failed after listing its bad and
 * missing images (data.max_bad_fraction), so the user can see which. The
 * decoded images are gone then, so the readable count is the rows that
 * were neither bad nor missing. */
static void write_failed_data_report(const trainer *t)
{
    const ap_data_report *report = &t->data.report;
    size_t problems = report->bad_count + report->missing_count;
    if (problems == 0 || problems > t->data.manifest.row_count)
        return;
    ap_run_data counted = t->data;
    counted.images.count = t->data.manifest.row_count - problems;
    char path[AP_PATH_MAX + 64];
    run_path(t, "data_report.json", path, sizeof(path));
    ap_error ignored;
    if (ap_run_data_write_report(&counted, path, &ignored) == AP_OK)
        AP_WARN("the bad and missing images are listed in %s", path);
}

static ap_status prepare_data(trainer *t, ap_error *err)
{
    char path[AP_PATH_MAX + 64];
    ap_status status = write_config_copy(t, err);
    if (status == AP_OK) {
        status = ap_run_data_prepare(t->cfg, t->run_dir, &t->data, err);
        if (status != AP_OK)
            write_failed_data_report(t);
    }
    if (status != AP_OK)
        return status;
    ap_run_data_log_summary(&t->data);
    run_path(t, "data_report.json", path, sizeof(path));
    return ap_run_data_write_report(&t->data, path, err);
}

/* Rank 0 writes the split and the decoded image cache, and the other
 * processes then read both from the run folder, which must therefore be on
 * storage that every node mounts. */
static ap_status load_data(trainer *t, ap_error *err)
{
    ap_status status = is_root(t) ? prepare_data(t, err) : AP_OK;
    status = agree(t, status, "preparing the data", err);
    if (status == AP_OK && !is_root(t))
        status = ap_run_data_prepare(t->cfg, t->run_dir, &t->data, err);
    return agree(t, status, "loading the data", err);
}

static ap_status plan_epochs(trainer *t, ap_error *err)
{
    const ap_config *cfg = t->cfg;
    t->steps_per_epoch = (long)(t->data.part_count[AP_SPLIT_TRAIN] / (size_t)t->batch);
    if (t->steps_per_epoch == 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "train.batch_size %d is larger than the %zu training images; lower "
                            "it",
                            t->batch, t->data.part_count[AP_SPLIT_TRAIN]);
    t->total_steps = t->steps_per_epoch * cfg->train.epochs;
    t->warmup_steps = (long)lround(cfg->train.warmup_epochs * (double)t->steps_per_epoch);
    return AP_OK;
}

static void log_model(const trainer *t)
{
    const ap_config *cfg = t->cfg;
    char split[128] = "";
    if (t->layout.chunks > 1)
        snprintf(split, sizeof(split), " (%d micro-batches of %d over %d process%s)",
                 t->layout.chunks, t->layout.micro_batch, t->world, t->world > 1 ? "es" : "");
    AP_INFO("model: %zu parameters, %.1f MFLOP per training image, batch %d%s, %ld steps per "
            "epoch, %d threads",
            ap_net_param_total(t->net), ap_net_flops_per_image(t->net, true) / 1e6, t->batch, split,
            t->steps_per_epoch, omp_get_max_threads());
    for (int label = 0; label < cfg->data.label_count; label++)
        AP_DEBUG("positive weight %s %.3f", cfg->data.labels[label], (double)t->pos_weight[label]);
}

static ap_status open_train_log(trainer *t, ap_error *err)
{
    if (!is_root(t))
        return AP_OK;
    char path[AP_PATH_MAX + 64];
    run_path(t, AP_RUN_LOG_FILE, path, sizeof(path));
    t->log_file = fopen(path, "a");
    if (t->log_file == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot open %s for writing", path);
    return AP_OK;
}

/* Start the GPU backend from the restored or initial host weights. */
static ap_status open_device(trainer *t, ap_error *err)
{
    if (strcmp(t->cfg->train.device, "cuda") != 0)
        return AP_OK;
    ap_backend_setup setup = {
        .cfg = t->cfg,
        .spec = &t->spec,
        .net = t->net,
        .opt = &t->opt,
        .comm = t->comm,
        .layout = &t->layout,
        .images = &t->data.images,
        .pos_weight = t->pos_weight,
    };
    ap_status status = ap_train_backend_cuda(&setup, &t->device, err);
    return agree(t, status, "starting the GPU backend", err);
}

static ap_status setup(trainer *t, bool has_checkpoint, ap_error *err)
{
    const ap_config *cfg = t->cfg;
    ap_status status = load_data(t, err);
    if (status == AP_OK)
        status = plan_epochs(t, err);
    if (status != AP_OK)
        return status;
    compute_pos_weights(t);

    ap_net_spec_from_config(cfg, &t->spec);
    status = ap_net_create(&t->spec, t->layout.micro_batch, cfg->seed ^ STREAM_INIT, &t->net, err);
    if (status == AP_OK)
        status = ap_optimizer_init(&t->opt, t->net, err);
    if (status == AP_OK)
        status = allocate_step_buffers(t, err);
    if (status == AP_OK)
        status = open_train_log(t, err);
    status = agree(t, status, "building the network", err);
    if (status == AP_OK)
        status = check_same_inputs(t, err);
    if (status == AP_OK)
        status = restore_or_start(t, has_checkpoint, err);
    if (status == AP_OK)
        status = open_device(t, err);
    if (status != AP_OK)
        return status;

    warn_reference_primitives(t->net);
    log_model(t);
    return AP_OK;
}

/* Every process checks that its weights still equal rank 0's: the processes
 * apply identical updates only while the all-reduce returns the same sums
 * everywhere. */
static ap_status check_weights_in_step(trainer *t, ap_error *err)
{
    if (t->world == 1)
        return AP_OK;
    ap_status status = sync_to_host(t, err);
    if (status != AP_OK)
        return status;
    char digest[65];
    ap_dp_net_digest(t->net, digest);
    return ap_dp_check_same(t->comm, digest, AP_ERR_BACKEND,
                            "comparing the weights of the processes", err);
}

static ap_status train_epochs(trainer *t, ap_train_outcome *outcome, ap_error *err)
{
    const ap_config *cfg = t->cfg;
    while (t->position.epoch < cfg->train.epochs) {
        double train_loss = 0.0, images_per_second = 0.0, val_loss = 0.0;
        json_t *metrics = NULL;
        ap_status status = run_epoch(t, &train_loss, &images_per_second, err);
        if (status == AP_ERR_INTERRUPTED)
            outcome->interrupted = true;
        if (status != AP_OK)
            return status;
        t->position.epoch++;
        t->position.step_in_epoch = 0;
        t->position.epoch_loss_sum = 0.0;
        t->position.epoch_loss_steps = 0;
        status = check_weights_in_step(t, err);
        if (status == AP_OK)
            status = trainer_evaluate(t, AP_SPLIT_VAL, &val_loss, &metrics, err);
        if (status != AP_OK)
            return status;
        status = trainer_log_epoch(t, train_loss, val_loss, metrics, images_per_second, err);
        json_decref(t->last_val_metrics);
        t->last_val_metrics = metrics;
        if (status != AP_OK)
            return status;

        bool last = t->position.epoch == cfg->train.epochs;
        if (last || t->position.epoch % cfg->train.checkpoint_every == 0) {
            status = save_checkpoint(t, err);
            if (status != AP_OK)
                return status;
        }
    }
    outcome->epochs_done = t->position.epoch;
    outcome->images_per_second =
        t->train_seconds > 0 ? (double)t->train_images / t->train_seconds : 0.0;
    return AP_OK;
}

static void trainer_free(trainer *t)
{
    if (t->log_file != NULL)
        fclose(t->log_file);
    ap_run_unlock(t->lock_fd);
    json_decref(t->last_val_metrics);
    free(t->permutation);
    free(t->raw);
    free(t->input);
    free(t->logits);
    free(t->d_logits);
    free(t->targets);
    free(t->augment);
    ap_dp_bucket_free(&t->bucket);
    ap_dp_tally_free(&t->tally);
    if (t->device.destroy != NULL)
        t->device.destroy(t->device.state);
    ap_optimizer_free(&t->opt);
    if (t->net != NULL)
        ap_net_destroy(t->net);
    ap_run_data_free(&t->data);
}

static ap_status train_run(trainer *t, ap_train_outcome *outcome, ap_error *err)
{
    bool complete = false, has_checkpoint = false, rewrite = false;
    ap_status status = ap_run_dir(t->cfg, t->run_dir, sizeof(t->run_dir), err);
    if (status == AP_OK)
        status = find_run_state(t, &complete, &has_checkpoint, &rewrite, err);
    if (status != AP_OK)
        return status;

    snprintf(outcome->run_dir, sizeof(outcome->run_dir), "%s", t->run_dir);
    run_path(t, AP_RUN_MODEL_FILE, outcome->model_path, sizeof(outcome->model_path));
    run_path(t, AP_RUN_CARD_FILE, outcome->card_path, sizeof(outcome->card_path));
    if (complete) {
        outcome->already_complete = true;
        AP_INFO("run %s is already complete; nothing to train", t->run_dir);
        return AP_OK;
    }

    int threads = ap_dp_threads(t->comm, t->cfg->train.threads);
    if (threads > 0)
        omp_set_num_threads(threads);
    status = setup(t, has_checkpoint, err);
    if (status == AP_OK && rewrite)
        status = check_final_checkpoint(t, err);
    if (status == AP_OK)
        status = train_epochs(t, outcome, err);
    if (status == AP_OK)
        status = write_final_outputs(t, outcome, err);
    if (status == AP_OK && rewrite)
        AP_INFO("model and card written again from the final checkpoint: %s",
                outcome->model_path);
    else if (status == AP_OK)
        AP_INFO("training finished: %ld epoch%s, %.1f images/s; model %s", outcome->epochs_done,
                outcome->epochs_done == 1 ? "" : "s", outcome->images_per_second,
                outcome->model_path);
    return status;
}

ap_status ap_train(const ap_train_request *request, ap_train_outcome *outcome, ap_error *err)
{
    trainer t = {.cfg = request->cfg, .request = request, .lock_fd = -1};
    memset(outcome, 0, sizeof(*outcome));
    ap_status status = check_device(t.cfg, err);
    if (status == AP_OK)
        status = open_comm(&t, err);
    if (status == AP_OK)
        status = train_run(&t, outcome, err);
    trainer_free(&t);
    if (t.comm != NULL && ap_comm_failed(t.comm)) {
        /* A process is gone or hung, so the job cannot finish and MPI cannot
         * shut down cleanly: MPI_Abort ends every process. */
        AP_ERROR("train failed: %s", err->message);
        ap_comm_abort(t.comm, ABORT_EXIT_CODE);
    }
    ap_error close_err = {0};
    ap_status closed = ap_comm_close(t.comm, &close_err);
    if (status == AP_OK && closed != AP_OK) {
        *err = close_err;
        status = closed;
    }
    return status;
}
