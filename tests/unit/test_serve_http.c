/* The server in process, driven over loopback HTTP with libcurl: readiness
 * before the first model, micro-batched results equal to one-image results,
 * a hot swap under concurrent requests that never fail, and a clean stop.
 * The models are tiny random networks registered in a local registry, so
 * the test needs no training data. */

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/registry.h"
#include "pipeline/serve/serve.h"
#include "pipeline/train/model_card.h"
#include "pipeline/train/train_state.h"
#include "tests/unit/check.h"

#define MODEL_NAME "bees"
#define SIDE       16 /* input width and height in pixels */
#define LABELS     2
#define CLIENTS    8
#define PATH_SIZE  1200

static char base_url[64];
static char registry_dir[1024];

typedef struct {
    char *data;
    size_t size;
} text_buffer;

static size_t collect(char *data, size_t size, size_t count, void *user)
{
    text_buffer *buffer = user;
    char *grown = realloc(buffer->data, buffer->size + size * count + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + buffer->size, data, size * count);
    buffer->size += size * count;
    grown[buffer->size] = '\0';
    buffer->data = grown;
    return size * count;
}

/* Send a request and return its status (0 when the transfer failed); the
 * response body goes to *response (malloc'd, may be NULL). */
static long http(const char *method, const char *path, const char *body, char **response)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", base_url, path);
    text_buffer buffer = {0};
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buffer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (body != NULL)
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    long status = 0;
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (response != NULL)
        *response = buffer.data;
    else
        free(buffer.data);
    return status;
}

