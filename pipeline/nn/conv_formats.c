/* Memory formats for convolutions. Left to itself (format `any`), oneDNN
 * picks a convolution's formats for the forward pass alone, and backward
 * passes given those formats may find only a reference kernel. With oneDNN
 * 2.6.3 on AVX-512, a convolution with fewer than 16 input channels reads a
 * plain (abcd) source and writes blocks of 16 channels. For that mix, backward
 * data runs the reference kernel, and so does backward weights from 4 input
 * channels up. In the 8-channel convolutions of configs/ci.yaml those ran
 * over 1,000 times slower per call than the jit kernels (one thread of an
 * AVX-512 AMD EPYC). So each convolution tries a few formats and keeps the
 * first for which every pass it runs gets a non-reference implementation,
 * with reorders where its formats differ from its input's and output's. */

#include <string.h>

#include "pipeline/nn/layers.h"

/* Activation formats to try, best first: blocks of 16 channels (AVX-512
 * kernels), blocks of 8 (AVX2 kernels, which AVX-512 machines run too),
 * channels last, plain. */
static const dnnl_format_tag_t activation_tags[] = {dnnl_aBcd16b, dnnl_aBcd8b, dnnl_acdb,
                                                    dnnl_abcd};
#define ACTIVATION_TAG_COUNT (sizeof(activation_tags) / sizeof(activation_tags[0]))

static bool init_md(dnnl_memory_desc_t *md, const dnnl_dims_t dims, dnnl_format_tag_t tag)
{
    return dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag) == dnnl_success;
}

/* The descriptor initialisers leave the weights' format to oneDNN (`any`). */

static dnnl_status_t init_forward_desc(const nn_conv_shape *shape, const dnnl_memory_desc_t *src,
                                       const dnnl_memory_desc_t *dst, dnnl_convolution_desc_t *desc)
{
    dnnl_memory_desc_t weights;
    dnnl_status_t status =
        dnnl_memory_desc_init_by_tag(&weights, 4, shape->weights, dnnl_f32, dnnl_format_tag_any);
    if (status != dnnl_success)
        return status;
    return dnnl_convolution_forward_desc_init(desc, dnnl_forward_training, dnnl_convolution_direct,
                                              src, &weights, NULL, dst, shape->strides,
                                              shape->padding, shape->padding);
}

static dnnl_status_t init_backward_weights_desc(const nn_conv_shape *shape,
                                                const dnnl_memory_desc_t *src,
                                                const dnnl_memory_desc_t *diff_dst,
                                                dnnl_convolution_desc_t *desc)
{
    dnnl_memory_desc_t weights;
    dnnl_status_t status =
        dnnl_memory_desc_init_by_tag(&weights, 4, shape->weights, dnnl_f32, dnnl_format_tag_any);
    if (status != dnnl_success)
        return status;
    return dnnl_convolution_backward_weights_desc_init(desc, dnnl_convolution_direct, src, &weights,
                                                       NULL, diff_dst, shape->strides,
                                                       shape->padding, shape->padding);
}

static dnnl_status_t init_backward_data_desc(const nn_conv_shape *shape,
                                             const dnnl_memory_desc_t *diff_src,
                                             const dnnl_memory_desc_t *diff_dst,
                                             dnnl_convolution_desc_t *desc)
{
    dnnl_memory_desc_t weights;
    dnnl_status_t status =
        dnnl_memory_desc_init_by_tag(&weights, 4, shape->weights, dnnl_f32, dnnl_format_tag_any);
    if (status != dnnl_success)
        return status;
    return dnnl_convolution_backward_data_desc_init(desc, dnnl_convolution_direct, diff_src,
                                                    &weights, diff_dst, shape->strides,
                                                    shape->padding, shape->padding);
}

/* Return a descriptor for desc unless oneDNN has none or only its reference one. */
static dnnl_primitive_desc_t try_non_reference(nn_context *ctx, const dnnl_convolution_desc_t *desc,
                                               const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_t pd = nn_pd_try(ctx, desc, hint);
    if (pd != NULL && nn_pd_is_reference(pd)) {
        dnnl_primitive_desc_destroy(pd);
        return NULL;
    }
    return pd;
}

