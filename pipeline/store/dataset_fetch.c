/* Downloading a dataset archive with resume and verification, and the
 * whole fetch: download, unpack (dataset_unpack.c) and convert. */

#include "pipeline/store/dataset_fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/common/uri.h"

#define DOWNLOAD_FOLDER ".download"
/* Below DOWNLOAD_FOLDER. Archive names never start with '.', so no archive
 * can take this name. */
#define STAGING_FOLDER ".unpack"
#define DONE_MARKER    ".apiary-dataset.json"

static const ap_dataset_entry builtin_datasets[] = {
    {.name = "beedataset",
     .url = "https://raspbee.de/BeeDataset_20201121.zip",
     .size = 201735620,
     .sha256 = "f219c7dc5d81712fb6f3423e2f5468e648260f2032720d87ebf14f218b5e3e43",
     .description = "BeeDataset (BeeAlarmed): 7,490 bee crops with varroa, pollen, wasps and "
                    "cooling labels, GPL"},
};

const ap_dataset_entry *ap_dataset_find(const char *name)
{
    for (size_t i = 0; i < sizeof(builtin_datasets) / sizeof(builtin_datasets[0]); i++)
        if (strcasecmp(builtin_datasets[i].name, name) == 0)
            return &builtin_datasets[i];
    return NULL;
}

/* ---- Download ---- */

/* True when the authority at rest names a loopback host. The host follows
 * the last '@' of the authority, so a user name cannot pose as the host. */
static bool loopback_host(const char *rest)
{
    const char *host = rest;
    size_t authority = strcspn(rest, "/?#");
    for (size_t i = 0; i < authority; i++)
        if (rest[i] == '@')
            host = rest + i + 1;
    static const char *const hosts[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        size_t length = strlen(hosts[i]);
        if (strncmp(host, hosts[i], length) == 0 &&
            (host[length] == ':' || host[length] == '/' || host[length] == '\0'))
            return true;
    }
    return false;
}

ap_status ap_dataset_check_request(const ap_dataset_fetch_request *request, ap_error *err)
{
    const char *url = request->url;
    char shown[AP_PATH_MAX];
    ap_uri_redact(url, shown, sizeof(shown));
    if (ap_uri_has_password(url))
        return ap_error_set(err, AP_ERR_INVALID,
                            "dataset URL %.300s: " AP_URI_PASSWORD_MESSAGE
                            "; remove it, since a dataset download sends no credentials",
                            shown);
    bool https = strncmp(url, "https://", 8) == 0;
    bool local_http = strncmp(url, "http://", 7) == 0 && loopback_host(url + 7);
    if (!https && !local_http)
        return ap_error_set(err, AP_ERR_INVALID,
                            "dataset URL %.300s is not supported; use https://, or plain "
                            "http:// to 127.0.0.1, localhost or [::1]",
                            shown);
    if (strpbrk(url, " \t\r\n") != NULL)
        return ap_error_set(err, AP_ERR_INVALID, "dataset URL %.300s contains spaces", shown);
    if (request->sha256 == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "dataset URL %.300s needs the SHA-256 of its archive (64 hex "
                            "digits, --sha256 HEX), which verifies the download",
                            shown);
    size_t length = strlen(request->sha256);
    bool hex = length == 64;
    for (size_t i = 0; hex && i < length; i++)
        hex = strchr("0123456789abcdefABCDEF", request->sha256[i]) != NULL;
    if (!hex)
        return ap_error_set(err, AP_ERR_INVALID,
                            "SHA-256 \"%.80s\" is invalid; expected 64 hex digits (0-9, a-f)",
                            request->sha256);
    return AP_OK;
}

typedef struct {
    FILE *file;
    long status;
    CURL *curl;
    int64_t offset;  /* bytes in the file before this attempt */
    int64_t written; /* bytes written by this attempt */
    bool restart;    /* the server ignored the Range: rewrite from byte 0 */
    char content_range[96];
    bool failed;
} download_state;

static size_t on_download_header(char *line, size_t item_size, size_t count, void *user)
{
    download_state *state = user;
    size_t size = item_size * count;
    if (size > 14 && strncasecmp(line, "Content-Range:", 14) == 0) {
        const char *value = line + 14;
        while (*value == ' ')
            value++;
        snprintf(state->content_range, sizeof(state->content_range), "%.*s",
                 (int)strcspn(value, "\r\n"), value);
    }
    return size;
}

