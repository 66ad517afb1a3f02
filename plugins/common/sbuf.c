/* Growable buffer and JSON escaping; see sbuf.h. */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_free(sbuf *b) {
    free(b->p);
    *b = (sbuf){0};
}

void sbuf_reset(sbuf *b) {
    b->len = 0;
    b->failed = false;
    if (b->p) b->p[0] = 0;
}

char *sbuf_take(sbuf *b, size_t *len) {
    if (!b->p && !b->failed) sbuf_putn(b, "", 0);
    char *p = b->failed ? NULL : b->p;
    if (len) *len = b->failed ? 0 : b->len;
    if (b->failed) free(b->p);
    *b = (sbuf){0};
    return p;
}

static bool grow(sbuf *b, size_t extra) {
    if (b->failed) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void sbuf_putn(sbuf *b, const char *s, size_t n) {
    if (!grow(b, n)) return;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void sbuf_putc(sbuf *b, char c) {
    sbuf_putn(b, &c, 1);
}

void sbuf_puts(sbuf *b, const char *s) {
    sbuf_putn(b, s, strlen(s));
}

void sbuf_printf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sbuf_putn(b, tmp, (size_t)n);
        return;
    }
    if (!grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sbuf_i64(sbuf *b, long long v) {
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    /* In unsigned arithmetic: -LLONG_MIN does not fit a long long. */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) *--p = '-';
    sbuf_putn(b, p, (size_t)(end - p));
}

size_t utf8_seq(const unsigned char *s, size_t n) {
    if (!n) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned min, cp;
    if ((c & 0xE0) == 0xC0) {
        len = 2, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

void sbuf_json_strn(sbuf *b, const char *s, size_t n) {
    if (!s) {
        sbuf_puts(b, "null");
        return;
    }
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    sbuf_putc(b, '"');
    while (p < end) {
        /* Copy the longest run that needs no escaping in one go. */
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        sbuf_putn(b, (const char *)run, (size_t)(p - run));
        if (p == end) break;
        unsigned c = *p;
        if (c >= 0x80) {
            size_t k = utf8_seq(p, (size_t)(end - p));
            if (k) {
                sbuf_putn(b, (const char *)p, k);
                p += k;
            } else {
                sbuf_puts(b, "\xEF\xBF\xBD"); /* U+FFFD for each bad byte */
                p++;
            }
            continue;
        }
        p++;
        switch (c) {
        case '"':
            sbuf_puts(b, "\\\"");
            break;
        case '\\':
            sbuf_puts(b, "\\\\");
            break;
        case '\n':
            sbuf_puts(b, "\\n");
            break;
        case '\r':
            sbuf_puts(b, "\\r");
            break;
        case '\t':
            sbuf_puts(b, "\\t");
            break;
        default:
            sbuf_printf(b, "\\u%04x", c);
        }
    }
    sbuf_putc(b, '"');
}

void sbuf_json_str(sbuf *b, const char *s) {
    sbuf_json_strn(b, s, s ? strlen(s) : 0);
}

void sbuf_json_field(sbuf *b, const char *lead, const char *s) {
    sbuf_puts(b, lead);
    sbuf_json_str(b, s);
}