static const dnnl_memory_desc_t *query_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* Find forward and backward-weights descriptors with non-reference
 * implementations for src and dst (either may be `any`), the backward pass
 * reading both in the formats the forward chose. The caller owns them. */
static bool try_training_pair(nn_context *ctx, const nn_conv_shape *shape,
                              const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                              nn_conv_plan *plan)
{
    dnnl_convolution_desc_t desc;
    if (init_forward_desc(shape, src, dst, &desc) != dnnl_success)
        return false;
    dnnl_primitive_desc_t fwd = try_non_reference(ctx, &desc, NULL);
    if (fwd == NULL)
        return false;
    dnnl_primitive_desc_t bwd = NULL;
    if (init_backward_weights_desc(shape, query_md(fwd, dnnl_query_src_md),
                                   query_md(fwd, dnnl_query_dst_md), &desc) == dnnl_success)
        bwd = try_non_reference(ctx, &desc, fwd);
    if (bwd == NULL) {
        dnnl_primitive_desc_destroy(fwd);
        return false;
    }
    plan->fwd = fwd;
    plan->bwd_weights = bwd;
    return true;
}

static void destroy_plan(nn_conv_plan *plan)
{
    dnnl_primitive_desc_destroy(plan->fwd);
    dnnl_primitive_desc_destroy(plan->bwd_weights);
    if (plan->bwd_data != NULL)
        dnnl_primitive_desc_destroy(plan->bwd_data);
    memset(plan, 0, sizeof(*plan));
}

/* The tag of the format oneDNN itself picks for both sides of probe (source
 * and destination alike), or dnnl_format_tag_any when it picks none of
 * activation_tags or different ones for the two sides. */
static dnnl_format_tag_t natural_tag(nn_context *ctx, const nn_conv_shape *probe)
{
    dnnl_memory_desc_t any;
    dnnl_convolution_desc_t desc;
    if (!init_md(&any, probe->src, dnnl_format_tag_any) ||
        init_forward_desc(probe, &any, &any, &desc) != dnnl_success)
        return dnnl_format_tag_any;
    dnnl_primitive_desc_t fwd = nn_pd_try(ctx, &desc, NULL);
    if (fwd == NULL)
        return dnnl_format_tag_any;
    dnnl_format_tag_t natural = dnnl_format_tag_any;
    for (size_t i = 0; i < ACTIVATION_TAG_COUNT && natural == dnnl_format_tag_any; i++) {
        dnnl_memory_desc_t md;
        if (init_md(&md, probe->src, activation_tags[i]) &&
            nn_md_equal(&md, query_md(fwd, dnnl_query_src_md)) &&
            nn_md_equal(&md, query_md(fwd, dnnl_query_dst_md)))
            natural = activation_tags[i];
    }
    dnnl_primitive_desc_destroy(fwd);
    return natural;
}

/* True when all three passes of probe run non-reference kernels with every
 * activation and gradient in the format tag. */
static bool runs_jit_in(nn_context *ctx, const nn_conv_shape *probe, dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    nn_conv_plan plan = {0};
    if (!init_md(&md, probe->src, tag) || !try_training_pair(ctx, probe, &md, &md, &plan))
        return false;
    dnnl_convolution_desc_t desc;
    if (init_backward_data_desc(probe, &md, &md, &desc) == dnnl_success)
        plan.bwd_data = try_non_reference(ctx, &desc, plan.fwd);
    bool jit = plan.bwd_data != NULL;
    destroy_plan(&plan);
    return jit;
}

/* The format for activations of dims (batch, channels, height, width): the
 * one in which a 3x3 stride-1 convolution keeping the channel count runs
 * non-reference kernels in all three passes. Channels last comes first when
 * the channel count is not a multiple of 16, then oneDNN's own choice when
 * it qualifies. Returns dnnl_format_tag_any when no format does. */
