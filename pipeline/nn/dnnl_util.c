#include "pipeline/nn/dnnl_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

#define NN_ALIGNMENT 64
#define NN_MAX_ARGS  16

ap_status nn_backend_error(ap_error *err, const char *call, const char *layer, dnnl_status_t status)
{
    size_t name_length = strcspn(call, "(");
    return ap_error_set(err, AP_ERR_BACKEND, "oneDNN %.*s failed for layer %s: %s",
                        (int)name_length, call, layer, dnnl_status2str(status));
}

static ap_status push_handle(nn_handle_list *list, void *handle, const char *layer, ap_error *err)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 64;
        void **items = realloc(list->items, capacity * sizeof(*items));
        if (items == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "network layer %s: out of memory for handles",
                                layer);
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = handle;
    return AP_OK;
}

ap_status nn_context_init(nn_context *ctx, ap_error *err)
{
    memset(ctx, 0, sizeof(*ctx));
    NN_CHECK(dnnl_engine_create(&ctx->engine, dnnl_cpu, 0), "engine", err);
    NN_CHECK(dnnl_stream_create(&ctx->stream, ctx->engine, dnnl_stream_default_flags), "engine",
             err);
    NN_CHECK(dnnl_primitive_attr_create(&ctx->attr), "engine", err);
    NN_CHECK(dnnl_primitive_attr_set_scratchpad_mode(ctx->attr, dnnl_scratchpad_mode_user),
             "engine", err);
    return AP_OK;
}

ap_status nn_context_finish(nn_context *ctx, ap_error *err)
{
    if (ctx->scratchpad_bytes > ctx->scratchpad_allocated) {
        NN_TRY(nn_alloc(ctx, ctx->scratchpad_bytes, "scratchpad", &ctx->scratchpad, err));
        ctx->scratchpad_allocated = ctx->scratchpad_bytes;
    }
    for (size_t i = 0; i < ctx->scratchpads.count; i++)
        NN_CHECK(dnnl_memory_set_data_handle(ctx->scratchpads.items[i], ctx->scratchpad),
                 "scratchpad", err);
    return AP_OK;
}

void nn_context_release(nn_context *ctx)
{
    for (size_t i = 0; i < ctx->primitives.count; i++)
        dnnl_primitive_destroy(ctx->primitives.items[i]);
    for (size_t i = 0; i < ctx->descriptors.count; i++)
        dnnl_primitive_desc_destroy(ctx->descriptors.items[i]);
    for (size_t i = 0; i < ctx->memories.count; i++)
        dnnl_memory_destroy(ctx->memories.items[i]);
    for (size_t i = 0; i < ctx->buffers.count; i++)
        free(ctx->buffers.items[i]);
    free(ctx->primitives.items);
    free(ctx->descriptors.items);
    free(ctx->memories.items);
    free(ctx->buffers.items);
    free(ctx->scratchpads.items);
    free(ctx->records);
    if (ctx->attr != NULL)
        dnnl_primitive_attr_destroy(ctx->attr);
    if (ctx->stream != NULL)
        dnnl_stream_destroy(ctx->stream);
    if (ctx->engine != NULL)
        dnnl_engine_destroy(ctx->engine);
    memset(ctx, 0, sizeof(*ctx));
}

ap_status nn_alloc(nn_context *ctx, size_t bytes, const char *layer, void **out, ap_error *err)
{
    size_t rounded = (bytes + NN_ALIGNMENT - 1) / NN_ALIGNMENT * NN_ALIGNMENT;
    if (rounded == 0)
        rounded = NN_ALIGNMENT;
    void *buffer = aligned_alloc(NN_ALIGNMENT, rounded);
    if (buffer == NULL)
        return ap_error_set(err, AP_ERR_NOMEM,
                            "network layer %s: cannot allocate %zu bytes; use a smaller batch "
                            "or input size",
                            layer, rounded);
    memset(buffer, 0, rounded);
    ap_status status = push_handle(&ctx->buffers, buffer, layer, err);
    if (status != AP_OK) {
        free(buffer);
        return status;
    }
    *out = buffer;
    return AP_OK;
}

ap_status nn_memory_create(nn_context *ctx, const dnnl_memory_desc_t *md, void *handle,
                           const char *layer, dnnl_memory_t *out, ap_error *err)
{
    if (handle == DNNL_MEMORY_ALLOCATE)
        NN_TRY(nn_alloc(ctx, dnnl_memory_desc_get_size(md), layer, &handle, err));
    dnnl_memory_t memory = NULL;
    NN_CHECK(dnnl_memory_create(&memory, md, ctx->engine, handle), layer, err);
    ap_status status = push_handle(&ctx->memories, memory, layer, err);
    if (status != AP_OK) {
        dnnl_memory_destroy(memory);
        return status;
    }
    *out = memory;
    return AP_OK;
}

ap_status nn_act_create_data(nn_context *ctx, const dnnl_memory_desc_t *md, const char *layer,
                             nn_act *act, ap_error *err)
{
    memset(act, 0, sizeof(*act));
    act->md = *md;
    act->floats = nn_md_floats(md);
    void *data = NULL;
    NN_TRY(nn_alloc(ctx, act->floats * sizeof(float), layer, &data, err));
    NN_TRY(nn_memory_create(ctx, md, data, layer, &act->data, err));
    act->data_ptr = data;
    return AP_OK;
}

