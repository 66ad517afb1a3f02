/* See inbound_fixture.h. */
#include "inbound_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_host.h"
#include "harness.h"

void *ib_self;
char ib_base[64];

static const char *const base_cfg[] = {
    "humans",      "alice=main:12345, oncall=main:-100987, bob=tg2:555",
    "callers",     "planner=" TOK_P ", auditor=" TOK_A,
    "allow",       "planner:alice+oncall, auditor:*",
    "send_wait",   "3s",
    "retry_delay", "200ms",
    NULL};

void ib_restart(void) {
    rd_status st;
    rd_error e = {0};
    ib_self = rdpt_start(&st, &e);
    if (!ib_self) fail_msg("start failed: %d %s", st, e.msg);
}

/* The plugin whose objects are linked into the test. */
extern const rd_plugin routerd_plugin_v1;

void ib_up(const char *const *extra) {
    char err[256];
    if (rdpt_use(&routerd_plugin_v1, err, sizeof err)) fail_msg("%s", err);
    rdpt_reset();
    rdpt_info("instance", "people");
    rdpt_info("env", "test");
    int port = rt_free_port();
    char listen[40];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(ib_base, sizeof ib_base, "http://%s", listen);
    rdpt_set("listen", listen);
    for (size_t i = 0; base_cfg[i]; i += 2)
        rdpt_set(base_cfg[i], base_cfg[i + 1]);
    for (size_t i = 0; extra && extra[i]; i += 2)
        rdpt_set(extra[i], extra[i + 1]);
    ib_restart();
}

