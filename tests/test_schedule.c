/* test_schedule.c - partition and schedule: every task on exactly one SM
 * list, same-SM dependencies in order, tiles as the partition promises,
 * positive estimates, the printout. */
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "harness.h"

static loom_model *load(const char *name)
{
    loom_model *m = NULL;
    loom_model_params mp = loom_model_default_params();

    mp.seed = loom_test_seed();
    CHECK_OK(loom_model_from_preset(name, mp, &m));
    return m;
}

/* Every task exactly once; same-SM producers before their consumers.
 * Returns the number of problems found. */
static int check_lists(const loom_program *p, const char *what)
{
    int32_t *sm = malloc((size_t)p->n_tasks * sizeof *sm);
    int32_t *pos = malloc((size_t)p->n_tasks * sizeof *pos);
    int bad = 0;

    for (int32_t k = 0; k < p->n_tasks; k++)
        sm[k] = -1;
    CHECK(p->sm_offset[0] == 0 && p->sm_offset[p->n_sms] == p->n_tasks, "%s: offsets", what);
    for (int32_t s = 0; s < p->n_sms; s++)
        for (int32_t i = p->sm_offset[s]; i < p->sm_offset[s + 1]; i++) {
            int32_t k = p->sm_tasks[i];
            if (k < 0 || k >= p->n_tasks || sm[k] >= 0) {
                bad++;
                continue;
            }
            sm[k] = s;
            pos[k] = i;
        }
    for (int32_t k = 0; k < p->n_tasks; k++)
        bad += sm[k] < 0;
    CHECK(bad == 0, "%s: %d tasks missing or listed twice", what, bad);
    for (int32_t k = 0; k < p->n_tasks && bad == 0; k++) {
        const loom_task *t = &p->tasks[k];
        for (int32_t w = 0; w < t->n_waits; w++) {
            if (t->waits[w].step_offset != 0)
                continue;
            for (int32_t q = 0; q < p->n_tasks; q++)
                if (p->tasks[q].signal == t->waits[w].counter && sm[q] == sm[k] &&
                    pos[q] >= pos[k])
                    bad++;
        }
    }
    CHECK(bad == 0, "%s: %d same-SM dependencies out of order", what, bad);
    /* a task reading its input with no counter: on that input's SM, after it */
    int local = 0;
    for (int32_t k = 0; k < p->n_tasks; k++) {
        int32_t q = loom_task_local_input(p, k);
        local += q >= 0 && (sm[q] != sm[k] || pos[q] >= pos[k]);
    }
    CHECK(local == 0, "%s: %d tasks not after their local input on its SM", what, local);
    bad += local;
    free(sm);
    free(pos);
    return bad;
}

/* Tiles: cover each op's rows exactly, qkv within groups, gate_up even,
 * estimates positive. */
static void check_tiles(const loom_program *p, const char *what, int32_t max_kb)
{
    const loom_graph *g = p->graph;
    const loom_config *c = &g->cfg;
    int64_t per = (c->n_heads / c->n_kv_heads + 2) * c->head_dim;
    int32_t next_row = 0, bad = 0;

    for (int32_t k = 0; k < p->n_tasks; k++) {
        const loom_task *t = &p->tasks[k];
        const loom_op *o = &g->ops[t->op];
        bad += !(t->est_us > 0) || t->bytes == 0;
        if (o->kind != LOOM_OP_LINEAR)
            continue;
        if (t->tile == 0)
            next_row = 0;
        bad += t->row_begin != next_row || t->row_end <= t->row_begin;
        next_row = t->row_end;
        if (t->tile == o->n_tiles - 1)
            bad += t->row_end != o->rows;
        if (strcmp(o->name, "qkv") == 0)
            bad += t->row_begin / per != (t->row_end - 1) / per;
        if (o->epi == LOOM_EPI_SILU_MUL)
            bad += (t->row_end - t->row_begin) % 2 != 0;
        int32_t in = loom_task_local_input(p, k);
        if (o->epi == LOOM_EPI_ACCUM)   /* gate_up's tile of its index, halved */
            bad += in < 0 || p->tasks[in].row_begin != 2 * t->row_begin ||
                   p->tasks[in].row_end != 2 * t->row_end;
        if (max_kb > 0 && o->n_tiles >= p->n_sms)   /* LOOM_TILE_MAX_KB */
            bad += (uint64_t)(t->row_end - t->row_begin) * o->cols * 2 >
                       (uint64_t)max_kb * 1024 &&
                   t->row_end - t->row_begin > 1 + (o->epi == LOOM_EPI_SILU_MUL);
    }
    CHECK(bad == 0, "%s: %d bad tiles", what, bad);
    CHECK(p->est_step_us > 0 && p->est_critical_us > 0 &&
          p->est_critical_us <= p->est_step_us * (1 + 1e-9),
          "%s: est step %g us, critical %g us", what, p->est_step_us, p->est_critical_us);
}

