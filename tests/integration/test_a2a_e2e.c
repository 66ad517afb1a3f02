/*
 * The real routerd (console transport) with the a2a backend against the
 * fake agent: card variants and dialects, headers, tasks, input-required,
 * contextId per chat across a restart, readiness.
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
static rt_proc *run(const char *m, const char *const *lines, const char *const *expect) {
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

static fa_req req_of(fa *f, const char *method, int nth) {
    fa_req r;
    for (int i = 0, k = 0; fa_get(f, i, &r) == 0; i++)
        if (!strcmp(r.method, method) && k++ == nth) return r;
    fail_msg("no request %d of %s", nth, method);
    memset(&r, 0, sizeof r);
    return r;
}

static void test_v10_card_headers(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    char *m = manifest("v10", 0, fa_base(f), NULL);
    const char *in[] = {"hello there\n", NULL};
    const char *out[] = {"echo: hello there\n", NULL};
    rt_proc *p = run(m, in, out);
    assert_string_equal(rt_stdout(p), "echo: hello there\n");
    fa_req r = req_of(f, "SendMessage", 0);
    assert_string_equal(r.a2a_version, "1.0");
    assert_string_equal(r.authorization, "Bearer " TOKEN);
    assert_int_equal(strncmp(r.traceparent, "00-", 3), 0);
    assert_int_equal(strlen(r.traceparent), 55);
    assert_int_equal(strlen(r.message_id), 36);
    assert_string_equal(r.context_id, "");
    /* The card was fetched with the 1.0 header, at the new path. */
    fa_req c;
    assert_int_equal(fa_get(f, 0, &c), 0);
    assert_string_equal(c.path, "/.well-known/agent-card.json");
    assert_string_equal(c.a2a_version, "1.0");
    assert_null(strstr(rt_stderr(p), TOKEN));
    rt_free(p);
    free(m);
    fa_stop(f);
}

static void test_v03_card(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V03, FA_SPEAK_V03, 0);
    char *m = manifest("v03", 0, fa_base(f), NULL);
    const char *in[] = {"hi\n", NULL};
    const char *out[] = {"echo: hi\n", NULL};
    rt_proc *p = run(m, in, out);
    assert_string_equal(rt_stdout(p), "echo: hi\n");
    fa_req r = req_of(f, "message/send", 0);
    assert_string_equal(r.a2a_version, "");
    assert_int_equal(fa_count_method(f, "SendMessage"), 0);
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* Only /.well-known/agent.json exists: found after the 404. */
static void test_legacy_card_path(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_LEGACY, FA_SPEAK_V03, 0);
    char *m = manifest("legacy", 0, fa_base(f), NULL);
    const char *in[] = {"old\n", NULL};
    const char *out[] = {"echo: old\n", NULL};
    rt_proc *p = run(m, in, out);
    assert_string_equal(rt_stdout(p), "echo: old\n");
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* The card claims 1.0 but the agent speaks 0.3: one -32601, then 0.3 for
 * good. */
static void test_dialect_fallback(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V10, FA_SPEAK_V03, 0);
    char *m = manifest("fallback", 0, fa_base(f), NULL);
    const char *in[] = {"one\n", "two\n", NULL};
    const char *out[] = {"echo: one\n", "echo: two\n", NULL};
    rt_proc *p = run(m, in, out);
    assert_string_equal(rt_stdout(p), "echo: one\necho: two\n");
    assert_int_equal(fa_count_method(f, "SendMessage"), 1);
    assert_int_equal(fa_count_method(f, "message/send"), 2);
    /* The retry in the other dialect keeps the messageId. */
    assert_string_equal(req_of(f, "SendMessage", 0).message_id,
                        req_of(f, "message/send", 0).message_id);
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* card_url = none: url is the endpoint, no card request at all. */
static void test_no_discovery(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_INVALID, FA_SPEAK_V10 | FA_SPEAK_V03, 0);
    char url[128];
    snprintf(url, sizeof url, "%s/rpc", fa_base(f));
    char *m = manifest("nodisc", 0, url, "card_url = none\ndialect = 0.3\n");
    const char *in[] = {"direct\n", NULL};
    const char *out[] = {"echo: direct\n", NULL};
    rt_proc *p = run(m, in, out);
    assert_int_equal(fa_count_method(f, ""), 0);
    assert_int_equal(fa_count_method(f, "message/send"), 1);
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* A working task is polled with GetTask until it completes. */
static void test_task_polled(void **state) {
    (void)state;
    for (int v = 0; v < 2; v++) {
        fa *f = fa_start(v ? FA_CARD_V03 : FA_CARD_V10, v ? FA_SPEAK_V03 : FA_SPEAK_V10, 0);
        char *m = manifest(v ? "poll03" : "poll10", 0, fa_base(f), NULL);
        const char *in[] = {"task:all done\n", NULL};
        const char *out[] = {"all done\n", NULL};
        rt_proc *p = run(m, in, out);
        assert_string_equal(rt_stdout(p), "all done\n");
        assert_true(fa_count_method(f, v ? "tasks/get" : "GetTask") >= 2);
        rt_free(p);
        free(m);
        fa_stop(f);
    }
}

