/*
 * The real routerd exporting traces to a stand-in collector: 2,000
 * messages with 5 % injected fatal failures and sample_ratio 0.25. Every
 * payload is checked against the OpenTelemetry protobuf definitions by
 * tests/otlp/validate.js (node + protobufjs); the exported traces are
 * exactly the failed messages plus the ok ones the trace-id sampler
 * picks, and their number is within statistical bounds. A collector that
 * hangs costs dropped spans, not replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_otlp.h"
#include "harness.h"
#include "test_sinks_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MESSAGES 2000
#define HEADER_SECRET "otlp-hdr-s3cr3t-7731"

static rt_fix *fx;
static fotlp *col;

static rt_fix_spec fix = {.fx = &fx, .otlp = &col};

/* Sampled at 0.25 iff the low 56 bits of the trace id are below 2^54,
 * i.e. the first of the last 14 hex digits is 0-3 (docs/observability.md). */
static bool sampled_quarter(const char *trace_id) {
    char c = trace_id[18];
    return c >= '0' && c <= '3';
}

typedef struct msg {
    char corr[33];
    bool failed;
    bool exported;
} msg;

static msg msgs[MESSAGES + 16];
static int nmsgs;

static msg *find(const char *corr) {
    for (int i = 0; i < nmsgs; i++)
        if (!strcmp(msgs[i].corr, corr)) return &msgs[i];
    return NULL;
}

static void test_sampling_and_schema(void **state) {
    (void)state;
    char *m = rt_manifest(
        fx->dir, "otlp", 0,
        "rate_limit_per_minute = 0\nqueue_depth = 4096\n"
        "[transport.console]\nplugin = console\n"
        "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\nfail_fatal = 0.05\nseed = 1\n"
        "[sink.traces]\nplugin = otlp\nendpoint = %s\nsample_ratio = 0.25\n"
        "headers = authorization=Bearer " HEADER_SECRET "\nservice_name = routerd-test\n"
        "[sink.logs]\nplugin = jsonlog\npath = %s/routerd.log\nlevel = info\n"
        "[persona.helper]\nbackend = mock\nchats = *\n",
        fotlp_base(col), fx->dir);
    /* The standard variables complement the manifest (which wins). */
    const char *const env[] = {"OTEL_EXPORTER_OTLP_HEADERS=x-tenant=acme,authorization=from-env",
                               "OTEL_RESOURCE_ATTRIBUTES=team=chat%20ops",
                               "OTEL_TRACES_SAMPLER_ARG=1", NULL};
    rt_proc *p = rt_start(m, NULL, env);
    char line[128];
    for (int i = 0; i < MESSAGES; i++) {
        snprintf(line, sizeof line, "@%d message %d\n", 1000 + i % 100, i);
        assert_int_equal(rt_write(p, line), 0);
    }
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 90000), 0);
    assert_int_equal(rt_wait_stdout_lines(p, MESSAGES, 1000), MESSAGES);

    /* The outcome of every message, from the JSON log. */
    char path[1024];
    snprintf(path, sizeof path, "%s/routerd.log", fx->dir);
    char *log = sk_slurp(path);
    assert_non_null(log);
    nmsgs = 0;
    int failed = 0;
    for (char *l = strtok(log, "\n"); l; l = strtok(NULL, "\n")) {
        char why[512];
        cJSON *o = sk_log_line(l, "test", why, sizeof why);
        if (!o) fail_msg("%s", why);
        if (!strcmp(cJSON_GetObjectItem(o, "event")->valuestring, "replied")) {
            assert_true(nmsgs < MESSAGES);
            msg *x = &msgs[nmsgs++];
            snprintf(x->corr, sizeof x->corr, "%s",
                     cJSON_GetObjectItem(o, "correlation_id")->valuestring);
            x->failed = strcmp(cJSON_GetObjectItem(o, "status")->valuestring, "ok") != 0;
            failed += x->failed;
        }
        cJSON_Delete(o);
    }
    free(log);
    assert_int_equal(nmsgs, MESSAGES);
    /* 5 % of 2,000, within 4.5 standard deviations. */
    assert_true(abs(failed - 100) < 44);

    /* Every payload through the validator. */
    char pdir[1024];
    snprintf(pdir, sizeof pdir, "%s/payloads", fx->dir);
    mkdir(pdir, 0755);
    int npayloads = fotlp_write_bodies(col, pdir);
    assert_true(npayloads >= 1);
    assert_int_equal(npayloads, fotlp_count(col));
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "node %s --env test --service routerd-test %s",
             sk_src("tests/otlp/validate.js"), pdir);
    int rc = sk_run(cmd, &out);
    cJSON *sum = cJSON_Parse(out);
    if (rc != 0 || !sum) fail_msg("validator exit %d: %.3000s", rc, out ? out : "");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(sum, "ok")));

    int exported_ok = 0, exported_err = 0;
    cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(sum, "traces")) {
        const char *id = cJSON_GetObjectItem(t, "id")->valuestring;
        msg *x = find(id);
        if (!x) fail_msg("trace %s is no message of this run", id);
        assert_false(x->exported); /* one trace per message */
        x->exported = true;
        bool err = cJSON_IsTrue(cJSON_GetObjectItem(t, "error"));
        assert_true(err == x->failed);
        if (err) {
            exported_err++;
            assert_string_equal(cJSON_GetObjectItem(t, "failure_class")->valuestring, "fatal");
        } else {
            exported_ok++;
        }
        assert_string_equal(cJSON_GetObjectItem(t, "persona")->valuestring, "helper");
        assert_non_null(cJSON_GetObjectItem(t, "backend_span_id")->valuestring);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(t, "spans")), 4);
    }
    /* Every failure is there; ok messages exactly as the sampler says. */
    int expect_ok = 0;
    for (int i = 0; i < nmsgs; i++) {
        if (msgs[i].failed) {
            if (!msgs[i].exported) fail_msg("failed message %s has no trace", msgs[i].corr);
        } else {
            bool want = sampled_quarter(msgs[i].corr);
            expect_ok += want;
            if (want != msgs[i].exported)
                fail_msg("message %s: sampled %d, exported %d", msgs[i].corr, want,
                         msgs[i].exported);
        }
    }
    assert_int_equal(exported_err, failed);
    assert_int_equal(exported_ok, expect_ok);
    double n_ok = MESSAGES - failed, sd = sqrt(n_ok * 0.25 * 0.75);
    if (fabs(exported_ok - 0.25 * n_ok) > 4 * sd)
        fail_msg("%d ok traces exported of %.0f: outside 0.25 +- 4 sd", exported_ok, n_ok);
    assert_int_equal(cJSON_GetObjectItem(sum, "spans")->valueint, (exported_ok + exported_err) * 5);
    cJSON_Delete(sum);
    free(out);

    /* Headers: the manifest's wins over the environment's, both arrive. */
    for (int i = 0; i < fotlp_count(col); i++) {
        char *h = fotlp_header(col, i, "authorization");
        assert_string_equal(h, "Bearer " HEADER_SECRET);
        free(h);
        h = fotlp_header(col, i, "x-tenant");
        assert_string_equal(h, "acme");
        free(h);
        char *b = fotlp_body(col, i);
        assert_null(strstr(b, HEADER_SECRET));
        assert_non_null(strstr(b, "{\"key\":\"team\",\"value\":{\"stringValue\":\"chat ops\"}}"));
        free(b);
    }
    /* The secret header value is not in any log. */
    snprintf(path, sizeof path, "%s/routerd.log", fx->dir);
    log = sk_slurp(path);
    assert_null(strstr(log, HEADER_SECRET));
    assert_null(strstr(rt_stderr(p), HEADER_SECRET));
    free(log);
    rt_free(p);
    free(m);
}

