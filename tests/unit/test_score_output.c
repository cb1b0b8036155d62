/* Prediction rows of apiary score: JSON lines, CSV, counts and summary. */

#include "pipeline/score/score_output.h"

#include "tests/unit/check.h"

static ap_score_model_info test_model(void)
{
    ap_score_model_info model = {.version = 3, .label_count = 2};
    snprintf(model.sha256_short, sizeof(model.sha256_short), "0123456789ab");
    snprintf(model.labels[0], sizeof(model.labels[0]), "wasp");
    snprintf(model.labels[1], sizeof(model.labels[1]), "varroa");
    model.thresholds[0] = 0.4f;
    model.thresholds[1] = 0.7f;
    return model;
}

static void test_row_round_trip(void)
{
    ap_score_model_info model = test_model();
    ap_text line = {0};
    const float probabilities[2] = {0.4f, 0.69f};
    ap_score_format_row(&line, &model, "hive-1/a \"quoted\".jpg", probabilities, "");
    CHECK(!line.out_of_memory);
    CHECK_STR_CONTAINS(line.data, "\"image\":\"hive-1/a \\\"quoted\\\".jpg\"");
    CHECK_STR_CONTAINS(line.data, "\"model_version\":3,\"model_sha256\":\"0123456789ab\"");
    CHECK_STR_CONTAINS(line.data, "\"probabilities\":{\"wasp\":0.4,\"varroa\":0.69}");
    /* Decisions are probability >= threshold, as the validation gate decides. */
    CHECK_STR_CONTAINS(line.data, "\"decisions\":{\"wasp\":true,\"varroa\":false}");
    CHECK_INT_EQ(line.data[line.length - 1], '\n');
    CHECK_INT_EQ(strchr(line.data, '\n') - line.data, (long)line.length - 1);

    ap_score_row row;
    json_t *json = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_parse_row(line.data, line.length, &model, &row, &json, &err), AP_OK);
    CHECK_STR_CONTAINS(row.image, "hive-1/a \"quoted\".jpg");
    CHECK(!row.failed);
    CHECK_NEAR(row.probabilities[0], 0.4, 1e-6);
    CHECK_NEAR(row.probabilities[1], 0.69, 1e-6);
    CHECK(row.decisions[0]);
    CHECK(!row.decisions[1]);
    json_decref(json);
    free(line.data);
}

static void test_error_row(void)
{
    ap_score_model_info model = test_model();
    ap_text line = {0};
    ap_score_format_row(&line, &model, "bad.jpg", NULL, "corrupt JPEG\n\x01 data \xff end");
    CHECK_STR_CONTAINS(line.data, "\"probabilities\":null,\"decisions\":null");
    /* Control characters are escaped and invalid UTF-8 becomes U+FFFD. */
    CHECK_STR_CONTAINS(line.data, "corrupt JPEG\\u000a\\u0001 data \\ufffd end");
    ap_score_row row;
    json_t *json = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_parse_row(line.data, line.length, &model, &row, &json, &err), AP_OK);
    CHECK(row.failed);
    CHECK_STR_CONTAINS(row.error, "corrupt JPEG\n\x01 data \xef\xbf\xbd end");
    json_decref(json);
    free(line.data);
}

