/* The data-parallel helpers in one process: the micro-batch layout, the
 * summed loss, the gradient bucket (with the sum of two ranks' buckets done
 * by hand), the shard tally and the checkpoint's process count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/bce_loss.h"
#include "pipeline/parallel/data_parallel.h"
#include "pipeline/train/checkpoint.h"
#include "tests/unit/check.h"

static const ap_net_spec spec = {
    .in_channels = 3,
    .height = 8,
    .width = 8,
    .stem_channels = 4,
    .stem_kernel = 3,
    .stem_stride = 1,
    .stage_count = 1,
    .stage_channels = {4},
    .stage_blocks = {1},
    .dropout = 0.0f,
    .label_count = 2,
};

static ap_net *make_net(void)
{
    ap_net *net = NULL;
    ap_error err = {0};
    if (ap_net_create(&spec, 2, 3, &net, &err) != AP_OK) {
        fprintf(stderr, "ap_net_create: %s\n", err.message);
        exit(1);
    }
    return net;
}

static ap_comm *open_single(void)
{
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMI_SIZE");
    unsetenv("PMIX_RANK");
    ap_comm *comm = NULL;
    ap_error err = {0};
    if (ap_comm_open(5, &comm, &err) != AP_OK) {
        fprintf(stderr, "ap_comm_open: %s\n", err.message);
        exit(1);
    }
    return comm;
}

static void layout_splits_batch(void)
{
    ap_dp_layout layout;
    ap_error err = {0};
    CHECK_INT_EQ(ap_dp_layout_init(&layout, 16, 2, 1, 2, &err), AP_OK);
    CHECK_INT_EQ(layout.micro_batch, 4);
    CHECK_INT_EQ(layout.chunks, 4);
    /* Rank 1 takes micro-batches 2 and 3 of the global batch. */
    CHECK_INT_EQ(ap_dp_micro_offset(&layout, 0), 8);
    CHECK_INT_EQ(ap_dp_micro_offset(&layout, 1), 12);
    CHECK_INT_EQ(ap_dp_dropout_stream(&layout, 5, 1), 5 * 4 + 3);

    /* One process without accumulation keeps the step as the stream. */
    CHECK_INT_EQ(ap_dp_layout_init(&layout, 16, 1, 0, 1, &err), AP_OK);
    CHECK_INT_EQ(layout.micro_batch, 16);
    CHECK_INT_EQ(ap_dp_micro_offset(&layout, 0), 0);
    CHECK_INT_EQ(ap_dp_dropout_stream(&layout, 5, 0), 5);
}

/* Rank r of a job of n processes and micro-batch r of one process with n
 * accumulation steps see the same images and the same dropout draws. */
static void layout_matches_accumulation(void)
{
    ap_dp_layout job, single;
    ap_error err = {0};
    CHECK_INT_EQ(ap_dp_layout_init(&single, 24, 1, 0, 3, &err), AP_OK);
    for (int rank = 0; rank < 3; rank++) {
        CHECK_INT_EQ(ap_dp_layout_init(&job, 24, 3, rank, 1, &err), AP_OK);
        CHECK_INT_EQ(ap_dp_micro_offset(&job, 0), ap_dp_micro_offset(&single, rank));
        CHECK_INT_EQ(ap_dp_dropout_stream(&job, 7, 0), ap_dp_dropout_stream(&single, 7, rank));
    }
}

