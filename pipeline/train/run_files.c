#include "pipeline/train/run_files.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/config/config.h"

/* A bound on the numbered logs to look through, far above any real count. */
#define MAX_SET_ASIDE_LOGS 100000

ap_status ap_run_set_aside_log(const char *run_dir, char *moved_to, size_t moved_to_size,
                               ap_error *err)
{
    moved_to[0] = '\0';
    char path[AP_PATH_MAX + 64];
    ap_status status = ap_path_join(path, sizeof(path), run_dir, AP_RUN_LOG_FILE, err);
    if (status != AP_OK)
        return status;
    struct stat info;
    if (stat(path, &info) != 0 || info.st_size == 0)
        return AP_OK;
    for (int number = 1; number <= MAX_SET_ASIDE_LOGS; number++) {
        char candidate[AP_PATH_MAX + 80];
        snprintf(candidate, sizeof(candidate), "%s.%d", path, number);
        if (ap_path_exists(candidate))
            continue;
        if (rename(path, candidate) != 0)
            return ap_error_set(
                err, AP_ERR_IO,
                "cannot rename %s to %s: %s; check the permissions of the run folder", path,
                candidate, strerror(errno));
        snprintf(moved_to, moved_to_size, "%s", candidate);
        return AP_OK;
    }
    return ap_error_set(err, AP_ERR_LIMIT,
                        "%s.1 to %s.%d all exist; move the old logs out of the run folder", path,
                        path, MAX_SET_ASIDE_LOGS);
}
