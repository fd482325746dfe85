/* harness.h - the tests' small checking vocabulary.
 *
 * CHECK(cond, fmt, ...) records a failure with file:line and the message and
 * goes on; TEST_MAIN runs the listed test functions and prints the closing
 * line "N passed, N failed" that CI reads. A test binary exits 0 only when
 * nothing failed; 77 means skipped (no GPU), which ctest reports as skipped. */
#ifndef LOOM_TEST_HARNESS_H
#define LOOM_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/backend.h"
#include "loom.h"

extern int loom_test_failures;   /* failed CHECKs in the current test */

void loom_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) loom_test_fail(__FILE__, __LINE__, __VA_ARGS__);      \
    } while (0)

/* Checks a call returns LOOM_OK; prints loom_last_error() otherwise. */
#define CHECK_OK(call)                                                     \
    do {                                                                   \
        loom_status st_ = (call);                                          \
        if (st_ != LOOM_OK)                                                \
            loom_test_fail(__FILE__, __LINE__, "%s -> %s: %s", #call,      \
                           loom_status_string(st_), loom_last_error());    \
    } while (0)

typedef struct loom_test_case {
    const char *name;
    void (*fn)(void);
} loom_test_case;

/* Runs cases, prints one line per case and the closing count line. */
int loom_test_run(const char *suite, const loom_test_case *cases, int n);

#define TEST_MAIN(...)                                                     \
    int main(void)                                                         \
    {                                                                      \
        static const loom_test_case cases_[] = {__VA_ARGS__};              \
        return loom_test_run(__FILE__, cases_,                             \
                             (int)(sizeof cases_ / sizeof cases_[0]));     \
    }
#define TEST(fn) {#fn, fn}

/* One line of a corpus manifest (tab-separated): the file, the loom_status
 * name it must be rejected with, and a substring its message must hold. */
typedef struct loom_test_expect {
    char file[128];
    char status[64];
    char substring[512];
} loom_test_expect;

/* Reads up to max entries of a manifest ('#' lines and blank lines are
 * skipped); returns how many, or -1 when the file cannot be opened. */
int loom_test_read_manifest(const char *path, loom_test_expect *out, int max);

/* The checker of a rejection: status name, message substring and path all as
 * expected. On a mismatch, why says what differs. */
bool loom_test_rejection_matches(const loom_test_expect *x, const char *path, loom_status got,
                                 const char *msg, char *why, size_t cap);

/* splitmix64: the tests' random numbers (seed them from loom_test_seed()). */
uint64_t loom_test_rng_next(uint64_t *state);

/* n token ids in [0, vocab), deterministic in seed. */
void loom_test_random_tokens(uint64_t seed, int32_t vocab, int32_t *tok, int n);

/* A backend run request: prompt fed one token per step for n_steps steps,
 * generated tokens to out, recorded logits to logits (may be NULL). */
loom_run_request loom_test_request(const int32_t *prompt, int32_t n_prompt, int32_t n_steps,
                                   int32_t *out, float *logits);

/* A fresh temporary directory (mkdtemp under $TMPDIR); caller removes it
 * with loom_test_rmtree. */
char *loom_test_tmpdir(void);
void loom_test_rmtree(const char *path);
/* Random seed for this run: $LOOM_TEST_SEED or drawn from time and pid;
 * printed so that a failure can be repeated. */
uint64_t loom_test_seed(void);

#endif
