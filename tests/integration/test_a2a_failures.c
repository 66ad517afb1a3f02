/*
 * The a2a backend's failure handling through the real binary: each class
 * of agent failure gives the configured notice (never raw JSON), the right
 * classification in the router's log, and transient failures are retried
 * with the same messageId.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_a2a.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "a2a-Secret-T0ken-xyz"

static char *dir;

static int setup(void **state) {
    (void)state;
    dir = rt_tmpdir();
    return dir ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    rt_rmtree(dir);
    free(dir);
    return 0;
}

/* Manifest with the a2a backend at url plus extra backend keys. */
static char *manifest(const char *name, int port, const char *url, const char *extra) {
    char text[4096], listen[64];
    if (port)
        snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    else
        snprintf(listen, sizeof listen, "off");
    snprintf(text, sizeof text,
             "[router]\nenv = test\nadmin_listen = %s\nstate_dir = %s/state-%s\n"
             "rate_limit_per_minute = 0\n"
             "[transport.console]\nplugin = console\n"
             "[backend.agent]\nplugin = a2a\nurl = %s\ntoken = " TOKEN "\n"
             "connect_timeout_s = 2\npoll_interval_ms = 20\n%s\n"
             "[persona.p]\nbackend = agent\nchats = *\n",
             listen, dir, name, url, extra ? extra : "");
    char fname[128];
    snprintf(fname, sizeof fname, "%s.ini", name);
    return rt_write_file(dir, fname, text);
}

/* Feeds lines one at a time (each waits for its answer), then ends input. */
__attribute__((unused)) static rt_proc *run(const char *m, const char *const *lines,
                                            const char *const *expect) {
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    for (int i = 0; lines[i]; i++) {
        assert_int_equal(rt_write(p, lines[i]), 0);
        if (expect && expect[i] && !rt_wait_stdout(p, expect[i], 15000)) {
            fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", rt_stdout(p), rt_stderr(p));
            fail_msg("no '%s' in the output", expect[i]);
        }
    }
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    return p;
}

__attribute__((unused)) static fa_req req_of(fa *f, const char *method, int nth) {
    fa_req r;
    for (int i = 0, k = 0; fa_get(f, i, &r) == 0; i++)
        if (!strcmp(r.method, method) && k++ == nth) return r;
    fail_msg("no request %d of %s", nth, method);
    memset(&r, 0, sizeof r);
    return r;
}

typedef struct {
    const char *line, *reply, *log;
} fcase;

