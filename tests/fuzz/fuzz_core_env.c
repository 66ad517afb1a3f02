/* Fuzz target: env_expand on arbitrary bytes. */
#include "core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) {
        setenv("A", "alpha", 1);
        setenv("EMPTY", "", 1);
        setenv("DOLLAR", "${A}$$", 1); /* values are not expanded again */
        once = 1;
    }
    char *in = malloc(size + 1);
    if (!in) return 0;
    memcpy(in, data, size);
    in[size] = 0;
    char *bad = NULL;
    char *out = env_expand(in, &bad);
    if (out) {
        if (bad) abort();
        /* Without "${" nothing expands; "$$" still folds to "$". */
        if (!strstr(in, "${") && strlen(out) > strlen(in)) abort();
        free(out);
    } else {
        if (!bad) abort();
        free(bad);
    }
    free(in);
    return 0;
}
