#include "pipeline/serve/multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HEADERS_MAX 8192 /* bytes of header lines per part */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static void skip_spaces(const char **cursor)
{
    while (is_space(**cursor))
        (*cursor)++;
}

/* Read one "; name=value" parameter of a header value, where value is a
 * token or a quoted string with backslash escapes (RFC 9110, section 5.6.6).
 * Returns 1 for a parameter, 0 at the end of the value and -1 when it is
 * malformed or does not fit. */
static int next_parameter(const char **cursor, char *name, size_t name_size, char *value,
                          size_t value_size)
{
    const char *p = *cursor;
    skip_spaces(&p);
    if (*p == '\0')
        return 0;
    if (*p != ';')
        return -1;
    p++;
    skip_spaces(&p);
    size_t used = 0;
    while (*p != '\0' && *p != '=' && *p != ';' && !is_space(*p)) {
        if (used + 1 >= name_size)
            return -1;
        name[used++] = *p++;
    }
    name[used] = '\0';
    skip_spaces(&p);
    if (used == 0 || *p != '=')
        return -1;
    p++;
    skip_spaces(&p);
    used = 0;
    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (*p == '\\' && p[1] != '\0')
                p++;
            if (*p == '\0' || (unsigned char)*p < 0x20 || used + 1 >= value_size)
                return -1;
            value[used++] = *p;
        }
        p++;
    } else {
        while (*p != '\0' && *p != ';' && !is_space(*p)) {
            if (used + 1 >= value_size)
                return -1;
            value[used++] = *p++;
        }
    }
    value[used] = '\0';
    *cursor = p;
    return 1;
}

/* Compare the leading type of a header value ("form-data", "multipart/form-data")
 * case-insensitively and move the cursor past it. */
static bool take_type(const char **cursor, const char *type)
{
    const char *p = *cursor;
    skip_spaces(&p);
    size_t length = strlen(type);
    if (strncasecmp(p, type, length) != 0)
        return false;
    p += length;
    if (*p != '\0' && *p != ';' && !is_space(*p))
        return false;
    *cursor = p;
    return true;
}

bool ap_media_type_is(const char *content_type, const char *type)
{
    const char *p = content_type;
    if (p == NULL || !take_type(&p, type))
        return false;
    skip_spaces(&p);
    return *p == '\0' || *p == ';';
}

ap_status ap_multipart_boundary(const char *content_type, char *boundary, ap_error *err)
{
    const char *p = content_type != NULL ? content_type : "";
    if (!take_type(&p, "multipart/form-data"))
        return ap_error_set(err, AP_ERR_INVALID,
                            "content type \"%.100s\" is not "
                            "multipart/form-data",
                            content_type != NULL ? content_type : "");
    char name[64], value[AP_MULTIPART_BOUNDARY_MAX + 2];
    boundary[0] = '\0';
    while (next_parameter(&p, name, sizeof(name), value, sizeof(value)) == 1) {
        if (strcasecmp(name, "boundary") != 0)
            continue;
        if (value[0] == '\0' || strlen(value) > AP_MULTIPART_BOUNDARY_MAX)
            break;
        memcpy(boundary, value, strlen(value) + 1);
        return AP_OK;
    }
    return ap_error_set(err, AP_ERR_INVALID,
                        "multipart/form-data content type needs a boundary parameter of 1 to %d "
                        "characters, for example multipart/form-data; boundary=XyZ123",
                        AP_MULTIPART_BOUNDARY_MAX);
}

/* Offset of the first match of pattern in body[from, size), or size when there is none. */
static size_t find(const uint8_t *body, size_t size, size_t from, const char *pattern,
                   size_t pattern_size)
{
    while (from + pattern_size <= size) {
        const uint8_t *hit = memchr(body + from, pattern[0], size - from - pattern_size + 1);
        if (hit == NULL)
            return size;
        size_t at = (size_t)(hit - body);
        if (memcmp(hit, pattern, pattern_size) == 0)
            return at;
        from = at + 1;
    }
    return size;
}

static ap_status read_disposition(const char *value, size_t index, ap_multipart_part *part,
                                  ap_error *err)
{
    const char *p = value;
    if (!take_type(&p, "form-data"))
        return ap_error_set(err, AP_ERR_INVALID,
                            "multipart part %zu: Content-Disposition \"%.100s\" is not form-data",
                            index + 1, value);
    char name[64], text[AP_MULTIPART_NAME_MAX];
    int found;
    while ((found = next_parameter(&p, name, sizeof(name), text, sizeof(text))) == 1) {
        if (strcasecmp(name, "name") == 0) {
            snprintf(part->name, sizeof(part->name), "%s", text);
        } else if (strcasecmp(name, "filename") == 0) {
            snprintf(part->filename, sizeof(part->filename), "%s", text);
            part->has_filename = true;
        }
    }
    if (found < 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "multipart part %zu: malformed Content-Disposition parameters in "
                            "\"%.100s\" (or a name or filename longer than %d bytes)",
                            index + 1, value, AP_MULTIPART_NAME_MAX - 1);
    return AP_OK;
}

/* Parse one header line "Name: value" of part index. */
static ap_status read_header(const char *line, size_t index, ap_multipart_part *part,
                             bool *has_disposition, ap_error *err)
{
    const char *colon = strchr(line, ':');
    if (colon == NULL || colon == line)
        return ap_error_set(err, AP_ERR_INVALID,
                            "multipart part %zu: header line \"%.100s\" has no name and colon",
                            index + 1, line);
    size_t name_length = (size_t)(colon - line);
    const char *value = colon + 1;
    skip_spaces(&value);
    if (name_length == 19 && strncasecmp(line, "Content-Disposition", 19) == 0) {
        *has_disposition = true;
        return read_disposition(value, index, part, err);
    }
    if (name_length == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
        if (strlen(value) >= sizeof(part->content_type))
            return ap_error_set(err, AP_ERR_INVALID,
                                "multipart part %zu: Content-Type is longer than %zu bytes",
                                index + 1, sizeof(part->content_type) - 1);
        snprintf(part->content_type, sizeof(part->content_type), "%s", value);
    }
    return AP_OK;
}

