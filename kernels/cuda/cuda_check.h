#ifndef APIARY_KERNELS_CUDA_CUDA_CHECK_H
#define APIARY_KERNELS_CUDA_CUDA_CHECK_H

/* Error reporting for the CUDA launchers. Messages are written straight into
 * ap_error instead of through ap_error_set, so apiary_cuda needs nothing
 * from apiary_core at link time and the core library can link it. */

#include <stdarg.h>
#include <stdio.h>

#include <cuda_runtime_api.h>

#include "pipeline/common/status.h"

/* Stores a printf-style message and code in err (which may be NULL); returns code. */
static inline ap_status ap_cuda_error(ap_error *err, ap_status code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static inline ap_status ap_cuda_error(ap_error *err, ap_status code, const char *format, ...)
{
    if (err == NULL)
        return code;
    va_list args;
    va_start(args, format);
    vsnprintf(err->message, sizeof(err->message), format, args);
    va_end(args);
    err->code = code;
    return code;
}

/* Fills err for a CUDA call that returned status and returns AP_ERR_BACKEND.
 * Kernels run asynchronously, so an error can belong to earlier work on the
 * device. The message tells how to find where it started. */
static inline ap_status ap_cuda_report(cudaError_t status, const char *call, const char *file,
                                       int line, ap_error *err)
{
    int device = -1;
    if (cudaGetDevice(&device) != cudaSuccess)
        device = -1;
    return ap_cuda_error(err, AP_ERR_BACKEND,
                         "CUDA call %s failed at %s:%d on device %d: %s (%s); rerun with "
                         "CUDA_LAUNCH_BLOCKING=1 to stop at the failing kernel",
                         call, file, line, device, cudaGetErrorName(status),
                         cudaGetErrorString(status));
}

/* Runs a CUDA runtime call and, when it fails, returns AP_ERR_BACKEND from
 * the calling function with err filled in. */
#define AP_CUDA_CHECK(call, err)                                                                   \
    do {                                                                                           \
        cudaError_t ap_cuda_status = (call);                                                       \
        if (ap_cuda_status != cudaSuccess)                                                         \
            return ap_cuda_report(ap_cuda_status, #call, __FILE__, __LINE__, (err));               \
    } while (0)

#endif