ap_status nn_act_create(nn_context *ctx, const dnnl_memory_desc_t *md, const char *layer,
                        nn_act *act, ap_error *err)
{
    NN_TRY(nn_act_create_data(ctx, md, layer, act, err));
    void *diff = NULL;
    NN_TRY(nn_alloc(ctx, act->floats * sizeof(float), layer, &diff, err));
    NN_TRY(nn_memory_create(ctx, md, diff, layer, &act->diff, err));
    act->diff_ptr = diff;
    return AP_OK;
}

ap_status nn_md_plain(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, const char *layer,
                      ap_error *err)
{
    static const dnnl_format_tag_t tags[] = {dnnl_format_tag_undef, dnnl_a, dnnl_ab, dnnl_abc,
                                             dnnl_abcd};
    NN_CHECK(dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, tags[ndims]), layer, err);
    return AP_OK;
}

bool nn_md_equal(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b)
{
    return dnnl_memory_desc_equal(a, b) != 0;
}

size_t nn_md_floats(const dnnl_memory_desc_t *md)
{
    return dnnl_memory_desc_get_size(md) / sizeof(float);
}

/* Order the dimensions of a blocked md from the largest stride to the
 * smallest, the outermost first when strides tie (dimensions of size 1). */
static void order_by_stride(const dnnl_memory_desc_t *md, int order[DNNL_MAX_NDIMS])
{
    const dnnl_dims_t *strides = &md->format_desc.blocking.strides;
    for (int i = 0; i < md->ndims; i++)
        order[i] = i;
    for (int i = 1; i < md->ndims; i++) {
        int dim = order[i];
        int j = i;
        for (; j > 0 && (*strides)[order[j - 1]] < (*strides)[dim]; j--)
            order[j] = order[j - 1];
        order[j] = dim;
    }
}

static void describe_format(const dnnl_memory_desc_t *md, char *text, size_t size)
{
    if (md->format_kind != dnnl_blocked) {
        snprintf(text, size, "%s", dnnl_fmt_kind2str(md->format_kind));
        return;
    }
    const dnnl_blocking_desc_t *blocking = &md->format_desc.blocking;
    int order[DNNL_MAX_NDIMS];
    order_by_stride(md, order);
    char format[2 * DNNL_MAX_NDIMS + 24 * DNNL_MAX_NDIMS] = "";
    size_t used = 0;
    for (int i = 0; i < md->ndims; i++) {
        bool blocked = false;
        for (int b = 0; b < blocking->inner_nblks; b++)
            blocked = blocked || blocking->inner_idxs[b] == order[i];
        format[used++] = (char)((blocked ? 'A' : 'a') + order[i]);
    }
    format[used] = '\0';
    for (int b = 0; b < blocking->inner_nblks; b++)
        used += (size_t)snprintf(format + used, sizeof(format) - used, "%lld%c",
                                 (long long)blocking->inner_blks[b],
                                 (char)('a' + blocking->inner_idxs[b]));
    snprintf(text, size, "%s", format);
}

void nn_md_describe(const dnnl_memory_desc_t *md, char *text, size_t size)
{
    char dims[24 * DNNL_MAX_NDIMS] = "";
    size_t used = 0;
    for (int i = 0; i < md->ndims; i++)
        used += (size_t)snprintf(dims + used, sizeof(dims) - used, "%s%lld", i > 0 ? "x" : "",
                                 (long long)md->dims[i]);
    char format[64];
    describe_format(md, format, sizeof(format));
    snprintf(text, size, "%s %s", dims, format);
}

dnnl_primitive_desc_t nn_pd_try(nn_context *ctx, const void *op_desc,
                                const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_primitive_desc_create(&pd, op_desc, ctx->attr, ctx->engine, hint) != dnnl_success)
        return NULL;
    return pd;
}

ap_status nn_pd_keep(nn_context *ctx, dnnl_primitive_desc_t pd, const char *layer, ap_error *err)
{
    ap_status status = push_handle(&ctx->descriptors, pd, layer, err);
    if (status != AP_OK)
        dnnl_primitive_desc_destroy(pd);
    return status;
}

ap_status nn_pd_create(nn_context *ctx, const void *op_desc, const_dnnl_primitive_desc_t hint,
                       const char *layer, dnnl_primitive_desc_t *out, ap_error *err)
{
    dnnl_primitive_desc_t pd = NULL;
    NN_CHECK(dnnl_primitive_desc_create(&pd, op_desc, ctx->attr, ctx->engine, hint), layer, err);
    NN_TRY(nn_pd_keep(ctx, pd, layer, err));
    *out = pd;
    return AP_OK;
}

const char *nn_pd_impl(const_dnnl_primitive_desc_t pd)
{
    const char *name = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success ||
        name == NULL)
        return "unknown";
    return name;
}

