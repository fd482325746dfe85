/* test_verifier.c - the static verifier accepts every compiled preset and
 * catches planted bugs: a missing dependency, a wrong threshold (both ways),
 * overlapping writes, a cyclic order (deadlock), a step race, a write
 * racing an earlier step's read, and in an attention merged by its last
 * tile: a consumer not waiting for the merge, miscounted arrivals. */
#include <stdlib.h>
#include <string.h>

#include "compiler/program.h"
#include "harness.h"

static loom_model *load(const char *name)
{
    loom_model *m = NULL;
    loom_model_params mp = loom_model_default_params();

    mp.seed = loom_test_seed();
    CHECK_OK(loom_model_from_preset(name, mp, &m));
    return m;
}

static loom_program *compile_unverified(loom_model *m, int32_t n_sms)
{
    loom_compile_params cp = loom_compile_default_params(n_sms);
    loom_program *p = NULL;

    cp.skip_verify = true;
    CHECK_OK(loom_compile(m, cp, &p));
    return p;
}

static int32_t find_task(const loom_program *p, int32_t layer, const char *op, int32_t tile)
{
    for (int32_t k = 0; k < p->n_tasks; k++) {
        const loom_op *o = &p->graph->ops[p->tasks[k].op];
        if (o->layer == layer && strcmp(o->name, op) == 0 && p->tasks[k].tile == tile)
            return k;
    }
    return -1;
}

static int32_t sm_of(const loom_program *p, int32_t task, int32_t *pos)
{
    for (int32_t s = 0; s < p->n_sms; s++)
        for (int32_t i = p->sm_offset[s]; i < p->sm_offset[s + 1]; i++)
            if (p->sm_tasks[i] == task) {
                *pos = i;
                return s;
            }
    return -1;
}

/* loom_verify must fail with LOOM_ERR_VERIFY and a message holding each of
 * the given strings. */
static void expect_fail(const loom_program *p, const char *what, const char *s1,
                        const char *s2)
{
    loom_status st = loom_verify(p);
    const char *msg = loom_last_error();

    CHECK(st == LOOM_ERR_VERIFY, "%s: verify returned %d, expected LOOM_ERR_VERIFY", what, st);
    CHECK(strstr(msg, s1), "%s: message lacks '%s': %s", what, s1, msg);
    CHECK(!s2 || strstr(msg, s2), "%s: message lacks '%s': %s", what, s2, msg);
    printf("  %s -> %s\n", what, msg);
}

static void test_tiny_presets_pass(void)
{
    static const char *names[] = {"qwen3-tiny", "qwen2-tiny", "llama-tiny"};
    static const int32_t sms[] = {1, 2, 3, 8, 132};

    for (int i = 0; i < 3; i++) {
        loom_model *m = load(names[i]);
        if (!m)
            continue;
        for (int j = 0; j < 5; j++) {
            loom_compile_params cp = loom_compile_default_params(sms[j]);
            loom_program *p = NULL;
            loom_status st = loom_compile(m, cp, &p);
            CHECK(st == LOOM_OK, "%s at %d SMs: %s", names[i], sms[j], loom_last_error());
            loom_program_free(p);
            /* no split attention, batch 2, recorded logits, short context */
            cp.graph.attn_split = 1;
            cp.graph.max_batch = 2;
            cp.graph.max_context = 2;
            cp.graph.page_size = 1;
            st = loom_compile(m, cp, &p);
            CHECK(st == LOOM_OK, "%s at %d SMs, split 1, batch 2: %s", names[i], sms[j],
                  loom_last_error());
            loom_program_free(p);
            cp = loom_compile_default_params(sms[j]);
            cp.graph.max_batch = 3;
            cp.graph.page_size = 7;
            st = loom_compile(m, cp, &p);
            CHECK(st == LOOM_OK, "%s at %d SMs, batch 3, page 7: %s", names[i], sms[j],
                  loom_last_error());
            loom_program_free(p);
            cp = loom_compile_default_params(sms[j]);
            cp.graph.record_logits = true;
            cp.graph.attn_split = 3;
            cp.graph.page_size = 16;
            st = loom_compile(m, cp, &p);
            CHECK(st == LOOM_OK, "%s at %d SMs, logits, split 3: %s", names[i], sms[j],
                  loom_last_error());
            loom_program_free(p);
            for (int32_t merge = 1; merge <= 2; merge++) {   /* op, attention */
                cp.graph.attn_merge = merge;
                cp.graph.max_batch = merge;
                cp.graph.record_logits = merge == 1;
                st = loom_compile(m, cp, &p);
                CHECK(st == LOOM_OK, "%s at %d SMs, split 3, merge %d: %s", names[i], sms[j],
                      merge, loom_last_error());
                loom_program_free(p);
            }
        }
        loom_model_free(m);
    }
}

