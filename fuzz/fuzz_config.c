/* Fuzz target: the configuration loader (batch/config.h config_load_json) on a JSON document read
 * as config_load_file reads one (duplicate keys refused); relative paths resolve under a
 * directory that does not exist, so nothing outside is touched. */
#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL)
        return 0;
    error_list errors = {0};
    config *cfg = config_load_json(doc, "/nonexistent/hsmenroll-fuzz", "fuzz.json", &errors);
    json_decref(doc);
    config_free(cfg);
    error_list_free(&errors);
    return 0;
}