static dnnl_format_tag_t preferred_tag(nn_context *ctx, const dnnl_dims_t dims)
{
    nn_conv_shape probe = {.strides = {1, 1}, .padding = {1, 1}};
    memcpy(probe.src, dims, sizeof(dnnl_dims_t));
    memcpy(probe.dst, dims, sizeof(dnnl_dims_t));
    dnnl_dims_t weights = {dims[1], dims[1], 3, 3};
    memcpy(probe.weights, weights, sizeof(dnnl_dims_t));

    /* Blocks of 16 pad such a channel count, and every pass computes the
     * padding too. For 24 channels at 32x32, batch 32, the oneDNN 2.6.3 jit
     * kernels took about 25% less time in channels last. This is an estimate
     * from one thread of an AVX-512 AMD EPYC on a busy machine. */
    if (dims[1] % 16 != 0 && runs_jit_in(ctx, &probe, dnnl_acdb))
        return dnnl_acdb;
    dnnl_format_tag_t natural = natural_tag(ctx, &probe);
    if (natural != dnnl_format_tag_any && runs_jit_in(ctx, &probe, natural))
        return natural;
    for (size_t i = 0; i < ACTIVATION_TAG_COUNT; i++)
        if (activation_tags[i] != natural && runs_jit_in(ctx, &probe, activation_tags[i]))
            return activation_tags[i];
    return dnnl_format_tag_any;
}

/* Memory descriptors to try, in order and without repeats. */
typedef struct {
    dnnl_memory_desc_t mds[ACTIVATION_TAG_COUNT + 4];
    size_t count;
} md_list;

static void add_md(md_list *list, const dnnl_memory_desc_t *md)
{
    size_t capacity = sizeof(list->mds) / sizeof(list->mds[0]);
    for (size_t i = 0; i < list->count; i++)
        if (nn_md_equal(&list->mds[i], md))
            return;
    if (list->count < capacity)
        list->mds[list->count++] = *md;
}

static void add_tag(md_list *list, const dnnl_dims_t dims, dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    if (init_md(&md, dims, tag))
        add_md(list, &md);
}

/* After the entries already in list: the preferred format for dims (unless
 * none qualified), `any`, then every activation tag. */
static void add_candidates(md_list *list, const dnnl_dims_t dims, dnnl_format_tag_t preferred)
{
    if (preferred != dnnl_format_tag_any)
        add_tag(list, dims, preferred);
    add_tag(list, dims, dnnl_format_tag_any);
    for (size_t i = 0; i < ACTIVATION_TAG_COUNT; i++)
        add_tag(list, dims, activation_tags[i]);
}

/* Preferred formats of a convolution's input and output activations. */
typedef struct {
    dnnl_format_tag_t src;
    dnnl_format_tag_t dst;
} preferred_tags;

static ap_status keep_training_pair(nn_context *ctx, nn_conv_plan *plan, const char *layer,
                                    ap_error *err)
{
    ap_status status = nn_pd_keep(ctx, plan->fwd, layer, err);
    if (status != AP_OK) {
        dnnl_primitive_desc_destroy(plan->bwd_weights);
        return status;
    }
    return nn_pd_keep(ctx, plan->bwd_weights, layer, err);
}

/* Choose the forward and backward-weights descriptors. Destinations come in
 * the outer loop with the preferred format first, so that the layers after
 * this one need no reorder. Sources come in the inner loop with the input's
 * own format first, which needs no reorder either. */
