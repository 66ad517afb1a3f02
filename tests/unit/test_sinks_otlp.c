/* Unit tests: OTLP JSON builder, sampler, settings from manifest and
 * OTEL_* variables, and the otlp plugin over a fake host against the
 * stand-in collector (batching, flush, a dead collector, headers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>

#include "fake_otlp.h"
#include "harness.h"
#include "otlp_answer.h"
#include "otlp_conf.h"
#include "otlp_json.h"
#include "fake_host.h"

#define TRACE "0AF7651916CD43DD8448EB211C80319C"
#define ROOT "b7ad6b7169203331"
#define BSPAN "00f067aa0ba902b7"

static rd_event replied(const char *status, const char *klass) {
    int64_t t0 = 1795000000000000000LL;
    rd_event ev = {.size = sizeof(rd_event),
                   .type = RD_EV_REPLIED,
                   .level = RD_LOG_INFO,
                   .ts_ns = t0 + 9000,
                   .source = "core",
                   .correlation_id = TRACE,
                   .chat_id_hash = "9f86d081884c7d65",
                   .persona = "helper",
                   .transport = "main",
                   .backend = "agent",
                   .status = status,
                   .failure_class = klass,
                   .update_id = 4242,
                   .latency_ms = 0.008,
                   .t_received_ns = t0,
                   .t_routed_ns = t0 + 1000,
                   .t_backend_start_ns = t0 + 2000,
                   .t_backend_end_ns = t0 + 6000,
                   .t_send_start_ns = t0 + 6500,
                   .t_send_end_ns = t0 + 8000,
                   .trace_id = TRACE,
                   .span_id = ROOT,
                   .backend_span_id = BSPAN};
    return ev;
}

static cJSON *build(const rd_event *ev, const char *error, cJSON **spans) {
    otlp_trace *t = otlp_trace_new(ev, error);
    assert_non_null(t);
    otlp_kv res = {0};
    otlp_kv_set(&res, "service.name", "routerd");
    sbuf b = {0};
    otlp_json_begin(&b, &res, "0.1.0");
    bool first = true;
    otlp_json_trace(&b, t, "staging", &first);
    otlp_json_end(&b);
    cJSON *doc = cJSON_Parse(b.p);
    assert_non_null(doc);
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "resourceSpans"), 0);
    cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
    *spans = cJSON_GetObjectItem(ss, "spans");
    assert_int_equal(cJSON_GetArraySize(*spans), t->nspans);
    sbuf_free(&b);
    otlp_kv_free(&res);
    otlp_trace_free(t);
    return doc;
}

static cJSON *span_named(cJSON *spans, const char *name) {
    cJSON *s;
    cJSON_ArrayForEach(s, spans) {
        if (!strcmp(cJSON_GetObjectItem(s, "name")->valuestring, name)) return s;
    }
    return NULL;
}

static const char *sget(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* An attribute's value object, or NULL. */
static cJSON *attr(cJSON *span, const char *key) {
    cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(span, "attributes")) {
        if (!strcmp(sget(a, "key"), key)) return cJSON_GetObjectItem(a, "value");
    }
    return NULL;
}

static int status_code(cJSON *span) {
    cJSON *st = cJSON_GetObjectItem(span, "status");
    return st ? cJSON_GetObjectItem(st, "code")->valueint : 0;
}

