/* The S3 operations of pipeline/store/s3.h, each built from one or more
 * engine requests. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "pipeline/store/s3_internal.h"

#define OCTET_STREAM "application/octet-stream"
#define S3_MAX_PARTS 10000

static s3_op new_op(const char *method, const char *bucket, const char *key)
{
    s3_op op;
    memset(&op, 0, sizeof(op));
    op.method = method;
    op.bucket = bucket;
    op.key = key;
    op.range_first = -1;
    op.range_last = -1;
    op.sink = S3_SINK_MEMORY;
    op.sink_max = S3_RESPONSE_MAX_DEF;
    return op;
}

static void add_query(s3_op *op, const char *name, const char *value)
{
    op->query[op->query_count++] = (ap_sigv4_pair){name, value};
}

/* Send one request and wait for it. */
static ap_status run_one(ap_s3_client *client, s3_op *op, ap_error *err)
{
    ap_status status = s3_op_prepare(op, err);
    if (status == AP_OK)
        status = s3_run(client, op, 1, err);
    return status;
}

/* ---- List ---- */

static ap_status list_page(ap_s3_client *client, const char *bucket, const char *prefix,
                           s3_list_page *page, ap_error *err)
{
    s3_op op = new_op("GET", bucket, NULL);
    add_query(&op, "list-type", "2");
    add_query(&op, "prefix", prefix);
    add_query(&op, "encoding-type", "url");
    char *token = page->continuation ? strdup(page->continuation) : NULL;
    if (page->continuation != NULL && token == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot copy the continuation token");
    if (token != NULL)
        add_query(&op, "continuation-token", token);
    ap_status status = run_one(client, &op, err);
    if (status == AP_OK)
        status = s3_xml_parse_list(op.response.data ? op.response.data : "", op.response.size, page,
                                   err);
    s3_op_cleanup(&op);
    free(token);
    return status;
}

ap_status ap_s3_list(ap_s3_client *client, const char *bucket, const char *prefix,
                     ap_s3_listing *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    s3_list_page page = {0};
    ap_status status = AP_OK;
    do {
        size_t before = page.count;
        status = list_page(client, bucket, prefix ? prefix : "", &page, err);
        if (status == AP_OK && page.truncated && page.count == before)
            status = ap_error_set(err, AP_ERR_FORMAT,
                                  "S3 listing of s3://%s/%s: a truncated page listed no keys",
                                  bucket, prefix ? prefix : "");
    } while (status == AP_OK && page.truncated);
    free(page.continuation);
    out->objects = page.objects;
    out->count = page.count;
    if (status != AP_OK)
        ap_s3_listing_free(out);
    return status;
}

void ap_s3_listing_free(ap_s3_listing *listing)
{
    for (size_t i = 0; i < listing->count; i++)
        free(listing->objects[i].key);
    free(listing->objects);
    memset(listing, 0, sizeof(*listing));
}

/* ---- Head and delete ---- */

ap_status ap_s3_head(ap_s3_client *client, const char *bucket, const char *key, ap_s3_object *out,
                     ap_error *err)
{
    memset(out, 0, sizeof(*out));
    s3_op op = new_op("HEAD", bucket, key);
    ap_status status = run_one(client, &op, err);
    if (status == AP_OK) {
        out->size = op.content_length;
        snprintf(out->etag, sizeof(out->etag), "%s", op.etag);
    }
    s3_op_cleanup(&op);
    return status;
}

ap_status ap_s3_delete(ap_s3_client *client, const char *bucket, const char *key, ap_error *err)
{
    s3_op op = new_op("DELETE", bucket, key);
    ap_status status = run_one(client, &op, err);
    s3_op_cleanup(&op);
    return status;
}

/* ---- Get ---- */

ap_status ap_s3_get_files(ap_s3_client *client, const char *bucket, ap_s3_download *items,
                          size_t count, ap_error *err)
{
    if (count == 0)
        return AP_OK;
    s3_op *ops = calloc(count, sizeof(*ops));
    if (ops == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu downloads", count);
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < count; i++) {
        ops[i] = new_op("GET", bucket, items[i].key);
        ops[i].sink = S3_SINK_FILE;
        ops[i].sink_path = items[i].path;
        if (items[i].first >= 0) {
            ops[i].range_first = items[i].first;
            ops[i].range_last = items[i].last;
        }
        items[i].done = false;
        status = s3_op_prepare(&ops[i], err);
    }
    if (status == AP_OK)
        status = s3_run(client, ops, count, err);
    for (size_t i = 0; i < count; i++) {
        if (ops[i].state == S3_OP_DONE && ops[i].result == AP_OK) {
            items[i].done = true;
            items[i].size = ops[i].received;
            snprintf(items[i].etag, sizeof(items[i].etag), "%s", ops[i].etag);
        }
        s3_op_cleanup(&ops[i]);
    }
    free(ops);
    return status;
}

ap_status ap_s3_get_memory(ap_s3_client *client, const char *bucket, const char *key, int64_t first,
                           int64_t last, size_t max_size, uint8_t **data, size_t *size,
                           ap_error *err)
{
    *data = NULL;
    *size = 0;
    s3_op op = new_op("GET", bucket, key);
    op.sink_max = max_size;
    if (first >= 0) {
        op.range_first = first;
        op.range_last = last;
    }
    ap_status status = run_one(client, &op, err);
    if (status == AP_OK) {
        *size = op.response.size;
        store_text_append(&op.response, "", 0);
        *data = (uint8_t *)store_text_take(&op.response);
        if (*data == NULL)
            status =
                ap_error_set(err, AP_ERR_NOMEM, "cannot keep the body of s3://%s/%s", bucket, key);
    }
    s3_op_cleanup(&op);
    return status;
}

/* ---- Put ---- */

static ap_status file_size(const char *path, int64_t *size, ap_error *err)
{
    struct stat info;
    if (stat(path, &info) != 0 || !S_ISREG(info.st_mode))
        return ap_error_set(err, AP_ERR_IO, "cannot upload %s: not a readable regular file", path);
    *size = info.st_size;
    return AP_OK;
}

static s3_op file_put_op(const char *bucket, const char *key, const char *path, int64_t offset,
                         int64_t size, const char *content_type)
{
    s3_op op = new_op("PUT", bucket, key);
    op.body = S3_BODY_FILE;
    op.body_path = path;
    op.body_offset = offset;
    op.body_size = size;
    op.content_type = content_type;
    op.expect_etag_md5 = true;
    return op;
}

ap_status ap_s3_put_memory(ap_s3_client *client, const char *bucket, const char *key,
                           const void *data, size_t size, const char *content_type, ap_error *err)
{
    s3_op op = new_op("PUT", bucket, key);
    op.body = S3_BODY_MEMORY;
    op.body_data = data;
    op.body_size = (int64_t)size;
    op.content_type = content_type ? content_type : OCTET_STREAM;
    op.expect_etag_md5 = true;
    ap_status status = run_one(client, &op, err);
    s3_op_cleanup(&op);
    return status;
}

static ap_status create_upload(ap_s3_client *client, const char *bucket, const char *key,
                               const char *content_type, char **upload_id, ap_error *err)
{
    s3_op op = new_op("POST", bucket, key);
    add_query(&op, "uploads", "");
    op.content_type = content_type;
    op.body = S3_BODY_MEMORY;
    op.body_data = (const uint8_t *)"";
    ap_status status = run_one(client, &op, err);
    if (status == AP_OK)
        status = s3_xml_parse_upload_id(op.response.data ? op.response.data : "", op.response.size,
                                        upload_id, err);
    s3_op_cleanup(&op);
    return status;
}

/* Complete a multipart upload. S3 may answer 200 and still put an <Error>
 * in the body, so the body is checked too. */
static ap_status complete_upload(ap_s3_client *client, const char *bucket, const char *key,
                                 const char *upload_id, char (*etags)[AP_S3_ETAG_MAX],
                                 int part_count, ap_error *err)
{
    char *body = s3_xml_complete_body(etags, part_count);
    if (body == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the CompleteMultipartUpload body");
    s3_op op = new_op("POST", bucket, key);
    add_query(&op, "uploadId", upload_id);
    op.body = S3_BODY_MEMORY;
    op.body_data = (const uint8_t *)body;
    op.body_size = (int64_t)strlen(body);
    op.content_type = "application/xml";
    ap_status status = run_one(client, &op, err);
    char code[128] = "", message[300] = "";
    if (status == AP_OK && op.response.data != NULL &&
        s3_xml_parse_error(op.response.data, op.response.size, code, sizeof(code), message,
                           sizeof(message)))
        status =
            ap_error_set(err, AP_ERR_IO, "S3 CompleteMultipartUpload of s3://%s/%s failed: %s: %s",
                         bucket, key, code, message);
    s3_op_cleanup(&op);
    free(body);
    return status;
}

static void abort_upload(ap_s3_client *client, const char *bucket, const char *key,
                         const char *upload_id)
{
    s3_op op = new_op("DELETE", bucket, key);
    add_query(&op, "uploadId", upload_id);
    ap_error ignored;
    run_one(client, &op, &ignored);
    s3_op_cleanup(&op);
}

/* The ETag S3 gives a multipart object: the MD5 of the parts' binary MD5s,
 * a dash and the part count. */
static void multipart_etag(char (*etags)[AP_S3_ETAG_MAX], int part_count, char *out, size_t size)
{
    EVP_MD_CTX *md5 = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md5, EVP_md5(), NULL);
    for (int i = 0; i < part_count; i++) {
        unsigned char digest[16];
        for (int j = 0; j < 16; j++) {
            unsigned int byte = 0;
            /* The engine matched each part's ETag with the MD5 of its bytes, so it
             * is 32 hex digits. */
            sscanf(etags[i] + 2 * j, "%2x", &byte); /* NOLINT(cert-err34-c) */
            digest[j] = (unsigned char)byte;
        }
        EVP_DigestUpdate(md5, digest, 16);
    }
    unsigned char digest[16];
    unsigned int length = 0;
    EVP_DigestFinal_ex(md5, digest, &length);
    EVP_MD_CTX_free(md5);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    snprintf(out, size, "%s-%d", hex, part_count);
}

static ap_status upload_parts(ap_s3_client *client, const char *bucket, ap_s3_upload *item,
                              int64_t size, const char *upload_id, char (*etags)[AP_S3_ETAG_MAX],
                              int part_count, ap_error *err)
{
    int64_t part_size = client->options.part_size;
    s3_op *ops = calloc((size_t)part_count, sizeof(*ops));
    char(*numbers)[16] = calloc((size_t)part_count, sizeof(*numbers));
    if (ops == NULL || numbers == NULL) {
        free(ops);
        free(numbers);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %d parts", part_count);
    }
    ap_status status = AP_OK;
    for (int i = 0; status == AP_OK && i < part_count; i++) {
        int64_t offset = (int64_t)i * part_size;
        int64_t length = size - offset < part_size ? size - offset : part_size;
        ops[i] = file_put_op(bucket, item->key, item->path, offset, length, NULL);
        snprintf(numbers[i], sizeof(numbers[i]), "%d", i + 1);
        add_query(&ops[i], "partNumber", numbers[i]);
        add_query(&ops[i], "uploadId", upload_id);
        status = s3_op_prepare(&ops[i], err);
    }
    if (status == AP_OK)
        status = s3_run(client, ops, (size_t)part_count, err);
    for (int i = 0; i < part_count; i++) {
        /* The ETag of a part is the MD5 of its bytes; the engine checked that. */
        if (status == AP_OK)
            snprintf(etags[i], AP_S3_ETAG_MAX, "%s",
                     ops[i].etag[0] ? ops[i].etag : ops[i].body_md5);
        s3_op_cleanup(&ops[i]);
    }
    free(ops);
    free(numbers);
    return status;
}

static ap_status put_multipart(ap_s3_client *client, const char *bucket, ap_s3_upload *item,
                               int64_t size, ap_error *err)
{
    int64_t part_size = client->options.part_size;
    int64_t parts = (size + part_size - 1) / part_size;
    if (parts > S3_MAX_PARTS)
        return ap_error_set(err, AP_ERR_LIMIT,
                            "%s needs %lld parts of %lld bytes, over the S3 limit of %d; raise "
                            "the part size",
                            item->path, (long long)parts, (long long)part_size, S3_MAX_PARTS);
    char *upload_id = NULL;
    const char *type = item->content_type ? item->content_type : OCTET_STREAM;
    ap_status status = create_upload(client, bucket, item->key, type, &upload_id, err);
    if (status != AP_OK)
        return status;
    char(*etags)[AP_S3_ETAG_MAX] = calloc((size_t)parts, sizeof(*etags));
    if (etags == NULL)
        status =
            ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %lld part ETags", (long long)parts);
    if (status == AP_OK)
        status = upload_parts(client, bucket, item, size, upload_id, etags, (int)parts, err);
    if (status == AP_OK)
        status = complete_upload(client, bucket, item->key, upload_id, etags, (int)parts, err);
    if (status == AP_OK)
        multipart_etag(etags, (int)parts, item->etag, sizeof(item->etag));
    else
        abort_upload(client, bucket, item->key, upload_id);
    free(etags);
    free(upload_id);
    return status;
}

/* Upload the items below the multipart threshold together. */
static ap_status put_small_files(ap_s3_client *client, const char *bucket, ap_s3_upload *items,
                                 const int64_t *sizes, size_t count, ap_error *err)
{
    s3_op *ops = calloc(count + 1, sizeof(*ops));
    size_t *index = calloc(count + 1, sizeof(*index));
    if (ops == NULL || index == NULL) {
        free(ops);
        free(index);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu uploads", count);
    }
    size_t used = 0;
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < count; i++) {
        if (sizes[i] >= client->options.multipart_threshold)
            continue;
        const char *type = items[i].content_type ? items[i].content_type : OCTET_STREAM;
        ops[used] = file_put_op(bucket, items[i].key, items[i].path, 0, sizes[i], type);
        index[used] = i;
        status = s3_op_prepare(&ops[used++], err);
    }
    if (status == AP_OK && used > 0)
        status = s3_run(client, ops, used, err);
    for (size_t j = 0; j < used; j++) {
        if (ops[j].state == S3_OP_DONE && ops[j].result == AP_OK) {
            items[index[j]].done = true;
            snprintf(items[index[j]].etag, sizeof(items[index[j]].etag), "%s",
                     ops[j].etag[0] ? ops[j].etag : ops[j].body_md5);
        }
        s3_op_cleanup(&ops[j]);
    }
    free(ops);
    free(index);
    return status;
}

ap_status ap_s3_put_files(ap_s3_client *client, const char *bucket, ap_s3_upload *items,
                          size_t count, ap_error *err)
{
    int64_t *sizes = calloc(count + 1, sizeof(*sizes));
    if (sizes == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu uploads", count);
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < count; i++) {
        items[i].done = false;
        status = file_size(items[i].path, &sizes[i], err);
    }
    if (status == AP_OK)
        status = put_small_files(client, bucket, items, sizes, count, err);
    for (size_t i = 0; status == AP_OK && i < count; i++) {
        if (sizes[i] < client->options.multipart_threshold)
            continue;
        status = put_multipart(client, bucket, &items[i], sizes[i], err);
        items[i].done = status == AP_OK;
    }
    free(sizes);
    return status;
}
