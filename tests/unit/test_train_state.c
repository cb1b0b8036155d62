#include "pipeline/train/train_state.h"

#include <stdbool.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "tests/unit/check.h"

static const ap_net_spec tiny_spec = {
    .in_channels = 3,
    .height = 16,
    .width = 16,
    .stem_channels = 4,
    .stem_kernel = 3,
    .stem_stride = 1,
    .stage_count = 2,
    .stage_channels = {4, 8},
    .stage_blocks = {1, 1},
    .dropout = 0.0f,
    .label_count = 3,
};

static ap_net *make_net(uint64_t seed)
{
    ap_net *net = NULL;
    ap_error err = {0};
    if (ap_net_create(&tiny_spec, 2, seed, &net, &err) != AP_OK) {
        fprintf(stderr, "ap_net_create: %s\n", err.message);
        exit(1);
    }
    return net;
}

/* One training step so the moments and batch-norm statistics are non-trivial. */
static void train_once(ap_net *net, ap_optimizer *opt)
{
    float input[2 * 3 * 16 * 16], logits[2 * 3], d_logits[2 * 3];
    for (size_t i = 0; i < sizeof(input) / sizeof(input[0]); i++)
        input[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    ap_error err = {0};
    CHECK_INT_EQ(ap_net_forward(net, input, true, 1, 0, logits, &err), AP_OK);
    for (int i = 0; i < 6; i++)
        d_logits[i] = 0.1f * (float)(i - 3);
    CHECK_INT_EQ(ap_net_backward(net, d_logits, &err), AP_OK);
    ap_optimizer_step(opt, net, 1e-2, 0.01, 0.9, 0.999, 1e-8);
}

static int tensors_equal(ap_net *a, ap_net *b)
{
    for (size_t i = 0; i < ap_net_tensor_count(a); i++) {
        ap_net_tensor *x = ap_net_tensor_at(a, i), *y = ap_net_tensor_at(b, i);
        if (x->size != y->size || memcmp(x->data, y->data, x->size * sizeof(float)) != 0) {
            fprintf(stderr, "tensor %s differs\n", x->name);
            return 0;
        }
    }
    return 1;
}

/* Copy the checkpoint src to dst with its metadata changed. Without the
 * running loss, the copy is a checkpoint as written before it was saved,
 * with a content hash over the tensors and the five older position keys.
 * With loss_sum not NULL, epoch_loss_sum becomes loss_sum and the content
 * hash is left as it was. */
static void rewrite_checkpoint(const char *src, const char *dst, const char *loss_sum)
{
    static const char *const old_keys[] = {"epoch", "step_in_epoch", "global_step",
                                           "optimizer_step", "config_sha256"};
    ap_st_file file;
    ap_error err = {0};
    CHECK_INT_EQ(ap_safetensors_read(src, &file, &err), AP_OK);
    ap_st_tensor *tensors = calloc(file.count, sizeof(*tensors));
    ap_st_meta *meta = calloc(file.meta_count, sizeof(*meta));
    CHECK(tensors != NULL);
    CHECK(meta != NULL);
    ap_sha256_ctx *ctx = ap_sha256_begin();
    for (size_t i = 0; i < file.count; i++) {
        const ap_st_loaded *loaded = &file.tensors[i];
        tensors[i] =
            (ap_st_tensor){.name = loaded->name, .ndim = loaded->ndim, .data = loaded->data};
        memcpy(tensors[i].shape, loaded->shape, sizeof(tensors[i].shape));
        ap_sha256_update(ctx, loaded->name, strlen(loaded->name) + 1);
        ap_sha256_update(ctx, loaded->data, loaded->size * sizeof(float));
    }
    for (size_t i = 0; i < 5; i++) {
        const char *value = ap_st_meta_get(&file, old_keys[i]);
        ap_sha256_update(ctx, value, strlen(value) + 1);
    }
    char old_hash[65];
    ap_sha256_end(ctx, old_hash);

    size_t meta_count = 0;
    for (size_t i = 0; i < file.meta_count; i++) {
        const char *key = file.meta_keys[i], *value = file.meta_values[i];
        bool loss_key = strcmp(key, "epoch_loss_sum") == 0 || strcmp(key, "epoch_loss_steps") == 0;
        if (loss_sum == NULL && loss_key)
            continue;
        if (loss_sum == NULL && strcmp(key, "content_sha256") == 0)
            value = old_hash;
        if (loss_sum != NULL && strcmp(key, "epoch_loss_sum") == 0)
            value = loss_sum;
        meta[meta_count++] = (ap_st_meta){key, value};
    }
    CHECK_INT_EQ(ap_safetensors_write(dst, tensors, file.count, meta, meta_count, &err), AP_OK);
    free(tensors);
    free(meta);
    ap_st_file_free(&file);
}

int main(void)
{
    const char *dir = check_temp_dir("train-state");
    CHECK(dir != NULL);
    char path[4200], bad_path[4200];
    snprintf(path, sizeof(path), "%s/checkpoint.safetensors", dir);
    snprintf(bad_path, sizeof(bad_path), "%s/model.safetensors", dir);

    ap_net *net = make_net(7);
    ap_optimizer opt;
    ap_error err = {0};
    CHECK_INT_EQ(ap_optimizer_init(&opt, net, &err), AP_OK);
    train_once(net, &opt);
    train_once(net, &opt);

    /* A sum with no short decimal form checks that it is read back exactly. */
    ap_train_position position = {.epoch = 3,
                                  .step_in_epoch = 5,
                                  .global_step = 41,
                                  .epoch_loss_sum = 5.0 / 3.0,
                                  .epoch_loss_steps = 5};
    snprintf(position.config_hash, sizeof(position.config_hash), "%s", "abc123");
    CHECK_INT_EQ(ap_train_state_save(path, net, &opt, &position, NULL, 0, &err), AP_OK);

    /* A differently seeded network takes every tensor and moment from the file. */
    ap_net *restored = make_net(99);
    ap_optimizer restored_opt;
    ap_train_position restored_position;
    CHECK_INT_EQ(ap_optimizer_init(&restored_opt, restored, &err), AP_OK);
    CHECK(!tensors_equal(net, restored));
    CHECK_INT_EQ(ap_train_state_load(path, restored, &restored_opt, &restored_position, &err),
                 AP_OK);
    CHECK(tensors_equal(net, restored));
    CHECK_INT_EQ(restored_position.epoch, 3);
    CHECK_INT_EQ(restored_position.step_in_epoch, 5);
    CHECK_INT_EQ(restored_position.global_step, 41);
    CHECK_INT_EQ(restored_opt.step, 2);
    CHECK(strcmp(restored_position.config_hash, "abc123") == 0);
    CHECK_NEAR(restored_position.epoch_loss_sum, 5.0 / 3.0, 0.0);
    CHECK_INT_EQ(restored_position.epoch_loss_steps, 5);
    for (size_t i = 0; i < opt.tensor_count; i++) {
        if (opt.first_moment[i] == NULL)
            continue;
        size_t bytes = ap_net_tensor_at(net, i)->size * sizeof(float);
        CHECK(memcmp(opt.first_moment[i], restored_opt.first_moment[i], bytes) == 0);
        CHECK(memcmp(opt.second_moment[i], restored_opt.second_moment[i], bytes) == 0);
    }

    /* Continuing both gives the same weights: the state is complete. */
    train_once(net, &opt);
    train_once(restored, &restored_opt);
    CHECK(tensors_equal(net, restored));

    /* A checkpoint written before the running loss was saved still loads,
     * with no loss recorded for the epoch. */
    char old_path[4200];
    snprintf(old_path, sizeof(old_path), "%s/old-checkpoint.safetensors", dir);
    rewrite_checkpoint(path, old_path, NULL);
    ap_train_position old_position = {.epoch_loss_sum = 9.0, .epoch_loss_steps = 9};
    CHECK_INT_EQ(ap_train_state_load(old_path, restored, &restored_opt, &old_position, &err),
                 AP_OK);
    CHECK_INT_EQ(old_position.epoch, 3);
    CHECK_INT_EQ(old_position.step_in_epoch, 5);
    CHECK_NEAR(old_position.epoch_loss_sum, 0.0, 0.0);
    CHECK_INT_EQ(old_position.epoch_loss_steps, 0);

    /* The content hash covers the running loss. */
    rewrite_checkpoint(path, old_path, "1.5");
    CHECK_INT_EQ(ap_train_state_load(old_path, restored, &restored_opt, &old_position, &err),
                 AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "content hash");

    /* A weights-only file loads into a network but cannot resume training. */
    CHECK_INT_EQ(ap_train_state_save(bad_path, net, NULL, NULL, NULL, 0, &err), AP_OK);
    ap_net *weights_only = make_net(5);
    CHECK_INT_EQ(ap_train_state_load(bad_path, weights_only, NULL, NULL, &err), AP_OK);
    CHECK(tensors_equal(net, weights_only));
    CHECK_INT_EQ(ap_train_state_load(bad_path, restored, &restored_opt, &restored_position, &err),
                 AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "not a training checkpoint");

    /* A network of another shape is rejected with the tensor named. */
    ap_net_spec wider = tiny_spec;
    wider.stage_channels[1] = 16;
    ap_net *other = NULL;
    CHECK_INT_EQ(ap_net_create(&wider, 2, 1, &other, &err), AP_OK);
    CHECK_INT_EQ(ap_train_state_load(path, other, NULL, NULL, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "stages.1");

    /* A changed byte in the tensor data is detected by the content hash. */
    FILE *file = fopen(path, "r+b");
    CHECK(file != NULL);
    fseek(file, -5, SEEK_END);
    int byte = fgetc(file);
    fseek(file, -5, SEEK_END);
    fputc(byte ^ 0x01, file);
    fclose(file);
    CHECK_INT_EQ(ap_train_state_load(path, restored, &restored_opt, &restored_position, &err),
                 AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "content hash");

    /* Weights holding NaN are neither saved nor loaded. */
    ap_net_tensor *first = ap_net_tensor_at(weights_only, 0);
    first->data[0] = NAN;
    CHECK_INT_EQ(ap_train_state_save(path, weights_only, NULL, NULL, NULL, 0, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "NaN");
    ap_st_tensor nan_tensor = {.name = first->name, .ndim = first->ndim, .data = first->data};
    for (int d = 0; d < first->ndim; d++)
        nan_tensor.shape[d] = first->shape[d];
    CHECK_INT_EQ(ap_safetensors_write(bad_path, &nan_tensor, 1, NULL, 0, &err), AP_OK);
    CHECK_INT_EQ(ap_train_state_load(bad_path, weights_only, NULL, NULL, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "NaN");

    ap_optimizer_free(&opt);
    ap_optimizer_free(&restored_opt);
    ap_net_destroy(net);
    ap_net_destroy(restored);
    ap_net_destroy(weights_only);
    ap_net_destroy(other);
    return check_finish();
}