static void test_trace_ok(void **state) {
    (void)state;
    rd_event ev = replied("ok", NULL);
    cJSON *spans, *doc = build(&ev, NULL, &spans);
    assert_int_equal(cJSON_GetArraySize(spans), 5);
    cJSON *root = span_named(spans, "message");
    assert_non_null(root);
    assert_null(cJSON_GetObjectItem(root, "parentSpanId"));
    assert_string_equal(sget(root, "traceId"), "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(sget(root, "spanId"), ROOT);
    assert_string_equal(sget(root, "startTimeUnixNano"), "1795000000000000000");
    assert_string_equal(sget(root, "endTimeUnixNano"), "1795000000000008000");
    assert_int_equal(cJSON_GetObjectItem(root, "kind")->valueint, 2);
    assert_int_equal(status_code(root), 0);
    assert_string_equal(sget(attr(root, "routerd.persona"), "stringValue"), "helper");
    assert_string_equal(sget(attr(root, "routerd.env"), "stringValue"), "staging");
    assert_string_equal(sget(attr(root, "routerd.update_id"), "intValue"), "4242");
    assert_string_equal(sget(attr(root, "routerd.status"), "stringValue"), "ok");
    assert_null(attr(root, "routerd.failure_class"));
    assert_null(attr(root, "routerd.caller"));         /* not an inbound message */
    assert_null(attr(root, "routerd.correlation_id")); /* it is the trace id */
    const char *names[] = {"receive", "route", "backend", "send"};
    const char *starts[] = {"1795000000000000000", "1795000000000001000", "1795000000000002000",
                            "1795000000000006500"};
    const char *ends[] = {"1795000000000001000", "1795000000000002000", "1795000000000006000",
                          "1795000000000008000"};
    for (int i = 0; i < 4; i++) {
        cJSON *s = span_named(spans, names[i]);
        assert_non_null(s);
        assert_string_equal(sget(s, "parentSpanId"), ROOT);
        assert_string_equal(sget(s, "traceId"), "0af7651916cd43dd8448eb211c80319c");
        assert_string_equal(sget(s, "startTimeUnixNano"), starts[i]);
        assert_string_equal(sget(s, "endTimeUnixNano"), ends[i]);
        assert_int_equal(strlen(sget(s, "spanId")), 16);
        assert_string_not_equal(sget(s, "spanId"), ROOT);
    }
    /* The backend span carries the id the agent saw in traceparent. */
    cJSON *be = span_named(spans, "backend");
    assert_string_equal(sget(be, "spanId"), BSPAN);
    assert_int_equal(cJSON_GetObjectItem(be, "kind")->valueint, 3);
    assert_string_equal(sget(attr(be, "routerd.backend"), "stringValue"), "agent");
    cJSON_Delete(doc);
}

static void test_trace_failed(void **state) {
    (void)state;
    rd_event ev = replied("failed", "fatal");
    assert_true(otlp_is_error(&ev));
    cJSON *spans, *doc = build(&ev, NULL, &spans);
    cJSON *root = span_named(spans, "message");
    assert_int_equal(status_code(root), 2);
    assert_string_equal(sget(cJSON_GetObjectItem(root, "status"), "message"), "failed: fatal");
    assert_string_equal(sget(attr(root, "routerd.failure_class"), "stringValue"), "fatal");
    cJSON *be = span_named(spans, "backend");
    assert_int_equal(status_code(be), 2);
    assert_string_equal(sget(attr(be, "routerd.failure_class"), "stringValue"), "fatal");
    assert_int_equal(status_code(span_named(spans, "send")), 0);
    cJSON_Delete(doc);

    /* A send failure marks the send span with the (redacted) detail. */
    ev = replied("send_failed", NULL);
    assert_true(otlp_is_error(&ev));
    doc = build(&ev, "HTTP 403: bot was blocked", &spans);
    cJSON *tx = span_named(spans, "send");
    assert_int_equal(status_code(tx), 2);
    assert_string_equal(sget(cJSON_GetObjectItem(tx, "status"), "message"),
                        "HTTP 403: bot was blocked");
    assert_int_equal(status_code(span_named(spans, "backend")), 0);
    assert_int_equal(status_code(span_named(spans, "message")), 2);
    cJSON_Delete(doc);
}

static void test_trace_rejected_and_notice(void **state) {
    (void)state;
    rd_event ev = replied("rejected:allowlist", NULL);
    ev.type = RD_EV_REJECTED;
    ev.persona = NULL;
    ev.t_routed_ns = ev.t_backend_start_ns = ev.t_backend_end_ns = 0;
    ev.t_send_start_ns = ev.t_send_end_ns = 0;
    ev.backend_span_id = NULL;
    assert_false(otlp_is_error(&ev));
    cJSON *spans, *doc = build(&ev, NULL, &spans);
    assert_int_equal(cJSON_GetArraySize(spans), 2);
    cJSON *root = span_named(spans, "message");
    assert_null(attr(root, "routerd.persona"));
    /* Without a send, the root ends when the event was made. */
    assert_string_equal(sget(root, "endTimeUnixNano"), "1795000000000009000");
    assert_string_equal(sget(span_named(spans, "receive"), "endTimeUnixNano"),
                        "1795000000000009000");
    cJSON_Delete(doc);

    /* A rate-limit notice: routed and sent, no backend call. */
    ev = replied("rate_limited", NULL);
    ev.t_backend_start_ns = ev.t_backend_end_ns = 0;
    ev.backend_span_id = NULL;
    doc = build(&ev, NULL, &spans);
    assert_int_equal(cJSON_GetArraySize(spans), 4);
    assert_null(span_named(spans, "backend"));
    assert_string_equal(sget(span_named(spans, "route"), "endTimeUnixNano"), "1795000000000006500");
    cJSON_Delete(doc);
}

/* An inbound question's span names the calling agent; a 1.2-sized event
 * has no caller member. */
static void test_trace_caller(void **state) {
    (void)state;
    rd_event ev = replied("answered", NULL);
    ev.backend = "inbound.people";
    ev.caller = "planner";
    ev.correlation_id = "task-7f3a";
    cJSON *spans, *doc = build(&ev, NULL, &spans);
    cJSON *root = span_named(spans, "message");
    assert_string_equal(sget(attr(root, "routerd.caller"), "stringValue"), "planner");
    /* found by its task id too */
    assert_string_equal(sget(attr(root, "routerd.correlation_id"), "stringValue"), "task-7f3a");
    assert_string_equal(sget(attr(root, "routerd.backend"), "stringValue"), "inbound.people");
    cJSON_Delete(doc);
    ev.size = (uint32_t)offsetof(rd_event, caller);
    doc = build(&ev, NULL, &spans);
    assert_null(attr(span_named(spans, "message"), "routerd.caller"));
    cJSON_Delete(doc);
}

static void test_trace_invalid_and_hostile(void **state) {
    (void)state;
    rd_event ev = replied("ok", NULL);
    ev.trace_id = "00000000000000000000000000000000";
    assert_null(otlp_trace_new(&ev, NULL));
    ev.trace_id = "xyz";
    assert_null(otlp_trace_new(&ev, NULL));
    ev.trace_id = TRACE;
    ev.span_id = NULL;
    assert_null(otlp_trace_new(&ev, NULL));
    ev.span_id = ROOT;
    ev.persona = "he\"llo\n\xff";
    ev.status = "ok\\";
    cJSON *spans, *doc = build(&ev, NULL, &spans);
    assert_string_equal(sget(attr(span_named(spans, "message"), "routerd.persona"), "stringValue"),
                        "he\"llo\n\xef\xbf\xbd");
    cJSON_Delete(doc);
}

static void test_ids_and_sampler(void **state) {
    (void)state;
    assert_true(otlp_valid_id("0af7651916cd43dd8448eb211c80319c", 32));
    assert_false(otlp_valid_id("0af7651916cd43dd8448eb211c80319", 32));
    assert_false(otlp_valid_id("0000000000000000", 16));
    assert_false(otlp_valid_id("000000000000000g", 16));
    const char *t = "0af7651916cd43dd8448eb211c80319c";
    assert_false(otlp_sampled(t, 0));
    assert_true(otlp_sampled(t, 1));
    assert_false(otlp_sampled(t, NAN));
    /* The low 56 bits decide: compared with ratio * 2^56. */
    assert_true(otlp_sampled("ffffffffffffffffff3fffffffffffff", 0.25));
    assert_false(otlp_sampled("00000000000000000040000000000000", 0.25));
    assert_true(otlp_sampled("00000000000000000000000000000000", 0.25));
    assert_true(otlp_sampled("0000000000000000003FFFFFFFFFFFFF", 0.25));
    /* Deterministic, and close to the ratio over many ids. */
    unsigned long long x = 88172645463325252ULL;
    int hits = 0, n = 20000;
    for (int i = 0; i < n; i++) {
        char id[33];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned long long y = x * 2685821657736338717ULL;
        snprintf(id, sizeof id, "%016llx%016llx", x, y);
        bool s = otlp_sampled(id, 0.25);
        assert_true(s == otlp_sampled(id, 0.25));
        hits += s;
    }
    double sd = sqrt(n * 0.25 * 0.75);
    assert_true(fabs(hits - n * 0.25) < 4 * sd);
}

static void test_kv_parse(void **state) {
    (void)state;
    otlp_kv kv = {0};
    int bad = otlp_kv_parse(&kv, " a = 1 , b=x%2Cy%3Dz,, noequals ,=v, a=2 ,c= sp%20ace ");
    assert_int_equal(bad, 2);
    assert_int_equal(kv.n, 3);
    assert_string_equal(otlp_kv_get(&kv, "a"), "2");
    assert_string_equal(otlp_kv_get(&kv, "b"), "x,y=z");
    assert_string_equal(otlp_kv_get(&kv, "c"), "sp ace");
    assert_int_equal(otlp_kv_parse(&kv, NULL), 0);
    assert_int_equal(otlp_kv_parse(&kv, "bad%zz=ok%4"), 0);
    assert_string_equal(otlp_kv_get(&kv, "bad%zz"), "ok%4");
    otlp_kv_free(&kv);
}

static const char *fake_env[32][2];

static const char *get(const char *name) {
    for (int i = 0; fake_env[i][0]; i++)
        if (!strcmp(fake_env[i][0], name)) return fake_env[i][1];
    return NULL;
}

static void set_env(const char *const pairs[][2]) {
    memset(fake_env, 0, sizeof fake_env);
    for (int i = 0; pairs && pairs[i][0]; i++) {
        fake_env[i][0] = pairs[i][0];
        fake_env[i][1] = pairs[i][1];
    }
}

static void test_conf(void **state) {
    (void)state;
    char err[256];
    otlp_conf c;
    otlp_manifest m = {.env = "staging", .version = "0.1.0", .build_sha = "abc"};

    /* Defaults. */
    set_env(NULL);
    assert_int_equal(otlp_conf_resolve(&m, get, &c, err, sizeof err), 0);
    assert_string_equal(c.url, "http://localhost:4318/v1/traces");
    assert_true(c.ratio == 1);
    assert_int_equal(c.timeout_ms, 5000);
    assert_string_equal(otlp_kv_get(&c.resource, "service.name"), "routerd");
    assert_string_equal(otlp_kv_get(&c.resource, "deployment.environment.name"), "staging");
    assert_string_equal(c.note, "");
    assert_null(c.ca_file);
    otlp_conf_free(&c);

    /* Trust: the traces variable over the generic one, the manifest over both. */
    const char *const envc[][2] = {{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca-all.pem"},
                                   {NULL, NULL}};
    const char *const envt[][2] = {{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca-all.pem"},
                                   {"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/etc/ca-tr.pem"},
                                   {NULL, NULL}};
    otlp_manifest mc = m;
    mc.ca_file = "/etc/ca-manifest.pem";
    const struct {
        const otlp_manifest *m;
        const char *const (*env)[2];
        const char *want;
    } trust[] = {{&m, envc, "/etc/ca-all.pem"},
                 {&m, envt, "/etc/ca-tr.pem"},
                 {&mc, envt, "/etc/ca-manifest.pem"}};
    for (size_t i = 0; i < sizeof trust / sizeof trust[0]; i++) {
        set_env(trust[i].env);
        assert_int_equal(otlp_conf_resolve(trust[i].m, get, &c, err, sizeof err), 0);
        assert_string_equal(c.ca_file, trust[i].want);
        otlp_conf_free(&c);
    }

    /* The environment. */
    const char *const env1[][2] = {
        {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"},
        {"OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc,x-tenant=t1"},
        {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=t2"},
        {"OTEL_SERVICE_NAME", "router-a"},
        {"OTEL_RESOURCE_ATTRIBUTES",
         "service.name=ignored,team=chat,deployment.environment.name=x"},
        {"OTEL_TRACES_SAMPLER", "parentbased_traceidratio"},
        {"OTEL_TRACES_SAMPLER_ARG", "0.25"},
        {"OTEL_EXPORTER_OTLP_TIMEOUT", "1500"},
        {NULL, NULL}};
    set_env(env1);
    assert_int_equal(otlp_conf_resolve(&m, get, &c, err, sizeof err), 0);
    assert_string_equal(c.url, "http://collector:4318/v1/traces");
    assert_string_equal(otlp_kv_get(&c.headers, "authorization"), "Bearer abc");
    assert_string_equal(otlp_kv_get(&c.headers, "x-tenant"), "t2");
    assert_string_equal(otlp_kv_get(&c.resource, "service.name"), "router-a");
    assert_string_equal(otlp_kv_get(&c.resource, "team"), "chat");
    assert_string_equal(otlp_kv_get(&c.resource, "deployment.environment.name"), "x");
    assert_true(c.ratio == 0.25);
    assert_int_equal(c.timeout_ms, 1500);
    otlp_conf_free(&c);

    /* The manifest wins over the environment. */
    const char *const env2[][2] = {
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://env-traces:4318/custom"},
        {"OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=env"},
        {"OTEL_SERVICE_NAME", "from-env"},
        {"OTEL_TRACES_SAMPLER_ARG", "0.5"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
        {NULL, NULL}};
    set_env(env2);
    otlp_manifest m2 = m;
    assert_int_equal(otlp_conf_resolve(&m2, get, &c, err, sizeof err), 0);
    assert_string_equal(c.url, "http://env-traces:4318/custom"); /* taken as it is */
    assert_true(c.ratio == 0.5);
    assert_non_null(strstr(c.note, "http/json"));
    otlp_conf_free(&c);
    m2.endpoint = "https://mf:4318";
    m2.headers = "x-tenant=manifest, x-key = s3cr3t";
    m2.service_name = "from-manifest";
    m2.resource_attributes = "team=ops";
    m2.ratio_set = true;
    m2.ratio = 0.1;
    m2.timeout_set = true;
    m2.timeout_ms = 700;
    assert_int_equal(otlp_conf_resolve(&m2, get, &c, err, sizeof err), 0);
    assert_string_equal(c.url, "https://mf:4318/v1/traces");
    assert_string_equal(otlp_kv_get(&c.headers, "x-tenant"), "manifest");
    assert_string_equal(otlp_kv_get(&c.headers, "x-key"), "s3cr3t");
    assert_string_equal(otlp_kv_get(&c.resource, "service.name"), "from-manifest");
    assert_string_equal(otlp_kv_get(&c.resource, "team"), "ops");
    assert_true(c.ratio == 0.1);
    assert_int_equal(c.timeout_ms, 700);
    otlp_conf_free(&c);
    m2.traces_endpoint = "http://exact/v1/traces";
    assert_int_equal(otlp_conf_resolve(&m2, get, &c, err, sizeof err), 0);
    assert_string_equal(c.url, "http://exact/v1/traces");
    otlp_conf_free(&c);
    m2.traces_endpoint = NULL;
    m2.endpoint = "http://base/v1/traces";
    assert_int_equal(otlp_conf_resolve(&m2, get, &c, err, sizeof err), 0);
    assert_string_equal(c.url, "http://base/v1/traces");
    otlp_conf_free(&c);

    /* Samplers, bad values, bad URLs. */
    const char *const env3[][2] = {{"OTEL_TRACES_SAMPLER", "always_off"}, {NULL, NULL}};
    set_env(env3);
    assert_int_equal(otlp_conf_resolve(&m, get, &c, err, sizeof err), 0);
    assert_true(c.ratio == 0);
    otlp_conf_free(&c);
    const char *const env4[][2] = {{"OTEL_TRACES_SAMPLER_ARG", "1.5"},
                                   {"OTEL_EXPORTER_OTLP_HEADERS", "justtext"},
                                   {NULL, NULL}};
    set_env(env4);
    assert_int_equal(otlp_conf_resolve(&m, get, &c, err, sizeof err), 0);
    assert_true(c.ratio == 1);
    assert_non_null(strstr(c.note, "OTEL_TRACES_SAMPLER_ARG"));
    assert_non_null(strstr(c.note, "header"));
    assert_null(strstr(c.note, "justtext")); /* header text may be a secret */
    otlp_conf_free(&c);
    set_env(NULL);
    otlp_manifest m3 = m;
    m3.endpoint = "collector:4318";
    assert_int_equal(otlp_conf_resolve(&m3, get, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "endpoint"));
}

/* ---- the plugin over the fake host ---------------------------------------- */

static fotlp *col;

static int setup(void **state) {
    (void)state;
    th_reset();
    th_defaults();
    th_info("env", "test");
    th_info("version", "0.1.0");
    th_info("build_sha", "deadbeef");
    th_info("instance", "traces");
    col = fotlp_start();
    return col ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fotlp_stop(col);
    th_reset();
    return 0;
}

/* A REPLIED event with fresh ids: the nth message. */
static rd_event nth(int n, char trace[33], char span[17], char bspan[17], const char *status) {
    snprintf(trace, 33, "%016x%016x", 0x1000 + n, n * 7919 + 1);
    snprintf(span, 17, "%016x", 0x2000 + n);
    snprintf(bspan, 17, "%016x", 0x3000 + n);
    rd_event ev = replied(status, NULL);
    ev.trace_id = ev.correlation_id = trace;
    ev.span_id = span;
    ev.backend_span_id = bspan;
    ev.update_id = n;
    return ev;
}

static int count_spans(void) {
    int total = 0;
    for (int i = 0; i < fotlp_count(col); i++) {
        char *b = fotlp_body(col, i);
        cJSON *d = cJSON_Parse(b);
        assert_non_null(d);
        cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "resourceSpans"), 0);
        cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
        total += cJSON_GetArraySize(cJSON_GetObjectItem(ss, "spans"));
        cJSON_Delete(d);
        free(b);
    }
    return total;
}

static void test_plugin_batches_and_flush(void **state) {
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "%s", fotlp_base(col));
    th_cfg("endpoint", url);
    th_cfg("headers", "authorization=Bearer tok-123456");
    th_cfg("batch_size", "50");
    th_cfg("interval_ms", "60000"); /* only full batches and the flush send */
    th_secret("authorization=Bearer tok-123456");
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    assert_null(strstr(th_logs(), "tok-123456"));
    char tr[33], sp[17], bs[17];
    for (int i = 1; i <= 100; i++) {
        rd_event ev = nth(i, tr, sp, bs, "ok");
        p->ops->event(self, &ev);
        rd_event rx = ev; /* other event types make no trace */
        rx.type = RD_EV_RECEIVED;
        p->ops->event(self, &rx);
    }
    /* 100 traces of 5 spans in batches of at most 50 spans. */
    assert_true(fotlp_wait_count(col, 5, 5000));
    assert_int_equal(p->ops->flush(self, &err), RD_OK);
    assert_int_equal(count_spans(), 500);
    assert_true(rdpt_metric("routerd_otlp_spans_exported_total", NULL) == 500);
    assert_true(rdpt_metric("routerd_otlp_spans_dropped_total", NULL) == 0);
    for (int i = 0; i < fotlp_count(col); i++) {
        char *h = fotlp_header(col, i, "authorization");
        assert_string_equal(h, "Bearer tok-123456");
        free(h);
        h = fotlp_header(col, i, "content-type");
        assert_string_equal(h, "application/json");
        free(h);
        h = fotlp_path(col, i);
        assert_string_equal(h, "/v1/traces");
        free(h);
        char *b = fotlp_body(col, i);
        assert_true(strlen(b) < 50 * 1200);
        free(b);
    }
    p->ops->stop(self);
    p->ops->destroy(self);
}

static void test_plugin_sampling_and_send_failure(void **state) {
    (void)state;
    th_cfg("endpoint", fotlp_base(col));
    th_cfg("sample_ratio", "0");
    th_secret("chat-secret-42");
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    char tr[33], sp[17], bs[17];
    for (int i = 1; i <= 20; i++) {
        rd_event ev = nth(i, tr, sp, bs, "ok");
        p->ops->event(self, &ev); /* ratio 0: none of these */
    }
    rd_event f = nth(21, tr, sp, bs, "failed");
    f.failure_class = "timeout";
    p->ops->event(self, &f);
    /* A send failure, then the message's REPLIED event. */
    rd_event sf = nth(22, tr, sp, bs, "send_failed");
    sf.type = RD_EV_SEND_FAILED;
    sf.msg = "HTTP 400 for chat-secret-42";
    p->ops->event(self, &sf);
    sf.type = RD_EV_REPLIED;
    sf.msg = NULL;
    p->ops->event(self, &sf);
    assert_int_equal(p->ops->flush(self, &err), RD_OK);
    assert_int_equal(count_spans(), 10);
    char *all = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&all, &len);
    for (int i = 0; i < fotlp_count(col); i++) {
        char *b = fotlp_body(col, i);
        fputs(b, m);
        free(b);
    }
    fclose(m);
    assert_non_null(strstr(all, "\"HTTP 400 for ***\""));
    assert_null(strstr(all, "chat-secret-42"));
    assert_non_null(
        strstr(all, "\"routerd.failure_class\",\"value\":{\"stringValue\":\"timeout\"}"));
    free(all);
    p->ops->stop(self);
    p->ops->destroy(self);
}

/* A dead collector costs spans, never time: event() stays quick, the
 * queue bound holds, flush and stop return promptly. */
static void test_plugin_dead_collector(void **state) {
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", rt_free_port());
    th_cfg("endpoint", url);
    th_cfg("queue_size", "100");
    th_cfg("interval_ms", "10");
    th_cfg("timeout_ms", "300");
    th_cfg("flush_timeout_ms", "1500");
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    char tr[33], sp[17], bs[17];
    long long t0 = rt_now_ms();
    for (int i = 1; i <= 5000; i++) {
        rd_event ev = nth(i, tr, sp, bs, i % 10 ? "ok" : "failed");
        p->ops->event(self, &ev);
    }
    long long took = rt_now_ms() - t0;
    assert_true(took < 1000);
    t0 = rt_now_ms();
    p->ops->flush(self, &err);
    assert_true(rt_now_ms() - t0 < 2500);
    t0 = rt_now_ms();
    p->ops->stop(self);
    assert_true(rt_now_ms() - t0 < 1500);
    double dropped = rdpt_metric("routerd_otlp_spans_dropped_total", NULL);
    assert_true(rdpt_metric("routerd_otlp_spans_exported_total", NULL) == 0);
    assert_true(dropped == 5000 * 5);
    assert_true(rdpt_metric("routerd_otlp_spans_dropped_total",
                            (const char *const[]){"queue_full", NULL}) > 0);
    assert_true(rdpt_metric("routerd_otlp_exports_total", (const char *const[]){"error", NULL}) >=
                1);
    /* One warning, not one per batch. */
    const char *logs = th_logs();
    int warns = 0;
    for (const char *q = logs; (q = strstr(q, "export to the collector failed")); q++)
        warns++;
    assert_int_equal(warns, 1);
    p->ops->destroy(self);
}

/* A collector that fails and then recovers: exports resume. */
static void test_plugin_recovers(void **state) {
    (void)state;
    th_cfg("endpoint", fotlp_base(col));
    th_cfg("interval_ms", "20");
    fotlp_set_status(col, 503);
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    char tr[33], sp[17], bs[17];
    rd_event ev = nth(1, tr, sp, bs, "ok");
    p->ops->event(self, &ev);
    assert_true(fotlp_wait_count(col, 1, 3000));
    fotlp_set_status(col, 200);
    rd_event ev2 = nth(2, tr, sp, bs, "ok");
    p->ops->event(self, &ev2);
    assert_true(fotlp_wait_count(col, 2, 5000));
    assert_int_equal(p->ops->flush(self, &err), RD_OK);
    assert_true(rdpt_metric("routerd_otlp_spans_exported_total", NULL) == 5);
    assert_true(rdpt_metric("routerd_otlp_spans_dropped_total",
                            (const char *const[]){"export_failed", NULL}) == 5);
    assert_non_null(strstr(th_logs(), "HTTP 503"));
    assert_non_null(strstr(th_logs(), "reachable again"));
    p->ops->stop(self);
    p->ops->destroy(self);
}

/* Credentials in the endpoint URL stay out of the log. */
static void test_plugin_url_userinfo_hidden(void **state) {
    (void)state;
    th_cfg("endpoint", "http://bob:pa55word-xyz@127.0.0.1:1");
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    p->ops->stop(self);
    p->ops->destroy(self);
    assert_non_null(strstr(th_logs(), "http://***@127.0.0.1:1/v1/traces"));
    assert_null(strstr(th_logs(), "pa55word"));
}

/* create() refuses key = value, with needle in its message. */
static void refused(const char *key, const char *value, const char *needle) {
    th_cfg(key, value);
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_E_CONFIG);
    assert_non_null(strstr(err.msg, needle));
    p->ops->destroy(self);
}

static void test_plugin_bad_endpoint(void **state) {
    (void)state;
    refused("endpoint", "ftp://nope", "endpoint");
}

static void test_plugin_bad_ca_file(void **state) {
    (void)state;
    refused("ca_file", "/nonexistent/ca.pem", "ca_file: cannot read /nonexistent/ca.pem");
}

/* ---- the collector's answer, read as hostile input ------------------------- */

static void test_answer_partial_success(void **state) {
    (void)state;
    otlp_answer a;
    const char *ok =
        "{\"partialSuccess\":{\"rejectedSpans\":\"3\",\"errorMessage\":\"bad\\u0007x\"}}";
    otlp_answer_parse(ok, strlen(ok), 10, &a);
    assert_int_equal(a.rejected, 3);
    assert_string_equal(a.message, "bad?x");
    assert_string_equal(a.bad, "");
    const char *num = "{\"partialSuccess\":{\"rejectedSpans\":2}}";
    otlp_answer_parse(num, strlen(num), 10, &a);
    assert_int_equal(a.rejected, 2);
    /* More than was sent: cut to the batch, and said so. */
    const char *big = "{\"partialSuccess\":{\"rejectedSpans\":\"7\"}}";
    otlp_answer_parse(big, strlen(big), 5, &a);
    assert_int_equal(a.rejected, 5);
    assert_non_null(strstr(a.bad, "more than the 5 sent"));
    /* Negative, fractional, huge, beyond 64 bits, not a number: ignored. */
    const char *bad[] = {"\"-1\"",
                         "-1",
                         "1.5",
                         "1e300",
                         "\"99999999999999999999\"",
                         "\"18446744073709551617\"",
                         "\"3x\"",
                         "\"\"",
                         "true",
                         "{}",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"partialSuccess\":{\"rejectedSpans\":%s}}", bad[i]);
        otlp_answer_parse(body, strlen(body), 10, &a);
        if (a.rejected != 0 || !a.bad[0])
            fail_msg("rejectedSpans %s taken as %lld", bad[i], (long long)a.rejected);
    }
    /* Empty, unparsable and unrelated answers: everything accepted. */
    const char *none[] = {"", "{}", "not json", "{\"partialSuccess\":null}", "[1,2]", NULL};
    for (int i = 0; none[i]; i++) {
        otlp_answer_parse(none[i], strlen(none[i]), 10, &a);
        assert_int_equal(a.rejected, 0);
        assert_string_equal(a.bad, "");
    }
    otlp_answer_parse(NULL, 0, 10, &a);
    assert_int_equal(a.rejected, 0);
}

