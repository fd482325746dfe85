// embed.cuh - EMBED: y[c] = embed[tokens[step], c] for the tile's columns.
//
// defines: embed_task
#pragma once

template <int COLS>
__device__ __forceinline__ void embed_task(const loom_kparams &p, const loom_dop &d,
                                           const loom_dtask *t, int step)
{
    const int token = ldcg_i32((const int *)p.tokens + step);
    const bf16raw *row = (const bf16raw *)d.w + (u64)token * COLS;
    const u32 tag = ll_tag(p, step);

    for (int c = t->row_begin + threadIdx.x; c < t->row_end; c += LOOM_THREADS)
        st_act(d.y, c, bf16_to_f32(row[c]), tag);
}
