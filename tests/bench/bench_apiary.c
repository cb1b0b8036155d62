/* Throughput benchmarks of apiary's own code, run by tests/bench/bench_vs_torch.sh
 * beside the same measurements in PyTorch (bench_torch.py):
 *
 *   bench_apiary MODE [--config FILE] [--set KEY=VALUE]... [--threads N]
 *                     [--warmup N] [--steps N] [--epochs N] [--out FILE]
 *
 * MODE is one of
 *   train   training steps as apiary train runs them: gather a batch, augment
 *           and normalise it, forward, loss, backward and AdamW
 *   score   inference forward passes over normalised batches
 *   memory  whole epochs of training steps, with the resident memory after each
 *   decode  decoding and resizing every image of the manifest
 *   dump    write the decoded images and labels to --out for bench_torch.py
 *   ops     each oneDNN primitive of the network alone (bench_ops.c)
 *   peak    the FLOP/s of a register-only FMA loop (bench_ops.c)
 * Each result is one JSON object on one line of standard output. */

#include "tests/bench/bench_apiary.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cpu/bce_loss.h"
#include "kernels/cpu/preprocess.h"
#include "pipeline/data/image.h"
#include "pipeline/nn/net_internal.h"
#include "pipeline/train/model_card.h"
#include "pipeline/train/optimizer.h"
#include "pipeline/train/predict.h"

#define BENCH_SEED 42

double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

ap_status bench_load_config(const bench_options *options, ap_config *cfg, ap_error *err)
{
    ap_status status = ap_config_load_file(options->config_path, cfg, err);
    for (int i = 0; i < options->set_count && status == AP_OK; i++)
        status = ap_config_set(cfg, options->sets[i], err);
    if (status == AP_OK)
        status = ap_config_validate(cfg, err);
    return status;
}

ap_status bench_load_data(const bench_options *options, bench_data *data, ap_error *err)
{
    memset(data, 0, sizeof(*data));
    ap_status status = bench_load_config(options, &data->cfg, err);
    if (status != AP_OK)
        return status;
    const ap_data_config *dc = &data->cfg.data;
    const char *labels[AP_MAX_LABELS];
    for (int i = 0; i < dc->label_count; i++)
        labels[i] = dc->labels[i];
    char path[AP_PATH_MAX + AP_PATH_MAX + 2];
    snprintf(path, sizeof(path), "%s/%s", dc->root, dc->manifest);
    status =
        ap_manifest_load(path, labels, dc->label_count, dc->group_column, &data->manifest, err);
    if (status != AP_OK)
        return status;
    return ap_image_set_load(dc, &data->manifest, NULL, &data->images, &data->report, err);
}

void bench_free_data(bench_data *data)
{
    ap_image_set_free(&data->images);
    ap_data_report_free(&data->report);
    ap_manifest_free(&data->manifest);
}

ap_status bench_create_net(const ap_config *cfg, ap_net **net, ap_error *err)
{
    ap_net_spec spec;
    ap_net_spec_from_config(cfg, &spec);
    return ap_net_create(&spec, cfg->train.batch_size, BENCH_SEED, net, err);
}

/* Buffers and state of training steps, allocated once. */
typedef struct {
    const bench_data *data;
    ap_net *net;
    ap_optimizer opt;
    int batch;
    int labels;
    size_t *order;
    uint8_t *raw;
    float *input;
    float *logits;
    float *d_logits;
    int8_t *targets;
    float *pos_weight;
    ap_augment_params *augment;
    double seconds_data; /* gather, augment, normalise */
    double seconds_net;  /* forward, loss, backward */
    double seconds_opt;  /* AdamW */
} trainer_bench;

static void free_trainer(trainer_bench *t)
{
    ap_optimizer_free(&t->opt);
    ap_net_destroy(t->net);
    free(t->order);
    free(t->raw);
    free(t->input);
    free(t->logits);
    free(t->d_logits);
    free(t->targets);
    free(t->pos_weight);
    free(t->augment);
}