static void test_answer_retry_after(void **state) {
    (void)state;
    assert_int_equal(otlp_retry_after_ms("5", 30000), 5000);
    assert_int_equal(otlp_retry_after_ms(" 2 \r\n", 30000), 2000);
    assert_int_equal(otlp_retry_after_ms("0", 30000), 0);
    assert_int_equal(otlp_retry_after_ms("30", 30000), 30000);
    assert_int_equal(otlp_retry_after_ms("120", 30000), 30000);
    assert_int_equal(otlp_retry_after_ms("9223372036854775808", 30000), 30000);
    assert_int_equal(otlp_retry_after_ms("99999999999999999999999999", 30000), 30000);
    const char *bad[] = {"-3", "1.5", "", " ", "5s", "0x10", "+4", NULL};
    for (int i = 0; bad[i]; i++)
        if (otlp_retry_after_ms(bad[i], 30000) != -1) fail_msg("Retry-After '%s' accepted", bad[i]);
    assert_int_equal(otlp_retry_after_ms(NULL, 30000), -1);
    assert_int_equal(otlp_retry_after_ms("5", 2000), 2000);
    assert_int_equal(otlp_retry_after_ms("5", 0), 0);
}

static bool wait_logs(const char *needle, int n, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    while (rdpt_log_count(needle) < n && rt_now_ms() < end)
        rt_sleep_ms(10);
    return rdpt_log_count(needle) >= n;
}

