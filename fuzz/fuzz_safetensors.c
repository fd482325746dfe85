/* fuzz_safetensors.c - libFuzzer target for loom_st_parse.
 *
 * Any input must be either rejected with a message or accepted as a file
 * whose every entry lies inside the data buffer; ASan/UBSan catch the rest.
 * Each input is parsed twice: as a whole file, and as "header text, then
 * data" (split after the last '}', with the length prefix made up), so the
 * fuzzer reaches the JSON checks without having to guess the prefix.
 * Seeds: fuzz/corpus/safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one(const uint8_t *data, size_t size)
{
    loom_st_file f;
    volatile uint8_t sink = 0;

    if (loom_st_parse("fuzz.safetensors", data, size, &f) != LOOM_OK) {
        if (!loom_last_error()[0])
            abort();                    /* a failure must say why */
        return;
    }
    for (int32_t i = 0; i < f.n_entries; i++) {
        const loom_st_entry *e = &f.entries[i];
        if (e->end > f.data_size || e->begin > e->end || loom_st_find(&f, e->name) == NULL)
            abort();
        if (e->end > e->begin)          /* touch both ends: ASan checks bounds */
            sink ^= f.data[e->begin] ^ f.data[e->end - 1];
        if (i && f.entries[i - 1].end != e->begin)
            abort();
    }
    (void)sink;
    loom_st_close(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t hlen = size;
    uint8_t *file;

    check_one(data, size);
    while (hlen && data[hlen - 1] != '}')
        hlen--;
    file = malloc(size + 8);
    if (!file)
        return 0;
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    if (size)
        memcpy(file + 8, data, size);
    check_one(file, size + 8);
    free(file);
    return 0;
}
