/* loom.c - the command-line tool (being written). */
#include <stdio.h>
#include "loom.h"
int main(void) { printf("loom %d.%d.%d\n", LOOM_VERSION_MAJOR, LOOM_VERSION_MINOR, LOOM_VERSION_PATCH); return 0; }