/* A dead collector fills the queue twice: each episode of drops is logged
 * when it starts and when the queue has room again, not per span and not
 * only in a metric. */
static void test_plugin_queue_full_episodes(void **state) {
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", rt_free_port());
    th_cfg("endpoint", url);
    th_cfg("queue_size", "3");
    th_cfg("batch_size", "1");
    th_cfg("interval_ms", "10");
    th_cfg("timeout_ms", "300");
    th_cfg("flush_timeout_ms", "3000");
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    char tr[33], sp[17], bs[17];
    int n = 0;
    for (int episode = 1; episode <= 2; episode++) {
        for (int i = 0; i < 50; i++) {
            rd_event ev = nth(++n, tr, sp, bs, "ok");
            p->ops->event(self, &ev);
        }
        assert_true(wait_logs("export queue full", episode, 5000));
        p->ops->flush(self, &err); /* the dead collector's batch is dropped: room again */
        rd_event ev = nth(++n, tr, sp, bs, "ok");
        p->ops->event(self, &ev);
        assert_true(wait_logs("export queue has room again", episode, 5000));
    }
    rt_sleep_ms(100);
    /* A slow machine may let the exporter free a slot between two events
     * and so split an episode; each start still has its end, and there
     * are a few lines, not one per dropped span. */
    int full = rdpt_log_count("export queue full");
    assert_true(full >= 2 && full <= 10);
    assert_int_equal(rdpt_log_count("has room again"), full);
    assert_true(rdpt_metric("routerd_otlp_spans_dropped_total",
                            (const char *const[]){"queue_full", NULL}) >= 2 * 40 * 5);
    p->ops->stop(self);
    p->ops->destroy(self);
}

