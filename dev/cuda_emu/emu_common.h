/* emu_common.h - the program both emulator stages build: a preset compiled
 * for EMU_SMS workers (several tiles per op, attention splits > 1). */
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
    const char *sms = getenv("EMU_SMS");   /* workers: tiles per op, attention splits */
    loom_compile_params cp = loom_compile_default_params(sms ? atoi(sms) : EMU_SMS);
    loom_program *p = NULL;

    mp.seed = seed;
    if (loom_model_from_preset(preset, mp, model) != LOOM_OK)
        return NULL;
    cp.graph.max_context = EMU_CTX;
    cp.graph.page_size = 16;
    cp.graph.record_logits = true;
    if (loom_compile(*model, cp, &p) != LOOM_OK)
        return NULL;
    return p;
}
