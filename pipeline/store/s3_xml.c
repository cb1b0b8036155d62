/* The XML documents of the S3 API, read with libxml2: ListObjectsV2
 * results, errors, and the multipart upload replies. The parser never loads
 * external entities or DTDs from the network. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "pipeline/store/s3_internal.h"

#define PARSE_OPTIONS                                                                              \
    (XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)

static xmlDocPtr read_document(const char *xml, size_t size)
{
    if (size > (size_t)INT32_MAX)
        return NULL;
    return xmlReadMemory(xml, (int)size, "s3-response.xml", NULL, PARSE_OPTIONS);
}

static bool named(const xmlNode *node, const char *name)
{
    return node->type == XML_ELEMENT_NODE && strcmp((const char *)node->name, name) == 0;
}

static xmlNode *child(const xmlNode *parent, const char *name)
{
    for (xmlNode *node = parent->children; node != NULL; node = node->next)
        if (named(node, name))
            return node;
    return NULL;
}

/* The text of node as a malloc'd string ("" for an empty element). */
static char *text_of(const xmlNode *node)
{
    xmlChar *content = xmlNodeGetContent(node);
    char *copy = strdup(content ? (const char *)content : "");
    xmlFree(content);
    return copy;
}

static void copy_text(const xmlNode *node, char *out, size_t size)
{
    char *text = node ? text_of(node) : NULL;
    snprintf(out, size, "%s", text ? text : "");
    free(text);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Undo encoding-type=url in place: %XX escapes, and '+' for a space. AWS
 * writes spaces as '+' there and '+' itself as %2B. */
static bool url_decode(char *text)
{
    char *out = text;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '+') {
            *out++ = ' ';
        } else if (*p == '%') {
            int high = hex_value(p[1]), low = high >= 0 ? hex_value(p[2]) : -1;
            if (high < 0 || low < 0)
                return false;
            *out++ = (char)(high * 16 + low);
            p += 2;
        } else {
            *out++ = *p;
        }
    }
    *out = '\0';
    return true;
}

static void strip_quotes(const char *etag, char *out, size_t size)
{
    size_t length = strlen(etag);
    if (length >= 2 && etag[0] == '"' && etag[length - 1] == '"')
        snprintf(out, size, "%.*s", (int)(length - 2), etag + 1);
    else if (length >= 12 && strncmp(etag, "&quot;", 6) == 0)
        snprintf(out, size, "%.*s", (int)(length - 12), etag + 6);
    else
        snprintf(out, size, "%.*s", (int)(size - 1), etag);
}

static ap_status add_object(s3_list_page *page, const xmlNode *contents, bool url_encoded,
                            ap_error *err)
{
    const xmlNode *key = child(contents, "Key"), *size = child(contents, "Size");
    if (key == NULL || size == NULL)
        return ap_error_set(err, AP_ERR_FORMAT, "S3 listing: an entry has no Key or Size");
    if (page->count == page->capacity) {
        size_t capacity = page->capacity ? 2 * page->capacity : 1024;
        ap_s3_object *grown = realloc(page->objects, capacity * sizeof(*grown));
        if (grown == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu listing entries", capacity);
        page->objects = grown;
        page->capacity = capacity;
    }
    ap_s3_object *object = &page->objects[page->count];
    memset(object, 0, sizeof(*object));
    object->key = text_of(key);
    if (object->key == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot copy a listed key");
    page->count++;
    if (url_encoded && !url_decode(object->key))
        return ap_error_set(err, AP_ERR_FORMAT, "S3 listing: key %.200s has a bad %% escape",
                            object->key);

    char size_text[64], etag[AP_S3_ETAG_MAX + 16];
    copy_text(size, size_text, sizeof(size_text));
    char *end = NULL;
    long long bytes = strtoll(size_text, &end, 10);
    if (end == size_text || *end != '\0' || bytes < 0)
        return ap_error_set(err, AP_ERR_FORMAT, "S3 listing: key %.200s has size \"%s\"",
                            object->key, size_text);
    object->size = bytes;
    copy_text(child(contents, "ETag"), etag, sizeof(etag));
    strip_quotes(etag, object->etag, sizeof(object->etag));
    return AP_OK;
}

static ap_status read_list_result(const xmlNode *root, s3_list_page *page, ap_error *err)
{
    char flag[16] = "", encoding[16] = "";
    copy_text(child(root, "IsTruncated"), flag, sizeof(flag));
    copy_text(child(root, "EncodingType"), encoding, sizeof(encoding));
    page->truncated = strcmp(flag, "true") == 0;
    bool url_encoded = strcmp(encoding, "url") == 0;
    ap_status status = AP_OK;
    for (xmlNode *node = root->children; status == AP_OK && node != NULL; node = node->next)
        if (named(node, "Contents"))
            status = add_object(page, node, url_encoded, err);
    if (status != AP_OK)
        return status;
    free(page->continuation);
    page->continuation = NULL;
    const xmlNode *token = child(root, "NextContinuationToken");
    if (page->truncated) {
        if (token == NULL)
            return ap_error_set(err, AP_ERR_FORMAT,
                                "S3 listing is truncated but has no NextContinuationToken");
        page->continuation = text_of(token);
        if (page->continuation == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot copy the continuation token");
    }
    return AP_OK;
}

ap_status s3_xml_parse_list(const char *xml, size_t size, s3_list_page *page, ap_error *err)
{
    xmlDocPtr document = read_document(xml, size);
    xmlNode *root = document ? xmlDocGetRootElement(document) : NULL;
    ap_status status;
    if (root == NULL || !named(root, "ListBucketResult"))
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "S3 listing reply is not a ListBucketResult XML document");
    else
        status = read_list_result(root, page, err);
    xmlFreeDoc(document);
    return status;
}

ap_status s3_xml_parse_upload_id(const char *xml, size_t size, char **upload_id, ap_error *err)
{
    *upload_id = NULL;
    xmlDocPtr document = read_document(xml, size);
    xmlNode *root = document ? xmlDocGetRootElement(document) : NULL;
    xmlNode *id =
        root && named(root, "InitiateMultipartUploadResult") ? child(root, "UploadId") : NULL;
    if (id != NULL)
        *upload_id = text_of(id);
    xmlFreeDoc(document);
    if (*upload_id == NULL || (*upload_id)[0] == '\0') {
        free(*upload_id);
        *upload_id = NULL;
        return ap_error_set(err, AP_ERR_FORMAT,
                            "S3 reply to CreateMultipartUpload has no UploadId");
    }
    return AP_OK;
}

bool s3_xml_parse_error(const char *xml, size_t size, char *code, size_t code_size, char *message,
                        size_t message_size)
{
    xmlDocPtr document = read_document(xml, size);
    xmlNode *root = document ? xmlDocGetRootElement(document) : NULL;
    bool is_error = root != NULL && named(root, "Error");
    if (is_error) {
        copy_text(child(root, "Code"), code, code_size);
        copy_text(child(root, "Message"), message, message_size);
        for (char *p = message; *p != '\0'; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    xmlFreeDoc(document);
    return is_error;
}

char *s3_xml_complete_body(char (*etags)[AP_S3_ETAG_MAX], int part_count)
{
    store_text text = {0};
    store_text_append_string(&text, "<CompleteMultipartUpload>");
    for (int i = 0; i < part_count; i++)
        store_text_appendf(&text, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                           i + 1, etags[i]);
    store_text_append_string(&text, "</CompleteMultipartUpload>");
    return store_text_take(&text);
}