static ap_status init_trainer(trainer_bench *t, const bench_data *data, ap_error *err)
{
    memset(t, 0, sizeof(*t));
    t->data = data;
    t->batch = data->cfg.train.batch_size;
    t->labels = data->cfg.data.label_count;
    size_t pixels = (size_t)data->cfg.data.width * (size_t)data->cfg.data.height * 3;
    size_t batch = (size_t)t->batch;
    t->order = malloc(data->images.count * sizeof(size_t));
    t->raw = malloc(batch * pixels);
    t->input = malloc(batch * pixels * sizeof(float));
    t->logits = malloc(batch * (size_t)t->labels * sizeof(float));
    t->d_logits = malloc(batch * (size_t)t->labels * sizeof(float));
    t->targets = malloc(batch * (size_t)t->labels);
    t->pos_weight = malloc((size_t)t->labels * sizeof(float));
    t->augment = malloc(batch * sizeof(ap_augment_params));
    if (!t->order || !t->raw || !t->input || !t->logits || !t->d_logits || !t->targets ||
        !t->pos_weight || !t->augment)
        return ap_error_set(err, AP_ERR_NOMEM, "bench: cannot allocate step buffers");
    if (data->images.count < batch)
        return ap_error_set(err, AP_ERR_INVALID, "bench: %zu images, fewer than batch %zu",
                            data->images.count, batch);
    for (size_t i = 0; i < data->images.count; i++)
        t->order[i] = i;
    for (int i = 0; i < t->labels; i++)
        t->pos_weight[i] = 1.0f;
    ap_status status = bench_create_net(&data->cfg, &t->net, err);
    if (status == AP_OK)
        status = ap_optimizer_init(&t->opt, t->net, err);
    return status;
}

/* Gather batch `step` of the image order (wrapping around) and prepare the input. */
static void load_batch(trainer_bench *t, long step, bool augment)
{
    const ap_config *cfg = &t->data->cfg;
    size_t count = t->data->images.count;
    size_t first = (size_t)step * (size_t)t->batch % (count - (size_t)t->batch + 1);
    const size_t *indices = t->order + first;
    ap_gather_images(&t->data->images, indices, (size_t)t->batch, t->raw);
    ap_gather_labels(&t->data->images, indices, (size_t)t->batch, t->targets);
    if (augment)
        ap_augment_draw(BENCH_SEED, (uint64_t)step, t->batch, 1, (float)cfg->train.brightness,
                        (float)cfg->train.contrast, t->augment);
    ap_cpu_preprocess(t->raw, t->batch, cfg->data.height, cfg->data.width,
                      augment ? t->augment : NULL, cfg->data.mean, cfg->data.std, t->input);
}

static ap_status train_step(trainer_bench *t, long step, ap_error *err)
{
    const ap_train_config *train = &t->data->cfg.train;
    double start = bench_now();
    load_batch(t, step, train->augment);
    double loaded = bench_now();
    ap_status status =
        ap_net_forward(t->net, t->input, true, BENCH_SEED, (uint64_t)step, t->logits, err);
    if (status != AP_OK)
        return status;
    float loss =
        ap_cpu_bce_loss(t->logits, t->targets, t->pos_weight, t->batch, t->labels, t->d_logits);
    if (!isfinite(loss))
        return ap_error_set(err, AP_ERR_INVALID, "bench: loss %g at step %ld", (double)loss, step);
    status = ap_net_backward(t->net, t->d_logits, err);
    if (status != AP_OK)
        return status;
    double computed = bench_now();
    ap_optimizer_step(&t->opt, t->net, train->learning_rate, train->weight_decay, train->beta1,
                      train->beta2, train->epsilon);
    double updated = bench_now();
    t->seconds_data += loaded - start;
    t->seconds_net += computed - loaded;
    t->seconds_opt += updated - computed;
    return AP_OK;
}

