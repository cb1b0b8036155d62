#include "pipeline/config/config_table.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pipeline/common/uri.h"

static void *field_of(const ap_config_key *key, ap_config *cfg)
{
    return (char *)cfg + key->offset;
}

static const void *const_field_of(const ap_config_key *key, const ap_config *cfg)
{
    return (const char *)cfg + key->offset;
}

/* ---- Formatting ---- */

static void format_float(float value, char *out, size_t out_size)
{
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(out, out_size, "%.*g", digits, (double)value);
        if ((float)strtod(out, NULL) == value)
            return;
    }
}

/* Text for a message, shortened when long: abc or abcd... */
static void shorten_text(const char *text, char *out, size_t out_size)
{
    const int max_length = 40;
    if (strlen(text) > (size_t)max_length)
        snprintf(out, out_size, "%.*s...", max_length, text);
    else
        snprintf(out, out_size, "%s", text);
}

static void quote_text(const char *text, char *out, size_t out_size)
{
    char shortened[48];
    shorten_text(text, shortened, sizeof(shortened));
    snprintf(out, out_size, "'%s'", shortened);
}

/* ---- Range checks on values already converted ---- */

static bool int_in_range(const ap_config_key *key, int64_t value)
{
    return value >= key->int_min && value <= key->int_max;
}

static bool real_in_range(const ap_config_key *key, double value)
{
    if (!isfinite(value))
        return false;
    bool above_min =
        (key->flags & AP_KEY_MIN_EXCLUSIVE) ? value > key->real_min : value >= key->real_min;
    bool below_max =
        (key->flags & AP_KEY_MAX_EXCLUSIVE) ? value < key->real_max : value <= key->real_max;
    return above_min && below_max;
}

static bool fail_out_of_range(const ap_config_key *key, const char *value_text, char *reason,
                              size_t reason_size)
{
    char allowed[256];
    ap_config_key_describe_value(key, allowed, sizeof(allowed));
    snprintf(reason, reason_size, "%s is out of range; expected %s", value_text, allowed);
    return false;
}

static bool fail_not_a(const ap_config_key *key, const char *text, const char *what, char *reason,
                       size_t reason_size)
{
    char allowed[256], quoted[64];
    ap_config_key_describe_value(key, allowed, sizeof(allowed));
    if (text[0] == '\0') {
        snprintf(reason, reason_size, "no value given; expected %s", allowed);
    } else {
        quote_text(text, quoted, sizeof(quoted));
        snprintf(reason, reason_size, "%s is not %s; expected %s", quoted, what, allowed);
    }
    return false;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

/* Check text against the key's flags and a buffer of size bytes. */
static bool check_string(const ap_config_key *key, const char *text, size_t size, char *reason,
                         size_t reason_size)
{
    char allowed[256];
    ap_config_key_describe_string(key, size, allowed, sizeof(allowed));
    size_t length = strlen(text);
    if (length >= size) {
        snprintf(reason, reason_size, "value is %zu characters long; expected %s", length, allowed);
        return false;
    }
    if ((key->flags & AP_KEY_NONEMPTY) && length == 0) {
        snprintf(reason, reason_size, "value is empty; expected %s", allowed);
        return false;
    }
    if (ap_uri_has_password(text)) {
        /* The value is not quoted, since it contains the password. */
        snprintf(reason, reason_size,
                 AP_URI_PASSWORD_MESSAGE
                 "; remove it and set "
                 "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD for MLflow, or "
                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for S3, so that the password "
                 "stays out of config.yaml and logs");
        return false;
    }
    if (!(key->flags & AP_KEY_NAME))
        return true;
    for (size_t i = 0; i < length; i++) {
        if (is_name_char(text[i]) && !(i == 0 && text[i] == '.'))
            continue;
        char quoted[64], character[16];
        quote_text(text, quoted, sizeof(quoted));
        if (i == 0 && text[i] == '.') {
            snprintf(reason, reason_size, "%s starts with '.'; expected %s", quoted, allowed);
            return false;
        }
        if (text[i] > ' ' && text[i] <= '~')
            snprintf(character, sizeof(character), "'%c'", text[i]);
        else
            snprintf(character, sizeof(character), "byte 0x%02x", (unsigned char)text[i]);
        snprintf(reason, reason_size, "%s has %s at position %zu; expected %s", quoted, character,
                 i + 1, allowed);
        return false;
    }
    return true;
}

static int choice_index(const ap_config_key *key, const char *text)
{
    for (int i = 0; key->choices[i] != NULL; i++)
        if (strcmp(key->choices[i], text) == 0)
            return i;
    return -1;
}

static int choice_count(const ap_config_key *key)
{
    int count = 0;
    while (key->choices[count] != NULL)
        count++;
    return count;
}

/* ---- Text to value ---- */

typedef enum { NUMBER_OK, NUMBER_INVALID, NUMBER_OVERFLOW } number_result;

/* Parse a decimal integer with an optional sign and nothing before or after it. */
static number_result parse_int64(const char *text, int64_t *value)
{
    if (!(text[0] == '-' || text[0] == '+' || (text[0] >= '0' && text[0] <= '9')))
        return NUMBER_INVALID;
    char *end = NULL;
    errno = 0;
    long long parsed = strtoll(text, &end, 10);
    if (end == text || *end != '\0')
        return NUMBER_INVALID;
    if (errno == ERANGE)
        return NUMBER_OVERFLOW;
    *value = parsed;
    return NUMBER_OK;
}

static number_result parse_uint64(const char *text, uint64_t *value)
{
    /* strtoull would wrap a leading minus sign around. */
    if (!(text[0] >= '0' && text[0] <= '9'))
        return NUMBER_INVALID;
    char *end = NULL;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 10);
    if (*end != '\0')
        return NUMBER_INVALID;
    if (errno == ERANGE)
        return NUMBER_OVERFLOW;
    *value = parsed;
    return NUMBER_OK;
}