static void test_lists_and_tiles(void)
{
    static const char *names[] = {"qwen3-tiny", "qwen2-tiny", "llama-tiny"};
    static const int32_t sms[] = {1, 3, 8, 132};
    char what[64];

    for (int i = 0; i < 3; i++) {
        loom_model *m = load(names[i]);
        if (!m)
            continue;
        for (int j = 0; j < 8; j++) {   /* the MLP as graph.h mlp_fuse 1, then 2 */
            loom_program *p = NULL;
            loom_compile_params cp = loom_compile_default_params(sms[j % 4]);
            cp.graph.mlp_fuse = 1 + j / 4;
            CHECK_OK(loom_compile(m, cp, &p));
            if (!p)
                continue;
            snprintf(what, sizeof what, "%s at %d SMs, mlp_fuse %d", names[i], sms[j % 4],
                     cp.graph.mlp_fuse);
            check_lists(p, what);
            check_tiles(p, what, 0);
            loom_program_free(p);
        }
        loom_model_free(m);
    }
}

static void test_big_preset(void)
{
    loom_model *m = load("qwen3-0.6b");
    loom_program *p = NULL;

    if (!m)
        return;
    CHECK_OK(loom_compile(m, loom_compile_default_params(132), &p));
    if (p) {
        check_lists(p, "qwen3-0.6b");
        check_tiles(p, "qwen3-0.6b", 0);
        /* one tile per SM and linear op (qkv: 16 per KV group of 8) */
        for (int32_t i = 0; i < p->graph->n_ops; i++) {
            const loom_op *o = &p->graph->ops[i];
            if (o->kind == LOOM_OP_LINEAR)
                CHECK(o->n_tiles == (strcmp(o->name, "qkv") ? 132 : 128), "%s (layer %d): %d tiles",
                      o->name, o->layer, o->n_tiles);
        }
        /* the schedule is no worse than all the work on one SM */
        double sum = 0;
        for (int32_t k = 0; k < p->n_tasks; k++)
            sum += p->tasks[k].est_us;
        CHECK(p->est_step_us < sum / 8, "step %g us vs %g us of work", p->est_step_us, sum);
    }
    loom_program_free(p);
    p = NULL;
    /* At 320 positions attention takes 8 x 5 SMs: o_proj runs on the other
     * 92, one tile each (partition.c loom_linear_after_attention) - none on
     * an SM with an attention tile of its layer; 132 tiles with
     * LOOM_AFTER_ATTN_TILES=0. */
    for (int off = 0; off < 2; off++) {
        loom_compile_params cp = loom_compile_default_params(132);
        cp.graph.max_context = 320;
        if (off)
            setenv("LOOM_AFTER_ATTN_TILES", "0", 1);
        CHECK_OK(loom_compile(m, cp, &p));
        unsetenv("LOOM_AFTER_ATTN_TILES");
        if (!p)
            continue;
        check_lists(p, "qwen3-0.6b at 320");
        check_tiles(p, "qwen3-0.6b at 320", 0);
        int32_t attn = -1, shared = 0, n_attn = 0;
        const loom_op *o = NULL;
        for (int32_t i = 0; i < p->graph->n_ops && !o; i++)
            if (p->graph->ops[i].kind == LOOM_OP_ATTENTION) {
                attn = i;
                n_attn = p->graph->ops[i].n_tiles;
                o = &p->graph->ops[i + 1];
            }
        if (!o)
            continue;
        CHECK(n_attn == 40 && strcmp(o->name, "o_proj") == 0 &&
                  o->n_tiles == (off ? 132 : 132 - n_attn),
              "off %d: %d attention tiles, then %s of %d tiles", off, n_attn, o->name,
              o->n_tiles);
        for (int32_t s = 0; s < p->n_sms; s++) {
            bool a = false, b = false;
            for (int32_t j = p->sm_offset[s]; j < p->sm_offset[s + 1]; j++) {
                a |= p->tasks[p->sm_tasks[j]].op == attn;
                b |= p->tasks[p->sm_tasks[j]].op == attn + 1;
            }
            shared += a && b;
        }
        CHECK(off || shared == 0, "%d SMs run layer 0's attention and o_proj", shared);
        loom_program_free(p);
        p = NULL;
    }
    /* LOOM_TILE_MAX_KB caps a tile's weights: lm_head then takes a multiple
     * of n_sms tiles, none over the cap */
    setenv("LOOM_TILE_MAX_KB", "256", 1);
    CHECK_OK(loom_compile(m, loom_compile_default_params(132), &p));
    unsetenv("LOOM_TILE_MAX_KB");
    if (p) {
        check_tiles(p, "qwen3-0.6b, 256 KB tiles", 256);
        const loom_op *lm = &p->graph->ops[p->graph->op_lm_head];
        CHECK(lm->n_tiles % 132 == 0 && lm->n_tiles > 132, "lm_head: %d tiles", lm->n_tiles);
    }
    loom_program_free(p);
    loom_model_free(m);
}