static void print_common(const char *bench, const bench_options *options, const ap_config *cfg)
{
    printf("{\"bench\":\"%s\",\"tool\":\"apiary\",\"device\":\"cpu\",\"threads\":%d,"
           "\"batch\":%d,\"width\":%d,\"height\":%d",
           bench, options->threads, cfg->train.batch_size, cfg->data.width, cfg->data.height);
}

static ap_status run_train(const bench_options *options, const bench_data *data, ap_error *err)
{
    trainer_bench t;
    ap_status status = init_trainer(&t, data, err);
    for (long step = 0; step < options->warmup && status == AP_OK; step++)
        status = train_step(&t, step, err);
    t.seconds_data = t.seconds_net = t.seconds_opt = 0.0;
    double start = bench_now();
    for (long step = 0; step < options->steps && status == AP_OK; step++)
        status = train_step(&t, options->warmup + step, err);
    double seconds = bench_now() - start;
    if (status == AP_OK) {
        double images = (double)options->steps * t.batch;
        print_common("train", options, &data->cfg);
        printf(",\"parameters\":%zu,\"steps\":%d,\"seconds\":%.6f,\"images_per_second\":%.3f,"
               "\"seconds_data\":%.6f,\"seconds_net\":%.6f,\"seconds_optimizer\":%.6f,"
               "\"mflop_per_image\":%.3f}\n",
               ap_net_param_total(t.net), options->steps, seconds, images / seconds, t.seconds_data,
               t.seconds_net, t.seconds_opt, ap_net_flops_per_image(t.net, true) / 1e6);
    }
    free_trainer(&t);
    return status;
}

static ap_status run_score(const bench_options *options, const bench_data *data, ap_error *err)
{
    trainer_bench t;
    ap_status status = init_trainer(&t, data, err);
    if (status == AP_OK) {
        nn_net_set_fused_inference(t.net, !options->unfused);
        load_batch(&t, 0, false);
    }
    for (long step = 0; step < options->warmup && status == AP_OK; step++)
        status = ap_net_forward(t.net, t.input, false, 0, 0, t.logits, err);
    double start = bench_now();
    for (long step = 0; step < options->steps && status == AP_OK; step++)
        status = ap_net_forward(t.net, t.input, false, 0, 0, t.logits, err);
    double seconds = bench_now() - start;
    if (status == AP_OK) {
        print_common("score", options, &data->cfg);
        printf(",\"parameters\":%zu,\"fused\":%s,\"steps\":%d,\"seconds\":%.6f,"
               "\"images_per_second\":%.3f}\n",
               ap_net_param_total(t.net), options->unfused ? "false" : "true", options->steps,
               seconds, (double)options->steps * t.batch / seconds);
    }
    free_trainer(&t);
    return status;
}

/* Read the resident and peak resident memory in KiB from /proc/self/status. */
static void read_memory(long *rss_kib, long *peak_kib)
{
    *rss_kib = *peak_kib = -1;
    FILE *file = fopen("/proc/self/status", "r");
    if (file == NULL)
        return;
    char line[256];
    while (fgets(line, sizeof(line), file) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            *rss_kib = strtol(line + 6, NULL, 10);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            *peak_kib = strtol(line + 6, NULL, 10);
    }
    fclose(file);
}

static ap_status run_memory(const bench_options *options, const bench_data *data, ap_error *err)
{
    trainer_bench t;
    ap_status status = init_trainer(&t, data, err);
    long steps_per_epoch = (long)(data->images.count / (size_t)t.batch);
    long step = 0;
    for (int epoch = 1; epoch <= options->epochs && status == AP_OK; epoch++) {
        for (long i = 0; i < steps_per_epoch && status == AP_OK; i++)
            status = train_step(&t, step++, err);
        long rss = 0, peak = 0;
        read_memory(&rss, &peak);
        if (status == AP_OK) {
            print_common("memory", options, &data->cfg);
            printf(",\"epoch\":%d,\"steps\":%ld,\"rss_kib\":%ld,\"peak_rss_kib\":%ld}\n", epoch,
                   step, rss, peak);
            fflush(stdout);
        }
    }
    free_trainer(&t);
    return status;
}

