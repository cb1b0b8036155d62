#include "pipeline/nn/layers.h"

#include <stddef.h>

/* These loops run over whole buffers, channel padding included. The padding
 * is zero in both inputs, so it stays zero in the outputs. */

void nn_add_into(float *dst, const float *src, size_t count)
{
    long n = (long)count;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++)
        dst[i] += src[i];
}

static void add_relu(const float *a, const float *b, float *out, size_t count)
{
    long n = (long)count;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float sum = a[i] + b[i];
        out[i] = sum > 0.0f ? sum : 0.0f;
    }
}

/* ReLU gradient from its output: zero wherever the output is not positive. */
static void relu_backward(const float *out, const float *d_out, float *d_in, size_t count)
{
    long n = (long)count;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++)
        d_in[i] = out[i] > 0.0f ? d_out[i] : 0.0f;
}

ap_status nn_residual_create(nn_context *ctx, nn_residual *residual, nn_act *branch,
                             nn_act *shortcut, ap_error *err)
{
    residual->branch = branch;
    residual->shortcut = shortcut;
    NN_TRY(nn_act_create(ctx, &branch->md, residual->name, &residual->output, err));
    if (nn_md_equal(&branch->md, &shortcut->md))
        return AP_OK;

    residual->shortcut_reordered = true;
    void *copy = NULL;
    NN_TRY(nn_alloc(ctx, branch->floats * sizeof(float), residual->name, &copy, err));
    residual->shortcut_copy_ptr = copy;
    NN_TRY(nn_memory_create(ctx, &branch->md, copy, residual->name, &residual->shortcut_copy, err));
    return nn_reorder_create(ctx, &shortcut->md, &branch->md, residual->name, "shortcut reorder",
                             &residual->shortcut_reorder, err);
}

ap_status nn_residual_forward(nn_context *ctx, nn_residual *residual, ap_error *err)
{
    const float *shortcut = residual->shortcut->data_ptr;
    if (residual->shortcut_reordered) {
        NN_TRY(nn_reorder_run(ctx, &residual->shortcut_reorder, residual->shortcut->data,
                              residual->shortcut_copy, err));
        shortcut = residual->shortcut_copy_ptr;
    }
    NN_TRY(nn_wait(ctx, residual->name, err));
    add_relu(residual->branch->data_ptr, shortcut, residual->output.data_ptr,
             residual->output.floats);
    return AP_OK;
}

ap_status nn_residual_backward(nn_context *ctx, nn_residual *residual, ap_error *err)
{
    NN_TRY(nn_wait(ctx, residual->name, err));
    relu_backward(residual->output.data_ptr, residual->output.diff_ptr, residual->branch->diff_ptr,
                  residual->output.floats);
    return AP_OK;
}