/* The checker catches a list with a consumer before its producer. */
static void test_checker_catches_misorder(void)
{
    loom_model *m = load("qwen3-tiny");
    loom_program *p = NULL;
    loom_compile_params cp = loom_compile_default_params(1);

    if (!m)
        return;
    cp.skip_verify = true;
    CHECK_OK(loom_compile(m, cp, &p));
    if (p) {
        int32_t t = p->sm_tasks[0];      /* embed, then L0.qkv[0] */
        p->sm_tasks[0] = p->sm_tasks[1];
        p->sm_tasks[1] = t;
        int failures = loom_test_failures;
        int bad = check_lists(p, "planted");
        loom_test_failures = failures;   /* the planted failure is expected */
        CHECK(bad > 0, "swapped embed and qkv not caught");
    }
    loom_program_free(p);
    loom_model_free(m);
}

static void test_names_and_print(void)
{
    loom_model *m = load("qwen3-tiny");
    loom_program *p = NULL;
    char name[64], *buf = NULL;
    size_t len = 0;

    if (!m)
        return;
    loom_compile_params cp = loom_compile_default_params(8);
    cp.graph.attn_split = 4;   /* split attention and a merge op, for their task names */
    cp.graph.attn_merge = 1;
    CHECK_OK(loom_compile(m, cp, &p));
    if (p) {
        bool attn = false, merge = false, lin = false;
        for (int32_t k = 0; k < p->n_tasks; k++) {
            loom_task_name(p, k, name, sizeof name);
            attn |= strcmp(name, "L1.attn[g1.s2]") == 0;
            merge |= strcmp(name, "L0.attn_merge[g1]") == 0;
            lin |= strcmp(name, "lm_head[5]") == 0;
        }
        CHECK(attn && merge && lin, "task names: attn %d merge %d lm_head %d", attn, merge, lin);
        FILE *f = open_memstream(&buf, &len);
        if (f) {
            loom_schedule_print(p, f);
            fclose(f);
            CHECK(buf && strstr(buf, "SM 7") && strstr(buf, "critical path") &&
                  strstr(buf, "argmax[0]") && strstr(buf, "total"), "schedule print");
            free(buf);
        }
    }
    loom_program_free(p);
    loom_model_free(m);
}

TEST_MAIN(TEST(test_lists_and_tiles), TEST(test_big_preset), TEST(test_checker_catches_misorder),
          TEST(test_names_and_print))