/* input-required: the question is relayed, the answer continues the same
 * task in the same context. */
static void test_input_required(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    char *m = manifest("ask", 0, fa_base(f), NULL);
    const char *in[] = {"ask\n", "Bob\n", "after\n", NULL};
    const char *out[] = {"What is your name?\n", "Hello, Bob\n", "echo: after\n", NULL};
    rt_proc *p = run(m, in, out);
    assert_string_equal(rt_stdout(p), "What is your name?\nHello, Bob\necho: after\n");
    fa_req a = req_of(f, "SendMessage", 0), b = req_of(f, "SendMessage", 1),
           c = req_of(f, "SendMessage", 2);
    assert_string_equal(a.task_id, "");
    assert_string_equal(b.task_id, "task-1");
    assert_string_equal(b.context_id, "ctx-1");
    assert_string_equal(c.task_id, ""); /* the task is over */
    assert_string_equal(c.context_id, "ctx-1");
    assert_string_not_equal(a.message_id, b.message_id);
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* contextId is kept per chat, survives a restart, never shared. */
static void test_context_restart(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V03, FA_SPEAK_V03, 0);
    char *m = manifest("restart", 0, fa_base(f), NULL);
    const char *in1[] = {"@5 first\n", "@6 other\n", NULL};
    const char *out1[] = {"@5 echo: first\n", "@6 echo: other\n", NULL};
    rt_proc *p = run(m, in1, out1);
    rt_free(p);
    const char *in2[] = {"@6 again six\n", "@5 again five\n", NULL};
    const char *out2[] = {"@6 echo: again six\n", "@5 echo: again five\n", NULL};
    p = run(m, in2, out2);
    rt_free(p);
    fa_req r5 = req_of(f, "message/send", 0), r6 = req_of(f, "message/send", 1);
    fa_req s6 = req_of(f, "message/send", 2), s5 = req_of(f, "message/send", 3);
    assert_string_equal(r5.context_id, "");
    assert_string_equal(r6.context_id, "");
    assert_string_equal(s6.text, "again six");
    assert_string_equal(s6.context_id, "ctx-2");
    assert_string_equal(s5.context_id, "ctx-1");
    free(m);
    fa_stop(f);
}

/* The agent lost the pending task (restarted): -32001, the taskId is
 * dropped and the message goes out again as a new task in the same
 * context. */
static void test_task_lost(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V03, FA_SPEAK_V03, 0);
    char *m = manifest("lost", 0, fa_base(f), NULL);
    const char *in1[] = {"ask\n", NULL};
    const char *out1[] = {"What is your name?\n", NULL};
    rt_proc *p = run(m, in1, out1);
    rt_free(p);
    free(m);
    fa_stop(f);
    f = fa_start(FA_CARD_V03, FA_SPEAK_V03, 0); /* no tasks, another port */
    m = manifest("lost", 0, fa_base(f), NULL);
    const char *in2[] = {"Bob\n", "again\n", NULL};
    const char *out2[] = {"echo: Bob\n", "echo: again\n", NULL};
    p = run(m, in2, out2);
    fa_req a = req_of(f, "message/send", 0), b = req_of(f, "message/send", 1),
           c = req_of(f, "message/send", 2);
    assert_string_equal(a.task_id, "task-1");
    assert_string_equal(a.context_id, "ctx-1");
    assert_string_equal(b.task_id, "");
    assert_string_equal(b.context_id, "ctx-1");
    assert_string_equal(b.text, "Bob");
    assert_string_equal(c.task_id, "");
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* An API key goes in its header and never into the log. */
static void test_api_key(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    char *m = manifest("apikey", 0, fa_base(f),
                       "api_key_header = X-API-Key\napi_key = k-Very-Secret-42\n");
    const char *in[] = {"key\n", NULL};
    const char *out[] = {"echo: key\n", NULL};
    rt_proc *p = run(m, in, out);
    fa_req c, r = req_of(f, "SendMessage", 0);
    assert_string_equal(r.api_key, "k-Very-Secret-42");
    assert_int_equal(fa_get(f, 0, &c), 0); /* the card fetch carries it too */
    assert_string_equal(c.api_key, "k-Very-Secret-42");
    assert_null(strstr(rt_stderr(p), "k-Very-Secret-42"));
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* Many chats at once (concurrent handle() calls): every message answered,
 * each chat keeps one context of its own. */
static void test_many_chats(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    char *m = manifest("many", 0, fa_base(f), NULL);
    rt_proc *p = rt_start(m, NULL, NULL);
    char line[64];
    for (int k = 0; k < 5; k++)
        for (int c = 0; c < 8; c++) {
            snprintf(line, sizeof line, "@%d m%d-%d\n", 300 + c, c, k);
            assert_int_equal(rt_write(p, line), 0);
        }
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 30000), 0);
    for (int k = 0; k < 5; k++)
        for (int c = 0; c < 8; c++) {
            snprintf(line, sizeof line, "@%d echo: m%d-%d\n", 300 + c, c, k);
            assert_non_null(strstr(rt_stdout(p), line));
        }
    char ctx[8][64] = {{0}};
    fa_req r;
    for (int i = 0; fa_get(f, i, &r) == 0; i++) {
        int c, k;
        if (strcmp(r.method, "SendMessage") || sscanf(r.text, "m%d-%d", &c, &k) != 2) continue;
        if (k == 0) {
            assert_string_equal(r.context_id, "");
        } else {
            assert_true(r.context_id[0]);
            if (!ctx[c][0]) snprintf(ctx[c], sizeof ctx[c], "%s", r.context_id);
            assert_string_equal(r.context_id, ctx[c]);
        }
    }
    for (int a = 0; a < 8; a++)
        for (int b = a + 1; b < 8; b++)
            assert_string_not_equal(ctx[a], ctx[b]);
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* The agent moved its endpoint: the old one answers 404, the card names
 * the new one; the message is resent there, not lost. */