static void test_big_presets_pass(void)
{
    static const char *names[] = {"qwen3-0.6b", "qwen3-1.7b", "llama-3.2-1b", "qwen3-8b"};

    for (int i = 0; i < 4; i++) {
        loom_model *m = load(names[i]);
        loom_program *p = NULL;
        if (!m)
            continue;
        loom_compile_params cp = loom_compile_default_params(132);
        loom_status st = loom_compile(m, cp, &p);
        CHECK(st == LOOM_OK, "%s at 132 SMs: %s", names[i], loom_last_error());
        loom_program_free(p);
        cp.graph.attn_merge = 1;   /* merged by an op */
        st = loom_compile(m, cp, &p);
        CHECK(st == LOOM_OK, "%s at 132 SMs, merge op: %s", names[i], loom_last_error());
        loom_program_free(p);
        loom_model_free(m);
    }
}

/* Removing o_proj's wait on the attention merge: it may read attn_out
 * before the merge of another SM wrote it. */
static void test_missing_dependency(void)
{
    loom_model *m = load("qwen3-tiny");
    loom_program *p = m ? compile_unverified(m, 8) : NULL;

    if (!p)
        goto out;
    CHECK_OK(loom_verify(p));
    int32_t k = find_task(p, 1, "o_proj", 5);
    CHECK(k >= 0 && p->tasks[k].n_waits == 1, "L1.o_proj[5] with one wait");
    if (k < 0)
        goto out;
    p->tasks[k].n_waits = 0;
    expect_fail(p, "missing dependency", "missing dependency", "L1.o_proj[5]");
out:
    loom_program_free(p);
    loom_model_free(m);
}

static void test_wrong_threshold(void)
{
    loom_model *m = load("qwen2-tiny");
    loom_program *p = m ? compile_unverified(m, 8) : NULL;

    if (!p)
        goto out;
    int32_t k = find_task(p, 0, "gate_up", 2);
    CHECK(k >= 0, "L0.gate_up[2]");
    if (k < 0)
        goto out;
    p->tasks[k].waits[0].needed -= 1;
    expect_fail(p, "threshold - 1", "wrong threshold", "L0.gate_up[2]");
    p->tasks[k].waits[0].needed += 2;
    expect_fail(p, "threshold + 1", "wrong threshold", "L0.o_proj");
    p->tasks[k].waits[0].needed -= 1;
    CHECK_OK(loom_verify(p));
out:
    loom_program_free(p);
    loom_model_free(m);
}

/* Widening a tile's rows into its neighbour's: two unordered writers. */
static void test_overlapping_write(void)
{
    loom_model *m = load("llama-tiny");
    loom_program *p = m ? compile_unverified(m, 8) : NULL;

    if (!p)
        goto out;
    int32_t k = find_task(p, 0, "down", 3);
    CHECK(k >= 0, "L0.down[3]");
    if (k < 0)
        goto out;
    p->tasks[k].row_end += 1;
    expect_fail(p, "overlapping write", "overlapping writes", "L0.down[3]");
out:
    loom_program_free(p);
    loom_model_free(m);
}

/* The fused MLP (graph.h mlp_fuse 2) verifies at every SM count; then: a
 * down tile reading one act row of the next gate_up tile (another SM, no
 * counter); o_proj not writing the sum's first term; a down tile moved
 * to another SM's list (its input then unordered). */
