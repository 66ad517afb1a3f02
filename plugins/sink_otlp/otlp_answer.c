/* Reading a collector's answer: partial success and Retry-After. */
#include "otlp_answer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* A non-negative integer of at most 18 digits (no overflow possible),
 * as a JSON string (the proto3 int64 mapping) or number; -1 otherwise. */
static int64_t count_of(const cJSON *v) {
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!(d >= 0) || d > 1e15 || d != (double)(int64_t)d) return -1;
        return (int64_t)d;
    }
    if (!cJSON_IsString(v)) return -1;
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (!n || n > 18 || strspn(s, "0123456789") != n) return -1;
    int64_t r = 0;
    for (size_t i = 0; i < n; i++)
        r = r * 10 + (s[i] - '0');
    return r;
}

void otlp_answer_parse(const char *body, size_t len, int64_t spans, otlp_answer *out) {
    memset(out, 0, sizeof *out);
    if (!body || !len) return;
    cJSON *o = cJSON_ParseWithLength(body, len);
    cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "partialSuccess");
    if (cJSON_IsObject(ps)) {
        cJSON *r = cJSON_GetObjectItemCaseSensitive(ps, "rejectedSpans");
        if (r) {
            int64_t n = count_of(r);
            if (n < 0) {
                snprintf(out->bad, sizeof out->bad, "rejectedSpans is not a count: ignored");
            } else if (n > spans) {
                snprintf(out->bad, sizeof out->bad,
                         "rejectedSpans %lld is more than the %lld sent: taken as %lld",
                         (long long)n, (long long)spans, (long long)spans);
                n = spans;
            }
            out->rejected = n < 0 ? 0 : n;
        }
        cJSON *m = cJSON_GetObjectItemCaseSensitive(ps, "errorMessage");
        if (cJSON_IsString(m)) {
            size_t k = 0;
            for (const char *p = m->valuestring; *p && k + 1 < sizeof out->message; p++)
                out->message[k++] = *p >= 0x20 && *p < 0x7f ? *p : '?';
            out->message[k] = 0;
        }
    }
    cJSON_Delete(o);
}

int64_t otlp_retry_after_ms(const char *value, int64_t max_ms) {
    if (!value) return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strspn(value, "0123456789");
    if (!n || strspn(value + n, " \t\r\n") != strlen(value + n)) return -1;
    /* Many digits are just "long": no need to read them all. */
    if (n > 9) return max_ms;
    int64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = s * 10 + (value[i] - '0');
    return s * 1000 > max_ms ? max_ms : s * 1000;
}