/* Parse a finite decimal or hexadecimal number. nan, inf and values beyond
 * the range of double are rejected. */
static number_result parse_double(const char *text, double *value)
{
    if (text[0] == '\0' ||
        !(text[0] == '-' || text[0] == '+' || text[0] == '.' || (text[0] >= '0' && text[0] <= '9')))
        return NUMBER_INVALID;
    char *end = NULL;
    errno = 0;
    double parsed = strtod(text, &end);
    if (end == text || *end != '\0' || isnan(parsed))
        return NUMBER_INVALID;
    if (errno == ERANGE || !isfinite(parsed))
        return NUMBER_OVERFLOW;
    *value = parsed;
    return NUMBER_OK;
}

static bool parse_integer_checked(const ap_config_key *key, const char *text, int64_t *value,
                                  char *reason, size_t reason_size)
{
    char value_text[64];
    number_result result = parse_int64(text, value);
    if (result == NUMBER_INVALID)
        return fail_not_a(key, text, "an integer", reason, reason_size);
    shorten_text(text, value_text, sizeof(value_text));
    if (result == NUMBER_OVERFLOW || !int_in_range(key, *value))
        return fail_out_of_range(key, value_text, reason, reason_size);
    return true;
}

static bool parse_real_checked(const ap_config_key *key, const char *text, double *value,
                               char *reason, size_t reason_size)
{
    char value_text[64];
    number_result result = parse_double(text, value);
    if (result == NUMBER_INVALID)
        return fail_not_a(key, text, "a finite number", reason, reason_size);
    shorten_text(text, value_text, sizeof(value_text));
    if (result == NUMBER_OVERFLOW || !real_in_range(key, *value))
        return fail_out_of_range(key, value_text, reason, reason_size);
    return true;
}

static bool parse_bool(const ap_config_key *key, const char *text, bool *value, char *reason,
                       size_t reason_size)
{
    if (strcasecmp(text, "true") == 0 || strcasecmp(text, "yes") == 0) {
        *value = true;
        return true;
    }
    if (strcasecmp(text, "false") == 0 || strcasecmp(text, "no") == 0) {
        *value = false;
        return true;
    }
    return fail_not_a(key, text, "a boolean", reason, reason_size);
}

static bool parse_choice(const ap_config_key *key, const char *text, int *index, char *reason,
                         size_t reason_size)
{
    *index = choice_index(key, text);
    if (*index < 0)
        return fail_not_a(key, text, "a valid choice", reason, reason_size);
    return true;
}

