#include "pipeline/nn/net_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cpu/rng.h"

#define NN_TWO_PI 6.283185307179586

bool nn_block_has_projection(int in_channels, int out_channels, int stride)
{
    return stride != 1 || in_channels != out_channels;
}

size_t nn_tensor_count_for(const ap_net_spec *spec)
{
    size_t count = 5; /* stem convolution weight and batch norm */
    int in_channels = spec->stem_channels;
    for (int stage = 0; stage < spec->stage_count; stage++) {
        for (int block = 0; block < spec->stage_blocks[stage]; block++) {
            int stride = stage > 0 && block == 0 ? 2 : 1;
            int out_channels = spec->stage_channels[stage];
            count += 10;
            if (nn_block_has_projection(in_channels, out_channels, stride))
                count += 5;
            in_channels = out_channels;
        }
    }
    return count + 2; /* head weight and bias */
}

ap_status nn_tensors_reserve(ap_net *net, ap_error *err)
{
    net->tensor_capacity = nn_tensor_count_for(&net->spec);
    net->tensors = calloc(net->tensor_capacity, sizeof(*net->tensors));
    if (net->tensors == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "network: out of memory for %zu tensors",
                            net->tensor_capacity);
    return AP_OK;
}

/* FNV-1a hash of a tensor name: each tensor draws from its own random stream,
 * so its initial values depend only on the seed, its name and its size. */
static uint64_t name_stream(const char *name)
{
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (const char *c = name; *c != '\0'; c++) {
        hash ^= (unsigned char)*c;
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

/* Normal values by the Box-Muller transform of two uniforms per value. */
static void fill_normal(ap_net_tensor *tensor, double std, uint64_t seed)
{
    uint64_t stream = name_stream(tensor->name);
    for (size_t i = 0; i < tensor->size; i++) {
        double u1 = 1.0 - (double)ap_rng_uniform(seed, stream, 2 * (uint64_t)i);
        double u2 = (double)ap_rng_uniform(seed, stream, 2 * (uint64_t)i + 1);
        tensor->data[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(NN_TWO_PI * u2));
    }
}

static void fill_uniform(ap_net_tensor *tensor, double bound, uint64_t seed)
{
    uint64_t stream = name_stream(tensor->name);
    for (size_t i = 0; i < tensor->size; i++) {
        double u = (double)ap_rng_uniform(seed, stream, (uint64_t)i);
        tensor->data[i] = (float)((2.0 * u - 1.0) * bound);
    }
}

static void fill_constant(ap_net_tensor *tensor, float value)
{
    for (size_t i = 0; i < tensor->size; i++)
        tensor->data[i] = value;
}

static ap_status add_tensor(ap_net *net, const char *layer, const char *suffix, ap_tensor_role role,
                            int ndim, const int64_t *shape, ap_net_tensor **out, ap_error *err)
{
    if (net->tensor_count == net->tensor_capacity)
        return ap_error_set(err, AP_ERR_INVALID,
                            "network: tensor list is full at %s.%s; the tensor count and the "
                            "builder disagree",
                            layer, suffix);
    ap_net_tensor *tensor = &net->tensors[net->tensor_count++];
    int length = snprintf(tensor->name, sizeof(tensor->name), "%s.%s", layer, suffix);
    if (length < 0 || (size_t)length >= sizeof(tensor->name))
        return ap_error_set(err, AP_ERR_INVALID, "network: tensor name %s.%s is too long", layer,
                            suffix);
    tensor->role = role;
    tensor->ndim = ndim;
    tensor->size = 1;
    for (int i = 0; i < ndim; i++) {
        tensor->shape[i] = shape[i];
        tensor->size *= (size_t)shape[i];
    }
    void *data = NULL;
    NN_TRY(nn_alloc(&net->ctx, tensor->size * sizeof(float), tensor->name, &data, err));
    tensor->data = data;
    if (role != AP_TENSOR_STATE) {
        void *grad = NULL;
        NN_TRY(nn_alloc(&net->ctx, tensor->size * sizeof(float), tensor->name, &grad, err));
        tensor->grad = grad;
    }
    *out = tensor;
    return AP_OK;
}

/* He normal initialisation with fan_out = out_channels * kernel * kernel, as
 * torchvision's ResNet uses for ReLU networks. */
ap_status nn_add_conv_weight(ap_net *net, const char *layer, int out_channels, int in_channels,
                             int kernel, ap_net_tensor **out, ap_error *err)
{
    int64_t shape[4] = {out_channels, in_channels, kernel, kernel};
    NN_TRY(add_tensor(net, layer, "weight", AP_TENSOR_WEIGHT, 4, shape, out, err));
    double fan_out = (double)out_channels * kernel * kernel;
    fill_normal(*out, sqrt(2.0 / fan_out), net->seed);
    return AP_OK;
}

ap_status nn_add_bn_tensors(ap_net *net, const char *layer, int channels, ap_net_tensor **out,
                            ap_error *err)
{
    int64_t shape[1] = {channels};
    ap_net_tensor *weight = NULL;
    ap_net_tensor *bias = NULL;
    ap_net_tensor *mean = NULL;
    ap_net_tensor *var = NULL;
    NN_TRY(add_tensor(net, layer, "weight", AP_TENSOR_NO_DECAY, 1, shape, &weight, err));
    NN_TRY(add_tensor(net, layer, "bias", AP_TENSOR_NO_DECAY, 1, shape, &bias, err));
    NN_TRY(add_tensor(net, layer, "running_mean", AP_TENSOR_STATE, 1, shape, &mean, err));
    NN_TRY(add_tensor(net, layer, "running_var", AP_TENSOR_STATE, 1, shape, &var, err));
    fill_constant(weight, 1.0f);
    fill_constant(bias, 0.0f);
    fill_constant(mean, 0.0f);
    fill_constant(var, 1.0f);
    *out = weight;
    return AP_OK;
}

/* PyTorch's nn.Linear default: weight and bias uniform in +-1 / sqrt(in_features). */
ap_status nn_add_dense_tensors(ap_net *net, const char *layer, int out_features, int in_features,
                               ap_net_tensor **out, ap_error *err)
{
    int64_t weight_shape[2] = {out_features, in_features};
    int64_t bias_shape[1] = {out_features};
    ap_net_tensor *weight = NULL;
    ap_net_tensor *bias = NULL;
    NN_TRY(add_tensor(net, layer, "weight", AP_TENSOR_WEIGHT, 2, weight_shape, &weight, err));
    NN_TRY(add_tensor(net, layer, "bias", AP_TENSOR_NO_DECAY, 1, bias_shape, &bias, err));
    double bound = 1.0 / sqrt((double)in_features);
    fill_uniform(weight, bound, net->seed);
    fill_uniform(bias, bound, net->seed);
    *out = weight;
    return AP_OK;
}
