/* Fuzz target: Markdown replies rendered to Telegram entities and split;
 * every part must pass the checker of Telegram's rules. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telegram_format.h"
#include "telegram_parse.h"
#include "tg_entity_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    /* First byte picks the limit: 16..271 units, or 4096. */
    size_t max = data[0] == 0xFF ? 4096 : (size_t)data[0] + 16;
    size_t len;
    char *text = tg_utf8_sanitize((const char *)data + 1, size - 1, &len);
    if (!text) return 0;
    for (int md = 0; md < 2; md++) {
        tg_part *p = NULL;
        size_t n = tg_format(text, len, md, max, &p);
        for (size_t i = 0; i < n; i++) {
            char *j = tg_entities_json(&p[i]);
            if (p[i].nents && !j) __builtin_trap();
            /* Plain parts may be blank (the sender skips them). */
            if (md && tgc_check(p[i].text, p[i].len, j, max)) __builtin_trap();
            if (!md && tg_utf16_len(p[i].text, p[i].len) > max) __builtin_trap();
            free(j);
        }
        tg_parts_free(p, n);
    }
    free(text);
    return 0;
}