static ap_status choose_training_pair(nn_context *ctx, const nn_conv_shape *shape,
                                      const dnnl_memory_desc_t *input_md,
                                      const preferred_tags *preferred, const char *layer,
                                      nn_conv_plan *plan, ap_error *err)
{
    md_list dsts = {.count = 0};
    md_list srcs = {.count = 0};
    add_candidates(&dsts, shape->dst, preferred->dst);
    add_md(&srcs, input_md);
    add_candidates(&srcs, shape->src, preferred->src);
    for (size_t d = 0; d < dsts.count; d++)
        for (size_t s = 0; s < srcs.count; s++)
            if (try_training_pair(ctx, shape, &srcs.mds[s], &dsts.mds[d], plan))
                return keep_training_pair(ctx, plan, layer, err);

    /* No pair avoids the reference kernels: take oneDNN's own choice, which
     * ap_net_reference_count then reports. */
    dnnl_memory_desc_t any_src, any_dst;
    NN_CHECK(dnnl_memory_desc_init_by_tag(&any_src, 4, shape->src, dnnl_f32, dnnl_format_tag_any),
             layer, err);
    NN_CHECK(dnnl_memory_desc_init_by_tag(&any_dst, 4, shape->dst, dnnl_f32, dnnl_format_tag_any),
             layer, err);
    dnnl_convolution_desc_t desc;
    dnnl_status_t status = init_forward_desc(shape, &any_src, &any_dst, &desc);
    if (status != dnnl_success)
        return nn_backend_error(err, "dnnl_convolution_forward_desc_init", layer, status);
    NN_TRY(nn_pd_create(ctx, &desc, NULL, layer, &plan->fwd, err));
    status = init_backward_weights_desc(shape, query_md(plan->fwd, dnnl_query_src_md),
                                        query_md(plan->fwd, dnnl_query_dst_md), &desc);
    if (status != dnnl_success)
        return nn_backend_error(err, "dnnl_convolution_backward_weights_desc_init", layer, status);
    return nn_pd_create(ctx, &desc, plan->fwd, layer, &plan->bwd_weights, err);
}

/* Choose the backward-data descriptor. The first candidates need no
 * reorder: the output gradient in the forward's destination format and the
 * input gradient in the input's format. The forward's source format and the
 * other candidates follow. */
static ap_status choose_backward_data(nn_context *ctx, const nn_conv_shape *shape,
                                      const dnnl_memory_desc_t *input_md,
                                      const preferred_tags *preferred, const char *layer,
                                      nn_conv_plan *plan, ap_error *err)
{
    const dnnl_memory_desc_t *fwd_dst = query_md(plan->fwd, dnnl_query_dst_md);
    md_list diff_dsts = {.count = 0};
    md_list diff_srcs = {.count = 0};
    add_md(&diff_dsts, fwd_dst);
    add_candidates(&diff_dsts, shape->dst, preferred->dst);
    add_md(&diff_srcs, input_md);
    add_md(&diff_srcs, query_md(plan->fwd, dnnl_query_src_md));
    add_candidates(&diff_srcs, shape->src, preferred->src);

    dnnl_convolution_desc_t desc;
    for (size_t d = 0; d < diff_dsts.count; d++)
        for (size_t s = 0; s < diff_srcs.count; s++) {
            if (init_backward_data_desc(shape, &diff_srcs.mds[s], &diff_dsts.mds[d], &desc) !=
                dnnl_success)
                continue;
            dnnl_primitive_desc_t pd = try_non_reference(ctx, &desc, plan->fwd);
            if (pd != NULL) {
                plan->bwd_data = pd;
                return nn_pd_keep(ctx, pd, layer, err);
            }
        }

    /* As above: oneDNN's own choice, reported as a reference kernel. */
    dnnl_status_t status = init_backward_data_desc(shape, input_md, fwd_dst, &desc);
    if (status != dnnl_success)
        return nn_backend_error(err, "dnnl_convolution_backward_data_desc_init", layer, status);
    return nn_pd_create(ctx, &desc, plan->fwd, layer, &plan->bwd_data, err);
}

ap_status nn_conv_plan_create(nn_context *ctx, const nn_conv_shape *shape,
                              const dnnl_memory_desc_t *input_md, bool needs_bwd_data,
                              const char *layer, nn_conv_plan *plan, ap_error *err)
{
    memset(plan, 0, sizeof(*plan));
    preferred_tags preferred = {preferred_tag(ctx, shape->src), preferred_tag(ctx, shape->dst)};
    NN_TRY(choose_training_pair(ctx, shape, input_md, &preferred, layer, plan, err));
    if (!needs_bwd_data)
        return AP_OK;
    return choose_backward_data(ctx, shape, input_md, &preferred, layer, plan, err);
}
