/* error.c - loom_status strings and the thread-local last-error message. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOOM_ERROR_MAX 1024

static _Thread_local char last_error[LOOM_ERROR_MAX];

const char *loom_status_string(loom_status status)
{
    switch (status) {
    case LOOM_OK: return "LOOM_OK: success";
    case LOOM_ERR_INVALID_ARGUMENT: return "LOOM_ERR_INVALID_ARGUMENT: invalid argument";
    case LOOM_ERR_IO: return "LOOM_ERR_IO: input/output error";
    case LOOM_ERR_FORMAT: return "LOOM_ERR_FORMAT: malformed input";
    case LOOM_ERR_UNSUPPORTED: return "LOOM_ERR_UNSUPPORTED: not supported";
    case LOOM_ERR_OUT_OF_MEMORY: return "LOOM_ERR_OUT_OF_MEMORY: out of memory";
    case LOOM_ERR_LIMIT: return "LOOM_ERR_LIMIT: limit exceeded";
    case LOOM_ERR_VERIFY: return "LOOM_ERR_VERIFY: program failed verification";
    case LOOM_ERR_BACKEND: return "LOOM_ERR_BACKEND: backend failure";
    case LOOM_ERR_TIMEOUT: return "LOOM_ERR_TIMEOUT: counter wait timed out";
    case LOOM_ERR_NO_DEVICE: return "LOOM_ERR_NO_DEVICE: no usable GPU";
    }
    return "unknown loom_status";
}

const char *loom_last_error(void)
{
    return last_error;
}

void loom_clear_error(void)
{
    last_error[0] = '\0';
}

loom_status loom_fail(loom_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

loom_status loom_fail_context(loom_status status, const char *fmt, ...)
{
    char prefix[LOOM_ERROR_MAX], old[LOOM_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%s: %s", prefix, old);
    return status;
}
