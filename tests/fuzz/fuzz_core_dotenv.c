/* Fuzz target: dotenv_parse_line on arbitrary bytes. */
#include "core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *line = malloc(size + 1);
    if (!line) return 0;
    memcpy(line, data, size);
    line[size] = 0;
    char *k = NULL, *v = NULL;
    int r = dotenv_parse_line(line, &k, &v);
    if (r == 1) {
        /* A key is a non-empty shell-style name. */
        if (!k || !v || !*k ||
            strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789_") != strlen(k))
            abort();
        free(k);
        free(v);
    } else if (r != 0 && r != -1) {
        abort();
    } else if (k || v) {
        abort(); /* nothing is handed out on a blank line or an error */
    }
    free(line);
    return 0;
}
