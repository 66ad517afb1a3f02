/*
 * JSON with exact 64-bit integers for the telegram transport (declared in
 * telegram_parse.h): the lowest layer of the parsers, calling none of them.
 */
#include "telegram_parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* JSON                                                                      */

/* Copies text, quoting integer literals of more than 15 digits (outside
 * strings). Returns NULL when nothing needs quoting. */
static char *quote_big_ints(const char *s, size_t len, size_t *out_len) {
    char *out = NULL;
    size_t o = 0, copied = 0;
    int in_str = 0;
    for (size_t i = 0; i < len;) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i += 2;
            else {
                if (c == '"') in_str = 0;
                i++;
            }
            continue;
        }
        if (c == '"') {
            in_str = 1;
            i++;
            continue;
        }
        if (c != '-' && !(c >= '0' && c <= '9')) {
            i++;
            continue;
        }
        size_t b = i, digits = 0;
        while (i < len && (s[i] == '-' || s[i] == '+' || s[i] == '.' || s[i] == 'e' ||
                           s[i] == 'E' || (s[i] >= '0' && s[i] <= '9'))) {
            if (s[i] >= '0' && s[i] <= '9') digits++;
            i++;
        }
        /* Fractional ones too: a long fractional number would otherwise
         * round to an integer id in a double and read as a valid id. */
        if (digits <= 15) continue;
        if (!out) {
            /* Worst case every token gains two quotes. */
            out = malloc(len + len + 1);
            if (!out) return NULL;
        }
        memcpy(out + o, s + copied, b - copied);
        o += b - copied;
        out[o++] = '"';
        memcpy(out + o, s + b, i - b);
        o += i - b;
        out[o++] = '"';
        copied = i;
    }
    if (!out) return NULL;
    memcpy(out + o, s + copied, len - copied);
    o += len - copied;
    out[o] = 0;
    *out_len = o;
    return out;
}

cJSON *tg_json_parse(const char *text, size_t len) {
    if (!text) return NULL;
    size_t qlen = 0;
    char *q = quote_big_ints(text, len, &qlen);
    cJSON *root = q ? cJSON_ParseWithLength(q, qlen) : cJSON_ParseWithLength(text, len);
    free(q);
    return root;
}

int tg_json_i64_value(const cJSON *item, int64_t *out) {
    if (!item) return 0;
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0)) return 0; /* NaN too */
        if ((double)(int64_t)d != d) return 0;
        *out = (int64_t)d;
        return 1;
    }
    if (cJSON_IsString(item) && item->valuestring) {
        const char *s = item->valuestring;
        if (!*s || !(isdigit((unsigned char)*s) || (*s == '-' && isdigit((unsigned char)s[1]))))
            return 0;
        errno = 0;
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (errno || !end || *end) return 0;
        *out = (int64_t)v;
        return 1;
    }
    return 0;
}

int tg_json_i64(const cJSON *obj, const char *key, int64_t *out) {
    return cJSON_IsObject(obj) &&
           tg_json_i64_value(cJSON_GetObjectItemCaseSensitive(obj, key), out);
}

/* ------------------------------------------------------------------------ */
/* Spans of the "result" array                                               */

#define SPAN_BAD ((size_t)-1)

static size_t skip_ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* Past the string that starts at s[i] ('"'), or SPAN_BAD. */
static size_t skip_str(const char *s, size_t n, size_t i) {
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return SPAN_BAD;
}

/* Past the value that starts at s[i], or SPAN_BAD. */
static size_t skip_value(const char *s, size_t n, size_t i) {
    if (i >= n) return SPAN_BAD;
    if (s[i] == '"') return skip_str(s, n, i);
    if (s[i] != '{' && s[i] != '[') {
        size_t st = i;
        while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
               s[i] != '\n' && s[i] != '\r')
            i++;
        return i > st ? i : SPAN_BAD;
    }
    size_t depth = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            i = skip_str(s, n, i);
            if (i == SPAN_BAD) return SPAN_BAD;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) return i + 1;
        }
        i++;
    }
    return SPAN_BAD;
}

static int spans_of_array(const char *s, size_t n, size_t i, size_t *off, size_t *len, int max) {
    if (i >= n || s[i] != '[') return -1;
    i = skip_ws(s, n, i + 1);
    if (i < n && s[i] == ']') return 0;
    for (int cnt = 0;; cnt++) {
        size_t e = skip_value(s, n, i);
        if (e == SPAN_BAD || s[i] != '{' || cnt == max) return -1;
        off[cnt] = i;
        len[cnt] = e - i;
        i = skip_ws(s, n, e);
        if (i < n && s[i] == ']') return cnt + 1;
        if (i >= n || s[i] != ',') return -1;
        i = skip_ws(s, n, i + 1);
    }
}

int tg_json_result_spans(const char *s, size_t n, size_t *off, size_t *len, int max) {
    size_t i = skip_ws(s, n, 0);
    if (i >= n || s[i] != '{') return -1;
    i++;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != '"') return -1;
        size_t k = i + 1, ke = skip_str(s, n, i);
        if (ke == SPAN_BAD) return -1;
        /* The first "result" key, as cJSON finds it; a key with escapes
         * could be "result" to cJSON and not here. */
        if (memchr(s + k, '\\', ke - k - 1)) return -1;
        int is_result = ke - k - 1 == 6 && !memcmp(s + k, "result", 6);
        i = skip_ws(s, n, ke);
        if (i >= n || s[i] != ':') return -1;
        i = skip_ws(s, n, i + 1);
        if (is_result) return spans_of_array(s, n, i, off, len, max);
        i = skip_value(s, n, i);
        if (i == SPAN_BAD) return -1;
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != ',') return -1;
        i++;
    }
}