bool ap_config_key_parse_scalar(const ap_config_key *key, const char *text, ap_config *cfg,
                                char *reason, size_t reason_size)
{
    void *field = field_of(key, cfg);
    int64_t integer = 0;
    uint64_t unsigned_integer = 0;
    double real = 0.0;
    int index = 0;
    number_result result;

    switch (key->type) {
    case AP_VALUE_INT:
        if (!parse_integer_checked(key, text, &integer, reason, reason_size))
            return false;
        *(int *)field = (int)integer;
        return true;
    case AP_VALUE_INT64:
        if (!parse_integer_checked(key, text, &integer, reason, reason_size))
            return false;
        *(int64_t *)field = integer;
        return true;
    case AP_VALUE_UINT64:
        result = parse_uint64(text, &unsigned_integer);
        if (result == NUMBER_INVALID)
            return fail_not_a(key, text, "a non-negative integer", reason, reason_size);
        if (result == NUMBER_OVERFLOW) {
            char value_text[64];
            shorten_text(text, value_text, sizeof(value_text));
            return fail_out_of_range(key, value_text, reason, reason_size);
        }
        *(uint64_t *)field = unsigned_integer;
        return true;
    case AP_VALUE_DOUBLE:
        if (!parse_real_checked(key, text, &real, reason, reason_size))
            return false;
        *(double *)field = real;
        return true;
    case AP_VALUE_BOOL:
        return parse_bool(key, text, (bool *)field, reason, reason_size);
    case AP_VALUE_STRING:
    case AP_VALUE_CHOICE:
        if (key->type == AP_VALUE_CHOICE && !parse_choice(key, text, &index, reason, reason_size))
            return false;
        if (!check_string(key, text, key->size, reason, reason_size))
            return false;
        memcpy(field, text, strlen(text) + 1);
        return true;
    case AP_VALUE_ENUM:
        if (!parse_choice(key, text, &index, reason, reason_size))
            return false;
        *(int *)field = index;
        return true;
    case AP_VALUE_FLOAT_LIST:
    case AP_VALUE_STRING_LIST:
    case AP_VALUE_INT_LIST:
        break;
    }
    char allowed[320];
    ap_config_key_describe(key, allowed, sizeof(allowed));
    snprintf(reason, reason_size, "expected %s, not a single value", allowed);
    return false;
}

static bool fail_too_many_items(const ap_config_key *key, char *reason, size_t reason_size)
{
    char allowed[320];
    ap_config_key_describe(key, allowed, sizeof(allowed));
    snprintf(reason, reason_size, "more than %d items; expected %s", key->max_items, allowed);
    return false;
}

bool ap_config_key_parse_item(const ap_config_key *key, int index, const char *text, ap_config *cfg,
                              char *reason, size_t reason_size)
{
    if (index >= key->max_items)
        return fail_too_many_items(key, reason, reason_size);

    char item_reason[512];
    char *item = (char *)field_of(key, cfg) + (size_t)index * key->item_size;
    int64_t integer = 0;
    double real = 0.0;
    bool ok = false;
    switch (key->type) {
    case AP_VALUE_INT_LIST:
        ok = parse_integer_checked(key, text, &integer, item_reason, sizeof(item_reason));
        if (ok)
            *(int *)item = (int)integer;
        break;
    case AP_VALUE_FLOAT_LIST:
        ok = parse_real_checked(key, text, &real, item_reason, sizeof(item_reason));
        /* A value that is in range as a double may round to a float that is not. */
        if (ok && !real_in_range(key, (float)real)) {
            char value_text[64];
            shorten_text(text, value_text, sizeof(value_text));
            ok = fail_out_of_range(key, value_text, item_reason, sizeof(item_reason));
        }
        if (ok)
            *(float *)item = (float)real;
        break;
    case AP_VALUE_STRING_LIST:
        ok = check_string(key, text, key->item_size, item_reason, sizeof(item_reason));
        if (ok)
            memcpy(item, text, strlen(text) + 1);
        break;
    default:
        snprintf(item_reason, sizeof(item_reason), "expected a single value, not a list");
        break;
    }
    if (!ok)
        snprintf(reason, reason_size, "item %d: %s", index + 1, item_reason);
    return ok;
}

bool ap_config_key_set_count(const ap_config_key *key, int count, ap_config *cfg, char *reason,
                             size_t reason_size)
{
    if (count > key->max_items)
        return fail_too_many_items(key, reason, reason_size);
    if (key->type == AP_VALUE_FLOAT_LIST && count != key->max_items) {
        char allowed[320];
        ap_config_key_describe(key, allowed, sizeof(allowed));
        snprintf(reason, reason_size, "%d items given; expected %s", count, allowed);
        return false;
    }
    char *items = field_of(key, cfg);
    memset(items + (size_t)count * key->item_size, 0,
           (size_t)(key->max_items - count) * key->item_size);
    if (key->type != AP_VALUE_FLOAT_LIST)
        *(int *)((char *)cfg + key->count_offset) = count;
    return true;
}

