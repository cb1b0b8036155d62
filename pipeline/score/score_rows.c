/* Formatting and parsing of prediction rows: JSON lines and CSV. */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/score/score_output.h"

/* ---- JSON lines ---- */

/* Bytes from text on that JSON can carry unchanged: printable ASCII other
 * than '"' and '\\'. */
static size_t plain_run(const unsigned char *text)
{
    size_t length = 0;
    while (text[length] >= 0x20 && text[length] < 0x80 && text[length] != '"' &&
           text[length] != '\\')
        length++;
    return length;
}

static void append_json_string(ap_text *text, const char *value)
{
    const unsigned char *at = (const unsigned char *)value;
    ap_text_append(text, "\"");
    while (*at != '\0') {
        size_t run = plain_run(at);
        if (run > 0) {
            ap_text_printf(text, "%.*s", (int)run, (const char *)at);
            at += run;
            continue;
        }
        if (*at == '"' || *at == '\\') {
            ap_text_printf(text, "\\%c", *at);
            at++;
        } else if (*at < 0x20) {
            ap_text_printf(text, "\\u%04x", *at);
            at++;
        } else {
            size_t length = ap_score_utf8_length(at);
            if (length == 0)
                ap_text_append(text, "\\ufffd");
            else
                ap_text_printf(text, "%.*s", (int)length, (const char *)at);
            at += length > 0 ? length : 1;
        }
    }
    ap_text_append(text, "\"");
}

void ap_score_format_row(ap_text *line, const ap_score_model_info *model, const char *image,
                         const float *probabilities, const char *error)
{
    ap_text_append(line, "{\"image\":");
    append_json_string(line, image);
    ap_text_printf(line, ",\"model_version\":%d,\"model_sha256\":\"%s\"", model->version,
                   model->sha256_short);
    if (probabilities == NULL) {
        ap_text_append(line, ",\"probabilities\":null,\"decisions\":null,\"error\":");
        append_json_string(line, error != NULL && error[0] != '\0' ? error : "unknown error");
        ap_text_append(line, "}\n");
        return;
    }
    ap_text_append(line, ",\"probabilities\":{");
    for (int l = 0; l < model->label_count; l++) {
        ap_text_append(line, l > 0 ? "," : "");
        append_json_string(line, model->labels[l]);
        ap_text_printf(line, ":%.6g", (double)probabilities[l]);
    }
    ap_text_append(line, "},\"decisions\":{");
    for (int l = 0; l < model->label_count; l++) {
        ap_text_append(line, l > 0 ? "," : "");
        append_json_string(line, model->labels[l]);
        ap_text_append(line, probabilities[l] >= model->thresholds[l] ? ":true" : ":false");
    }
    ap_text_append(line, "},\"error\":\"\"}\n");
}

/* Check that the row names this model; AP_ERR_INVALID when it names another. */
static ap_status check_model(const json_t *object, const ap_score_model_info *model, ap_error *err)
{
    const json_t *version = json_object_get(object, "model_version");
    const char *sha = json_string_value(json_object_get(object, "model_sha256"));
    if (!json_is_integer(version) || sha == NULL)
        return ap_error_set(err, AP_ERR_FORMAT, "the row has no model_version or model_sha256");
    if (json_integer_value(version) != model->version || strcmp(sha, model->sha256_short) != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the row comes from model version %" JSON_INTEGER_FORMAT
                            " (sha256 %.16s), not version %d (sha256 %s); score into another "
                            "output folder",
                            json_integer_value(version), sha, model->version, model->sha256_short);
    return AP_OK;
}

static ap_status read_label_values(const json_t *object, const ap_score_model_info *model,
                                   ap_score_row *row, ap_error *err)
{
    const json_t *probabilities = json_object_get(object, "probabilities");
    const json_t *decisions = json_object_get(object, "decisions");
    if (!json_is_object(probabilities) || !json_is_object(decisions))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "a row without an error needs probabilities and decisions objects");
    for (int l = 0; l < model->label_count; l++) {
        const json_t *probability = json_object_get(probabilities, model->labels[l]);
        const json_t *decision = json_object_get(decisions, model->labels[l]);
        double value = json_number_value(probability);
        if (!json_is_number(probability) || !(value >= 0.0 && value <= 1.0))
            return ap_error_set(err, AP_ERR_FORMAT,
                                "the row has no probability in [0, 1] for label %s of the model",
                                model->labels[l]);
        if (!json_is_boolean(decision))
            return ap_error_set(err, AP_ERR_FORMAT,
                                "the row has no true or false decision for label %s",
                                model->labels[l]);
        row->probabilities[l] = (float)value;
        row->decisions[l] = json_is_true(decision);
    }
    return AP_OK;
}

static ap_status read_row(const json_t *object, const ap_score_model_info *model, ap_score_row *row,
                          ap_error *err)
{
    row->image = json_string_value(json_object_get(object, "image"));
    const char *error = json_string_value(json_object_get(object, "error"));
    if (row->image == NULL || row->image[0] == '\0' || error == NULL)
        return ap_error_set(err, AP_ERR_FORMAT, "the row has no image or error text");
    ap_status status = check_model(object, model, err);
    if (status != AP_OK)
        return status;
    row->failed = error[0] != '\0';
    snprintf(row->error, sizeof(row->error), "%s", error);
    return row->failed ? AP_OK : read_label_values(object, model, row, err);
}

ap_status ap_score_parse_row(const char *line, size_t length, const ap_score_model_info *model,
                             ap_score_row *row, json_t **json, ap_error *err)
{
    memset(row, 0, sizeof(*row));
    json_error_t parse_error;
    *json = json_loadb(line, length, JSON_REJECT_DUPLICATES, &parse_error);
    if (*json == NULL)
        return ap_error_set(err, AP_ERR_FORMAT, "invalid JSON (%s, column %d)", parse_error.text,
                            parse_error.column);
    if (!json_is_object(*json))
        return ap_error_set(err, AP_ERR_FORMAT, "the line is not a JSON object");
    return read_row(*json, model, row, err);
}

/* ---- CSV ---- */

static void append_csv_field(ap_text *text, const char *value)
{
    if (strpbrk(value, ",\"\r\n") == NULL) {
        ap_text_append(text, value);
        return;
    }
    ap_text_append(text, "\"");
    for (const char *at = value; *at != '\0';) {
        const char *quote = strchr(at, '"');
        size_t run = quote != NULL ? (size_t)(quote - at) : strlen(at);
        ap_text_printf(text, "%.*s", (int)run, at);
        if (quote == NULL)
            break;
        ap_text_append(text, "\"\"");
        at = quote + 1;
    }
    ap_text_append(text, "\"");
}

void ap_score_csv_header(ap_text *text, const ap_score_model_info *model)
{
    ap_text_append(text, "image,model_version,model_sha256");
    for (int l = 0; l < model->label_count; l++)
        ap_text_printf(text, ",%s_probability,%s_decision", model->labels[l], model->labels[l]);
    ap_text_append(text, ",error\n");
}

void ap_score_csv_row(ap_text *text, const ap_score_model_info *model, const ap_score_row *row)
{
    append_csv_field(text, row->image);
    ap_text_printf(text, ",%d,%s", model->version, model->sha256_short);
    for (int l = 0; l < model->label_count; l++) {
        if (row->failed)
            ap_text_append(text, ",,");
        else
            ap_text_printf(text, ",%.6g,%d", (double)row->probabilities[l],
                           row->decisions[l] ? 1 : 0);
    }
    ap_text_append(text, ",");
    append_csv_field(text, row->error);
    ap_text_append(text, "\n");
}
