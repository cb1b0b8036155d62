#ifndef APIARY_STORE_STORE_INTERNAL_H
#define APIARY_STORE_STORE_INTERNAL_H

/* Helpers shared by the files of pipeline/store. */

#include "pipeline/store/store.h"

#define STORE_SYNC_RECORD ".apiary-sync.json"
#define STORE_SYNC_LOCK   ".apiary-sync.lock"

/* The local folder for uri under store.cache_dir/AREA/BUCKET/PREFIX. */
ap_status store_cache_folder(const ap_config *cfg, const char *area, const ap_store_uri *uri,
                             char out[AP_PATH_MAX], ap_error *err);

#endif