static void layout_rejects_uneven_batch(void)
{
    ap_dp_layout layout;
    ap_error err = {0};
    CHECK_INT_EQ(ap_dp_layout_init(&layout, 15, 2, 0, 1, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "train.batch_size 15 does not split evenly");
    CHECK_STR_CONTAINS(err.message, "2 processes");
    CHECK_STR_CONTAINS(err.message, "such as 16");
    CHECK_INT_EQ(ap_dp_layout_init(&layout, 8, 4, 0, 2, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "leaves 1 image per micro-batch");
    CHECK_STR_CONTAINS(err.message, "at least 16");
    CHECK_INT_EQ(ap_dp_layout_init(&layout, 8, 2, 2, 1, &err), AP_ERR_INVALID);
}

/* Sums over two micro-batches with different known counts, divided by the
 * total known count, give the mean and gradient of the whole batch. */
static void loss_sum_matches_mean(void)
{
    const float logits[12] = {0.3f, -1.2f, 2.5f, 0.0f,  -0.4f, 1.1f,
                              4.0f, -3.0f, 0.7f, -0.1f, 0.2f,  -2.2f};
    const int8_t targets[12] = {1, 0, -1, 1, 0, 0, -1, -1, 1, -1, 0, -1};
    const float pos_weight[2] = {3.0f, 0.5f};
    float mean_grad[12], sum_grad[12];
    float mean = ap_cpu_bce_loss(logits, targets, pos_weight, 6, 2, mean_grad);

    long known_a = 0, known_b = 0;
    double sum_a = ap_dp_bce_loss_sum(logits, targets, pos_weight, 2, 2, sum_grad, &known_a);
    double sum_b =
        ap_dp_bce_loss_sum(logits + 4, targets + 4, pos_weight, 4, 2, sum_grad + 4, &known_b);
    CHECK_INT_EQ(known_a, 3);
    CHECK_INT_EQ(known_b, 4);
    CHECK_NEAR((sum_a + sum_b) / 7.0, mean, 1e-6);
    for (int i = 0; i < 12; i++)
        CHECK_NEAR(sum_grad[i] / 7.0f, mean_grad[i], 1e-7);
    CHECK_NEAR(sum_grad[2], 0.0, 0.0);
}

static void set_grads(ap_net *net, float value)
{
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        for (size_t j = 0; j < tensor->size; j++) {
            if (tensor->role == AP_TENSOR_STATE)
                tensor->data[j] = value;
            else
                tensor->grad[j] = value;
        }
    }
}

/* Two ranks' buckets summed by hand, as the all-reduce sums them. */
static void bucket_combines_ranks(void)
{
    ap_net *net = make_net();
    ap_dp_bucket rank0, rank1;
    ap_error err = {0};
    CHECK_INT_EQ(ap_dp_bucket_init(&rank0, net, 2, 0, &err), AP_OK);
    CHECK_INT_EQ(ap_dp_bucket_init(&rank1, net, 2, 1, &err), AP_OK);
    ap_dp_bucket_clear(&rank0);
    ap_dp_bucket_clear(&rank1);

    set_grads(net, 2.0f);
    ap_dp_bucket_add_grads(&rank0, net);
    ap_dp_bucket_add_grads(&rank0, net); /* a second micro-batch of rank 0 */
    ap_dp_bucket_add_loss(&rank0, 3.0, 4);
    ap_dp_bucket_put_state(&rank0, net);
    set_grads(net, 6.0f);
    ap_dp_bucket_add_grads(&rank1, net);
    ap_dp_bucket_add_loss(&rank1, 5.0, 4);
    ap_dp_bucket_put_state(&rank1, net);
    ap_dp_bucket_set_stop(&rank1, true);
    ap_dp_bucket_set_status(&rank1, AP_ERR_IO);
    for (size_t i = 0; i < rank0.count; i++)
        rank0.values[i] += rank1.values[i];

    ap_dp_bucket_apply(&rank0, net);
    CHECK_INT_EQ(ap_dp_bucket_known(&rank0), 8);
    CHECK_NEAR(ap_dp_bucket_loss(&rank0), 1.0, 1e-7);
    CHECK(ap_dp_bucket_stop(&rank0));
    ap_status failed = AP_OK;
    CHECK_INT_EQ(ap_dp_bucket_failed_rank(&rank0, &failed), 1);
    CHECK_INT_EQ(failed, AP_ERR_IO);
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        const ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role == AP_TENSOR_STATE)
            CHECK_NEAR(tensor->data[0], (2.0 + 6.0) / 2.0, 0.0);
        else
            CHECK_NEAR(tensor->grad[tensor->size - 1], (2.0 + 2.0 + 6.0) / 8.0, 0.0);
    }
    ap_dp_bucket_free(&rank0);
    ap_dp_bucket_free(&rank1);
    ap_net_destroy(net);
}

/* No known target in the whole global batch: the gradient is zero, as the
 * mean loss of ap_cpu_bce_loss gives. */
static void bucket_without_known_targets(void)
{
    ap_net *net = make_net();
    ap_dp_bucket bucket;
    ap_error err = {0};
    CHECK_INT_EQ(ap_dp_bucket_init(&bucket, net, 1, 0, &err), AP_OK);
    ap_dp_bucket_clear(&bucket);
    set_grads(net, 1.0f);
    ap_dp_bucket_add_grads(&bucket, net);
    ap_dp_bucket_add_loss(&bucket, 0.0, 0);
    ap_dp_bucket_apply(&bucket, net);
    CHECK_NEAR(ap_dp_bucket_loss(&bucket), 0.0, 0.0);
    const ap_net_tensor *first = ap_net_tensor_at(net, 0);
    CHECK_NEAR(first->grad[0], 0.0, 0.0);
    ap_status failed = AP_OK;
    CHECK_INT_EQ(ap_dp_bucket_failed_rank(&bucket, &failed), -1);
    ap_dp_bucket_free(&bucket);
    ap_net_destroy(net);
}

