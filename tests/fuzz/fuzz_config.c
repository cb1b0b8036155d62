/* Fuzz the YAML config reader. A config that loads must survive the trip
 * through ap_config_to_yaml: the emitted text loads again to an equal config,
 * which is what a run folder's config.yaml relies on. */

#include <stdlib.h>
#include <string.h>

#include "pipeline/config/config.h"
#include "tests/fuzz/fuzz_support.h"

static ap_config parsed, reloaded;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *yaml = fuzz_text(data, size);
    ap_error err = {0};
    ap_status status = ap_config_load_string(yaml, "fuzz.yaml", &parsed, &err);
    free(yaml);
    fuzz_note("config: %s", status == AP_OK ? "loaded" : err.message);
    if (status != AP_OK) {
        FUZZ_REQUIRE(err.message[0] != '\0', "status %s without a message", ap_status_name(status));
        return 0;
    }

    ap_error validate_err = {0};
    if (ap_config_validate(&parsed, &validate_err) != AP_OK)
        FUZZ_REQUIRE(validate_err.message[0] != '\0', "validation failed without a message");

    char *emitted = ap_config_to_yaml(&parsed);
    FUZZ_REQUIRE(emitted != NULL, "ap_config_to_yaml returned NULL");
    status = ap_config_load_string(emitted, parsed.source_path, &reloaded, &err);
    FUZZ_REQUIRE(status == AP_OK, "the emitted config does not load (%s):\n%s", err.message,
                 emitted);
    FUZZ_REQUIRE(ap_config_equal(&parsed, &reloaded),
                 "the emitted config loads to other values:\n%s", emitted);
    free(emitted);
    return 0;
}
