#include "pipeline/nn/net.h"

#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "pipeline/nn/net_internal.h"

/* Execution arguments listed in ap_net_primitive.memories, with their names;
 * a reorder's source and destination are DNNL_ARG_SRC and DNNL_ARG_DST. */
static const struct {
    int arg;
    const char *name;
} described_args[] = {
    {DNNL_ARG_SRC, "src"},
    {DNNL_ARG_WEIGHTS, "weights"},
    {DNNL_ARG_DST, "dst"},
    {DNNL_ARG_DIFF_SRC, "diff_src"},
    {DNNL_ARG_DIFF_WEIGHTS, "diff_weights"},
    {DNNL_ARG_DIFF_DST, "diff_dst"},
};

static void describe_memories(const_dnnl_primitive_desc_t pd, char *text, size_t size)
{
    size_t used = 0;
    text[0] = '\0';
    for (size_t i = 0; i < sizeof(described_args) / sizeof(described_args[0]); i++) {
        const dnnl_memory_desc_t *md =
            dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, described_args[i].arg);
        if (md == NULL || md->ndims == 0 || used >= size)
            continue;
        char description[96];
        nn_md_describe(md, description, sizeof(description));
        int length = snprintf(text + used, size - used, "%s%s %s", used > 0 ? ", " : "",
                              described_args[i].name, description);
        if (length > 0)
            used += (size_t)length;
    }
}

size_t ap_net_primitive_count(const ap_net *net)
{
    return net->ctx.record_count;
}

ap_status ap_net_primitive_at(const ap_net *net, size_t index, ap_net_primitive *out, ap_error *err)
{
    if (index >= net->ctx.record_count)
        return ap_error_set(err, AP_ERR_INVALID,
                            "network primitives: index %zu is past the last of %zu", index,
                            net->ctx.record_count);
    const nn_op_record *record = &net->ctx.records[index];
    dnnl_primitive_kind_t kind = dnnl_undefined_primitive;
    dnnl_primitive_desc_query(record->pd, dnnl_query_primitive_kind, 0, &kind);
    memset(out, 0, sizeof(*out));
    out->layer = record->layer;
    out->pass = record->pass;
    out->kind = dnnl_prim_kind2str(kind);
    out->implementation = nn_pd_impl(record->pd);
    out->reference = nn_pd_is_reference(record->pd);
    describe_memories(record->pd, out->memories, sizeof(out->memories));
    return AP_OK;
}

size_t ap_net_reference_count(const ap_net *net)
{
    size_t count = 0;
    for (size_t i = 0; i < net->ctx.record_count; i++)
        if (nn_pd_is_reference(net->ctx.records[i].pd))
            count++;
    return count;
}