static void tally_checks_shards(void)
{
    ap_comm *comm = open_single();
    ap_dp_tally tally;
    ap_error err = {0};
    CHECK_INT_EQ(ap_dp_tally_init(&tally, 10, &err), AP_OK);
    const size_t first[3] = {4, 1, 7}, again[2] = {8, 1};
    long distinct = 0;

    ap_dp_tally_clear(&tally);
    ap_dp_tally_mark(&tally, first, 3);
    CHECK_INT_EQ(ap_dp_tally_check(&tally, comm, 3, &distinct, &err), AP_OK);
    CHECK_INT_EQ(distinct, 3);
    CHECK_INT_EQ(tally.marked, 3);

    ap_dp_tally_clear(&tally);
    ap_dp_tally_mark(&tally, first, 3);
    CHECK_INT_EQ(ap_dp_tally_check(&tally, comm, 4, &distinct, &err), AP_ERR_BACKEND);
    CHECK_STR_CONTAINS(err.message, "trained 3 images in this epoch, expected 4");

    ap_dp_tally_clear(&tally);
    ap_dp_tally_mark(&tally, first, 3);
    ap_dp_tally_mark(&tally, again, 2);
    CHECK_INT_EQ(ap_dp_tally_check(&tally, comm, 5, &distinct, &err), AP_ERR_BACKEND);
    CHECK_STR_CONTAINS(err.message, "image 1 was trained 2 times");
    ap_dp_tally_free(&tally);
    ap_comm_close(comm, &err);
}

/* In one process the agreement and the comparison have no other rank to hear. */
static void single_process_agreement(void)
{
    ap_comm *comm = open_single();
    ap_error err = {0};
    CHECK_INT_EQ(ap_dp_agree(comm, AP_OK, "testing", &err), AP_OK);
    ap_error_set(&err, AP_ERR_IO, "disk full");
    CHECK_INT_EQ(ap_dp_agree(comm, AP_ERR_IO, "testing", &err), AP_ERR_IO);
    CHECK_STR_CONTAINS(err.message, "disk full");
    CHECK_INT_EQ(ap_dp_check_same(comm, "abc", AP_ERR_INVALID, "testing", &err), AP_OK);
    CHECK_INT_EQ(ap_dp_threads(comm, 0), 0);
    CHECK_INT_EQ(ap_dp_threads(comm, 3), 3);
    ap_comm_close(comm, &err);
}

static void write_checkpoint(const char *path, const char *world)
{
    const float value = 1.0f;
    ap_st_tensor tensor = {.name = "x", .ndim = 1, .shape = {1}, .data = &value};
    ap_st_meta meta[] = {{"format", "apiary-checkpoint"}, {"world_size", world}};
    ap_error err = {0};
    CHECK_INT_EQ(ap_safetensors_write(path, &tensor, 1, meta, world != NULL ? 2 : 1, &err), AP_OK);
}

static void checkpoint_world_size(void)
{
    const char *dir = check_temp_dir("parallel-data");
    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    char path[4200];
    snprintf(path, sizeof(path), "%s/checkpoint.safetensors", dir);
    long world = 0;
    ap_error err = {0};

    write_checkpoint(path, "3");
    CHECK_INT_EQ(ap_dp_checkpoint_world(path, &world, &err), AP_OK);
    CHECK_INT_EQ(world, 3);
    write_checkpoint(path, NULL);
    CHECK_INT_EQ(ap_dp_checkpoint_world(path, &world, &err), AP_OK);
    CHECK_INT_EQ(world, 1);
    write_checkpoint(path, "2 processes");
    CHECK_INT_EQ(ap_dp_checkpoint_world(path, &world, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "world_size \"2 processes\" is not a process count");
}

int main(void)
{
    layout_splits_batch();
    layout_matches_accumulation();
    layout_rejects_uneven_batch();
    loss_sum_matches_mean();
    bucket_combines_ranks();
    bucket_without_known_targets();
    tally_checks_shards();
    single_process_agreement();
    checkpoint_world_size();
    return check_finish();
}
