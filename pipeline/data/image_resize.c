#include "pipeline/data/image.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Resizing is separable: each output row is a weighted sum of source rows,
 * and each output pixel of that row a weighted sum of its columns. The
 * weights of one axis come from a box filter over the source footprint when
 * the axis shrinks (every source pixel counts in proportion to its overlap)
 * and from linear interpolation between pixel centres when it grows. */

/* Below this many source or output pixels, starting threads costs more than
 * it saves, and the dataset loader already decodes one image per thread. */
#define PARALLEL_MIN_PIXELS (1 << 20)

typedef struct {
    int *first;     /* first source index of each output index */
    int *count;     /* number of source indices it reads */
    float *weights; /* max_taps weights per output index; they sum to 1 */
    int max_taps;
} axis_filter;

static void free_filter(axis_filter *filter)
{
    free(filter->first);
    free(filter->count);
    free(filter->weights);
}

static void set_box_weights(axis_filter *filter, int index, int source_size, int output_size)
{
    double scale = (double)source_size / output_size;
    double low = index * scale;
    double high = (index + 1) * scale;
    int first = (int)floor(low);
    int last = (int)ceil(high) - 1;
    if (last > source_size - 1)
        last = source_size - 1;

    float *weights = filter->weights + (size_t)index * filter->max_taps;
    double total = 0.0;
    int count = 0;
    for (int j = first; j <= last && count < filter->max_taps; j++) {
        double overlap = fmin(high, j + 1.0) - fmax(low, (double)j);
        weights[count++] = (float)overlap;
        total += overlap;
    }
    for (int k = 0; k < count; k++)
        weights[k] = (float)(weights[k] / total);
    filter->first[index] = first;
    filter->count[index] = count;
}

/* Pixel centres are aligned: output index i sits at source coordinate
 * (i + 0.5) * source / output - 0.5, clamped to the edge pixels. */
static void set_linear_weights(axis_filter *filter, int index, int source_size, int output_size)
{
    double position = (index + 0.5) * source_size / output_size - 0.5;
    if (position < 0.0)
        position = 0.0;
    int first = (int)floor(position);
    double fraction = position - first;
    float *weights = filter->weights + (size_t)index * filter->max_taps;
    if (first >= source_size - 1) {
        first = source_size - 1;
        fraction = 0.0;
    }
    filter->first[index] = first;
    filter->count[index] = fraction > 0.0 ? 2 : 1;
    weights[0] = (float)(1.0 - fraction);
    weights[1] = (float)fraction;
}

static bool build_filter(axis_filter *filter, int source_size, int output_size)
{
    bool shrink = output_size < source_size;
    filter->max_taps = shrink ? (int)ceil((double)source_size / output_size) + 1 : 2;
    filter->first = malloc((size_t)output_size * sizeof(int));
    filter->count = malloc((size_t)output_size * sizeof(int));
    filter->weights = malloc((size_t)output_size * filter->max_taps * sizeof(float));
    if (filter->first == NULL || filter->count == NULL || filter->weights == NULL) {
        free_filter(filter);
        return false;
    }
    for (int i = 0; i < output_size; i++) {
        if (shrink)
            set_box_weights(filter, i, source_size, output_size);
        else
            set_linear_weights(filter, i, source_size, output_size);
    }
    return true;
}

static uint8_t round_to_byte(float value)
{
    if (value <= 0.0f)
        return 0;
    if (value >= 255.0f)
        return 255;
    return (uint8_t)(value + 0.5f);
}

