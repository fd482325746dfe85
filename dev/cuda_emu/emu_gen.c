/* emu_gen.c - writes the generated megakernel source of a preset:
 *     emu_gen PRESET OUT.cu */
#include "emu_common.h"

int main(int argc, char **argv)
{
    loom_model *m = NULL;
    loom_program *p;
    char *src = NULL;
    FILE *f;

    if (argc != 3) {
        fprintf(stderr, "usage: emu_gen PRESET OUT.cu\n");
        return 2;
    }
    p = emu_program(argv[1], 1, &m);
    if (!p || loom_cuda_codegen(p, &src) != LOOM_OK) {
        fprintf(stderr, "emu_gen: %s\n", loom_last_error());
        return 1;
    }
    f = fopen(argv[2], "w");
    if (!f || fputs(src, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "emu_gen: cannot write %s\n", argv[2]);
        return 1;
    }
    free(src);
    loom_program_free(p);
    loom_model_free(m);
    return 0;
}