void ib_down(void) {
    rdpt_shutdown(ib_self);
    ib_self = NULL;
    char err[256];
    if (rdpt_teardown_ok(err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(rdpt_misuses(NULL, 0), 0);
    /* No token ever reaches a log line. */
    assert_false(rdpt_logged(TOK_P));
    assert_false(rdpt_logged(TOK_A));
}

/* ---- HTTP ---------------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n;
} buf;

static size_t collect(char *d, size_t sz, size_t nm, void *arg) {
    buf *b = arg;
    size_t n = sz * nm;
    char *p = realloc(b->p, b->n + n + 1);
    if (!p) return 0;
    memcpy(p + b->n, d, n);
    b->n += n;
    p[b->n] = 0;
    b->p = p;
    return n;
}

static size_t header_line(char *d, size_t sz, size_t nm, void *arg) {
    char *h = arg;
    size_t have = strlen(h), n = sz * nm;
    if (have + n < 2048) {
        memcpy(h + have, d, n);
        h[have + n] = 0;
    }
    return n;
}

static ib_http perform(const char *method, const char *path, const char *token, const char *body,
                       const char *const *headers) {
    ib_http r = {.status = -1};
    CURL *c = curl_easy_init();
    char url[256], auth[256];
    snprintf(url, sizeof url, "%s%s", ib_base, path);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hl = curl_slist_append(hl, auth);
    }
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_line);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r.headers);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    r.body = b.p ? b.p : strdup("");
    return r;
}

ib_http ib_post(const char *token, const char *body, const char *const *headers) {
    return perform("POST", "/", token, body, headers);
}

ib_http ib_get(const char *path, const char *const *headers) {
    return perform("GET", path, NULL, NULL, headers);
}

void ib_http_free(ib_http *r) {
    free(r->body);
    r->body = NULL;
}

static atomic_int rpc_seq; /* ids of calls made from several threads */

cJSON *ib_call(const char *token, const char *method, const char *fmt, ...) {
    char params[8192], body[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(params, sizeof params, fmt, ap);
    va_end(ap);
    snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"%s\",\"params\":%s}",
             atomic_fetch_add(&rpc_seq, 1) + 1, method, params);
    ib_http r = ib_post(token, body, NULL);
    cJSON *j = cJSON_Parse(r.body);
    if (!j) fail_msg("HTTP %ld, not JSON: %s", r.status, r.body);
    ib_http_free(&r);
    return j;
}

cJSON *ib_send(const char *token, int v10, const char *msg_id, const char *skill, const char *text,
               const char *meta_extra, int blocking) {
    char meta[2048];
    snprintf(meta, sizeof meta, "{%s%s%s%s%s}", skill ? "\"skill\":\"" : "", skill ? skill : "",
             skill ? "\"" : "", skill && meta_extra && *meta_extra ? "," : "",
             meta_extra ? meta_extra : "");
    const char *part = v10 ? "{\"text\":\"%s\"}" : "{\"kind\":\"text\",\"text\":\"%s\"}";
    char parts[4096];
    snprintf(parts, sizeof parts, part, text);
    const char *cfg = v10 ? (blocking ? "{}" : "{\"returnImmediately\":true}")
                          : (blocking ? "{\"blocking\":true}" : "{\"blocking\":false}");
    cJSON *j = ib_call(token, v10 ? "SendMessage" : "message/send",
                       "{\"message\":{%s\"role\":\"%s\",\"messageId\":\"%s\",\"parts\":[%s],"
                       "\"metadata\":%s},\"configuration\":%s}",
                       v10 ? "" : "\"kind\":\"message\",", v10 ? "ROLE_USER" : "user", msg_id,
                       parts, meta, cfg);
    const cJSON *res = jpath(j, v10 ? "result.task" : "result");
    if (!res) {
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        fail_msg("send gave no task: %s", s);
    }
    cJSON *t = cJSON_Duplicate(res, 1);
    cJSON_Delete(j);
    return t;
}

cJSON *ib_get_task(const char *token, int v10, const char *id) {
    cJSON *j = ib_call(token, v10 ? "GetTask" : "tasks/get", "{\"id\":\"%s\"}", id);
    const cJSON *res = jpath(j, "result");
    if (!res) {
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        fail_msg("get gave no task: %s", s);
    }
    cJSON *t = cJSON_Duplicate(res, 1);
    cJSON_Delete(j);
    return t;
}

const cJSON *jpath(const cJSON *o, const char *path) {
    char p[256];
    snprintf(p, sizeof p, "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(p, ".", &save); k && o; k = strtok_r(NULL, ".", &save)) {
        if (cJSON_IsArray(o))
            o = cJSON_GetArrayItem(o, atoi(k));
        else
            o = cJSON_GetObjectItemCaseSensitive(o, k);
    }
    return o;
}

const char *jstr(const cJSON *o, const char *path) {
    const cJSON *v = jpath(o, path);
    return cJSON_IsString(v) ? v->valuestring : "(none)";
}

/* ---- SSE ------------------------------------------------------------------------ */

static size_t sse_collect(char *d, size_t sz, size_t nm, void *arg) {
    ib_sse *s = arg;
    size_t n = sz * nm;
    pthread_mutex_lock(&s->mu);
    char *p = realloc(s->buf, s->len + n + 1);
    if (p) {
        memcpy(p + s->len, d, n);
        s->len += n;
        p[s->len] = 0;
        s->buf = p;
    }
    pthread_mutex_unlock(&s->mu);
    return p ? n : 0;
}

static int sse_abort(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
    (void)a, (void)b, (void)c, (void)d;
    ib_sse *s = arg;
    pthread_mutex_lock(&s->mu);
    int stop = s->done == 2;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void *sse_main(void *arg) {
    ib_sse *s = arg;
    CURL *c = curl_easy_init();
    char auth[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", s->token);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Accept: text/event-stream");
    hl = curl_slist_append(hl, auth);
    curl_easy_setopt(c, CURLOPT_URL, ib_base);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, sse_abort);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    pthread_mutex_lock(&s->mu);
    s->status = status;
    if (!s->done) s->done = 1;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

ib_sse *ib_sse_open(const char *token, const char *body) {
    ib_sse *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->body = strdup(body);
    s->token = strdup(token);
    s->buf = strdup("");
    assert_int_equal(pthread_create(&s->th, NULL, sse_main, s), 0);
    return s;
}

int ib_sse_wait(ib_sse *s, const char *needle, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    while (rt_now_ms() < end) {
        pthread_mutex_lock(&s->mu);
        int found = strstr(s->buf, needle) != NULL;
        pthread_mutex_unlock(&s->mu);
        if (found) return 1;
        rt_sleep_ms(10);
    }
    return 0;
}

int ib_sse_wait_done(ib_sse *s, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    while (rt_now_ms() < end) {
        pthread_mutex_lock(&s->mu);
        int d = s->done;
        pthread_mutex_unlock(&s->mu);
        if (d) return 1;
        rt_sleep_ms(10);
    }
    return 0;
}

char *ib_sse_text(ib_sse *s) {
    pthread_mutex_lock(&s->mu);
    char *t = strdup(s->buf);
    pthread_mutex_unlock(&s->mu);
    return t;
}

void ib_sse_close(ib_sse *s) {
    pthread_mutex_lock(&s->mu);
    if (!s->done) s->done = 2;
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    free(s->buf);
    free(s->body);
    free(s->token);
    free(s);
}