static size_t on_download_body(char *data, size_t item_size, size_t count, void *user)
{
    download_state *state = user;
    size_t size = item_size * count;
    if (state->written == 0) {
        curl_easy_getinfo(state->curl, CURLINFO_RESPONSE_CODE, &state->status);
        if (state->status == 200 && state->offset > 0) {
            /* The server sent the whole file; start over. */
            if (ftruncate(fileno(state->file), 0) != 0 || fseeko(state->file, 0, SEEK_SET) != 0) {
                state->failed = true;
                return 0;
            }
            state->restart = true;
        } else if (state->status == 206) {
            char expected[64];
            snprintf(expected, sizeof(expected), "bytes %lld-", (long long)state->offset);
            if (strncmp(state->content_range, expected, strlen(expected)) != 0) {
                state->failed = true;
                return 0;
            }
        } else if (state->status != 200) {
            return size; /* an error page: discard */
        }
    }
    if (fwrite(data, 1, size, state->file) != size) {
        state->failed = true;
        return 0;
    }
    state->written += (int64_t)size;
    return size;
}

/* One attempt: fetch from the end of the partial file onward. */
static CURLcode download_attempt(const ap_dataset_fetch_request *request, FILE *file,
                                 int64_t offset, download_state *state)
{
    memset(state, 0, sizeof(*state));
    state->file = file;
    state->offset = offset;
    CURL *curl = state->curl = curl_easy_init();
    if (curl == NULL)
        return CURLE_FAILED_INIT;
    char range[64];
    snprintf(range, sizeof(range), "%lld-", (long long)offset);
    curl_easy_setopt(curl, CURLOPT_URL, request->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (request->ca_bundle != NULL && request->ca_bundle[0] != '\0')
        curl_easy_setopt(curl, CURLOPT_CAINFO, request->ca_bundle);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, request->stall_timeout_s);
    if (offset > 0)
        curl_easy_setopt(curl, CURLOPT_RANGE, range);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_download_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, state);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_download_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, state);
    CURLcode code = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &state->status);
    curl_easy_cleanup(curl);
    if (fflush(file) != 0)
        state->failed = true;
    return code;
}

static int64_t file_length(FILE *file)
{
    struct stat info;
    return fstat(fileno(file), &info) == 0 ? (int64_t)info.st_size : -1;
}

static void sleep_backoff(int attempt)
{
    /* Seeded per process, so that clients retrying together spread out;
     * rand() without srand() would give every process the same waits. */
    static unsigned int jitter_seed;
    if (jitter_seed == 0)
        jitter_seed = (unsigned int)time(NULL) ^ ((unsigned int)getpid() << 16);
    long ms = 500L << (attempt < 6 ? attempt : 6);
    ms = ms / 2 + rand_r(&jitter_seed) % (ms / 2 + 1);
    struct timespec delay = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&delay, NULL);
}

static bool transient(CURLcode code, long status)
{
    if (code == CURLE_OK)
        return status == 429 || status >= 500;
    return code == CURLE_COULDNT_CONNECT || code == CURLE_OPERATION_TIMEDOUT ||
           code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR || code == CURLE_GOT_NOTHING ||
           code == CURLE_PARTIAL_FILE || code == CURLE_COULDNT_RESOLVE_HOST;
}

/* The standard reason phrase of an HTTP status that ends a download, or "". */
static const char *reason_phrase(long status)
{
    switch (status) {
    case 400:
        return " Bad Request";
    case 401:
        return " Unauthorized";
    case 403:
        return " Forbidden";
    case 404:
        return " Not Found";
    case 410:
        return " Gone";
    case 416:
        return " Range Not Satisfiable";
    case 429:
        return " Too Many Requests";
    case 500:
        return " Internal Server Error";
    case 502:
        return " Bad Gateway";
    case 503:
        return " Service Unavailable";
    case 504:
        return " Gateway Timeout";
    default:
        return "";
    }
}

/* Set err for a download that failed for good. Only a transient failure
 * (a timeout, a reset connection, HTTP 429 or 5xx) may pass when the
 * command runs again, and that run resumes the download. */
static ap_status download_failed(const char *url, int attempts, CURLcode code, long status,
                                 ap_error *err)
{
    char failure[160];
    if (code == CURLE_OK)
        snprintf(failure, sizeof(failure), "the server answered HTTP %ld%s", status,
                 reason_phrase(status));
    else
        snprintf(failure, sizeof(failure), "%s", curl_easy_strerror(code));
    if (transient(code, status))
        return ap_error_set(err, AP_ERR_IO,
                            "download of %s failed after %d attempt%s: %s; run the command "
                            "again to resume",
                            url, attempts, attempts == 1 ? "" : "s", failure);
    const char *advice = "check the URL";
    if (code == CURLE_UNSUPPORTED_PROTOCOL)
        advice = "check the URL (redirects are followed to https:// only)";
    else if (code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CONNECT_ERROR ||
             code == CURLE_SSL_CACERT_BADFILE)
        advice = "check the URL, and store.ca_bundle for a server with a private CA";
    return ap_error_set(err, AP_ERR_IO, "download of %s failed: %s; %s", url, failure, advice);
}