/* Parse the header block body[start, end) of part index, lines separated by CRLF. */
static ap_status read_headers(const uint8_t *body, size_t start, size_t end, size_t index,
                              ap_multipart_part *part, ap_error *err)
{
    char headers[HEADERS_MAX + 1];
    if (end - start > HEADERS_MAX)
        return ap_error_set(err, AP_ERR_INVALID,
                            "multipart part %zu: headers are longer than %d bytes", index + 1,
                            HEADERS_MAX);
    memcpy(headers, body + start, end - start);
    headers[end - start] = '\0';
    if (strlen(headers) != end - start)
        return ap_error_set(err, AP_ERR_INVALID, "multipart part %zu: headers contain a NUL byte",
                            index + 1);

    bool has_disposition = false;
    char *line = headers;
    while (line != NULL) {
        char *next = strstr(line, "\r\n");
        if (next != NULL) {
            *next = '\0';
            next += 2;
        }
        ap_status status = read_header(line, index, part, &has_disposition, err);
        if (status != AP_OK)
            return status;
        line = next;
    }
    if (!has_disposition)
        return ap_error_set(err, AP_ERR_INVALID,
                            "multipart part %zu has no Content-Disposition: form-data header",
                            index + 1);
    return AP_OK;
}

/* Read the part that starts at body[*position], just after a delimiter's CRLF,
 * and move *position past the delimiter that ends it. */
static ap_status read_part(const uint8_t *body, size_t size, const char *delimiter,
                           size_t delimiter_size, size_t index, size_t *position,
                           ap_multipart_part *part, ap_error *err)
{
    memset(part, 0, sizeof(*part));
    size_t start = *position;
    if (start + 2 <= size && memcmp(body + start, "\r\n", 2) == 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "multipart part %zu has no Content-Disposition: form-data header",
                            index + 1);
    size_t end = find(body, size, start, "\r\n\r\n", 4);
    if (end == size)
        return ap_error_set(err, AP_ERR_INVALID,
                            "multipart part %zu: headers do not end with an empty line "
                            "(the body is truncated or malformed)",
                            index + 1);
    ap_status status = read_headers(body, start, end, index, part, err);
    if (status != AP_OK)
        return status;
    size_t content = end + 4;
    /* delimiter starts with the CRLF that belongs to it, not to the content */
    size_t next = find(body, size, content, delimiter, delimiter_size);
    if (next == size)
        return ap_error_set(err, AP_ERR_INVALID,
                            "multipart part %zu is not followed by a boundary delimiter "
                            "(the body is truncated)",
                            index + 1);
    part->data = body + content;
    part->size = next - content;
    *position = next + delimiter_size;
    return AP_OK;
}

/* After a delimiter: "--" closes the body, otherwise optional spaces and a
 * CRLF open the next part. */
static ap_status after_delimiter(const uint8_t *body, size_t size, size_t *position, bool *closed,
                                 ap_error *err)
{
    size_t p = *position;
    if (p + 2 <= size && memcmp(body + p, "--", 2) == 0) {
        *closed = true;
        return AP_OK;
    }
    while (p < size && (body[p] == ' ' || body[p] == '\t'))
        p++;
    if (p + 2 > size || memcmp(body + p, "\r\n", 2) != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "multipart boundary delimiter at byte %zu is not followed by CRLF "
                            "or \"--\"",
                            *position);
    *position = p + 2;
    *closed = false;
    return AP_OK;
}

ap_status ap_multipart_parse(const uint8_t *body, size_t size, const char *boundary,
                             ap_multipart_part *parts, size_t max_parts, size_t *count,
                             ap_error *err)
{
    *count = 0;
    char delimiter[AP_MULTIPART_BOUNDARY_MAX + 5];
    size_t boundary_size = strlen(boundary);
    if (boundary_size == 0 || boundary_size > AP_MULTIPART_BOUNDARY_MAX)
        return ap_error_set(err, AP_ERR_INVALID, "multipart boundary must have 1 to %d characters",
                            AP_MULTIPART_BOUNDARY_MAX);
    size_t delimiter_size = (size_t)snprintf(delimiter, sizeof(delimiter), "\r\n--%s", boundary);

    /* The first delimiter may open the body without a CRLF before it. */
    size_t position;
    if (size >= delimiter_size - 2 && memcmp(body, delimiter + 2, delimiter_size - 2) == 0) {
        position = delimiter_size - 2;
    } else {
        position = find(body, size, 0, delimiter, delimiter_size);
        if (position == size)
            return ap_error_set(err, AP_ERR_INVALID,
                                "multipart body does not contain the boundary \"%s\" of its "
                                "Content-Type",
                                boundary);
        position += delimiter_size;
    }

    for (;;) {
        bool closed = false;
        ap_status status = after_delimiter(body, size, &position, &closed, err);
        if (status != AP_OK)
            return status;
        if (closed)
            break;
        if (*count == max_parts)
            return ap_error_set(err, AP_ERR_LIMIT,
                                "multipart body has more than %zu parts; send at most %zu images "
                                "per request",
                                max_parts, max_parts);
        status = read_part(body, size, delimiter, delimiter_size, *count, &position, &parts[*count],
                           err);
        if (status != AP_OK)
            return status;
        (*count)++;
    }
    if (*count == 0)
        return ap_error_set(err, AP_ERR_INVALID, "multipart body has no parts");
    return AP_OK;
}
