#ifndef APIARY_SCORE_SCORE_JOURNAL_H
#define APIARY_SCORE_SCORE_JOURNAL_H

/* predictions.jsonl as the record of finished work. Rows are only ever
 * appended, one chunk at a time followed by fsync, so after a crash every
 * line is whole except possibly the last, which opening drops. While a run
 * holds the journal open, an exclusive lock (flock) keeps a second run from
 * writing to it. */

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/common/status.h"
#include "pipeline/score/score_output.h"

typedef struct {
    char path[AP_PATH_MAX + 128];
    int fd;        /* open for appending and locked; -1 when closed */
    char **images; /* images with a row, sorted by strcmp */
    size_t image_count;
    size_t capacity;
    size_t dropped_bytes; /* bytes of a damaged last line that opening cut off */
} ap_score_journal;

/* Open the journal at path, creating it when missing, and read the images
 * it lists. A last line that is cut off or does not parse is removed from
 * the file. A damaged line before the last, or a row of another model
 * version or sha256, is an error: the file is then not this model's
 * journal, so the caller should use another output folder. Close out with
 * ap_score_journal_close, also after a failure. */
ap_status ap_score_journal_open(const char *path, const ap_score_model_info *model,
                                ap_score_journal *out, ap_error *err);

/* True when image has a row. */
bool ap_score_journal_contains(const ap_score_journal *journal, const char *image);

/* Append whole lines and fsync them. */
ap_status ap_score_journal_append(ap_score_journal *journal, const void *data, size_t size,
                                  ap_error *err);

void ap_score_journal_close(ap_score_journal *journal);

#endif
