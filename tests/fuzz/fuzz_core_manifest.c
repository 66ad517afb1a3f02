/* Fuzz target: manifest_parse_string on arbitrary bytes. */
#include "core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) { /* some ${VAR} references resolve, others do not */
        setenv("FUZZ_SET", "value", 1);
        setenv("FUZZ_EMPTY", "", 1);
        once = 1;
    }
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0; /* the parser takes a C string: stops at the first NUL */
    char err[512];
    err[0] = 0;
    manifest *m = manifest_parse_string("fuzz.ini", text, err, sizeof err);
    if (m) {
        /* Walk what came out so bad pointers show up under ASan. */
        for (size_t i = 0; i < m->nsec; i++) {
            mf_section *s = &m->sec[i];
            if (manifest_section(m, s->name) != s) abort();
            for (size_t j = 0; j < s->nkv; j++)
                if (!s->kv[j].val || section_get(s, s->kv[j].key) != &s->kv[j] ||
                    s->kv[j].line < s->line)
                    abort();
        }
        manifest_free(m);
    } else if (!err[0] || strlen(err) >= sizeof err) {
        abort(); /* every refusal explains itself */
    }
    free(text);
    return 0;
}
