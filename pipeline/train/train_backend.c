#include "pipeline/train/train_backend.h"

#include <string.h>

#ifdef APIARY_HAVE_CUDNN
#include "pipeline/nn_cuda/gpu_net.h"
#endif

static ap_status check_cpu_settings(const ap_config *cfg, ap_error *err)
{
    if (strcmp(cfg->train.precision, "fp32") != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "train.precision is %s, but the CPU trains in fp32 only; set "
                            "train.precision=fp32 or train.device=cuda",
                            cfg->train.precision);
    return AP_OK;
}

ap_status ap_train_device_check(const ap_config *cfg, ap_error *err)
{
    if (strcmp(cfg->train.device, "cuda") != 0)
        return check_cpu_settings(cfg, err);
#ifdef APIARY_HAVE_CUDNN
    ap_gpu_precision precision;
    ap_status status = ap_gpu_precision_parse(cfg->train.precision, &precision, err);
    if (status != AP_OK)
        return status;
    char reason[160] = "";
    if (ap_gpu_device_count(reason, sizeof(reason)) == 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "train.device is cuda, but no CUDA device is available (%s); set "
                            "train.device=cpu, or run on a machine with an NVIDIA GPU and driver",
                            reason);
    return AP_OK;
#else
    return ap_error_set(err, AP_ERR_INVALID,
                        "train.device is cuda, but this apiary was built without CUDA training "
                        "(it needs nvcc, cuDNN and cuBLAS at build time); set train.device=cpu, "
                        "or rebuild on a machine with the CUDA toolkit and cuDNN");
#endif
}

#ifndef APIARY_HAVE_CUDNN
ap_status ap_train_backend_cuda(const ap_backend_setup *setup, ap_train_backend *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    return ap_train_device_check(setup->cfg, err);
}
#endif
