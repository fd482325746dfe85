/* emu_common.h - the program both emulator stages build: a preset compiled
 * for EMU_SMS workers (several tiles per op) with EMU_SPLIT KV splits per
 * attention group, by default EMU_SMS / 2 (the tiny presets have 2 KV
 * heads): 4 at the default 8 workers, so ATTENTION writes partials and
 * their merge runs (by the last tile of each group, or with
 * LOOM_ATTN_MERGE=1 an ATTN_MERGE op), which the compiler's own choice
 * leaves out at a context this short; 1 at EMU_SMS=2, the normalised-output
 * path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "core/error.h"

#define EMU_SMS 8
#define EMU_CTX 64

static loom_program *emu_program(const char *preset, uint64_t seed, loom_model **model)
{
    loom_model_params mp = loom_model_default_params();
    const char *sms = getenv("EMU_SMS"), *split = getenv("EMU_SPLIT");
    int n_sms = sms ? atoi(sms) : EMU_SMS;
    loom_compile_params cp = loom_compile_default_params(n_sms);
    loom_program *p = NULL;

    mp.seed = seed;
    if (loom_model_from_preset(preset, mp, model) != LOOM_OK)
        return NULL;
    cp.graph.max_context = EMU_CTX;
    cp.graph.page_size = 16;
    cp.graph.record_logits = true;
    cp.graph.attn_split = split ? atoi(split) : (n_sms / 2 > 16 ? 16 : n_sms / 2);
    if (cp.graph.attn_split < 1)
        cp.graph.attn_split = 1;
    if (loom_compile(*model, cp, &p) != LOOM_OK)
        return NULL;
    return p;
}
