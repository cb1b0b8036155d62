#ifndef APIARY_STORE_DATASET_FETCH_H
#define APIARY_STORE_DATASET_FETCH_H

/* Fetching a published dataset archive: a resumable HTTPS download checked
 * against a known size and SHA-256, then unpacked (zip or tar) into a
 * folder that no entry can leave. A BeeDataset archive also gets a
 * labels.csv manifest beside each of its image folders. */

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

typedef struct {
    const char *name;
    const char *url;
    int64_t size;
    const char *sha256;
    const char *description;
} ap_dataset_entry;

/* The built-in dataset called name, or NULL. */
const ap_dataset_entry *ap_dataset_find(const char *name);

typedef struct {
    const char *url;    /* https://..., or http:// to a loopback address */
    const char *sha256; /* 64 hex digits, required */
    int64_t size;       /* bytes, or -1 when unknown */
    const char *dir;    /* unpack here; the archive goes to dir/.download */
    const char *ca_bundle;
    int retries;
    long stall_timeout_s;
} ap_dataset_fetch_request;

typedef struct {
    bool already_done;           /* dir held this archive's unpacked files already */
    int64_t downloaded;          /* bytes transferred by this call */
    int64_t resumed_at;          /* bytes kept from an interrupted download, or 0 */
    long files;                  /* files unpacked */
    int manifests;               /* labels.csv files written (BeeDataset layout) */
    char data_root[AP_PATH_MAX]; /* a folder to use as data.root */
} ap_dataset_fetch_result;

/* Check the URL (https://, or http:// to a loopback host, with no password)
 * and the SHA-256 (64 hex digits) of request. Fails with AP_ERR_INVALID. */
ap_status ap_dataset_check_request(const ap_dataset_fetch_request *request, ap_error *err);

/* Download, verify and unpack. Rerunning after an interruption resumes the
 * download (HTTP Range) and skips work already done. The archive is
 * unpacked into a staging folder below dir/.download and moved into dir
 * only when all of it unpacked. A failure leaves dir as it was, except for
 * a partial download that a rerun resumes, or a verified archive whose
 * unpacking failed for a file system error. */
ap_status ap_dataset_fetch(const ap_dataset_fetch_request *request, ap_dataset_fetch_result *result,
                           ap_error *err);

/* Download url to path (resuming path.part) and check size and SHA-256. */
ap_status ap_dataset_download(const ap_dataset_fetch_request *request, const char *path,
                              ap_dataset_fetch_result *result, ap_error *err);

/* Unpack the zip or tar archive at path into dir. Entries that are absolute,
 * contain "..", or are links or devices are rejected, and the error names
 * the archive and the entry. Files are written atomically, but a failure
 * leaves the entries unpacked before it, so dir should be a staging folder. */
ap_status ap_dataset_unpack(const char *path, const char *dir, long *files, ap_error *err);

/* Move everything below staging into dir: an entry that dir lacks moves as
 * a whole, a file replaces dir's file of that name, and a folder merges
 * into dir's folder. A conflict (a file against a folder, or a symbolic
 * link in dir) fails before anything moves, leaving dir unchanged. */
ap_status ap_dataset_merge(const char *staging, const char *dir, ap_error *err);

/* When dir (or its only subfolder) contains a BeeDataset data.json, write
 * labels.csv (file, varroa, pollen, wasps, cooling) into each images_*
 * folder beside it, so that folder can be a data.root. Sets *manifests to the
 * count written and data_root to the largest images folder. */
ap_status ap_dataset_convert_bee(const char *dir, int *manifests, char data_root[AP_PATH_MAX],
                                 ap_error *err);

#endif