/* Computes output row y: blend source rows into sum, then blend columns. */
static void resize_row(const ap_image *src, const axis_filter *columns, const axis_filter *rows,
                       int out_width, int y, float *sum, uint8_t *out)
{
    size_t src_row_values = (size_t)src->width * 3;
    const float *row_weights = rows->weights + (size_t)y * rows->max_taps;
    memset(sum, 0, src_row_values * sizeof(float));
    for (int k = 0; k < rows->count[y]; k++) {
        const uint8_t *line = src->pixels + (size_t)(rows->first[y] + k) * src_row_values;
        float weight = row_weights[k];
#pragma omp simd
        for (size_t i = 0; i < src_row_values; i++)
            sum[i] += weight * line[i];
    }

    for (int x = 0; x < out_width; x++) {
        const float *weights = columns->weights + (size_t)x * columns->max_taps;
        const float *pixel = sum + (size_t)columns->first[x] * 3;
        float red = 0.0f, green = 0.0f, blue = 0.0f;
        for (int k = 0; k < columns->count[x]; k++) {
            red += weights[k] * pixel[3 * k];
            green += weights[k] * pixel[3 * k + 1];
            blue += weights[k] * pixel[3 * k + 2];
        }
        out[3 * x] = round_to_byte(red);
        out[3 * x + 1] = round_to_byte(green);
        out[3 * x + 2] = round_to_byte(blue);
    }
}

/* Resizes src to out_width x out_height into dst, whose rows are dst_stride
 * bytes apart. Returns false when memory runs out. */
static bool resize_into(const ap_image *src, int out_width, int out_height, uint8_t *dst,
                        size_t dst_stride)
{
    axis_filter columns, rows;
    if (!build_filter(&columns, src->width, out_width))
        return false;
    if (!build_filter(&rows, src->height, out_height)) {
        free_filter(&columns);
        return false;
    }

    int64_t source_pixels = (int64_t)src->width * src->height;
    int64_t output_pixels = (int64_t)out_width * out_height;
    bool large = source_pixels >= PARALLEL_MIN_PIXELS || output_pixels >= PARALLEL_MIN_PIXELS;
    bool parallel = large && omp_get_level() == 0;
    bool failed = false;
#pragma omp parallel if (parallel) reduction(|| : failed)
    {
        float *sum = malloc((size_t)src->width * 3 * sizeof(float));
        failed = sum == NULL;
#pragma omp for schedule(static)
        for (int y = 0; y < out_height; y++) {
            if (sum != NULL)
                resize_row(src, &columns, &rows, out_width, y, sum, dst + (size_t)y * dst_stride);
        }
        free(sum);
    }
    free_filter(&columns);
    free_filter(&rows);
    return !failed;
}

/* The largest size with src's aspect ratio that fits width x height. */
static void fit_inside(const ap_image *src, int width, int height, int *fit_width, int *fit_height)
{
    double scale = fmin((double)width / src->width, (double)height / src->height);
    *fit_width = (int)lround(src->width * scale);
    *fit_height = (int)lround(src->height * scale);
    if (*fit_width < 1)
        *fit_width = 1;
    if (*fit_width > width)
        *fit_width = width;
    if (*fit_height < 1)
        *fit_height = 1;
    if (*fit_height > height)
        *fit_height = height;
}

ap_status ap_image_resize(const ap_image *src, int width, int height, ap_resize_mode mode,
                          uint8_t *dst, ap_error *err)
{
    if (src == NULL || src->pixels == NULL || src->width <= 0 || src->height <= 0)
        return ap_error_set(err, AP_ERR_INVALID, "resize: the source image is empty");
    if (width <= 0 || height <= 0 || dst == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "resize: invalid output size %dx%d", width,
                            height);
    if (mode != AP_RESIZE_STRETCH && mode != AP_RESIZE_LETTERBOX)
        return ap_error_set(err, AP_ERR_INVALID, "resize: unknown resize mode %d", (int)mode);

    size_t stride = (size_t)width * 3;
    if (src->width == width && src->height == height) {
        memcpy(dst, src->pixels, stride * (size_t)height);
        return AP_OK;
    }

    int fit_width = width, fit_height = height;
    uint8_t *origin = dst;
    if (mode == AP_RESIZE_LETTERBOX) {
        fit_inside(src, width, height, &fit_width, &fit_height);
        memset(dst, 0, stride * (size_t)height);
        origin +=
            (size_t)((height - fit_height) / 2) * stride + (size_t)((width - fit_width) / 2) * 3;
    }
    if (!resize_into(src, fit_width, fit_height, origin, stride))
        return ap_error_set(err, AP_ERR_NOMEM, "resize: cannot allocate filter tables for %dx%d",
                            width, height);
    return AP_OK;
}
