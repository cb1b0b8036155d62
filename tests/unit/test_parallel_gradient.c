/* The data-parallel gradient equals the gradient of the whole global batch.
 *
 * Batch norm normalises each micro-batch with its own statistics, so in
 * general the two differ by design. They agree exactly (in real arithmetic)
 * when both micro-batches contain the same images. The statistics of each
 * micro-batch then equal those of the whole batch. In the backward pass, the
 * difference between per-micro-batch and whole-batch normalisation is equal
 * and opposite in the two copies, so it cancels in every parameter gradient.
 * The targets of the two copies differ, with unknown labels spread unevenly,
 * so the loss normalisation over the global known-target count is tested.
 *
 * Run plainly, the two micro-batches are accumulated in one process. Run as
 * "test_parallel_gradient --ranks" under mpirun -np 2, each process computes
 * one micro-batch and the gradients meet in the MPI all-reduce. The plain
 * run starts that job itself when mpirun is installed. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/cpu/bce_loss.h"
#include "pipeline/parallel/comm.h"
#include "pipeline/parallel/data_parallel.h"
#include "tests/unit/check.h"

#define MICRO  4
#define LABELS 3
#define SIDE   16
#define PIXELS (3 * SIDE * SIDE)

/* float32 sums of the same terms in a different order (batch-norm
 * reductions over 4 or 8 images, gradients summed before or after the
 * division by the known count) differ by a few ulp of each partial sum. The
 * measured difference is about 2e-6 of a tensor's largest gradient, so 1e-4
 * leaves a margin of 40x, while a wrong normalisation moves gradients by
 * tens of percent (see normalisation_control). */
#define RELATIVE_TOLERANCE 1e-4

static const ap_net_spec spec = {
    .in_channels = 3,
    .height = SIDE,
    .width = SIDE,
    .stem_channels = 4,
    .stem_kernel = 3,
    .stem_stride = 1,
    .stage_count = 2,
    .stage_channels = {4, 8},
    .stage_blocks = {1, 1},
    .dropout = 0.0f,
    .label_count = LABELS,
};

static const float pos_weight[LABELS] = {2.0f, 0.5f, 1.0f};

/* Targets of the two copies: 1, 0, or -1 for unknown. The first copy has 2
 * unknown labels, the second 7, so a mean of per-copy means is wrong. */
static const int8_t copy_targets[2][MICRO * LABELS] = {
    {1, 0, -1, 0, 1, 1, 1, -1, 0, 0, 0, 1},
    {-1, 1, -1, -1, 0, -1, 1, -1, -1, 0, -1, 1},
};

static ap_net *make_net(int batch)
{
    ap_net *net = NULL;
    ap_error err = {0};
    if (ap_net_create(&spec, batch, 7, &net, &err) != AP_OK) {
        fprintf(stderr, "ap_net_create: %s\n", err.message);
        exit(1);
    }
    return net;
}

static void fill_input(float *input)
{
    for (size_t i = 0; i < (size_t)MICRO * PIXELS; i++)
        input[i] = (float)((i * 7919) % 211) / 105.0f - 1.0f;
}

/* Gradients of the whole batch of 2 x MICRO images (the input twice), with
 * the mean loss over its known targets. Returns the loss. */
static float whole_batch_grads(ap_net *net, const float *input)
{
    static float doubled[2 * MICRO * PIXELS];
    float logits[2 * MICRO * LABELS], d_logits[2 * MICRO * LABELS];
    int8_t targets[2 * MICRO * LABELS];
    memcpy(doubled, input, sizeof(float) * MICRO * PIXELS);
    memcpy(doubled + MICRO * PIXELS, input, sizeof(float) * MICRO * PIXELS);
    memcpy(targets, copy_targets[0], sizeof(copy_targets[0]));
    memcpy(targets + MICRO * LABELS, copy_targets[1], sizeof(copy_targets[1]));
    ap_error err = {0};
    CHECK_INT_EQ(ap_net_forward(net, doubled, true, 1, 0, logits, &err), AP_OK);
    float loss = ap_cpu_bce_loss(logits, targets, pos_weight, 2 * MICRO, LABELS, d_logits);
    CHECK_INT_EQ(ap_net_backward(net, d_logits, &err), AP_OK);
    return loss;
}