static void test_fused_mlp(void)
{
    static const int32_t sms[] = {1, 3, 8, 132};
    loom_model *m = load("qwen3-tiny");
    loom_program *p = NULL;

    if (!m)
        return;
    for (int j = 0; j < 4; j++) {
        loom_compile_params cp = loom_compile_default_params(sms[j]);
        cp.graph.mlp_fuse = 2;
        CHECK(loom_compile(m, cp, &p) == LOOM_OK, "fused at %d SMs: %s", sms[j],
              loom_last_error());
        loom_program_free(p);
        p = NULL;
    }
    loom_compile_params cp = loom_compile_default_params(8);
    cp.graph.mlp_fuse = 2;
    cp.skip_verify = true;
    CHECK_OK(loom_compile(m, cp, &p));
    int32_t k = p ? find_task(p, 1, "down", 2) : -1, pos, pos2;
    CHECK(k >= 0 && p->tasks[k].n_waits == 0, "L1.down[2], no wait");
    if (k < 0)
        goto out;
    CHECK_OK(loom_verify(p));
    p->tasks[k].row_end += 1;
    expect_fail(p, "a row of the next gate_up tile", "missing dependency", "L1.gate_up[3]");
    p->tasks[k].row_end -= 1;
    int32_t o = p->tasks[k].op - 2;
    CHECK(!strcmp(p->graph->ops[o].name, "o_proj"), "o_proj two ops before down");
    p->graph->ops[o].aux = -1;
    expect_fail(p, "no first term", "that no task wrote", "L1.down[");
    p->graph->ops[o].aux = p->graph->ops[o + 2].y;
    CHECK_OK(loom_verify(p));
    /* swap L1.down[2] with L1.down[5] in the lists: each after another
     * SM's gate_up tile */
    int32_t k2 = find_task(p, 1, "down", 5), s1 = sm_of(p, k, &pos), s2 = sm_of(p, k2, &pos2);
    CHECK(s1 >= 0 && s2 >= 0 && s1 != s2, "L1.down[2] and [5] on SMs %d and %d", s1, s2);
    if (s1 < 0 || s2 < 0 || s1 == s2)
        goto out;
    p->sm_tasks[pos] = k2;
    p->sm_tasks[pos2] = k;
    expect_fail(p, "down tiles on other SMs", "missing dependency", "L1.gate_up[");
out:
    loom_program_free(p);
    loom_model_free(m);
}

/* Moves a consumer in front of its producer on the same SM: a cycle. */
static void test_cyclic_order(void)
{
    static const int32_t sms[] = {1, 8};

    for (int j = 0; j < 2; j++) {
        loom_model *m = load("qwen3-tiny");
        loom_program *p = m ? compile_unverified(m, sms[j]) : NULL;
        int32_t prod = -1, cons = -1, pp = -1, pc = -1;
        if (!p)
            goto next;
        /* the first attention task that shares its SM with the first qkv
         * producer of the counter it waits on */
        for (int32_t k = 0; k < p->n_tasks && cons < 0; k++) {
            const loom_task *t = &p->tasks[k];
            if (p->graph->ops[t->op].kind != LOOM_OP_ATTENTION)
                continue;
            for (int32_t q = 0; q < p->n_tasks; q++) {
                if (p->tasks[q].signal != t->waits[0].counter)
                    continue;
                int32_t s1 = sm_of(p, q, &pp), s2 = sm_of(p, k, &pc);
                if (s1 == s2) {
                    prod = q;
                    cons = k;
                }
                break;
            }
        }
        CHECK(cons >= 0, "%d SMs: no producer/consumer pair on one SM", sms[j]);
        if (cons < 0)
            goto next;
        /* rotate the consumer to the producer's place */
        memmove(&p->sm_tasks[pp + 1], &p->sm_tasks[pp], (size_t)(pc - pp) * sizeof(int32_t));
        p->sm_tasks[pp] = cons;
        char name[64];
        loom_task_name(p, cons, name, sizeof name);
        expect_fail(p, "cyclic order", "deadlock", name);
        (void)prod;
next:
        loom_program_free(p);
        loom_model_free(m);
    }
}

/* Rebuilds the SM lists from an SM per task, each list in program order. */
static void reassign(loom_program *p, const int32_t *sm)
{
    int32_t i = 0;

    for (int32_t s = 0; s < p->n_sms; s++) {
        p->sm_offset[s] = i;
        for (int32_t k = 0; k < p->n_tasks; k++)
            if (sm[k] == s)
                p->sm_tasks[i++] = k;
    }
    p->sm_offset[p->n_sms] = i;
}

/* embed without its wait on the previous step's argmax, argmax on another
 * SM: step 1's embed may read its token before step 0's argmax wrote it. */
