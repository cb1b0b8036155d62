/* Counts for summary.json and the predictions.csv made from the journal. */

#include "pipeline/score/score_output.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"

#define CSV_FLUSH_BYTES (1u << 20)
#define GROUP_MAX       4096

/* ---- Tally ---- */

ap_status ap_score_tally_init(ap_score_tally *tally, ap_error *err)
{
    memset(tally, 0, sizeof(*tally));
    tally->group_index = json_object();
    if (tally->group_index == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the group index");
    return AP_OK;
}

static void count_row(ap_score_counts *counts, const ap_score_model_info *model,
                      const ap_score_row *row)
{
    counts->images++;
    if (row->failed) {
        counts->errors++;
        return;
    }
    for (int l = 0; l < model->label_count; l++)
        counts->positives[l] += row->decisions[l] ? 1 : 0;
}

/* The counts of group, added when it is new; NULL when memory runs out. */
static ap_score_counts *find_group(ap_score_tally *tally, const char *group)
{
    const json_t *index = json_object_get(tally->group_index, group);
    if (index != NULL)
        return &tally->groups[json_integer_value(index)];
    if (tally->group_count == tally->group_capacity) {
        size_t capacity = tally->group_capacity > 0 ? 2 * tally->group_capacity : 16;
        ap_score_counts *groups = realloc(tally->groups, capacity * sizeof(*groups));
        if (groups == NULL)
            return NULL;
        tally->groups = groups;
        tally->group_capacity = capacity;
    }
    if (json_object_set_new(tally->group_index, group,
                            json_integer((json_int_t)tally->group_count)) != 0)
        return NULL;
    ap_score_counts *counts = &tally->groups[tally->group_count++];
    memset(counts, 0, sizeof(*counts));
    return counts;
}

ap_status ap_score_tally_add(ap_score_tally *tally, const ap_score_model_info *model,
                             const char *group, const ap_score_row *row, ap_error *err)
{
    count_row(&tally->totals, model, row);
    if (group == NULL)
        return AP_OK;
    ap_score_counts *counts = find_group(tally, group);
    if (counts == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the counts of group %s", group);
    count_row(counts, model, row);
    return AP_OK;
}

void ap_score_tally_free(ap_score_tally *tally)
{
    json_decref(tally->group_index);
    free(tally->groups);
    memset(tally, 0, sizeof(*tally));
}

/* ---- Summary JSON ---- */

/* count / total, or null when total is 0. */
static json_t *rate_json(size_t count, size_t total)
{
    return total > 0 ? json_real((double)count / (double)total) : json_null();
}

static json_t *counts_json(const ap_score_counts *counts, const ap_score_model_info *model)
{
    size_t decoded = counts->images - counts->errors;
    json_t *labels = json_object();
    for (int l = 0; labels != NULL && l < model->label_count; l++)
        json_object_set_new(labels, model->labels[l],
                            json_pack("{s:I, s:o}", "count", (json_int_t)counts->positives[l],
                                      "rate", rate_json(counts->positives[l], decoded)));
    return json_pack("{s:I, s:I, s:I, s:o, s:o}", "images", (json_int_t)counts->images, "decoded",
                     (json_int_t)decoded, "errors", (json_int_t)counts->errors, "error_rate",
                     rate_json(counts->errors, counts->images), "labels", labels);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Group names in strcmp order, or NULL when memory runs out. */
static const char **sorted_group_names(const ap_score_tally *tally)
{
    const char **names = malloc((tally->group_count + 1) * sizeof(*names));
    if (names == NULL)
        return NULL;
    const char *name;
    json_t *index;
    json_object_foreach(tally->group_index, name, index)
    {
        names[json_integer_value(index)] = name;
    }
    qsort(names, tally->group_count, sizeof(*names), compare_names);
    return names;
}

static void add_hits(json_t *hits, const ap_score_alert *alerts, int alert_count,
                     const ap_score_counts *counts, const char *group)
{
    for (int a = 0; a < alert_count; a++) {
        double value;
        if (!ap_score_alert_value(&alerts[a], counts, &value) ||
            !ap_score_alert_fires(&alerts[a], value))
            continue;
        json_t *hit = json_pack("{s:s, s:s, s:f}", "alert", alerts[a].text, "scope",
                                group != NULL ? "group" : "totals", "value", value);
        if (hit != NULL && group != NULL)
            json_object_set_new(hit, "group", json_string(group));
        json_array_append_new(hits, hit);
    }
}

json_t *ap_score_tally_json(const ap_score_tally *tally, const ap_score_model_info *model,
                            const ap_score_alert *alerts, int alert_count)
{
    const char **names = sorted_group_names(tally);
    json_t *groups = json_object(), *hits = json_array();
    json_t *result = json_pack("{s:o, s:o, s:o}", "totals", counts_json(&tally->totals, model),
                               "groups", groups, "alerts", hits);
    if (names == NULL || result == NULL) {
        free(names);
        json_decref(result);
        return NULL;
    }
    add_hits(hits, alerts, alert_count, &tally->totals, NULL);
    for (size_t g = 0; g < tally->group_count; g++) {
        const ap_score_counts *counts =
            &tally->groups[json_integer_value(json_object_get(tally->group_index, names[g]))];
        json_object_set_new(groups, names[g], counts_json(counts, model));
        add_hits(hits, alerts, alert_count, counts, names[g]);
    }
    free(names);
    bool complete = json_object_size(groups) == tally->group_count;
    if (!complete) {
        json_decref(result);
        return NULL;
    }
    return result;
}

/* ---- predictions.csv ---- */

static ap_status flush_csv(ap_atomic_file *file, ap_text *text, size_t at_least, ap_error *err)
{
    if (text->out_of_memory)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the CSV buffer");
    if (text->length < at_least || text->length == 0)
        return AP_OK;
    ap_status status = ap_atomic_write(file, text->data, text->length, err);
    text->length = 0;
    text->data[0] = '\0';
    return status;
}

/* Parse one journal line and add it to the CSV text and the tally. */
static ap_status add_line(const char *line, size_t length, const ap_score_model_info *model,
                          const ap_group_pattern *pattern, ap_text *csv, ap_score_tally *tally,
                          ap_error *err)
{
    ap_score_row row;
    json_t *json = NULL;
    ap_status status = ap_score_parse_row(line, length, model, &row, &json, err);
    if (status == AP_OK) {
        char group[GROUP_MAX];
        bool grouped =
            strlen(row.image) < sizeof(group) && ap_group_of_path(pattern, row.image, group);
        ap_score_csv_row(csv, model, &row);
        status = ap_score_tally_add(tally, model, grouped ? group : NULL, &row, err);
    }
    json_decref(json);
    return status;
}

static ap_status convert_journal(FILE *journal, const char *journal_path,
                                 const ap_score_model_info *model, const ap_group_pattern *pattern,
                                 ap_atomic_file *file, ap_score_tally *tally, ap_error *err)
{
    ap_text csv = {0};
    char *line = NULL;
    size_t capacity = 0, line_number = 0;
    ssize_t length;
    ap_status status = AP_OK;
    ap_score_csv_header(&csv, model);
    while (status == AP_OK && (length = getline(&line, &capacity, journal)) > 0) {
        line_number++;
        status = add_line(line, (size_t)length, model, pattern, &csv, tally, err);
        if (status != AP_OK)
            ap_error_prefix(err, "%s line %zu", journal_path, line_number);
        else
            status = flush_csv(file, &csv, CSV_FLUSH_BYTES, err);
    }
    if (status == AP_OK && ferror(journal))
        status = ap_error_set(err, AP_ERR_IO, "cannot read %s: %s", journal_path, strerror(errno));
    if (status == AP_OK)
        status = flush_csv(file, &csv, 0, err);
    free(line);
    free(csv.data);
    return status;
}

ap_status ap_score_write_csv(const char *journal_path, const char *dir,
                             const ap_score_model_info *model, const ap_group_pattern *pattern,
                             ap_score_tally *tally, ap_error *err)
{
    char csv_path[AP_PATH_MAX + 128];
    ap_status status = ap_path_join(csv_path, sizeof(csv_path), dir, "predictions.csv", err);
    if (status != AP_OK)
        return status;
    FILE *journal = fopen(journal_path, "r");
    if (journal == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot open %s: %s", journal_path, strerror(errno));
    ap_atomic_file file;
    status = ap_atomic_open(&file, csv_path, err);
    if (status == AP_OK)
        status = convert_journal(journal, journal_path, model, pattern, &file, tally, err);
    if (status == AP_OK)
        status = ap_atomic_commit(&file, err);
    else if (file.fd >= 0)
        ap_atomic_abort(&file);
    fclose(journal);
    return status;
}
