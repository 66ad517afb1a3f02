/* Fuzz target: the JSON log line builder. Input: NUL-separated fields
 * (msg, source, status, persona, env, failure class); invariants: exactly
 * one line, valid UTF-8, a JSON object with every mandatory field, and the
 * message text comes back unchanged when it was valid UTF-8. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonlog_line.h"

static char *field(const uint8_t **p, const uint8_t *end) {
    const uint8_t *s = *p, *z = memchr(s, 0, (size_t)(end - s));
    size_t n = z ? (size_t)(z - s) : (size_t)(end - s);
    char *out = malloc(n + 1);
    memcpy(out, s, n);
    out[n] = 0;
    *p = z ? z + 1 : end;
    return out;
}

static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const uint8_t *p = data + 2, *end = data + size;
    char *msg = field(&p, end), *src = field(&p, end), *status = field(&p, end);
    char *persona = field(&p, end), *env = field(&p, end), *klass = field(&p, end);
    rd_event ev = {.size = sizeof ev,
                   .type = (rd_event_type)(1 + data[0] % 5),
                   .level = (rd_log_level)(data[1] % 4),
                   .ts_ns = (int64_t)size * 1000003 * (data[1] & 1 ? -1 : 1),
                   .source = src,
                   .status = *status ? status : NULL,
                   .persona = persona,
                   .failure_class = *klass ? klass : NULL,
                   .latency_ms = (double)data[0] / 7,
                   .update_id = (int64_t)size << 40};
    sbuf b = {0};
    jl_format(&b, &ev, msg, env, "sha");
    if (b.failed || !b.len || b.p[b.len - 1] != '\n') __builtin_trap();
    if (memchr(b.p, '\n', b.len - 1)) __builtin_trap();
    if (!valid_utf8(b.p, b.len)) __builtin_trap();
    cJSON *o = cJSON_ParseWithLength(b.p, b.len);
    if (!o || !cJSON_IsObject(o)) __builtin_trap();
    static const char *const keys[] = {"ts",           "level",       "event",  "correlation_id",
                                       "chat_id_hash", "persona_tag", "status", "latency_ms",
                                       "env",          "build_sha",   NULL};
    for (int i = 0; keys[i]; i++)
        if (!cJSON_GetObjectItemCaseSensitive(o, keys[i])) __builtin_trap();
    cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "msg");
    /* cJSON stops at an escaped NUL, and msg has none: compare fully. */
    if (valid_utf8(msg, strlen(msg)) && (!cJSON_IsString(m) || strcmp(m->valuestring, msg)))
        __builtin_trap();
    cJSON_Delete(o);
    sbuf_free(&b);
    free(msg), free(src), free(status), free(persona), free(env), free(klass);
    return 0;
}
