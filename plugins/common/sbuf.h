/* A growable text buffer and JSON string escaping, for plugins that build
 * text (the sinks). */
#ifndef ROUTERD_COMMON_SBUF_H
#define ROUTERD_COMMON_SBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sbuf {
    char *p; /* NUL-terminated while not failed */
    size_t len, cap;
    bool failed; /* an allocation failed: the content is incomplete */
} sbuf;

void sbuf_free(sbuf *b);
void sbuf_reset(sbuf *b);
/* Hands the text over (malloc()ed, NUL-terminated); NULL if failed. */
char *sbuf_take(sbuf *b, size_t *len);
void sbuf_putc(sbuf *b, char c);
void sbuf_putn(sbuf *b, const char *s, size_t n);
void sbuf_puts(sbuf *b, const char *s);
void sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends v in decimal: what "%lld" prints, without a vsnprintf() per
 * number (the ids of every message). */
void sbuf_i64(sbuf *b, long long v);

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid.
 * Overlong forms, surrogates and code points above U+10FFFF are invalid. */
size_t utf8_seq(const unsigned char *s, size_t n);

/* Appends s as a quoted JSON string: control characters escaped, invalid
 * UTF-8 replaced by U+FFFD, so the output is always valid JSON. NULL
 * appends null. */
void sbuf_json_str(sbuf *b, const char *s);
void sbuf_json_strn(sbuf *b, const char *s, size_t n);
/* Appends lead as it is (a key and its colon, such as ",\"task\":"),
 * then s as sbuf_json_str() does: one member of an object written as text. */
void sbuf_json_field(sbuf *b, const char *lead, const char *s);

#endif
