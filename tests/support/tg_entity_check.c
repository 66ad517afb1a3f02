/* See tg_entity_check.h. */
#include "tg_entity_check.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct ent {
    int kind; /* index in kinds[] */
    long off, end;
} ent;

static const char *const kinds[] = {"bold", "italic", "underline", "strikethrough", "spoiler",
                                    "code", "pre",    "text_link", "blockquote",    NULL};
enum { K_STYLE_LAST = 4, K_CODE = 5, K_PRE = 6, K_LINK = 7, K_QUOTE = 8 };

/* UTF-16 code units of valid UTF-8, or -1; *lowsur marks unit positions
 * holding the second half of a surrogate pair. */
static long utf16(const char *s, size_t len, unsigned char **lowsur) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char *low = calloc(len * 2 + 2, 1);
    long n = 0;
    for (size_t i = 0; i < len;) {
        unsigned c = u[i];
        size_t w = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (!w || i + w > len || (w > 1 && c < 0xC2) || c > 0xF4) goto bad;
        uint32_t cp = w == 1 ? c : c & (0x7F >> w);
        for (size_t k = 1; k < w; k++) {
            if ((u[i + k] & 0xC0) != 0x80) goto bad;
            cp = cp << 6 | (u[i + k] & 0x3F);
        }
        if ((w == 3 && cp < 0x800) || (w == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0)
            goto bad;
        if (cp >= 0x10000) {
            low[n + 1] = 1;
            n += 2;
        } else {
            n += 1;
        }
        i += w;
    }
    *lowsur = low;
    return n;
bad:
    free(low);
    return -1;
}

static int is_style(int k) {
    return k <= K_STYLE_LAST;
}

/* Whether outer may contain inner (their ranges nest). */
static int may_contain(int outer, int inner) {
    if (outer == K_CODE || outer == K_PRE) return 0;
    if (is_style(outer)) return inner != K_CODE && inner != K_PRE;
    if (outer == K_QUOTE) return inner != K_QUOTE;
    return is_style(inner); /* text_link and the others */
}

static int get_long(const cJSON *o, const char *key, long *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble > 1e9 || v->valuedouble < -1e9 ||
        v->valuedouble != (double)(long)v->valuedouble)
        return 0;
    *out = (long)v->valuedouble;
    return 1;
}

const char *tgc_check(const char *text, size_t len, const char *entities_json, size_t max_units) {
    if (!text) return "no text";
    unsigned char *low = NULL;
    long units = utf16(text, len, &low);
    if (units < 0) return "text is not valid UTF-8";
    const char *why = NULL;
    int blank = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] != ' ' && text[i] != '\n' && text[i] != '\t') blank = 0;
    cJSON *a = NULL;
    ent *e = NULL;
    size_t n = 0;
    if (blank) {
        why = "text is empty";
        goto out;
    }
    if ((size_t)units > max_units) {
        why = "text is too long";
        goto out;
    }
    if (!entities_json) goto out;
    a = cJSON_Parse(entities_json);
    if (!cJSON_IsArray(a)) {
        why = "entities is not a JSON array";
        goto out;
    }
    e = calloc((size_t)cJSON_GetArraySize(a) + 1, sizeof *e);
    const cJSON *o;
    cJSON_ArrayForEach(o, a) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
        if (!cJSON_IsString(type)) {
            why = "entity without type";
            goto out;
        }
        int k = 0;
        while (kinds[k] && strcmp(kinds[k], type->valuestring))
            k++;
        if (!kinds[k]) {
            why = "unknown entity type";
            goto out;
        }
        long off, l;
        if (!get_long(o, "offset", &off) || !get_long(o, "length", &l)) {
            why = "entity offset/length not integers";
            goto out;
        }
        if (off < 0 || l < 1 || off + l > units) {
            why = "entity out of the text";
            goto out;
        }
        if (low[off] || (off + l < units && low[off + l])) {
            why = "entity boundary inside a surrogate pair";
            goto out;
        }
        if (k == K_LINK) {
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "url");
            if (!cJSON_IsString(u) || !*u->valuestring) {
                why = "text_link without url";
                goto out;
            }
        }
        e[n++] = (ent){k, off, off + l};
    }
    for (size_t i = 0; i < n && !why; i++)
        for (size_t j = i + 1; j < n && !why; j++) {
            ent x = e[i], y = e[j];
            if (x.end <= y.off || y.end <= x.off) continue;
            int x_in_y = y.off <= x.off && x.end <= y.end;
            int y_in_x = x.off <= y.off && y.end <= x.end;
            if (!x_in_y && !y_in_x)
                why = "entities overlap without nesting";
            else if (!(y_in_x && may_contain(x.kind, y.kind)) &&
                     !(x_in_y && may_contain(y.kind, x.kind)))
                why = "forbidden nesting";
        }
out:
    cJSON_Delete(a);
    free(e);
    free(low);
    return why;
}