/* Decode and resize one manifest row's image into out. Returns false when that fails. */
static bool decode_row(const bench_data *data, size_t row, uint8_t *out)
{
    const ap_data_config *dc = &data->cfg.data;
    ap_image_limits limits = {.max_bytes = (size_t)dc->max_image_bytes,
                              .max_pixels = dc->max_image_pixels};
    /* Look for root/FILE, then root/images/FILE, as ap_image_set_load does. */
    char path[3 * AP_PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dc->root, data->manifest.rows[row].file);
    if (access(path, F_OK) != 0)
        snprintf(path, sizeof(path), "%s/images/%s", dc->root, data->manifest.rows[row].file);
    ap_image image = {0};
    if (ap_image_load(path, &limits, &image, NULL) != AP_OK)
        return false;
    ap_status status = ap_image_resize(&image, dc->width, dc->height, dc->resize, out, NULL);
    ap_image_free(&image);
    return status == AP_OK;
}

static ap_status run_decode(const bench_options *options, const bench_data *data, ap_error *err)
{
    const ap_data_config *dc = &data->cfg.data;
    size_t rows = data->manifest.row_count;
    size_t bytes = (size_t)dc->width * (size_t)dc->height * 3;
    uint8_t *out = malloc(rows * bytes);
    if (out == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "bench: cannot allocate %zu decoded images", rows);
    long failed = 0;
    double start = bench_now();
    for (int pass = 0; pass < options->steps; pass++) {
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : failed)
        for (long row = 0; row < (long)rows; row++)
            failed += !decode_row(data, (size_t)row, out + (size_t)row * bytes);
    }
    double seconds = bench_now() - start;
    free(out);
    if (failed > 0)
        return ap_error_set(err, AP_ERR_FORMAT, "bench: %ld images failed to decode", failed);
    print_common("decode", options, &data->cfg);
    printf(",\"images\":%zu,\"passes\":%d,\"seconds\":%.6f,\"images_per_second\":%.3f}\n", rows,
           options->steps, seconds, (double)rows * options->steps / seconds);
    return AP_OK;
}

/* The network of the config as one JSON line, which bench_torch.py builds the
 * same network from. */
static void write_spec(FILE *file, const ap_config *cfg)
{
    ap_net_spec spec;
    ap_net_spec_from_config(cfg, &spec);
    fprintf(file,
            "{\"stem_channels\":%d,\"stem_kernel\":%d,\"stem_stride\":%d,\"dropout\":%g,"
            "\"batch\":%d,\"stages\":[",
            spec.stem_channels, spec.stem_kernel, spec.stem_stride, (double)spec.dropout,
            cfg->train.batch_size);
    for (int i = 0; i < spec.stage_count; i++)
        fprintf(file, "%s[%d,%d]", i > 0 ? "," : "", spec.stage_channels[i], spec.stage_blocks[i]);
    fprintf(file, "]}\n");
}

/* Header, the network line (write_spec), then count * height * width * 3
 * pixels, then count * labels int8 labels (-1 for unknown), then the file name
 * of each image, one per line. */
static ap_status run_dump(const bench_options *options, const bench_data *data, ap_error *err)
{
    const ap_image_set *set = &data->images;
    FILE *file = fopen(options->out, "wb");
    if (file == NULL)
        return ap_error_set(err, AP_ERR_IO, "bench: cannot create %s: %s", options->out,
                            strerror(errno));
    fprintf(file, "apiary-bench-images %zu %d %d %d\n", set->count, set->height, set->width,
            set->label_count);
    write_spec(file, &data->cfg);
    size_t pixel_bytes = set->count * (size_t)set->height * (size_t)set->width * 3;
    fwrite(set->pixels, 1, pixel_bytes, file);
    fwrite(set->labels, 1, set->count * (size_t)set->label_count, file);
    for (size_t i = 0; i < set->count; i++)
        fprintf(file, "%s\n", data->manifest.rows[set->row_index[i]].file);
    if (fclose(file) != 0)
        return ap_error_set(err, AP_ERR_IO, "bench: cannot write %s", options->out);
    print_common("dump", options, &data->cfg);
    printf(",\"images\":%zu,\"file\":\"%s\"}\n", set->count, options->out);
    return AP_OK;
}

