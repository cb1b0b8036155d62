#ifndef APIARY_TESTS_BENCH_APIARY_H
#define APIARY_TESTS_BENCH_APIARY_H

/* Shared parts of the bench_apiary executable: the options, the data set
 * decoded once, and the timer. Each mode prints one JSON object per line. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/data/dataset.h"
#include "pipeline/data/manifest.h"
#include "pipeline/nn/net.h"

#define BENCH_MAX_SETS 32

typedef struct {
    const char *mode;
    const char *config_path;
    const char *sets[BENCH_MAX_SETS];
    int set_count;
    int threads;
    int warmup;      /* untimed steps before the timed ones */
    int steps;       /* timed steps (train, score) or passes (decode) */
    int epochs;      /* memory mode */
    const char *out; /* dump mode: file to write */
    bool unfused;    /* score mode: layer-by-layer inference, without folded batch norms */
} bench_options;

typedef struct {
    ap_config cfg;
    ap_manifest manifest;
    ap_image_set images;
    ap_data_report report;
} bench_data;

double bench_now(void);
/* Load the config with the --set overrides, without reading any data. */
ap_status bench_load_config(const bench_options *options, ap_config *cfg, ap_error *err);
/* Load the config, then decode and resize every image of its manifest. */
ap_status bench_load_data(const bench_options *options, bench_data *data, ap_error *err);
void bench_free_data(bench_data *data);
/* The network of cfg for batch train.batch_size. */
ap_status bench_create_net(const ap_config *cfg, ap_net **net, ap_error *err);

ap_status bench_run_ops(const bench_options *options, ap_error *err);
ap_status bench_run_peak(const bench_options *options, ap_error *err);

#endif