static void test_failure_classes(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V10, FA_SPEAK_V10 | FA_SPEAK_V03, 0);
    char *m = manifest("fail", 0, fa_base(f),
                       "failure_notice = Agent trouble, try later.\nretries = 2\n"
                       "max_response_bytes = 65536\ntimeout_s = 2\n");
    static const fcase cases[] = {
        {"@11 rpcerr:-32602\n", "@11 Agent trouble, try later.\n",
         "backend failed (fatal): agent error -32602"},
        {"@12 rpcerr:-32603\n", "@12 Agent trouble, try later.\n",
         "backend failed (transient): agent error -32603"},
        {"@13 http:401\n", "@13 Agent trouble, try later.\n",
         "backend failed (fatal): agent answered HTTP 401"},
        {"@14 http:500\n", "@14 Agent trouble, try later.\n",
         "backend failed (transient): agent answered HTTP 500"},
        {"@15 http:429\n", "@15 Agent trouble, try later.\n",
         "backend failed (transient): agent answered HTTP 429"},
        {"@16 garbage\n", "@16 Agent trouble, try later.\n",
         "backend failed (protocol): invalid agent response"},
        {"@17 big\n", "@17 Agent trouble, try later.\n",
         "backend failed (protocol): response larger"},
        {"@18 slow:3500\n", "@18 Agent trouble, try later.\n",
         "backend failed (timeout): no answer before the deadline"},
        {"@19 fail\n", "@19 I cannot do that.\n", "backend failed (fatal): task failed"},
        {"@20 flaky:2:500\n", "@20 recovered\n", NULL},
        {"@21 flaky:1:0\n", "@21 recovered\n", NULL},
        {"@22 rpcerr:-32004\n", "@22 Agent trouble, try later.\n",
         "backend failed (fatal): agent error -32004"},
        {"@24 badid\n", "@24 Agent trouble, try later.\n",
         "backend failed (protocol): response id does not match"},
        {"@25 forever\n", "@25 Agent trouble, try later.\n",
         "backend failed (timeout): task still running at the deadline"},
        {"@23 http:404\n", "@23 Agent trouble, try later.\n",
         "backend failed (fatal): agent answered HTTP 404"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    rt_proc *p = rt_start(m, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rt_write(p, cases[i].line), 0);
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 30000), 0);
    const char *out = rt_stdout(p), *err = rt_stderr(p);
    for (size_t i = 0; i < n; i++) {
        if (!strstr(out, cases[i].reply)) fail_msg("no '%s' in:\n%s", cases[i].reply, out);
        if (cases[i].log && !strstr(err, cases[i].log))
            fail_msg("no '%s' in:\n%s", cases[i].log, err);
    }
    assert_null(strchr(out, '{')); /* never raw JSON to the user */
    assert_null(strstr(err, TOKEN));
    /* Transient failures were retried with the same messageId; fatal ones not. */
    int tries20 = 0, tries12 = 0, tries11 = 0;
    char mid20[96] = "";
    fa_req r;
    for (int i = 0; fa_get(f, i, &r) == 0; i++) {
        if (!strcmp(r.text, "flaky:2:500")) {
            if (!tries20++) snprintf(mid20, sizeof mid20, "%s", r.message_id);
            assert_string_equal(r.message_id, mid20);
        }
        tries12 += !strcmp(r.text, "rpcerr:-32603");
        tries11 += !strcmp(r.text, "rpcerr:-32602");
    }
    assert_int_equal(tries20, 3);
    assert_int_equal(tries12, 3);
    assert_int_equal(tries11, 1);
    /* The task still running at the deadline was canceled. */
    assert_int_equal(fa_count_method(f, "CancelTask"), 1);
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* No failure_notice: the router's own notice; a task failure still
 * relays the agent's words. The agent unreachable: transient. */
static void test_unreachable_agent(void **state) {
    (void)state;
    int port = rt_free_port();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    char *m = manifest("down", 0, url, "retries = 1\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_true(rt_wait_stderr(p, url, 10000)); /* the log names the agent */
    rt_write(p, "anyone?\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_non_null(strstr(rt_stderr(p), "backend failed (transient)"));
    assert_true(strlen(rt_stdout(p)) > 1);
    assert_null(strstr(rt_stderr(p), TOKEN));
    rt_free(p);
    free(m);
}

/* An invalid card is a clear error naming the URL, and not ready. */
static void test_invalid_card(void **state) {
    (void)state;
    for (int k = 0; k < 2; k++) {
        fa *f = fa_start(k ? FA_CARD_NO_RPC : FA_CARD_INVALID, FA_SPEAK_V10, 0);
        int port = rt_free_port();
        char *m = manifest(k ? "norpc" : "badcard", port, fa_base(f), NULL);
        rt_proc *p = rt_start(m, NULL, NULL);
        assert_true(rt_wait_stderr(p, "invalid agent card at", 10000));
        assert_non_null(strstr(rt_stderr(p), fa_base(f)));
        char hz[96];
        snprintf(hz, sizeof hz, "http://127.0.0.1:%d/healthz", port);
        assert_true(rt_wait_http(hz, 503, 5000));
        rt_close_stdin(p);
        assert_int_equal(rt_wait(p, 20000), 0);
        rt_free(p);
        free(m);
        fa_stop(f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failure_classes),
        cmocka_unit_test(test_unreachable_agent),
        cmocka_unit_test(test_invalid_card),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
