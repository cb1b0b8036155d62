#ifndef APIARY_NN_CUDA_GPU_CHECK_H
#define APIARY_NN_CUDA_GPU_CHECK_H

/* Checks for cuDNN and cuBLAS calls, after AP_CUDA_CHECK for CUDA runtime
 * calls (kernels/cuda/cuda_check.h): a failure returns AP_ERR_BACKEND from
 * the calling function with a message naming the call, the file and line,
 * and the device. */

#include <cublas_v2.h>
#include <cudnn.h>

#include "kernels/cuda/cuda_check.h"
#include "pipeline/common/status.h"

ap_status gpu_cudnn_failure(cudnnStatus_t status, const char *call, const char *file, int line,
                            ap_error *err);
ap_status gpu_cublas_failure(cublasStatus_t status, const char *call, const char *file, int line,
                             ap_error *err);

#define GPU_CUDNN(call, err)                                                                       \
    do {                                                                                           \
        cudnnStatus_t gpu_cudnn_status = (call);                                                   \
        if (gpu_cudnn_status != CUDNN_STATUS_SUCCESS)                                              \
            return gpu_cudnn_failure(gpu_cudnn_status, #call, __FILE__, __LINE__, (err));          \
    } while (0)

#define GPU_CUBLAS(call, err)                                                                      \
    do {                                                                                           \
        cublasStatus_t gpu_cublas_status = (call);                                                 \
        if (gpu_cublas_status != CUBLAS_STATUS_SUCCESS)                                            \
            return gpu_cublas_failure(gpu_cublas_status, #call, __FILE__, __LINE__, (err));        \
    } while (0)

#define GPU_TRY(call)                                                                              \
    do {                                                                                           \
        ap_status gpu_try_status = (call);                                                         \
        if (gpu_try_status != AP_OK)                                                               \
            return gpu_try_status;                                                                 \
    } while (0)

#endif