/* Download into the partial file until it is complete or a failure is final.
 * *resumable is false after a failure that a rerun cannot fix, such as HTTP
 * 404, where the partial file is of no use. */
static ap_status download_partial(const ap_dataset_fetch_request *request, FILE *file,
                                  const char *part, ap_dataset_fetch_result *result,
                                  bool *resumable, ap_error *err)
{
    *resumable = true;
    char url[AP_PATH_MAX];
    ap_uri_redact(request->url, url, sizeof(url));
    for (int attempt = 0;; attempt++) {
        int64_t offset = file_length(file);
        if (request->size >= 0 && offset > request->size) {
            if (ftruncate(fileno(file), 0) != 0)
                return ap_error_set(err, AP_ERR_IO, "cannot truncate %s", part);
            offset = 0;
        }
        if (request->size >= 0 && offset == request->size)
            return AP_OK;
        if (attempt == 0 && offset > 0) {
            result->resumed_at = offset;
            AP_INFO("resuming the download of %s at byte %lld", url, (long long)offset);
        }
        fseeko(file, 0, SEEK_END);
        download_state state;
        CURLcode code = download_attempt(request, file, offset, &state);
        result->downloaded += state.written;
        if (state.failed)
            return ap_error_set(err, AP_ERR_IO,
                                "download of %s to %s failed: cannot write the file, or the "
                                "server answered a range request with Content-Range \"%s\"",
                                url, part, state.content_range);
        if (code == CURLE_OK && (state.status == 200 || state.status == 206))
            return AP_OK;
        if (code == CURLE_OK && state.status == 416 && offset > 0)
            return AP_OK; /* nothing past the end: the file may be complete; the hash decides */
        if (!transient(code, state.status) || attempt >= request->retries) {
            *resumable = transient(code, state.status);
            return download_failed(url, attempt + 1, code, state.status, err);
        }
        if (code == CURLE_OK)
            AP_WARN("download of %s failed with HTTP %ld%s; retrying (attempt %d of %d)", url,
                    state.status, reason_phrase(state.status), attempt + 2, request->retries + 1);
        else
            AP_WARN("download of %s failed: %s; retrying (attempt %d of %d)", url,
                    curl_easy_strerror(code), attempt + 2, request->retries + 1);
        sleep_backoff(attempt);
    }
}

static ap_status verify_download(const ap_dataset_fetch_request *request, const char *part,
                                 ap_error *err)
{
    char url[AP_PATH_MAX];
    ap_uri_redact(request->url, url, sizeof(url));
    struct stat info;
    if (stat(part, &info) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot inspect %s: %s", part, strerror(errno));
    if (request->size >= 0 && info.st_size != request->size)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "download of %s has %lld bytes, expected %lld; run the command "
                            "again to resume",
                            url, (long long)info.st_size, (long long)request->size);
    char actual[65];
    ap_status status = ap_sha256_file(part, actual, err);
    if (status != AP_OK)
        return status;
    if (strcasecmp(actual, request->sha256) != 0) {
        unlink(part);
        return ap_error_set(err, AP_ERR_FORMAT,
                            "download of %s has SHA-256 %s, expected %s; the file was deleted, "
                            "so the next run downloads it afresh",
                            url, actual, request->sha256);
    }
    return AP_OK;
}

ap_status ap_dataset_download(const ap_dataset_fetch_request *request, const char *path,
                              ap_dataset_fetch_result *result, ap_error *err)
{
    ap_status status = ap_dataset_check_request(request, err);
    if (status != AP_OK)
        return status;
    char part[AP_PATH_MAX + 16];
    if (snprintf(part, sizeof(part), "%s.part", path) >= (int)sizeof(part))
        return ap_error_set(err, AP_ERR_INVALID, "path %s is too long", path);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ap_error_set(err, AP_ERR_BACKEND, "cannot initialise libcurl");
    bool part_existed = ap_path_exists(part);
    int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    FILE *file = fd >= 0 ? fdopen(fd, "r+b") : NULL;
    if (file == NULL) {
        if (fd >= 0)
            close(fd);
        return ap_error_set(err, AP_ERR_IO, "cannot open %s: %s", part, strerror(errno));
    }
    bool resumable;
    status = download_partial(request, file, part, result, &resumable, err);
    if (fsync(fileno(file)) != 0 && status == AP_OK)
        status = ap_error_set(err, AP_ERR_IO, "cannot flush %s: %s", part, strerror(errno));
    /* Keep a partial file that a rerun resumes, and one that an earlier run left. */
    if (status != AP_OK && !part_existed && (!resumable || file_length(file) == 0))
        unlink(part);
    fclose(file);
    if (status == AP_OK)
        status = verify_download(request, part, err);
    if (status == AP_OK && rename(part, path) != 0)
        status =
            ap_error_set(err, AP_ERR_IO, "cannot rename %s to %s: %s", part, path, strerror(errno));
    return status;
}