/* Forward and backward of one copy, added to the bucket in sum form. */
static void add_micro_batch(ap_net *net, ap_dp_bucket *bucket, const float *input, int copy)
{
    float logits[MICRO * LABELS], d_logits[MICRO * LABELS];
    ap_error err = {0};
    CHECK_INT_EQ(ap_net_forward(net, input, true, 1, 0, logits, &err), AP_OK);
    long known = 0;
    double loss_sum =
        ap_dp_bce_loss_sum(logits, copy_targets[copy], pos_weight, MICRO, LABELS, d_logits, &known);
    CHECK_INT_EQ(ap_net_backward(net, d_logits, &err), AP_OK);
    ap_dp_bucket_add_grads(bucket, net);
    ap_dp_bucket_add_loss(bucket, loss_sum, known);
}

/* Largest difference of any trained tensor's grads over its largest
 * magnitude in the reference; with report set, names the tensors over the
 * tolerance. */
static double worst_relative_difference(ap_net *reference, ap_net *other, bool report)
{
    double worst = 0.0;
    for (size_t i = 0; i < ap_net_tensor_count(reference); i++) {
        ap_net_tensor *a = ap_net_tensor_at(reference, i), *b = ap_net_tensor_at(other, i);
        if (a->role == AP_TENSOR_STATE)
            continue;
        double scale = 0.0, difference = 0.0;
        for (size_t j = 0; j < a->size; j++) {
            scale = fmax(scale, fabs(a->grad[j]));
            difference = fmax(difference, fabs((double)a->grad[j] - b->grad[j]));
        }
        double relative = scale > 0.0 ? difference / scale : difference;
        if (relative > worst)
            worst = relative;
        if (report && relative > RELATIVE_TOLERANCE)
            fprintf(stderr, "tensor %s: max |difference| %.3g, max |grad| %.3g\n", a->name,
                    difference, scale);
    }
    return worst;
}

/* Both copies in one process, as train.accumulation_steps 2 runs them. */
static void accumulated_matches_whole(void)
{
    static float input[MICRO * PIXELS];
    fill_input(input);
    ap_net *whole = make_net(2 * MICRO), *micro = make_net(MICRO);
    float whole_loss = whole_batch_grads(whole, input);

    ap_dp_bucket bucket;
    ap_error err = {0};
    CHECK_INT_EQ(ap_dp_bucket_init(&bucket, micro, 1, 0, &err), AP_OK);
    ap_dp_bucket_clear(&bucket);
    add_micro_batch(micro, &bucket, input, 0);
    add_micro_batch(micro, &bucket, input, 1);
    ap_dp_bucket_apply(&bucket, micro);

    CHECK_INT_EQ(ap_dp_bucket_known(&bucket), 10 + 5);
    CHECK_NEAR(ap_dp_bucket_loss(&bucket), whole_loss, 1e-6 * fabs(whole_loss));
    double worst = worst_relative_difference(whole, micro, true);
    printf("accumulated vs whole batch: worst relative gradient difference %.3g\n", worst);
    CHECK(worst <= RELATIVE_TOLERANCE);
    ap_dp_bucket_free(&bucket);
    ap_net_destroy(whole);
    ap_net_destroy(micro);
}

/* A mean of per-micro-batch mean losses weighs the known targets of the
 * sparser copy more. The test above must be able to tell: that
 * normalisation has to miss the whole-batch gradient by far more than the
 * tolerance. */