static void test_endpoint_moved(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    fa *g = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    char *m = manifest("moved", 0, fa_base(f), NULL);
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, "before\n");
    assert_true(rt_wait_stdout(p, "echo: before\n", 10000));
    char url[128];
    snprintf(url, sizeof url, "%s/rpc", fa_base(g));
    fa_set_endpoint(f, url);
    fa_rpc_status(f, 404);
    rt_write(p, "after\n");
    assert_true(rt_wait_stdout(p, "echo: after\n", 10000));
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_int_equal(fa_count_method(g, "SendMessage"), 1);
    assert_string_equal(req_of(g, "SendMessage", 0).text, "after");
    assert_string_equal(req_of(g, "SendMessage", 0).context_id, "ctx-1");
    rt_free(p);
    free(m);
    fa_stop(f);
    fa_stop(g);
}

/* /new forgets the context. */
static void test_new_command(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V03, FA_SPEAK_V03, 0);
    char *m = manifest("new", 0, fa_base(f), NULL);
    const char *in[] = {"one\n", "/new\n", "two\n", NULL};
    const char *out[] = {"echo: one\n", "new conversation", "echo: two\n", NULL};
    rt_proc *p = run(m, in, out);
    assert_int_equal(fa_count_method(f, "message/send"), 2);
    assert_string_equal(req_of(f, "message/send", 1).context_id, "");
    rt_free(p);
    free(m);
    fa_stop(f);
}

/* /healthz stays 503 until the card is fetched, then 200. */
static void test_ready_after_card(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    fa_card_status(f, 503);
    int port = rt_free_port();
    char *m = manifest("health", port, fa_base(f), NULL);
    rt_proc *p = rt_start(m, NULL, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    assert_true(rt_wait_http(url, 503, 10000));
    rt_sleep_ms(600);
    assert_int_equal(rt_http("GET", url, NULL, NULL, NULL), 503);
    fa_card_status(f, 0);
    assert_true(rt_wait_http(url, 200, 15000));
    assert_non_null(strstr(rt_stderr(p), fa_base(f))); /* the log names the agent */
    rt_write(p, "now\n");
    assert_true(rt_wait_stdout(p, "echo: now\n", 10000));
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    rt_free(p);
    free(m);
    fa_stop(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v10_card_headers), cmocka_unit_test(test_v03_card),
        cmocka_unit_test(test_legacy_card_path), cmocka_unit_test(test_dialect_fallback),
        cmocka_unit_test(test_no_discovery),     cmocka_unit_test(test_task_polled),
        cmocka_unit_test(test_input_required),   cmocka_unit_test(test_context_restart),
        cmocka_unit_test(test_new_command),      cmocka_unit_test(test_task_lost),
        cmocka_unit_test(test_api_key),          cmocka_unit_test(test_many_chats),
        cmocka_unit_test(test_endpoint_moved),   cmocka_unit_test(test_ready_after_card),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
