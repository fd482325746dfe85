/* api_internal.h - engine internals the CLI and tests may look at. */
#ifndef LOOM_API_INTERNAL_H
#define LOOM_API_INTERNAL_H

#include "compiler/program.h"
#include "loom.h"

/* The compiled program behind an engine (valid until loom_engine_free). */
const loom_program *loom_engine_program(const loom_engine *engine);

#endif