static void test_step_race(void)
{
    loom_model *m = load("qwen3-tiny");
    loom_program *p = m ? compile_unverified(m, 3) : NULL;
    int32_t *sm = NULL, pos;

    if (!p)
        goto out;
    int32_t k = find_task(p, -1, "embed", 0), a = find_task(p, -1, "argmax", 0);
    CHECK(k >= 0 && a >= 0 && p->tasks[k].n_waits == 1, "embed[0] with one wait, argmax");
    sm = malloc((size_t)p->n_tasks * sizeof *sm);
    if (k < 0 || a < 0 || !sm)
        goto out;
    for (int32_t t = 0; t < p->n_tasks; t++)
        sm[t] = sm_of(p, t, &pos);
    sm[a] = (sm[k] + 1) % p->n_sms;
    reassign(p, sm);
    CHECK_OK(loom_verify(p));
    p->tasks[k].waits[0].step_offset = 0;   /* waits on its own step's argmax */
    expect_fail(p, "same-step wait on argmax", "deadlock", "argmax");
    p->tasks[k].waits[0].step_offset = -1;
    p->tasks[k].n_waits = 0;
    expect_fail(p, "step race", "embed[0]", "step 1");
out:
    free(sm);
    loom_program_free(p);
    loom_model_free(m);
}

/* A write of step k+1 racing reads of step k: argmax stops writing tokens
 * (the host would), so embed needs no wait to read them; embed alone on
 * SM 2 and without its wait on argmax, step 1's embed may overwrite
 * layers.0.x while step 0's qkv tiles on SMs 0 and 1 still read it. */
static void test_write_after_read(void)
{
    loom_model *m = load("llama-tiny");
    loom_program *p = m ? compile_unverified(m, 3) : NULL;
    int32_t *sm = NULL, pos;

    if (!p)
        goto out;
    int32_t k = find_task(p, -1, "embed", 0);
    CHECK(k >= 0 && p->tasks[k].n_waits == 1, "embed[0] with one wait");
    sm = malloc((size_t)p->n_tasks * sizeof *sm);
    if (k < 0 || !sm)
        goto out;
    for (int32_t t = 0; t < p->n_tasks; t++) {
        sm[t] = sm_of(p, t, &pos);
        sm[t] = t == k ? 2 : sm[t] == 2 ? 1 : sm[t];
    }
    reassign(p, sm);
    p->graph->ops[p->graph->op_argmax].y = -1;
    CHECK_OK(loom_verify(p));
    p->tasks[k].n_waits = 0;
    expect_fail(p, "write after read", "write-after-read race", "embed[0]");
out:
    free(sm);
    loom_program_free(p);
    loom_model_free(m);
}

/* A split attention merged by the last tile of each group to arrive
 * (program.h arrive): the merge is checked as an instance of its own. */
static void test_merge_by_last_tile(void)
{
    loom_model *m = load("qwen3-tiny");
    loom_compile_params cp = loom_compile_default_params(8);
    loom_program *p = NULL;

    if (!m)
        return;
    cp.skip_verify = true;
    cp.graph.attn_split = 3;
    cp.graph.attn_merge = 2;
    CHECK_OK(loom_compile(m, cp, &p));
    if (!p)
        goto out;
    CHECK_OK(loom_verify(p));
    int32_t a = find_task(p, 1, "attn", 4), o = find_task(p, 1, "o_proj", 5);
    CHECK(a >= 0 && o >= 0 && p->tasks[a].arrive >= 0 && p->tasks[o].n_waits == 1,
          "L1.attn[4] arriving, L1.o_proj[5] with one wait");
    if (a < 0 || o < 0 || p->tasks[a].arrive < 0)
        goto out;
    /* o_proj may read the merged heads before the merge wrote them */
    p->tasks[o].n_waits = 0;
    expect_fail(p, "no wait on the merge", "missing dependency", "the merge of group");
    p->tasks[o].n_waits = 1;
    /* a tile that does not arrive signals on its own: one signal too many */
    int32_t arrive = p->tasks[a].arrive;
    p->tasks[a].arrive = -1;
    expect_fail(p, "a tile not arriving", "signals per step", "L1.attn");
    /* a tile of group 1 arriving at group 0's counter */
    p->tasks[a].arrive = arrive - p->tasks[a].group;
    expect_fail(p, "arriving at another group's counter", "signals per step", ".arrive.g");
    p->tasks[a].arrive = arrive;
    /* the last arrival one too early: its merge reads a partial unwritten */
    p->counters[arrive].signals--;
    expect_fail(p, "an arrival counted short", "signals per step", ".arrive.g");
    p->counters[arrive].signals++;
    CHECK_OK(loom_verify(p));
out:
    loom_program_free(p);
    loom_model_free(m);
}

TEST_MAIN(TEST(test_tiny_presets_pass), TEST(test_big_presets_pass),
          TEST(test_merge_by_last_tile), TEST(test_fused_mlp), TEST(test_missing_dependency),
          TEST(test_wrong_threshold),
          TEST(test_overlapping_write), TEST(test_cyclic_order), TEST(test_step_race),
          TEST(test_write_after_read))