/* A collector that holds every request for 3 s, with a 300 ms export
 * timeout and a small queue: replies keep flowing, spans are dropped and
 * counted, the drain stays short. */
static void test_hanging_collector(void **state) {
    (void)state;
    fotlp_set_delay(col, 3000);
    rt_fix_manifest(
        fx,
        "rate_limit_per_minute = 0\n"
        "[transport.console]\nplugin = console\n"
        "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\n"
        "[sink.traces]\nplugin = otlp\nendpoint = %s\nqueue_size = 20\ntimeout_ms = 300\n"
        "interval_ms = 50\nflush_timeout_ms = 1000\n"
        "[sink.metrics]\nplugin = prometheus\n"
        "[persona.helper]\nbackend = mock\nchats = *\n",
        fotlp_base(col));
    rt_proc *p = rt_fix_start(fx, NULL, 0);
    const char *url = rt_fix_url(fx, "/metrics");
    assert_true(rt_wait_http(url, 200, 10000));
    long long t0 = rt_now_ms();
    char line[64];
    for (int i = 0; i < 300; i++) {
        snprintf(line, sizeof line, "@%d m%d\n", 1 + i % 30, i);
        rt_write(p, line);
    }
    assert_int_equal(rt_wait_stdout_lines(p, 300, 10000), 300);
    assert_true(rt_now_ms() - t0 < 5000);
    char *body = NULL;
    /* Let at least one export time out. */
    long long end = rt_now_ms() + 5000;
    double failed_exports = 0;
    while (rt_now_ms() < end) {
        free(body);
        body = NULL;
        assert_int_equal(rt_http("GET", url, NULL, NULL, &body), 200);
        failed_exports = sk_metric(body, "routerd_otlp_exports_total",
                                   (const char *const[]){"result=\"error\"", NULL});
        if (failed_exports >= 1) break;
        rt_sleep_ms(100);
    }
    assert_true(failed_exports >= 1);
    assert_true(sk_metric(body, "routerd_otlp_spans_dropped_total",
                          (const char *const[]){"reason=\"queue_full\"", NULL}) > 0);
    assert_true(sk_metric(body, "routerd_otlp_spans_exported_total", NULL) == 0);
    free(body);
    t0 = rt_now_ms();
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    /* flush waits at most flush_timeout_ms, then one request's timeout. */
    assert_true(rt_now_ms() - t0 < 6000);
    fotlp_set_delay(col, 0);
}

int main(void) {
    /* Where the sinks_otlp_npm_ci fixture installs the validator's packages. */
    setenv("NODE_PATH", ROUTERD_BINARY_DIR "/otlp-validator/node_modules", 0);
    if (!sk_have("node")) {
        fprintf(stderr, "node is needed to validate OTLP payloads (tests/otlp)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_sampling_and_schema, &fix),
        RT_FIX_TEST(test_hanging_collector, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