bool nn_pd_is_reference(const_dnnl_primitive_desc_t pd)
{
    return strncmp(nn_pd_impl(pd), "ref", 3) == 0;
}

ap_status nn_pd_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what, const char *layer,
                   dnnl_memory_desc_t *out, ap_error *err)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, 0);
    if (md == NULL)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "oneDNN dnnl_primitive_desc_query_md failed for layer %s: query %d "
                            "is invalid for this primitive",
                            layer, (int)what);
    *out = *md;
    return AP_OK;
}

static ap_status push_record(nn_context *ctx, const_dnnl_primitive_desc_t pd, const char *layer,
                             const char *pass, ap_error *err)
{
    if (ctx->record_count == ctx->record_capacity) {
        size_t capacity = ctx->record_capacity ? 2 * ctx->record_capacity : 64;
        nn_op_record *records = realloc(ctx->records, capacity * sizeof(*records));
        if (records == NULL)
            return ap_error_set(err, AP_ERR_NOMEM,
                                "network layer %s: out of memory for primitive records", layer);
        ctx->records = records;
        ctx->record_capacity = capacity;
    }
    nn_op_record *record = &ctx->records[ctx->record_count++];
    snprintf(record->layer, sizeof(record->layer), "%s", layer);
    record->pass = pass;
    record->pd = pd;
    return AP_OK;
}

ap_status nn_op_create(nn_context *ctx, const_dnnl_primitive_desc_t pd, const char *layer,
                       const char *pass, nn_op *op, ap_error *err)
{
    memset(op, 0, sizeof(*op));
    op->layer = layer;
    op->pass = pass;
    dnnl_primitive_t primitive = NULL;
    NN_CHECK(dnnl_primitive_create(&primitive, pd), layer, err);
    ap_status status = push_handle(&ctx->primitives, primitive, layer, err);
    if (status != AP_OK) {
        dnnl_primitive_destroy(primitive);
        return status;
    }
    op->primitive = primitive;
    NN_TRY(push_record(ctx, pd, layer, pass, err));

    /* Every primitive shares one scratchpad buffer, allocated by nn_context_finish
     * at the largest size any of them needs, because they run one after another. */
    dnnl_memory_desc_t scratch_md;
    NN_TRY(nn_pd_md(pd, dnnl_query_scratchpad_md, layer, &scratch_md, err));
    size_t bytes = dnnl_memory_desc_get_size(&scratch_md);
    if (bytes == 0)
        return AP_OK;
    if (bytes > ctx->scratchpad_bytes)
        ctx->scratchpad_bytes = bytes;
    dnnl_memory_t scratchpad = NULL;
    NN_CHECK(dnnl_memory_create(&scratchpad, &scratch_md, ctx->engine, DNNL_MEMORY_NONE), layer,
             err);
    status = push_handle(&ctx->memories, scratchpad, layer, err);
    if (status != AP_OK) {
        dnnl_memory_destroy(scratchpad);
        return status;
    }
    NN_TRY(push_handle(&ctx->scratchpads, scratchpad, layer, err));
    op->scratchpad = scratchpad;
    return AP_OK;
}

ap_status nn_reorder_create(nn_context *ctx, const dnnl_memory_desc_t *src,
                            const dnnl_memory_desc_t *dst, const char *layer, const char *pass,
                            nn_op *op, ap_error *err)
{
    dnnl_primitive_desc_t pd = NULL;
    NN_CHECK(dnnl_reorder_primitive_desc_create(&pd, src, ctx->engine, dst, ctx->engine, ctx->attr),
             layer, err);
    NN_TRY(nn_pd_keep(ctx, pd, layer, err));
    return nn_op_create(ctx, pd, layer, pass, op, err);
}

ap_status nn_op_run(nn_context *ctx, const nn_op *op, int arg_count, const dnnl_exec_arg_t *args,
                    ap_error *err)
{
    dnnl_exec_arg_t all[NN_MAX_ARGS];
    if (arg_count > NN_MAX_ARGS - 1)
        return ap_error_set(err, AP_ERR_INVALID, "network layer %s (%s): %d arguments, at most %d",
                            op->layer, op->pass, arg_count, NN_MAX_ARGS - 1);
    memcpy(all, args, (size_t)arg_count * sizeof(*args));
    if (op->scratchpad != NULL)
        all[arg_count++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, op->scratchpad};
    dnnl_status_t status = dnnl_primitive_execute(op->primitive, ctx->stream, arg_count, all);
    if (status != dnnl_success)
        return ap_error_set(err, AP_ERR_BACKEND,
                            "oneDNN dnnl_primitive_execute failed for layer %s (%s): %s", op->layer,
                            op->pass, dnnl_status2str(status));
    return AP_OK;
}

ap_status nn_reorder_run(nn_context *ctx, const nn_op *op, dnnl_memory_t src, dnnl_memory_t dst,
                         ap_error *err)
{
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    return nn_op_run(ctx, op, 2, args, err);
}

ap_status nn_wait(nn_context *ctx, const char *layer, ap_error *err)
{
    NN_CHECK(dnnl_stream_wait(ctx->stream), layer, err);
    return AP_OK;
}
