#ifndef APIARY_PROMOTE_PROMOTE_H
#define APIARY_PROMOTE_PROMOTE_H

#include <stdbool.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

/* Promotion of a validated run into the model registry. */

typedef struct {
    const ap_config *cfg;
    const char *alias;  /* alias to move; NULL means "champion" */
    bool force;         /* move the alias although the gate failed */
    const char *reason; /* operator reason, required with force */
} ap_promote_request;

typedef struct {
    bool passed;       /* the run's validation report passed the gate */
    bool blocked;      /* nothing was registered: the gate failed and force was not set */
    bool reused;       /* the registry already held these weights */
    int version;       /* registered version, 0 when blocked */
    int previous;      /* version the alias pointed at before, 0 when none */
    bool alias_moved;
    /* Path of the run's report.md, or of report.json when there is no
     * report.md. Empty when the run folder lacks its model or report. */
    char report_path[AP_PATH_MAX + 32];
} ap_promote_outcome;

/* Register the run's model, card and reports as a version and move the alias
 * to it when the report passed and names the exact model file (SHA-256).
 * A failed gate blocks everything unless forced with a reason. Running it
 * again for the same run reuses the version holding the same weights. The
 * outcome is also written to the run folder as promotion.json. */
ap_status ap_promote(const ap_promote_request *request, ap_promote_outcome *outcome,
                     ap_error *err);

#endif