static void trim_spaces(char **start, char *end)
{
    while (**start == ' ' || **start == '\t')
        (*start)++;
    while (end > *start && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
}

/* Parse comma-separated items, optionally in brackets as YAML's flow style
 * and `apiary config show` write them. Empty text is an empty list. */
static bool parse_list_text(const ap_config_key *key, const char *text, ap_config *cfg,
                            char *reason, size_t reason_size)
{
    size_t length = strlen(text);
    char *copy = malloc(length + 1);
    if (copy == NULL) {
        snprintf(reason, reason_size, "out of memory copying %zu characters", length);
        return false;
    }
    memcpy(copy, text, length + 1);

    int count = 0;
    bool ok = true;
    char *item = copy;
    trim_spaces(&item, copy + length);
    size_t trimmed = strlen(item);
    if (trimmed >= 2 && item[0] == '[' && item[trimmed - 1] == ']') {
        item[trimmed - 1] = '\0';
        item++;
    }
    char *list = item;
    bool empty = true;
    for (const char *c = list; *c != '\0'; c++)
        empty = empty && (*c == ' ' || *c == '\t');
    while (ok && !empty) {
        char *comma = strchr(item, ',');
        char *end = comma != NULL ? comma : item + strlen(item);
        *end = '\0';
        trim_spaces(&item, end);
        ok = ap_config_key_parse_item(key, count, item, cfg, reason, reason_size);
        count++;
        if (comma == NULL)
            break;
        item = comma + 1;
    }
    free(copy);
    return ok && ap_config_key_set_count(key, count, cfg, reason, reason_size);
}

bool ap_config_key_parse_text(const ap_config_key *key, const char *text, ap_config *cfg,
                              char *reason, size_t reason_size)
{
    if (ap_config_key_is_list(key))
        return parse_list_text(key, text, cfg, reason, reason_size);
    return ap_config_key_parse_scalar(key, text, cfg, reason, reason_size);
}

/* ---- Stored values ---- */

int ap_config_key_item_count(const ap_config_key *key, const ap_config *cfg)
{
    if (key->type == AP_VALUE_FLOAT_LIST)
        return key->max_items;
    return *(const int *)((const char *)cfg + key->count_offset);
}

void ap_config_key_format_scalar(const ap_config_key *key, const ap_config *cfg, char *out,
                                 size_t out_size)
{
    const void *field = const_field_of(key, cfg);
    int index = 0;
    out[0] = '\0';
    switch (key->type) {
    case AP_VALUE_INT:
        snprintf(out, out_size, "%d", *(const int *)field);
        break;
    case AP_VALUE_INT64:
        snprintf(out, out_size, "%" PRId64, *(const int64_t *)field);
        break;
    case AP_VALUE_UINT64:
        snprintf(out, out_size, "%" PRIu64, *(const uint64_t *)field);
        break;
    case AP_VALUE_DOUBLE:
        ap_config_format_double(*(const double *)field, out, out_size);
        break;
    case AP_VALUE_BOOL:
        snprintf(out, out_size, "%s", *(const bool *)field ? "true" : "false");
        break;
    case AP_VALUE_STRING:
    case AP_VALUE_CHOICE:
        snprintf(out, out_size, "%.*s", (int)key->size, (const char *)field);
        break;
    case AP_VALUE_ENUM:
        index = *(const int *)field;
        if (index >= 0 && index < choice_count(key))
            snprintf(out, out_size, "%s", key->choices[index]);
        else
            snprintf(out, out_size, "%d", index);
        break;
    default:
        break;
    }
}

void ap_config_key_format_item(const ap_config_key *key, const ap_config *cfg, int index, char *out,
                               size_t out_size)
{
    const char *item = (const char *)const_field_of(key, cfg) + (size_t)index * key->item_size;
    out[0] = '\0';
    if (key->type == AP_VALUE_INT_LIST)
        snprintf(out, out_size, "%d", *(const int *)item);
    else if (key->type == AP_VALUE_FLOAT_LIST)
        format_float(*(const float *)item, out, out_size);
    else if (key->type == AP_VALUE_STRING_LIST)
        snprintf(out, out_size, "%.*s", (int)key->item_size, item);
}

static bool check_terminated(const char *text, size_t size, char *reason, size_t reason_size)
{
    if (memchr(text, '\0', size) != NULL)
        return true;
    snprintf(reason, reason_size, "value fills all %zu bytes without a terminating NUL", size);
    return false;
}

static bool check_item(const ap_config_key *key, const ap_config *cfg, int index, char *reason,
                       size_t reason_size)
{
    const char *item = (const char *)const_field_of(key, cfg) + (size_t)index * key->item_size;
    char value_text[64], item_reason[512];
    bool ok = true;
    ap_config_key_format_item(key, cfg, index, value_text, sizeof(value_text));
    bool out_of_range =
        (key->type == AP_VALUE_INT_LIST && !int_in_range(key, *(const int *)item)) ||
        (key->type == AP_VALUE_FLOAT_LIST && !real_in_range(key, *(const float *)item));
    if (out_of_range)
        ok = fail_out_of_range(key, value_text, item_reason, sizeof(item_reason));
    else if (key->type == AP_VALUE_STRING_LIST)
        ok = check_terminated(item, key->item_size, item_reason, sizeof(item_reason)) &&
             check_string(key, item, key->item_size, item_reason, sizeof(item_reason));
    if (!ok)
        snprintf(reason, reason_size, "item %d: %s", index + 1, item_reason);
    return ok;
}

static bool check_list(const ap_config_key *key, const ap_config *cfg, char *reason,
                       size_t reason_size)
{
    int count = ap_config_key_item_count(key, cfg);
    if (count < 0 || count > key->max_items) {
        char allowed[320];
        ap_config_key_describe(key, allowed, sizeof(allowed));
        snprintf(reason, reason_size, "%d items; expected %s", count, allowed);
        return false;
    }
    for (int i = 0; i < count; i++)
        if (!check_item(key, cfg, i, reason, reason_size))
            return false;
    return true;
}

bool ap_config_key_check(const ap_config_key *key, const ap_config *cfg, char *reason,
                         size_t reason_size)
{
    const void *field = const_field_of(key, cfg);
    char value_text[64];
    ap_config_key_format_scalar(key, cfg, value_text, sizeof(value_text));
    switch (key->type) {
    case AP_VALUE_INT:
        return int_in_range(key, *(const int *)field) ||
               fail_out_of_range(key, value_text, reason, reason_size);
    case AP_VALUE_INT64:
        return int_in_range(key, *(const int64_t *)field) ||
               fail_out_of_range(key, value_text, reason, reason_size);
    case AP_VALUE_DOUBLE:
        return real_in_range(key, *(const double *)field) ||
               fail_out_of_range(key, value_text, reason, reason_size);
    case AP_VALUE_ENUM:
        return (*(const int *)field >= 0 && *(const int *)field < choice_count(key)) ||
               fail_not_a(key, value_text, "a valid choice", reason, reason_size);
    case AP_VALUE_STRING:
        return check_terminated(field, key->size, reason, reason_size) &&
               check_string(key, field, key->size, reason, reason_size);
    case AP_VALUE_CHOICE:
        if (!check_terminated(field, key->size, reason, reason_size))
            return false;
        return choice_index(key, field) >= 0 ||
               fail_not_a(key, field, "a valid choice", reason, reason_size);
    case AP_VALUE_FLOAT_LIST:
    case AP_VALUE_STRING_LIST:
    case AP_VALUE_INT_LIST:
        return check_list(key, cfg, reason, reason_size);
    case AP_VALUE_UINT64:
    case AP_VALUE_BOOL:
        break;
    }
    return true;
}

bool ap_config_key_equal(const ap_config_key *key, const ap_config *a, const ap_config *b)
{
    const void *field_a = const_field_of(key, a);
    const void *field_b = const_field_of(key, b);
    switch (key->type) {
    case AP_VALUE_INT:
    case AP_VALUE_ENUM:
        return *(const int *)field_a == *(const int *)field_b;
    case AP_VALUE_INT64:
        return *(const int64_t *)field_a == *(const int64_t *)field_b;
    case AP_VALUE_UINT64:
        return *(const uint64_t *)field_a == *(const uint64_t *)field_b;
    case AP_VALUE_DOUBLE:
        return *(const double *)field_a == *(const double *)field_b;
    case AP_VALUE_BOOL:
        return *(const bool *)field_a == *(const bool *)field_b;
    case AP_VALUE_STRING:
    case AP_VALUE_CHOICE:
        return strncmp(field_a, field_b, key->size) == 0;
    case AP_VALUE_FLOAT_LIST:
    case AP_VALUE_STRING_LIST:
    case AP_VALUE_INT_LIST:
        break;
    }

    int count = ap_config_key_item_count(key, a);
    if (count != ap_config_key_item_count(key, b) || count < 0 || count > key->max_items)
        return false;
    for (int i = 0; i < count; i++) {
        const char *item_a = (const char *)field_a + (size_t)i * key->item_size;
        const char *item_b = (const char *)field_b + (size_t)i * key->item_size;
        bool same = false;
        if (key->type == AP_VALUE_STRING_LIST)
            same = strncmp(item_a, item_b, key->item_size) == 0;
        else if (key->type == AP_VALUE_FLOAT_LIST)
            same = *(const float *)item_a == *(const float *)item_b;
        else
            same = *(const int *)item_a == *(const int *)item_b;
        if (!same)
            return false;
    }
    return true;
}
