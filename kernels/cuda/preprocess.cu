#include "kernels/cuda/preprocess.h"

#include <math.h>

#include "kernels/cuda/cuda_check.h"

/* Threads per block of the conversion kernel, and output pixels each thread
 * writes, so that building the 768-entry table is a small share of a block. */
#define CONVERT_THREADS   256
#define PIXELS_PER_THREAD 4

/* Threads per block of the per-image byte sum. */
#define SUM_THREADS 512
#define WARP_SIZE   32

/* Maximum images in one launch, because the batch is the grid's y dimension. */
#define MAX_IMAGES 65535

/* Maximum grid x dimension used. A grid-stride loop covers larger images. */
#define MAX_BLOCKS_PER_IMAGE 65535

typedef struct {
    float mean[3];
    float std[3];
} normalisation;

static __device__ const uint8_t *image_start(const uint8_t *images, const int32_t *indices,
                                             int image, size_t image_bytes)
{
    size_t position = indices != NULL ? (size_t)indices[image] : (size_t)image;
    return images + position * image_bytes;
}

/* Sums the bytes this thread owns: an unaligned head and tail byte by byte,
 * the rest as 32-bit words whose four bytes one __dp4a adds up. */
static __device__ unsigned long long sum_thread_bytes(const uint8_t *source, size_t size)
{
    size_t head = (4 - (size_t)((uintptr_t)source % 4)) % 4;
    head = head < size ? head : size;
    size_t word_count = (size - head) / 4;
    size_t tail_start = head + word_count * 4;
    const uint32_t *words = (const uint32_t *)(source + head);

    unsigned long long sum = 0;
    if (threadIdx.x < head)
        sum += source[threadIdx.x];
    for (size_t i = threadIdx.x; i < word_count; i += blockDim.x)
        sum += __dp4a(words[i], 0x01010101u, 0u);
    if (threadIdx.x < size - tail_start)
        sum += source[tail_start + threadIdx.x];
    return sum;
}

/* One block per image: writes the mean [0,1] value of each image whose
 * contrast is not 1. The byte sum is an exact integer, so the order of the
 * reduction does not matter and the mean equals the CPU's. */
static __global__ void sum_images(const uint8_t *images, const int32_t *indices, size_t image_bytes,
                                  const ap_augment_params *params, float *image_means)
{
    __shared__ unsigned long long warp_sums[SUM_THREADS / WARP_SIZE];
    int image = blockIdx.x;
    if (params[image].contrast == 1.0f)
        return;

    const uint8_t *source = image_start(images, indices, image, image_bytes);
    unsigned long long sum = sum_thread_bytes(source, image_bytes);
    for (int offset = WARP_SIZE / 2; offset > 0; offset /= 2)
        sum += __shfl_down_sync(0xffffffffu, sum, offset);
    if (threadIdx.x % WARP_SIZE == 0)
        warp_sums[threadIdx.x / WARP_SIZE] = sum;
    __syncthreads();

    if (threadIdx.x == 0) {
        unsigned long long total = 0;
        for (int warp = 0; warp < SUM_THREADS / WARP_SIZE; warp++)
            total += warp_sums[warp];
        image_means[image] = ap_preprocess_image_mean(total, image_bytes);
    }
}

/* Grid (blocks per image, images). Each block builds the image's table of
 * output values for every byte of every channel with the CPU's formula,
 * then writes its share of the pixels, reading each through the flips. */