static void normalisation_control(void)
{
    static float input[MICRO * PIXELS];
    fill_input(input);
    ap_net *whole = make_net(2 * MICRO), *micro = make_net(MICRO);
    whole_batch_grads(whole, input);

    ap_dp_bucket bucket;
    ap_error err = {0};
    CHECK_INT_EQ(ap_dp_bucket_init(&bucket, micro, 1, 0, &err), AP_OK);
    ap_dp_bucket_clear(&bucket);
    for (int copy = 0; copy < 2; copy++) {
        float logits[MICRO * LABELS], d_logits[MICRO * LABELS];
        CHECK_INT_EQ(ap_net_forward(micro, input, true, 1, 0, logits, &err), AP_OK);
        ap_cpu_bce_loss(logits, copy_targets[copy], pos_weight, MICRO, LABELS, d_logits);
        CHECK_INT_EQ(ap_net_backward(micro, d_logits, &err), AP_OK);
        ap_dp_bucket_add_grads(&bucket, micro);
    }
    /* A known count of 2 makes apply divide the summed means by 2. */
    ap_dp_bucket_add_loss(&bucket, 0.0, 2);
    ap_dp_bucket_apply(&bucket, micro);
    double worst = worst_relative_difference(whole, micro, false);
    printf("mean of micro-batch means vs whole batch: worst relative difference %.3g\n", worst);
    CHECK(worst > 100.0 * RELATIVE_TOLERANCE);
    ap_dp_bucket_free(&bucket);
    ap_net_destroy(whole);
    ap_net_destroy(micro);
}

/* One copy per process, summed by the MPI all-reduce. */
static int run_rank(void)
{
    ap_comm *comm = NULL;
    ap_error err = {0};
    if (ap_comm_open(60, &comm, &err) != AP_OK) {
        fprintf(stderr, "ap_comm_open: %s\n", err.message);
        return 1;
    }
    CHECK_INT_EQ(ap_comm_size(comm), 2);
    static float input[MICRO * PIXELS];
    fill_input(input);
    ap_net *whole = make_net(2 * MICRO), *micro = make_net(MICRO);
    float whole_loss = whole_batch_grads(whole, input);

    ap_dp_bucket bucket;
    CHECK_INT_EQ(ap_dp_bucket_init(&bucket, micro, 2, ap_comm_rank(comm), &err), AP_OK);
    ap_dp_bucket_clear(&bucket);
    add_micro_batch(micro, &bucket, input, ap_comm_rank(comm));
    ap_dp_bucket_put_state(&bucket, micro);
    ap_dp_bucket_set_status(&bucket, AP_OK);
    CHECK_INT_EQ(ap_dp_bucket_reduce(&bucket, comm, &err), AP_OK);
    ap_dp_bucket_apply(&bucket, micro);

    CHECK_INT_EQ(ap_dp_bucket_known(&bucket), 10 + 5);
    CHECK_NEAR(ap_dp_bucket_loss(&bucket), whole_loss, 1e-6 * fabs(whole_loss));
    double worst = worst_relative_difference(whole, micro, true);
    printf("rank %d: all-reduced vs whole batch: worst relative gradient difference %.3g\n",
           ap_comm_rank(comm), worst);
    CHECK(worst <= RELATIVE_TOLERANCE);
    ap_dp_bucket_free(&bucket);
    ap_net_destroy(whole);
    ap_net_destroy(micro);
    CHECK_INT_EQ(ap_comm_close(comm, &err), AP_OK);
    return check_finish();
}

/* Start this test as two MPI processes; skipped without mpirun or MPI. */
static void all_reduced_matches_whole(void)
{
#ifndef APIARY_HAVE_MPI
    printf("SKIP the two-process check: apiary was built without MPI\n");
#else
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        printf("SKIP the two-process check: mpirun is not installed\n");
        return;
    }
    char self[4096];
    ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
    CHECK(length > 0);
    if (length <= 0)
        return;
    self[length] = '\0';
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    char command[8400];
    snprintf(command, sizeof(command),
             "timeout 120 mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS=1 '%s' --ranks", self);
    int code = system(command);
    CHECK_INT_EQ(WIFEXITED(code) ? WEXITSTATUS(code) : -1, 0);
#endif
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--ranks") == 0)
        return run_rank();
    accumulated_matches_whole();
    normalisation_control();
    all_reduced_matches_whole();
    return check_finish();
}
