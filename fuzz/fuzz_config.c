/* fuzz_config.c - libFuzzer target for loom_config_parse.
 *
 * An accepted config must validate, serialise, and parse back to a config
 * that serialises to the same text (to_json -> parse round trip).
 * Seeds: fuzz/corpus/config. */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_config c, back;
    char *a = NULL, *b = NULL;

    if (loom_config_parse("fuzz.json", (const char *)data, size, &c) != LOOM_OK) {
        if (!loom_last_error()[0])
            abort();
        return 0;
    }
    if (loom_config_validate("fuzz.json", &c) != LOOM_OK ||
        loom_config_to_json(&c, &a) != LOOM_OK ||
        loom_config_parse("round-trip", a, strlen(a), &back) != LOOM_OK ||
        loom_config_to_json(&back, &b) != LOOM_OK || strcmp(a, b) != 0 ||
        memcmp(&c.rms_norm_eps, &back.rms_norm_eps, sizeof c.rms_norm_eps) != 0 ||
        memcmp(&c.rope_theta, &back.rope_theta, sizeof c.rope_theta) != 0)
        abort();
    free(a);
    free(b);
    return 0;
}
