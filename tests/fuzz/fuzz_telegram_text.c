/* Fuzz target: reply text handling of the telegram transport (UTF-8
 * repair, UTF-16 lengths, splitting, escaping) with its invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telegram_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    /* First byte picks the limit: 2..257 units, or 4096. */
    size_t max = data[0] == 0xFF ? 4096 : (size_t)data[0] + 2;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    size_t clean_len;
    char *clean = tg_utf8_sanitize(s, len, &clean_len);
    if (!clean) return 0;
    /* Repairing twice changes nothing. */
    size_t again_len;
    char *again = tg_utf8_sanitize(clean, clean_len, &again_len);
    if (again_len != clean_len || memcmp(again, clean, clean_len)) __builtin_trap();
    free(again);
    tg_chunk *ch = NULL;
    size_t n = tg_split(clean, clean_len, max, &ch);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (ch[i].off != pos || ch[i].len == 0) __builtin_trap();
        if (tg_utf16_len(clean + ch[i].off, ch[i].len) > (max < 2 ? 2 : max)) __builtin_trap();
        /* No chunk starts inside a UTF-8 sequence. */
        if (((unsigned char)clean[ch[i].off] & 0xC0) == 0x80) __builtin_trap();
        pos += ch[i].len;
    }
    if (pos != clean_len) __builtin_trap();
    free(ch);
    size_t el;
    char *e = tg_escape_markdown_v2(clean, clean_len, &el);
    if (e && el < clean_len) __builtin_trap();
    free(e);
    e = tg_escape_html(clean, clean_len, &el);
    if (e && el < clean_len) __builtin_trap();
    free(e);
    free(clean);
    return 0;
}
