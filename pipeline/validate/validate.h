#ifndef APIARY_VALIDATE_VALIDATE_H
#define APIARY_VALIDATE_VALIDATE_H

/* The validation stage: the gate a trained model must pass before the
 * registry may promote it.
 *
 * It works on the finished run in output_dir/run_name. First it checks the
 * test data: no group shared with train or val, no test image file
 * identical to a train or val file, and enough test support for the rules.
 * Then it chooses each label's threshold on the validation split, measures
 * the test split with confidence intervals, applies gate.rules and compares
 * with the registry's champion. It writes report.json, report.md and
 * report.html into the run folder and the thresholds into model_card.json. */

#include <stdbool.h>

#include <jansson.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

typedef struct {
    const ap_config *cfg;
    /* The command that finishes training the run, for the message about an
     * unfinished run; NULL for a generic hint. */
    const char *finish_command;
} ap_validate_request;

typedef struct {
    bool passed; /* the gate verdict */
    char run_dir[AP_PATH_MAX];
    char report_path[AP_PATH_MAX + 32];
    /* The report as written to report.json (new reference), for a summary. */
    json_t *report;
} ap_validate_outcome;

/* Validate the run of request->cfg. Returns AP_OK with outcome->passed
 * false when the gate rejects the model (the report is written then too),
 * and an error when validation itself could not run: an invalid rule, an
 * unfinished run, a config that does not match the run, unreadable data or
 * model, or a broken registry. Free the outcome with ap_validate_outcome_free. */
ap_status ap_validate(const ap_validate_request *request, ap_validate_outcome *outcome,
                      ap_error *err);
void ap_validate_outcome_free(ap_validate_outcome *outcome);

#endif