/* Partial success: refused spans are counted as dropped, not exported, and
 * told once; hostile counts never make the exported count negative. */
static void test_plugin_partial_success(void **state) {
    (void)state;
    th_cfg("endpoint", fotlp_base(col));
    th_cfg("interval_ms", "10");
    fotlp_set_answer(col, "{\"partialSuccess\":{\"rejectedSpans\":\"2\",\"errorMessage\":\"x\"}}",
                     NULL);
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    char tr[33], sp[17], bs[17];
    for (int i = 1; i <= 2; i++) {
        rd_event ev = nth(i, tr, sp, bs, "ok");
        p->ops->event(self, &ev);
        assert_int_equal(p->ops->flush(self, &err), RD_OK);
    }
    fotlp_set_answer(col, "{\"partialSuccess\":{\"rejectedSpans\":\"99999999999999999999\"}}",
                     NULL);
    rd_event ev = nth(3, tr, sp, bs, "ok");
    p->ops->event(self, &ev);
    assert_int_equal(p->ops->flush(self, &err), RD_OK);
    fotlp_set_answer(col, "{\"partialSuccess\":{\"rejectedSpans\":\"-5\"}}", NULL);
    ev = nth(4, tr, sp, bs, "ok");
    p->ops->event(self, &ev);
    assert_int_equal(p->ops->flush(self, &err), RD_OK);
    fotlp_set_answer(col, NULL, NULL);
    p->ops->stop(self);
    assert_true(rdpt_metric("routerd_otlp_spans_dropped_total",
                            (const char *const[]){"rejected", NULL}) == 4);
    assert_true(rdpt_metric("routerd_otlp_spans_exported_total", NULL) == 4 * 5 - 4);
    assert_int_equal(rdpt_log_count("the collector refused 2 of 5 span(s): x"), 1);
    assert_int_equal(rdpt_log_count("rejectedSpans is not a count"), 2);
    assert_int_equal(rdpt_log_count("accepts every span again"), 1);
    p->ops->destroy(self);
}

