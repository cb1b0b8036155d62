#ifndef APIARY_DATA_SPLIT_H
#define APIARY_DATA_SPLIT_H

#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/data/manifest.h"

/* Seeded, group-aware, label-stratified split into train, validation and test. */

typedef enum { AP_SPLIT_TRAIN = 0, AP_SPLIT_VAL = 1, AP_SPLIT_TEST = 2 } ap_split_part;

/* Assign each manifest row to a part. All rows of a group land in the same
 * part. Groups are placed so each part's share of the images and of the
 * positives of each label is close to its fraction. The same manifest and
 * seed give the same result, whatever the row order of the manifest.
 * assignment has row_count entries. Fails when there are too few groups to
 * give every non-zero fraction at least one group. */
ap_status ap_split_assign(const ap_manifest *manifest, double val_fraction, double test_fraction,
                          uint64_t seed, uint8_t *assignment, ap_error *err);

/* Write split.csv (file,group,part) atomically. */
ap_status ap_split_write(const char *path, const ap_manifest *manifest, const uint8_t *assignment,
                         ap_error *err);

/* Read a split.csv back; every manifest file must appear exactly once. */
ap_status ap_split_read(const char *path, const ap_manifest *manifest, uint8_t *assignment,
                        ap_error *err);

const char *ap_split_part_name(ap_split_part part);

#endif
