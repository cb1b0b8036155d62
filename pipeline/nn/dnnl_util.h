#ifndef APIARY_NN_DNNL_UTIL_H
#define APIARY_NN_DNNL_UTIL_H

/* Helpers shared by the layers of the CPU network: a context that owns every
 * oneDNN object and buffer of one network, checked primitive creation and
 * execution, and activations (a tensor and its gradient in one memory format). */

#include <stdbool.h>
#include <stddef.h>

#include <oneapi/dnnl/dnnl.h>

#include "pipeline/common/status.h"
#include "pipeline/nn/net.h"

/* A growable list of owned handles of one kind, released together. */
typedef struct {
    void **items;
    size_t count;
    size_t capacity;
} nn_handle_list;

/* A primitive's descriptor with the layer and pass that run it. The record
 * keeps a copy of the layer name, which may live in a shorter-lived struct. */
typedef struct {
    char layer[AP_PARAM_NAME_MAX];
    const char *pass; /* a string literal */
    const_dnnl_primitive_desc_t pd;
} nn_op_record;

/* Engine, stream and everything a network creates. ap_net_create fills it,
 * so forward and backward create and allocate nothing. */
typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_attr_t attr; /* user-managed scratchpad, shared by all primitives */
    nn_handle_list buffers;
    nn_handle_list memories;
    nn_handle_list primitives;
    nn_handle_list descriptors;
    nn_handle_list scratchpads; /* memories whose handle is the shared scratchpad buffer */
    size_t scratchpad_bytes;    /* maximum that any primitive needs */
    size_t scratchpad_allocated;
    void *scratchpad;
    nn_op_record *records; /* every primitive, in creation order */
    size_t record_count;
    size_t record_capacity;
} nn_context;

/* One primitive with its scratchpad, named for error messages. */
typedef struct {
    dnnl_primitive_t primitive;
    dnnl_memory_t scratchpad; /* NULL when the primitive needs none */
    const char *layer;        /* for example "stages.0.blocks.0.conv1" */
    const char *pass;         /* for example "backward data" */
} nn_op;

/* A tensor and its gradient in the same memory descriptor. Blocked formats
 * pad channels to the block size, and the padding is kept zero. */
typedef struct {
    dnnl_memory_desc_t md;
    size_t floats; /* buffer length, padding included */
    dnnl_memory_t data;
    float *data_ptr;
    dnnl_memory_t diff;
    float *diff_ptr;
} nn_act;

/* Fill err with the failed oneDNN call (its name up to the first bracket),
 * the layer and the oneDNN status name, and return AP_ERR_BACKEND. */
ap_status nn_backend_error(ap_error *err, const char *call, const char *layer,
                           dnnl_status_t status);

/* Run a oneDNN call and return AP_ERR_BACKEND from the enclosing function when it fails. */
#define NN_CHECK(call, layer, err)                                                                 \
    do {                                                                                           \
        dnnl_status_t nn_check_status = (call);                                                    \
        if (nn_check_status != dnnl_success)                                                       \
            return nn_backend_error((err), #call, (layer), nn_check_status);                       \
    } while (0)

/* Return from the enclosing function when an apiary call fails. */
#define NN_TRY(call)                                                                               \
    do {                                                                                           \
        ap_status nn_try_status = (call);                                                          \
        if (nn_try_status != AP_OK)                                                                \
            return nn_try_status;                                                                  \
    } while (0)

ap_status nn_context_init(nn_context *ctx, ap_error *err);
/* Bind every primitive created so far to the shared scratchpad, growing it
 * when needed. Call it after creating primitives and before running them. */
ap_status nn_context_finish(nn_context *ctx, ap_error *err);
void nn_context_release(nn_context *ctx);

/* Allocate a zeroed, 64-byte aligned buffer owned by ctx. */
ap_status nn_alloc(nn_context *ctx, size_t bytes, const char *layer, void **out, ap_error *err);
/* Create a memory on handle: DNNL_MEMORY_ALLOCATE makes a zeroed buffer owned by
 * ctx, and DNNL_MEMORY_NONE leaves the memory without a buffer until a handle is set. */
ap_status nn_memory_create(nn_context *ctx, const dnnl_memory_desc_t *md, void *handle,
                           const char *layer, dnnl_memory_t *out, ap_error *err);
/* Create an activation with data and gradient buffers, or with the data
 * buffer only (nn_act_create_data) when the caller shares a gradient. */
ap_status nn_act_create(nn_context *ctx, const dnnl_memory_desc_t *md, const char *layer,
                        nn_act *act, ap_error *err);
ap_status nn_act_create_data(nn_context *ctx, const dnnl_memory_desc_t *md, const char *layer,
                             nn_act *act, ap_error *err);
/* A plain dense memory descriptor of ndims dimensions (abcd order). */
ap_status nn_md_plain(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, const char *layer,
                      ap_error *err);
bool nn_md_equal(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b);
size_t nn_md_floats(const dnnl_memory_desc_t *md);
/* Write md's dimensions and format the way oneDNN's verbose log does, for
 * example "16x8x24x24 aBcd16b": dimensions from outermost to innermost, upper
 * case for those split into inner blocks, then the blocks. */
void nn_md_describe(const dnnl_memory_desc_t *md, char *text, size_t size);

/* Create a primitive descriptor owned by ctx; hint is the forward one for backward passes. */
ap_status nn_pd_create(nn_context *ctx, const void *op_desc, const_dnnl_primitive_desc_t hint,
                       const char *layer, dnnl_primitive_desc_t *out, ap_error *err);
/* Create a primitive descriptor that the caller owns until nn_pd_keep, or
 * return NULL when oneDNN has no implementation for op_desc. */
dnnl_primitive_desc_t nn_pd_try(nn_context *ctx, const void *op_desc,
                                const_dnnl_primitive_desc_t hint);
/* Hand pd to ctx, which destroys it on release (also when this fails). */
ap_status nn_pd_keep(nn_context *ctx, dnnl_primitive_desc_t pd, const char *layer, ap_error *err);
/* oneDNN's name for the implementation that pd runs, for example "jit:avx2". */
const char *nn_pd_impl(const_dnnl_primitive_desc_t pd);
/* True for oneDNN's reference implementations ("ref:any"), plain loop nests
 * far slower than the jit kernels. */
bool nn_pd_is_reference(const_dnnl_primitive_desc_t pd);
/* Copy the memory descriptor that pd chose for what (a zero descriptor when
 * the primitive does not use it). */
ap_status nn_pd_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what, const char *layer,
                   dnnl_memory_desc_t *out, ap_error *err);
/* Create the primitive of pd and record it, with layer and pass, in ctx->records. */
ap_status nn_op_create(nn_context *ctx, const_dnnl_primitive_desc_t pd, const char *layer,
                       const char *pass, nn_op *op, ap_error *err);
ap_status nn_reorder_create(nn_context *ctx, const dnnl_memory_desc_t *src,
                            const dnnl_memory_desc_t *dst, const char *layer, const char *pass,
                            nn_op *op, ap_error *err);

/* Execute op with args (at most 14) plus its scratchpad. */
ap_status nn_op_run(nn_context *ctx, const nn_op *op, int arg_count, const dnnl_exec_arg_t *args,
                    ap_error *err);
ap_status nn_reorder_run(nn_context *ctx, const nn_op *op, dnnl_memory_t src, dnnl_memory_t dst,
                         ap_error *err);
/* Wait for submitted primitives before C code touches their buffers. */
ap_status nn_wait(nn_context *ctx, const char *layer, ap_error *err);

#endif
