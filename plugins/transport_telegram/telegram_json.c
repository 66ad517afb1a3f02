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