/* Write the weights of a random network for seed and a card for them into folder. */
static int write_model(const char *folder, uint64_t seed, char *weights, char *card)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    ap_error err = {0};
    const char *settings[] = {"data.labels=wasp,bee",   "data.width=16",
                              "data.height=16",         "model.stem_channels=4",
                              "model.stage_channels=4", "model.stage_blocks=1"};
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        if (ap_config_set(&cfg, settings[i], &err) != AP_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
    ap_net_spec spec;
    ap_net_spec_from_config(&cfg, &spec);
    ap_net *net = NULL;
    snprintf(weights, PATH_SIZE, "%.1100s/model.safetensors", folder);
    snprintf(card, PATH_SIZE, "%.1100s/model_card.json", folder);
    char sha[65];
    ap_status status = ap_net_create(&spec, 1, seed, &net, &err);
    if (status == AP_OK)
        status = ap_train_state_save(weights, net, NULL, NULL, NULL, 0, &err);
    if (status == AP_OK)
        status = ap_sha256_file(weights, sha, &err);
    ap_net_destroy(net);
    if (status != AP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    json_t *json = json_pack("{s:s, s:[s, s], s:{s:i, s:i, s:i, s:[i], s:[i], s:f, s:i}, "
                             "s:{s:i, s:i, s:i, s:s, s:[f, f, f], s:[f, f, f]}, s:{s:s, s:s}}",
                             "format", "apiary-model-card", "labels", "wasp", "bee", "architecture",
                             "stem_channels", 4, "stem_kernel", spec.stem_kernel, "stem_stride",
                             spec.stem_stride, "stage_channels", 4, "stage_blocks", 1, "dropout",
                             0.0, "label_count", LABELS, "input", "width", SIDE, "height", SIDE,
                             "channels", 3, "resize", "stretch", "mean", 0.5, 0.5, 0.5, "std", 0.25,
                             0.25, 0.25, "weights", "file", "model.safetensors", "sha256", sha);
    int failed = json == NULL || json_dump_file(json, card, 0) != 0;
    json_decref(json);
    return failed;
}

/* Register a random model for seed and point champion at it; returns its version or 0. */
static int publish_model(uint64_t seed)
{
    char folder[1100], weights[PATH_SIZE], card[PATH_SIZE];
    snprintf(folder, sizeof(folder), "%s-files-%llu", registry_dir, (unsigned long long)seed);
    ap_error err = {0};
    if (ap_mkdirs(folder, &err) != AP_OK || write_model(folder, seed, weights, card) != 0)
        return 0;
    ap_registry *registry = NULL;
    ap_registry_new_version request = {.model_path = weights, .model_card_path = card};
    ap_registry_move move = {.reason = "test model without a report", .forced = true};
    int version = 0;
    ap_status status = ap_local_registry_open(registry_dir, &registry, &err);
    if (status == AP_OK)
        status = ap_registry_register(registry, MODEL_NAME, &request, &version, &err);
    if (status == AP_OK)
        status = ap_registry_set_alias(registry, MODEL_NAME, AP_REGISTRY_CHAMPION, version, &move,
                                       NULL, &err);
    ap_registry_close(registry);
    if (status != AP_OK)
        fprintf(stderr, "publishing a model failed: %s\n", err.message);
    return status == AP_OK ? version : 0;
}

/* An inference request for one image whose pixels follow a pattern of k. */
static char *pixels_request(int k)
{
    size_t values = SIDE * SIDE * 3;
    char *body = malloc(values * 5 + 200);
    int used = sprintf(body,
                       "{\"inputs\": [{\"name\": \"pixels\", \"datatype\": \"UINT8\", "
                       "\"shape\": [1, %d, %d, 3], \"data\": [",
                       SIDE, SIDE);
    for (size_t i = 0; i < values; i++)
        used += sprintf(body + used, "%s%d", i > 0 ? "," : "", (int)((i * (size_t)(k + 3)) % 256));
    strcpy(body + used, "]}]}");
    return body;
}

/* The probabilities and model version of an inference response; false when it has none. */
static bool read_response(const char *text, float probabilities[LABELS], int *version)
{
    json_t *json = text != NULL ? json_loads(text, 0, NULL) : NULL;
    const json_t *data =
        json_object_get(json_array_get(json_object_get(json, "outputs"), 0), "data");
    const char *model_version = json_string_value(json_object_get(json, "model_version"));
    bool ok = json_array_size(data) == LABELS && model_version != NULL;
    for (size_t l = 0; ok && l < LABELS; l++)
        probabilities[l] = (float)json_number_value(json_array_get(data, l));
    char *end = NULL;
    if (ok)
        *version = (int)strtol(model_version, &end, 10);
    ok = ok && end != model_version && *end == '\0';
    json_decref(json);
    return ok;
}

static bool wait_until_ready(double seconds)
{
    for (int i = 0; i < (int)(seconds * 20); i++) {
        if (http("GET", "/v2/health/ready", NULL, NULL) == 200)
            return true;
        nanosleep(&(struct timespec){0, 50000000}, NULL);
    }
    return false;
}

/* ---- Batched results equal one-image results ---- */

typedef struct {
    int k;
    pthread_barrier_t *start; /* NULL to send at once */
    long status;
    float probabilities[LABELS];
} client_result;

static void *send_one(void *argument)
{
    client_result *result = argument;
    char *body = pixels_request(result->k), *response = NULL;
    int version = 0;
    if (result->start != NULL)
        pthread_barrier_wait(result->start);
    result->status = http("POST", "/v2/models/" MODEL_NAME "/infer", body, &response);
    if (!read_response(response, result->probabilities, &version))
        result->status = -1;
    free(body);
    free(response);
    return NULL;
}

static double metric_value(const char *metrics, const char *name)
{
    const char *line = metrics != NULL ? strstr(metrics, name) : NULL;
    return line != NULL ? strtod(line + strlen(name), NULL) : -1.0;
}

static void test_batching_keeps_results(void)
{
    client_result single[CLIENTS], batched[CLIENTS];
    for (int k = 0; k < CLIENTS; k++) {
        single[k] = (client_result){.k = k};
        send_one(&single[k]);
        CHECK_INT_EQ(single[k].status, 200);
    }
    /* The clients start together, well within the batch wait of serve.batch_wait_ms. */
    pthread_t threads[CLIENTS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, CLIENTS);
    for (int k = 0; k < CLIENTS; k++) {
        batched[k] = (client_result){.k = k, .start = &start};
        pthread_create(&threads[k], NULL, send_one, &batched[k]);
    }
    for (int k = 0; k < CLIENTS; k++)
        pthread_join(threads[k], NULL);
    pthread_barrier_destroy(&start);
    /* Inference uses running batch-norm statistics, so an image's result does
     * not depend on its batch; only oneDNN's summation order may differ. */
    for (int k = 0; k < CLIENTS; k++) {
        CHECK_INT_EQ(batched[k].status, 200);
        for (int l = 0; l < LABELS; l++)
            CHECK_NEAR(batched[k].probabilities[l], single[k].probabilities[l], 1e-5);
    }

    char *metrics = NULL;
    CHECK_INT_EQ(http("GET", "/metrics", NULL, &metrics), 200);
    double batches = metric_value(metrics, "apiary_inference_batch_images_count ");
    double images = metric_value(metrics, "apiary_inference_batch_images_sum ");
    double single_batches =
        metric_value(metrics, "apiary_inference_batch_images_bucket{le=\"1\"} ");
    CHECK_NEAR(images, 2 * CLIENTS, 0);
    /* the concurrent requests shared at least one forward pass */
    CHECK(single_batches < batches);
    free(metrics);
}

/* ---- Hot swap under concurrent requests ---- */

typedef struct {
    int k;
    long requests;
    long failures;
    bool out_of_order; /* version 1 responded after version 2 */
    bool saw_new;
} swap_client;

static void *loop_requests(void *argument)
{
    swap_client *client = argument;
    char *body = pixels_request(client->k);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int after_swap = 0;
    do {
        char *response = NULL;
        float probabilities[LABELS];
        int version = 0;
        long status = http("POST", "/v2/models/" MODEL_NAME "/infer", body, &response);
        client->requests++;
        if (status != 200 || !read_response(response, probabilities, &version))
            client->failures++;
        client->out_of_order |= client->saw_new && version == 1;
        client->saw_new |= version == 2;
        after_swap += client->saw_new;
        free(response);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (after_swap < 5 && now.tv_sec - start.tv_sec < 30);
    free(body);
    return NULL;
}

static void test_swap_under_load(void)
{
    swap_client clients[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        clients[i] = (swap_client){.k = i};
        pthread_create(&threads[i], NULL, loop_requests, &clients[i]);
    }
    nanosleep(&(struct timespec){0, 300000000}, NULL);
    CHECK_INT_EQ(publish_model(2), 2);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < 4; i++) {
        CHECK(clients[i].requests > 5);
        CHECK_INT_EQ(clients[i].failures, 0);
        CHECK(clients[i].saw_new);
        CHECK(!clients[i].out_of_order);
    }
}

int main(void)
{
    const char *dir = check_temp_dir("serve-http");
    if (dir == NULL) {
        fprintf(stderr, "cannot create a temporary folder\n");
        return 1;
    }
    snprintf(registry_dir, sizeof(registry_dir), "%s/registry", dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    static ap_config cfg;
    ap_config_defaults(&cfg);
    snprintf(cfg.registry.uri, sizeof(cfg.registry.uri), "%s", registry_dir);
    snprintf(cfg.registry.model_name, sizeof(cfg.registry.model_name), "%s", MODEL_NAME);
    cfg.serve.port = 0;
    cfg.serve.watch_seconds = 1;
    cfg.serve.batch_size = CLIENTS;
    cfg.serve.batch_wait_ms = 100;
    cfg.serve.threads = 4;
    cfg.serve.inference_threads = 1;
    ap_server *server = NULL;
    ap_error err = {0};
    if (ap_server_start(&cfg, &server, &err) != AP_OK) {
        fprintf(stderr, "server start failed: %s\n", err.message);
        return 1;
    }
    snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d", ap_server_port(server));

    CHECK_INT_EQ(http("GET", "/v2/health/ready", NULL, NULL), 503);
    CHECK_INT_EQ(http("GET", "/v2/health/live", NULL, NULL), 200);
    CHECK_INT_EQ(publish_model(1), 1);
    CHECK(wait_until_ready(10.0));
    test_batching_keeps_results();
    test_swap_under_load();

    CHECK_INT_EQ(ap_server_stop(server), 0);
    curl_global_cleanup();
    return check_finish();
}