/* Retry-After is honoured (longer than the first back-off of 0.5 s) and
 * cut to 30 s whatever the collector says. */
static void test_plugin_retry_after(void **state) {
    (void)state;
    th_cfg("endpoint", fotlp_base(col));
    th_cfg("interval_ms", "10");
    fotlp_set_status(col, 429);
    fotlp_set_answer(col, NULL, "3");
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    char tr[33], sp[17], bs[17];
    rd_event ev = nth(1, tr, sp, bs, "ok");
    p->ops->event(self, &ev);
    assert_true(fotlp_wait_count(col, 1, 3000));
    long long t0 = rt_now_ms();
    fotlp_set_status(col, 200);
    fotlp_set_answer(col, NULL, NULL);
    ev = nth(2, tr, sp, bs, "ok");
    p->ops->event(self, &ev);
    assert_true(fotlp_wait_count(col, 2, 10000));
    long long waited = rt_now_ms() - t0;
    if (waited < 1500) fail_msg("sent again after %lld ms, before Retry-After: 3", waited);
    p->ops->stop(self);
    p->ops->destroy(self);
}

/* A hostile Retry-After (days) is cut to retry_after_max_s. */
static void test_plugin_retry_after_capped(void **state) {
    (void)state;
    th_cfg("endpoint", fotlp_base(col));
    th_cfg("interval_ms", "10");
    th_cfg("retry_after_max_s", "1");
    fotlp_set_status(col, 503);
    fotlp_set_answer(col, NULL, "8640000");
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    char tr[33], sp[17], bs[17];
    rd_event ev = nth(1, tr, sp, bs, "ok");
    p->ops->event(self, &ev);
    assert_true(fotlp_wait_count(col, 1, 3000));
    fotlp_set_status(col, 200);
    fotlp_set_answer(col, NULL, NULL);
    ev = nth(2, tr, sp, bs, "ok");
    p->ops->event(self, &ev);
    assert_true(fotlp_wait_count(col, 2, 6000));
    p->ops->stop(self);
    p->ops->destroy(self);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_ok),
        cmocka_unit_test(test_trace_failed),
        cmocka_unit_test(test_trace_rejected_and_notice),
        cmocka_unit_test(test_trace_caller),
        cmocka_unit_test(test_trace_invalid_and_hostile),
        cmocka_unit_test(test_ids_and_sampler),
        cmocka_unit_test(test_kv_parse),
        cmocka_unit_test(test_conf),
        cmocka_unit_test(test_answer_partial_success),
        cmocka_unit_test(test_answer_retry_after),
        cmocka_unit_test_setup_teardown(test_plugin_queue_full_episodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_partial_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_retry_after_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_batches_and_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_sampling_and_send_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_dead_collector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_url_userinfo_hidden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_bad_ca_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_bad_endpoint, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
