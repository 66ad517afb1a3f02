/* Secret redaction. A secret is masked in the spellings it takes on the
 * wire, not only as written in the manifest:
 *   - URL-encoded (%XX in either case, %25XX twice encoded, + for a space)
 *     and JSON-escaped (\/, \", \\, \u00XX), also mixed within one value;
 *   - its parts: the text after the first ':' or '=' (a bot token's secret
 *     half, a basic-auth password, a header value), each ','-separated
 *     item, the last blank-separated word (the credential after "Bearer");
 *   - base64 (standard and URL alphabet) of any text containing it (basic
 *     auth of "user:secret"), at each of the three byte alignments; the
 *     whole base64 word around a hit is masked.
 * Parts shorter than PART_MIN are not masked on their own, lest common
 * words disappear from every line. */
#include "core.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_MIN 4 /* a secret as configured */
#define PART_MIN 8   /* a part of one, masked alone */
#define B64_MIN 6    /* base64 characters that depend on the secret alone */

typedef struct needle {
    char *s;
    size_t n;
    bool b64; /* extend the mask over the base64 word around it */
} needle;

/* Registered during start-up only, then read concurrently. */
static char **secrets;
static size_t nsecrets;
static needle *needles;
static size_t nneedles;
/* Needles by first byte, so a scan looks at few of them per position. */
static size_t *by_first[256];
static size_t nby_first[256];

static void add_needle(const char *s, size_t n, bool b64) {
    for (size_t i = 0; i < nneedles; i++)
        if (needles[i].n == n && !memcmp(needles[i].s, s, n)) return;
    needles = xrealloc(needles, (nneedles + 1) * sizeof *needles);
    needles[nneedles] = (needle){xstrndup(s, n), n, b64};
    unsigned char c = (unsigned char)s[0];
    by_first[c] = xrealloc(by_first[c], (nby_first[c] + 1) * sizeof *by_first[c]);
    by_first[c][nby_first[c]++] = nneedles++;
}

/* Padding '=' ends a base64 word, so it only extends a mask forwards. */
static bool is_b64(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '-' || c == '_';
}

/* Base64 of (k unknown bytes, s, unknown bytes): the characters that
 * depend on s alone, in both alphabets. */
static void add_base64(const char *s, size_t n) {
    for (size_t k = 0; k < 3; k++) {
        size_t len = k + n;
        unsigned char *in = xcalloc(len + 1, 1);
        memcpy(in + k, s, n);
        char *out = xmalloc(4 * (len / 3 + 1) + 1);
        EVP_EncodeBlock((unsigned char *)out, in, (int)len);
        size_t skip = (k * 8 + 5) / 6; /* characters holding prefix bits */
        size_t full = len * 8 / 6;     /* characters holding no suffix bits */
        if (full > skip && full - skip >= B64_MIN) {
            add_needle(out + skip, full - skip, true);
            bool url = false;
            for (size_t i = skip; i < full; i++) {
                if (out[i] == '+') out[i] = '-', url = true;
                if (out[i] == '/') out[i] = '_', url = true;
            }
            if (url) add_needle(out + skip, full - skip, true);
        }
        free(out);
        free(in);
    }
}

static void add_form(const char *s, size_t n, size_t min) {
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n < min) return;
    add_needle(s, n, false);
    add_base64(s, n);
}

/* A part, its value after ':' or '=', and the last word of each. */
static void add_parts(const char *s, size_t n) {
    add_form(s, n, PART_MIN);
    const char *sep = NULL;
    for (size_t i = 0; i < n && !sep; i++)
        if (s[i] == ':' || s[i] == '=') sep = s + i;
    const char *tail = sep ? sep + 1 : s;
    size_t tn = sep ? n - (size_t)(tail - s) : n;
    add_form(tail, tn, PART_MIN);
    while (tn && (tail[tn - 1] == ' ' || tail[tn - 1] == '\t'))
        tn--;
    size_t w = tn;
    while (w && tail[w - 1] != ' ' && tail[w - 1] != '\t')
        w--;
    add_form(tail + w, tn - w, PART_MIN);
}

static int hexpair(const char *p);