static __global__ void convert_images(const uint8_t *images, const int32_t *indices, int height,
                                      int width, const ap_augment_params *params,
                                      const float *image_means, normalisation norm, float *out)
{
    __shared__ float table[3][256];
    const int image = blockIdx.y;
    ap_augment_params augment = {0, 0, 0, 0.0f, 1.0f};
    if (params != NULL)
        augment = params[image];
    float image_mean = augment.contrast != 1.0f ? image_means[image] : 0.0f;

    for (int entry = threadIdx.x; entry < 3 * 256; entry += blockDim.x) {
        int channel = entry / 256;
        int pixel = entry % 256;
        table[channel][pixel] =
            ap_preprocess_value((uint8_t)pixel, image_mean, augment.contrast, augment.brightness,
                                norm.mean[channel], norm.std[channel]);
    }
    __syncthreads();

    const bool flip_rows = (augment.flip_vertical != 0) != (augment.rotate_180 != 0);
    const bool flip_columns = (augment.flip_horizontal != 0) != (augment.rotate_180 != 0);
    const size_t plane = (size_t)height * (size_t)width;
    const uint8_t *source = image_start(images, indices, image, plane * 3);
    float *target = out + (size_t)image * 3 * plane;
    const size_t stride = (size_t)gridDim.x * blockDim.x;

    for (size_t pixel = (size_t)blockIdx.x * blockDim.x + threadIdx.x; pixel < plane;
         pixel += stride) {
        int y = (int)(pixel / (size_t)width);
        int x = (int)(pixel % (size_t)width);
        int source_y = flip_rows ? height - 1 - y : y;
        int source_x = flip_columns ? width - 1 - x : x;
        const uint8_t *rgb = source + ((size_t)source_y * (size_t)width + (size_t)source_x) * 3;
        target[pixel] = table[0][rgb[0]];
        target[plane + pixel] = table[1][rgb[1]];
        target[2 * plane + pixel] = table[2][rgb[2]];
    }
}

static ap_status check_preprocess_args(const uint8_t *images, int count, int height, int width,
                                       const ap_augment_params *params, const float mean[3],
                                       const float std[3], const float *image_means,
                                       const float *out, ap_error *err)
{
    if (images == NULL || out == NULL || mean == NULL || std == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "preprocess: images, out, mean and std must not be NULL; pass "
                             "allocated buffers");
    if (count < 0 || count > MAX_IMAGES)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "preprocess: image count %d is outside [0, %d]; split the batch",
                             count, MAX_IMAGES);
    if (height <= 0 || width <= 0)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "preprocess: image size %dx%d is invalid; height and width must be "
                             "positive",
                             height, width);
    if (params != NULL && image_means == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "preprocess: image_means is NULL but params is set; pass a device "
                             "buffer of %d floats",
                             count);
    for (int c = 0; c < 3; c++) {
        if (!(std[c] > 0.0f) || !isfinite(std[c]) || !isfinite(mean[c]))
            return ap_cuda_error(err, AP_ERR_INVALID,
                                 "preprocess: channel %d has mean %g and std %g; the mean must "
                                 "be finite and the std finite and positive",
                                 c, (double)mean[c], (double)std[c]);
    }
    return AP_OK;
}

extern "C" ap_status ap_cuda_preprocess(const uint8_t *images, const int32_t *indices, int count,
                                        int height, int width, const ap_augment_params *params,
                                        const float mean[3], const float std[3], float *image_means,
                                        float *out, cudaStream_t stream, ap_error *err)
{
    ap_status status = check_preprocess_args(images, count, height, width, params, mean, std,
                                             image_means, out, err);
    if (status != AP_OK || count == 0)
        return status;

    const size_t plane = (size_t)height * (size_t)width;
    if (params != NULL) {
        sum_images<<<count, SUM_THREADS, 0, stream>>>(images, indices, plane * 3, params,
                                                      image_means);
        AP_CUDA_CHECK(cudaGetLastError(), err);
    }

    normalisation norm;
    for (int c = 0; c < 3; c++) {
        norm.mean[c] = mean[c];
        norm.std[c] = std[c];
    }
    const size_t pixels_per_block = (size_t)CONVERT_THREADS * PIXELS_PER_THREAD;
    const size_t blocks_per_image = (plane + pixels_per_block - 1) / pixels_per_block;
    const size_t grid_x =
        blocks_per_image < MAX_BLOCKS_PER_IMAGE ? blocks_per_image : MAX_BLOCKS_PER_IMAGE;
    const dim3 grid((unsigned)grid_x, (unsigned)count);
    convert_images<<<grid, CONVERT_THREADS, 0, stream>>>(images, indices, height, width, params,
                                                         image_means, norm, out);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}
