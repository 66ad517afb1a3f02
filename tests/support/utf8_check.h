/* Strict UTF-8 check for tests (shortest form, no surrogates, no
 * code point past U+10FFFF, no NUL). */
#ifndef TEST_UTF8_CHECK_H
#define TEST_UTF8_CHECK_H

#include <stddef.h>

static inline int utf8_check(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i], cp, need;
        if (c == 0) return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0)
            cp = c & 0x1f, need = 1;
        else if ((c & 0xf0) == 0xe0)
            cp = c & 0x0f, need = 2;
        else if ((c & 0xf8) == 0xf0)
            cp = c & 0x07, need = 3;
        else
            return 0;
        for (unsigned k = 1; k <= need; k++) {
            if (i + k >= n || (p[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        unsigned min = need == 1 ? 0x80 : need == 2 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += need + 1;
    }
    return 1;
}

#endif