static void test_parse_rejects(void)
{
    ap_score_model_info model = test_model();
    static const struct {
        const char *line;
        ap_status status;
        const char *message;
    } cases[] = {
        {"{\"image\":\"a.jpg\",\"model_ver", AP_ERR_FORMAT, "invalid JSON"},
        {"[1]", AP_ERR_FORMAT, "not a JSON object"},
        {"{\"image\":\"a.jpg\",\"model_version\":4,\"model_sha256\":\"0123456789ab\","
         "\"probabilities\":null,\"decisions\":null,\"error\":\"x\"}",
         AP_ERR_INVALID, "model version 4"},
        {"{\"image\":\"a.jpg\",\"model_version\":3,\"model_sha256\":\"ffffffffffff\","
         "\"probabilities\":null,\"decisions\":null,\"error\":\"x\"}",
         AP_ERR_INVALID, "another output folder"},
        {"{\"image\":\"a.jpg\",\"model_version\":3,\"model_sha256\":\"0123456789ab\","
         "\"probabilities\":{\"wasp\":0.5},\"decisions\":{\"wasp\":true},\"error\":\"\"}",
         AP_ERR_FORMAT, "label varroa"},
        {"{\"image\":\"a.jpg\",\"model_version\":3,\"model_sha256\":\"0123456789ab\","
         "\"probabilities\":{\"wasp\":1.5,\"varroa\":0},\"decisions\":{},\"error\":\"\"}",
         AP_ERR_FORMAT, "label wasp"},
        {"{\"model_version\":3,\"model_sha256\":\"0123456789ab\",\"error\":\"\"}", AP_ERR_FORMAT,
         "no image"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ap_score_row row;
        json_t *json = NULL;
        ap_error err = {0};
        CHECK_INT_EQ(
            ap_score_parse_row(cases[i].line, strlen(cases[i].line), &model, &row, &json, &err),
            cases[i].status);
        CHECK_STR_CONTAINS(err.message, cases[i].message);
        json_decref(json);
    }
}

static void test_csv(void)
{
    ap_score_model_info model = test_model();
    ap_text text = {0};
    ap_score_csv_header(&text, &model);
    CHECK_INT_EQ(strcmp(text.data, "image,model_version,model_sha256,wasp_probability,"
                                   "wasp_decision,varroa_probability,varroa_decision,error\n"),
                 0);
    text.length = 0;
    ap_score_row row = {
        .image = "a,b.jpg", .probabilities = {0.25f, 0.75f}, .decisions = {false, true}};
    ap_score_csv_row(&text, &model, &row);
    CHECK_INT_EQ(strcmp(text.data, "\"a,b.jpg\",3,0123456789ab,0.25,0,0.75,1,\n"), 0);
    text.length = 0;
    ap_score_row failed = {.image = "c.jpg", .failed = true};
    snprintf(failed.error, sizeof(failed.error), "bad \"header\", stop");
    ap_score_csv_row(&text, &model, &failed);
    CHECK_INT_EQ(strcmp(text.data, "c.jpg,3,0123456789ab,,,,,\"bad \"\"header\"\", stop\"\n"), 0);
    free(text.data);
}

static ap_score_row decoded_row(const char *image, bool wasp, bool varroa)
{
    ap_score_row row = {.image = image, .decisions = {wasp, varroa}};
    return row;
}

static void test_tally_and_alerts(void)
{
    ap_score_model_info model = test_model();
    ap_score_tally tally;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_tally_init(&tally, &err), AP_OK);
    ap_score_row rows[] = {decoded_row("b/1.jpg", true, false), decoded_row("b/2.jpg", false, true),
                           decoded_row("a/1.jpg", false, false),
                           decoded_row("top.jpg", true, true)};
    const char *groups[] = {"b", "b", "a", NULL};
    for (int i = 0; i < 4; i++)
        CHECK_INT_EQ(ap_score_tally_add(&tally, &model, groups[i], &rows[i], &err), AP_OK);
    ap_score_row failed = {.image = "a/2.jpg", .failed = true};
    CHECK_INT_EQ(ap_score_tally_add(&tally, &model, "a", &failed, &err), AP_OK);

    ap_score_alert alerts[3];
    ap_score_alert_parse("wasp.count >= 1", &alerts[0], &err);
    ap_score_alert_parse("varroa.rate > 0.5", &alerts[1], &err);
    ap_score_alert_parse("errors.count >= 1", &alerts[2], &err);
    for (int a = 0; a < 3; a++)
        ap_score_alert_resolve(&alerts[a], (const char(*)[AP_NAME_MAX])model.labels,
                               model.label_count, &err);
    json_t *json = ap_score_tally_json(&tally, &model, alerts, 3);
    CHECK(json != NULL);
    const json_t *totals = json_object_get(json, "totals");
    CHECK_INT_EQ(json_integer_value(json_object_get(totals, "images")), 5);
    CHECK_INT_EQ(json_integer_value(json_object_get(totals, "decoded")), 4);
    CHECK_INT_EQ(json_integer_value(json_object_get(totals, "errors")), 1);
    const json_t *wasp = json_object_get(json_object_get(totals, "labels"), "wasp");
    CHECK_INT_EQ(json_integer_value(json_object_get(wasp, "count")), 2);
    CHECK_NEAR(json_number_value(json_object_get(wasp, "rate")), 0.5, 1e-12);

    const json_t *groups_json = json_object_get(json, "groups");
    CHECK_INT_EQ(json_object_size(groups_json), 2);
    const char *first = NULL;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)groups_json, key, value)
    {
        if (first == NULL)
            first = key;
    }
    CHECK_STR_CONTAINS(first, "a"); /* groups in name order */
    const json_t *group_a = json_object_get(groups_json, "a");
    CHECK_INT_EQ(json_integer_value(json_object_get(group_a, "images")), 2);
    CHECK_INT_EQ(json_integer_value(json_object_get(group_a, "errors")), 1);

    /* wasp.count >= 1 fires in the totals and group b, errors.count >= 1 in
     * the totals and group a, and varroa.rate > 0.5 nowhere: the totals and
     * group b are exactly 0.5. */
    const json_t *hits = json_object_get(json, "alerts");
    CHECK_INT_EQ(json_array_size(hits), 4);
    size_t index;
    const json_t *hit;
    int wasp_hits = 0, error_hits = 0, varroa_hits = 0;
    json_array_foreach(hits, index, hit)
    {
        const char *alert = json_string_value(json_object_get(hit, "alert"));
        const char *group = json_string_value(json_object_get(hit, "group"));
        const char *scope = json_string_value(json_object_get(hit, "scope"));
        CHECK(alert != NULL);
        CHECK(scope != NULL);
        if (alert == NULL || scope == NULL)
            continue;
        CHECK_INT_EQ(strcmp(scope, group != NULL ? "group" : "totals"), 0);
        wasp_hits += strcmp(alert, "wasp.count >= 1") == 0;
        varroa_hits += strcmp(alert, "varroa.rate > 0.5") == 0;
        if (strcmp(alert, "errors.count >= 1") == 0) {
            error_hits++;
            CHECK(group == NULL || strcmp(group, "a") == 0);
        }
    }
    CHECK_INT_EQ(wasp_hits, 2);
    CHECK_INT_EQ(varroa_hits, 0);
    CHECK_INT_EQ(error_hits, 2);
    json_decref(json);
    ap_score_tally_free(&tally);
}

