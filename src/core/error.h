/* error.h - the thread-local last-error message behind loom_last_error().
 *
 * Library code reports a failure as
 *     return loom_fail(LOOM_ERR_FORMAT, "%s: tensor '%s': ...", path, name);
 * which formats the message (naming the file, tensor, token or limit at
 * fault) and returns the status, so one line both records and propagates. */
#ifndef LOOM_CORE_ERROR_H
#define LOOM_CORE_ERROR_H

#include "loom.h"

#if defined(__GNUC__)
#define LOOM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LOOM_PRINTF(a, b)
#endif

/* Sets the message and returns status. */
loom_status loom_fail(loom_status status, const char *fmt, ...) LOOM_PRINTF(2, 3);

/* Prefixes the current message with "context: " and returns status, for
 * callers adding where a lower-level failure happened. */
loom_status loom_fail_context(loom_status status, const char *fmt, ...) LOOM_PRINTF(2, 3);

void loom_clear_error(void);

#endif