void secret_add(const char *value) {
    if (!value || strlen(value) < SECRET_MIN) return;
    for (size_t i = 0; i < nsecrets; i++)
        if (!strcmp(secrets[i], value)) return;
    secrets = xrealloc(secrets, (nsecrets + 1) * sizeof *secrets);
    secrets[nsecrets++] = xstrdup(value);
    size_t n = strlen(value);
    add_form(value, n, SECRET_MIN);
    add_parts(value, n);
    for (const char *p = value; *p;) {
        size_t k = strcspn(p, ",");
        if (k < n) add_parts(p, k);
        p += k;
        if (*p) p++;
    }
    /* Written percent-encoded (OTLP headers are), it travels decoded. */
    if (strchr(value, '%')) {
        char *d = xmalloc(n + 1), *o = d;
        for (const char *p = value; *p; p++) {
            int c = *p == '%' ? hexpair(p + 1) : -1;
            if (c > 0) {
                *o++ = (char)c;
                p += 2;
            } else {
                *o++ = *p;
            }
        }
        *o = 0;
        if (strcmp(d, value)) secret_add(d);
        free(d);
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hexpair(const char *p) {
    int a = hexval(p[0]);
    if (a < 0) return -1;
    int b = hexval(p[1]);
    return b < 0 ? -1 : a * 16 + b;
}

/* Spellings of the character want at p: lengths into alt[], their count.
 * "%" may be the character itself or the start of an encoding. */
static size_t spellings(const char *p, unsigned char want, size_t alt[4]) {
    size_t na = 0;
    if ((unsigned char)*p == want) alt[na++] = 1;
    if (*p == '+' && want == ' ') alt[na++] = 1;
    if (*p == '%') {
        if (hexpair(p + 1) == want) alt[na++] = 3;
        if (p[1] == '2' && p[2] == '5' && hexpair(p + 3) == want) alt[na++] = 5;
    }
    if (*p == '\\') {
        if (p[1] == (char)want && (want == '/' || want == '"' || want == '\\')) alt[na++] = 2;
        if (p[1] == 'u' && p[2] == '0' && p[3] == '0' && hexpair(p + 4) == want) alt[na++] = 6;
    }
    return na;
}

/* Length of the text at p that spells needle[i..] on the wire, 0 if none. */
static size_t spell(const char *p, const needle *nd, size_t i, int depth) {
    const char *q = p;
    for (; i < nd->n; i++) {
        size_t alt[4], na = spellings(q, (unsigned char)nd->s[i], alt);
        if (!na) return 0;
        /* Two spellings only where the secret holds '%' or '\\'; the depth
         * bound keeps hostile text cheap. */
        if (na > 1 && i + 1 < nd->n && depth < 16) {
            for (size_t a = 0; a < na; a++) {
                size_t rest = spell(q + alt[a], nd, i + 1, depth + 1);
                if (rest) return (size_t)(q - p) + alt[a] + rest;
            }
            return 0;
        }
        q += alt[0];
    }
    return (size_t)(q - p);
}

static size_t try_list(const char *p, const size_t *list, size_t n, size_t best, bool *b64) {
    for (size_t k = 0; k < n; k++) {
        const needle *nd = &needles[list[k]];
        size_t m = spell(p, nd, 0, 0);
        if (m > best) {
            best = m;
            *b64 = nd->b64;
        }
    }
    return best;
}

/* Length of the longest secret spelled at p (0 if none). */
static size_t secret_at(const char *p, bool *b64) {
    unsigned char c = (unsigned char)*p;
    size_t best = try_list(p, by_first[c], nby_first[c], 0, b64);
    if (c == '+') best = try_list(p, by_first[' '], nby_first[' '], best, b64);
    if (c == '%' || c == '\\')
        for (size_t i = 0; i < nneedles; i++) {
            size_t m = spell(p, &needles[i], 0, 0);
            if (m > best) {
                best = m;
                *b64 = needles[i].b64;
            }
        }
    return best;
}

size_t redact(const char *src, char *dst, size_t dstsz) {
    if (!dstsz) return 0;
    size_t o = 0, lit = 0; /* dst[lit..o) was copied as it is */
    const char *p = src ? src : "";
    while (*p && o + 1 < dstsz) {
        bool b64 = false;
        size_t hit = nneedles ? secret_at(p, &b64) : 0;
        if (hit) {
            /* Mask over secrets that start inside this one and end later. */
            const char *end = p + hit;
            for (const char *q = p + 1; q < end; q++) {
                bool b = false;
                size_t h = secret_at(q, &b);
                if (q + h > end) end = q + h, b64 |= b;
            }
            if (b64) { /* the whole base64 word: its edges hold secret bits too */
                while (o > lit && is_b64((unsigned char)dst[o - 1]))
                    o--;
                while (is_b64((unsigned char)*end))
                    end++;
                while (*end == '=')
                    end++;
            }
            for (const char *m = "***"; *m && o + 1 < dstsz; m++)
                dst[o++] = *m;
            lit = o;
            p = end;
        } else {
            dst[o++] = *p++;
        }
    }
    dst[o] = 0;
    return o;
}

char *redact_dup(const char *src) {
    size_t n = strlen(src) + 1;
    char *d = xmalloc(n + 16);
    redact(src, d, n + 16);
    return d;
}