static void test_csv_from_journal(void)
{
    const char *dir = check_temp_dir("score-csv");
    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    ap_score_model_info model = test_model();
    ap_text lines = {0};
    const float first[2] = {0.9f, 0.1f};
    ap_score_format_row(&lines, &model, "hive-1/a.jpg", first, "");
    ap_score_format_row(&lines, &model, "hive-2/b.jpg", NULL, "truncated");
    char journal[4200];
    snprintf(journal, sizeof(journal), "%s/predictions.jsonl", dir);
    FILE *file = fopen(journal, "w");
    CHECK(file != NULL);
    if (file == NULL)
        return;
    fwrite(lines.data, 1, lines.length, file);
    fclose(file);

    ap_group_pattern pattern = {.kind = AP_GROUP_DIR, .fields = 1};
    ap_score_tally tally;
    ap_error err = {0};
    ap_score_tally_init(&tally, &err);
    ap_status status = ap_score_write_csv(journal, dir, &model, &pattern, &tally, &err);
    if (status != AP_OK)
        fprintf(stderr, "write csv: %s\n", err.message);
    CHECK_INT_EQ(status, AP_OK);
    CHECK_INT_EQ(tally.totals.images, 2);
    CHECK_INT_EQ(tally.group_count, 2);

    char csv_path[4200], csv[1024] = "";
    snprintf(csv_path, sizeof(csv_path), "%s/predictions.csv", dir);
    file = fopen(csv_path, "r");
    CHECK(file != NULL);
    if (file != NULL) {
        size_t size = fread(csv, 1, sizeof(csv) - 1, file);
        csv[size] = '\0';
        fclose(file);
    }
    CHECK_STR_CONTAINS(csv, "image,model_version,model_sha256,wasp_probability");
    CHECK_STR_CONTAINS(csv, "\nhive-1/a.jpg,3,0123456789ab,0.9,1,0.1,0,\n");
    CHECK_STR_CONTAINS(csv, "\nhive-2/b.jpg,3,0123456789ab,,,,,truncated\n");
    ap_score_tally_free(&tally);

    /* A damaged line fails with the file and line named. */
    file = fopen(journal, "a");
    if (file != NULL) {
        fputs("{\"image\":\n", file);
        fclose(file);
    }
    ap_score_tally_init(&tally, &err);
    CHECK_INT_EQ(ap_score_write_csv(journal, dir, &model, &pattern, &tally, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "predictions.jsonl line 3");
    ap_score_tally_free(&tally);
    free(lines.data);
}

int main(void)
{
    test_row_round_trip();
    test_error_row();
    test_parse_rejects();
    test_csv();
    test_tally_and_alerts();
    test_csv_from_journal();
    return check_finish();
}