static bool parse_count(const char *text, int min, int *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > 1000000)
        return false;
    *out = (int)value;
    return true;
}

static int usage(const char *message)
{
    fprintf(stderr,
            "bench_apiary: %s\nusage: bench_apiary train|score|memory|decode|dump|ops|peak "
            "[--config FILE] [--set KEY=VALUE]... [--threads N] [--warmup N] [--steps N] "
            "[--epochs N] [--out FILE] [--unfused]\n",
            message);
    return 2;
}

static int parse_options(int argc, char **argv, bench_options *options)
{
    *options =
        (bench_options){.config_path = "configs/local.yaml", .warmup = 5, .steps = 20, .epochs = 5};
    if (argc < 2)
        return usage("missing mode");
    options->mode = argv[1];
    for (int i = 2; i < argc; i += 2) {
        if (strcmp(argv[i], "--unfused") == 0) {
            options->unfused = true;
            i--;
            continue;
        }
        if (i + 1 >= argc)
            return usage("an option is missing its value");
        const char *name = argv[i], *value = argv[i + 1];
        bool ok = true;
        if (strcmp(name, "--config") == 0)
            options->config_path = value;
        else if (strcmp(name, "--set") == 0 && options->set_count < BENCH_MAX_SETS)
            options->sets[options->set_count++] = value;
        else if (strcmp(name, "--threads") == 0)
            ok = parse_count(value, 1, &options->threads);
        else if (strcmp(name, "--warmup") == 0)
            ok = parse_count(value, 0, &options->warmup);
        else if (strcmp(name, "--steps") == 0)
            ok = parse_count(value, 1, &options->steps);
        else if (strcmp(name, "--epochs") == 0)
            ok = parse_count(value, 1, &options->epochs);
        else if (strcmp(name, "--out") == 0)
            options->out = value;
        else
            return usage("unknown option");
        if (!ok)
            return usage("invalid number");
    }
    if (options->threads == 0)
        options->threads = omp_get_num_procs();
    omp_set_num_threads(options->threads);
    return 0;
}

static ap_status run_mode(const bench_options *options, ap_error *err)
{
    if (strcmp(options->mode, "ops") == 0)
        return bench_run_ops(options, err);
    if (strcmp(options->mode, "peak") == 0)
        return bench_run_peak(options, err);
    if (strcmp(options->mode, "dump") == 0 && options->out == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "bench: dump needs --out FILE");
    bench_data data;
    ap_status status = bench_load_data(options, &data, err);
    if (status != AP_OK)
        ;
    else if (strcmp(options->mode, "train") == 0)
        status = run_train(options, &data, err);
    else if (strcmp(options->mode, "score") == 0)
        status = run_score(options, &data, err);
    else if (strcmp(options->mode, "memory") == 0)
        status = run_memory(options, &data, err);
    else if (strcmp(options->mode, "decode") == 0)
        status = run_decode(options, &data, err);
    else if (strcmp(options->mode, "dump") == 0)
        status = run_dump(options, &data, err);
    else
        status = ap_error_set(err, AP_ERR_INVALID, "bench: unknown mode %s", options->mode);
    bench_free_data(&data);
    return status;
}

int main(int argc, char **argv)
{
    bench_options options;
    int code = parse_options(argc, argv, &options);
    if (code != 0)
        return code;
    ap_error err = {0};
    if (run_mode(&options, &err) != AP_OK) {
        fprintf(stderr, "bench_apiary: %s\n", err.message);
        return 1;
    }
    return 0;
}