/* ---- The whole fetch ---- */

static bool already_unpacked(const char *dir, const char *sha256, ap_dataset_fetch_result *result)
{
    char path[AP_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, DONE_MARKER);
    json_t *marker = json_load_file(path, 0, NULL);
    const char *recorded = json_string_value(json_object_get(marker, "sha256"));
    const char *root = json_string_value(json_object_get(marker, "data_root"));
    bool done = recorded != NULL && strcasecmp(recorded, sha256) == 0;
    if (done)
        snprintf(result->data_root, sizeof(result->data_root), "%s", root ? root : dir);
    json_decref(marker);
    return done;
}

static ap_status write_marker(const ap_dataset_fetch_request *request,
                              const ap_dataset_fetch_result *result, ap_error *err)
{
    char path[AP_PATH_MAX + 64], url[AP_PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", request->dir, DONE_MARKER);
    ap_uri_redact(request->url, url, sizeof(url));
    json_t *marker = json_pack("{s:s, s:s, s:I, s:s}", "url", url, "sha256", request->sha256,
                               "files", (json_int_t)result->files, "data_root", result->data_root);
    char *text = marker ? json_dumps(marker, JSON_INDENT(2)) : NULL;
    json_decref(marker);
    if (text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot encode %s", path);
    ap_status status = ap_write_atomic(path, text, strlen(text), err);
    free(text);
    return status;
}

/* The archive's file name: the last segment of the URL path, made safe. */
static void archive_name(const char *url, char *out, size_t size)
{
    const char *scheme_end = strstr(url, "://");
    const char *authority = scheme_end != NULL ? scheme_end + 3 : url;
    const char *path = authority + strcspn(authority, "/?#");
    const char *end = path + strcspn(path, "?#");
    const char *start = end;
    while (start > path && start[-1] != '/')
        start--;
    snprintf(out, size, "%.*s", (int)(end - start), start);
    for (char *p = out; *p != '\0'; p++)
        if (*p == '/' || (unsigned char)*p < 0x20)
            *p = '_';
    if (out[0] == '\0' || out[0] == '.')
        snprintf(out, size, "archive");
}

/* Append a sentence to err's message, cutting the message when it is long. */
static void append_to_error(ap_error *err, const char *sentence)
{
    if (err == NULL)
        return;
    char message[AP_ERROR_MESSAGE_MAX];
    snprintf(message, sizeof(message), "%s", err->message);
    ap_error_set(err, err->code, "%.*s; %s", (int)(sizeof(message) - strlen(sentence) - 3), message,
                 sentence);
}

/* Unpack and convert the archive in staging, and only then move the files
 * into request->dir, so that a rejected archive adds nothing to it. */
static ap_status install_archive(const ap_dataset_fetch_request *request, const char *path,
                                 const char *staging, ap_dataset_fetch_result *result,
                                 ap_error *err)
{
    size_t staging_length = strlen(staging);
    if (staging_length >= sizeof(result->data_root))
        return ap_error_set(err, AP_ERR_INVALID, "path %.300s... is too long", staging);
    ap_status status = ap_dataset_unpack(path, staging, &result->files, err);
    if (status == AP_OK) {
        memcpy(result->data_root, staging, staging_length + 1);
        status = ap_dataset_convert_bee(staging, &result->manifests, result->data_root, err);
    }
    if (status == AP_OK)
        status = ap_dataset_merge(staging, request->dir, err);
    if (status == AP_OK) {
        /* data_root is staging or a folder below it, now moved into dir. */
        char moved[AP_PATH_MAX * 2];
        snprintf(moved, sizeof(moved), "%s%s", request->dir, result->data_root + staging_length);
        if (strlen(moved) >= sizeof(result->data_root))
            status = ap_error_set(err, AP_ERR_INVALID, "path %.300s... is too long", moved);
        else
            memcpy(result->data_root, moved, strlen(moved) + 1);
    }
    ap_error cleanup = {0};
    if (ap_remove_tree(staging, &cleanup) != AP_OK)
        AP_WARN("%s", cleanup.message);
    return status;
}

/* What a fetch adds to its folder, so that a failure can remove it again. */
typedef struct {
    char missing_root[AP_PATH_MAX]; /* the highest missing folder of dir, or "" */
    bool folder_missing;            /* dir/.download */
    bool archive_missing;           /* the archive in dir/.download */
} fetch_additions;

/* Find the highest folder of dir, dir included, that does not exist yet. */
static void find_missing_root(const char *dir, char out[AP_PATH_MAX])
{
    char path[AP_PATH_MAX];
    out[0] = '\0';
    snprintf(path, sizeof(path), "%s", dir);
    for (;;) {
        size_t length = strlen(path);
        while (length > 1 && path[length - 1] == '/')
            path[--length] = '\0';
        if (length == 0 || ap_path_exists(path))
            return;
        memcpy(out, path, length + 1);
        char *slash = strrchr(path, '/');
        if (slash == NULL || slash == path)
            return;
        *slash = '\0';
    }
}

/* Remove the empty folders from dir up to missing_root, which a failed fetch
 * created. rmdir fails on a folder that is not empty, so no file goes. */
static void remove_created_folders(const char *dir, const char *missing_root)
{
    if (missing_root[0] == '\0')
        return;
    char path[AP_PATH_MAX];
    snprintf(path, sizeof(path), "%s", dir);
    size_t length = strlen(path);
    while (length > 1 && path[length - 1] == '/')
        path[--length] = '\0';
    while (rmdir(path) == 0 && strcmp(path, missing_root) != 0) {
        char *slash = strrchr(path, '/');
        if (slash == NULL || slash == path)
            return;
        *slash = '\0';
    }
}

/* Remove what a failed fetch added. A partial download that a rerun resumes
 * stays (ap_dataset_download decides). A verified archive stays when its
 * unpacking failed for a file system error, because a rerun then skips the
 * download, but an archive that was rejected is deleted. */
static void undo_fetch(const ap_dataset_fetch_request *request, const fetch_additions *additions,
                       const char *folder, const char *path, bool downloaded, ap_status status,
                       ap_error *err)
{
    if (downloaded && additions->archive_missing) {
        if (status == AP_ERR_IO) {
            append_to_error(err, "the verified archive stays in the .download folder, so a "
                                 "rerun skips the download");
        } else if (unlink(path) == 0) {
            append_to_error(err, "the archive was deleted");
        }
    }
    if (additions->folder_missing)
        rmdir(folder);
    remove_created_folders(request->dir, additions->missing_root);
}

ap_status ap_dataset_fetch(const ap_dataset_fetch_request *request, ap_dataset_fetch_result *result,
                           ap_error *err)
{
    memset(result, 0, sizeof(*result));
    ap_status status = ap_dataset_check_request(request, err);
    if (status != AP_OK)
        return status;
    if (already_unpacked(request->dir, request->sha256, result)) {
        result->already_done = true;
        return AP_OK;
    }
    char folder[AP_PATH_MAX + 32], name[256], path[AP_PATH_MAX + 300];
    char staging[AP_PATH_MAX + 64];
    snprintf(folder, sizeof(folder), "%s/%s", request->dir, DOWNLOAD_FOLDER);
    archive_name(request->url, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", folder, name);
    snprintf(staging, sizeof(staging), "%s/%s", folder, STAGING_FOLDER);
    fetch_additions additions;
    find_missing_root(request->dir, additions.missing_root);
    additions.folder_missing = !ap_path_exists(folder);
    additions.archive_missing = !ap_path_exists(path);

    /* A staging folder is left only by a run that was killed while unpacking. */
    status = ap_mkdirs(folder, err);
    if (status == AP_OK)
        status = ap_remove_tree(staging, err);
    char existing[65] = "";
    if (status == AP_OK && ap_path_exists(path) && ap_sha256_file(path, existing, err) == AP_OK &&
        strcasecmp(existing, request->sha256) == 0)
        AP_INFO("%s is already downloaded and verified", path);
    else if (status == AP_OK)
        status = ap_dataset_download(request, path, result, err);
    bool downloaded = status == AP_OK;
    if (status == AP_OK)
        status = install_archive(request, path, staging, result, err);
    if (status == AP_OK)
        status = write_marker(request, result, err);
    if (status != AP_OK)
        undo_fetch(request, &additions, folder, path, downloaded, status, err);
    return status;
}
