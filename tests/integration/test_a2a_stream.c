/*
 * Streaming through the real binary: SSE written in odd pieces (split
 * lines, CRLF, comments, multi-line data), artifact chunks assembled, a
 * cut stream finished by polling, an error event, a JSON body instead of
 * a stream; both dialects.
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

static void run_stream(int v10) {
    fa *f = fa_start(v10 ? FA_CARD_V10 : FA_CARD_V03, v10 ? FA_SPEAK_V10 : FA_SPEAK_V03, 1);
    char *m = manifest(v10 ? "s10" : "s03", 0, fa_base(f),
                       "stream = true\nretries = 1\nfailure_notice = Agent trouble.\n");
    const char *in[] = {"@1 stream:alpha beta gamma delta epsilon\n",
                        "@2 streamcut\n",
                        "@3 hello\n",
                        "@4 streamerr\n",
                        "@5 rpcerr:-32602\n",
                        NULL};
    const char *out[] = {"alpha beta gamma delta epsilon\n",
                         "@2 partial and complete\n",
                         "@3 echo: hello\n",
                         "@4 Agent trouble.\n",
                         "@5 Agent trouble.\n",
                         NULL};
    rt_proc *p = run(m, in, out);
    const char *o = rt_stdout(p);
    assert_true(!strncmp(o, "alpha beta gamma delta epsilon\n", 31) ||
                strstr(o, "\nalpha beta gamma delta epsilon\n"));
    const char *method = v10 ? "SendStreamingMessage" : "message/stream";
    fa_req r = req_of(f, method, 0);
    assert_string_equal(r.accept, "text/event-stream");
    assert_string_equal(r.a2a_version, v10 ? "1.0" : "");
    assert_true(fa_count_method(f, v10 ? "GetTask" : "tasks/get") >= 1); /* after the cut */
    assert_int_equal(fa_count_method(f, v10 ? "SendMessage" : "message/send"), 0);
    const char *err = rt_stderr(p);
    assert_non_null(strstr(err, "backend failed (transient)"));
    assert_non_null(strstr(err, "backend failed (fatal): agent error -32602"));
    rt_free(p);
    free(m);
    fa_stop(f);
}

static void test_stream_v10(void **state) {
    (void)state;
    run_stream(1);
}

static void test_stream_v03(void **state) {
    (void)state;
    run_stream(0);
}

/* The agent keeps the connection open after the final event: the reply
 * must not wait for it to close. */
static void test_stream_final_without_close(void **state) {
    (void)state;
    for (int v10 = 0; v10 < 2; v10++) {
        fa *f = fa_start(v10 ? FA_CARD_V10 : FA_CARD_V03, v10 ? FA_SPEAK_V10 : FA_SPEAK_V03, 1);
        char *m = manifest(v10 ? "hold10" : "hold03", 0, fa_base(f), "stream = true\n");
        rt_proc *p = rt_start(m, NULL, NULL);
        long long t0 = rt_now_ms();
        rt_write(p, "streamhold:quick answer\n");
        assert_true(rt_wait_stdout(p, "quick answer\n", 10000));
        assert_true(rt_now_ms() - t0 < 2500);
        rt_close_stdin(p);
        assert_int_equal(rt_wait(p, 20000), 0);
        rt_free(p);
        free(m);
        fa_stop(f);
    }
}

/* input-required over streams: the continuation's stream starts with the
 * task snapshot still asking; the answer follows. */
static void test_stream_input_required(void **state) {
    (void)state;
    for (int v10 = 0; v10 < 2; v10++) {
        fa *f = fa_start(v10 ? FA_CARD_V10 : FA_CARD_V03, v10 ? FA_SPEAK_V10 : FA_SPEAK_V03, 1);
        char *m = manifest(v10 ? "sask10" : "sask03", 0, fa_base(f), "stream = true\n");
        const char *in[] = {"ask\n", "Ann\n", NULL};
        const char *out[] = {"What is your name?\n", "Hello, Ann\n", NULL};
        rt_proc *p = run(m, in, out);
        assert_string_equal(rt_stdout(p), "What is your name?\nHello, Ann\n");
        assert_string_equal(req_of(f, v10 ? "SendStreamingMessage" : "message/stream", 1).task_id,
                            "task-1");
        rt_free(p);
        free(m);
        fa_stop(f);
    }
}

/* stream = true but the card does not stream: plain sends. */
static void test_stream_not_offered(void **state) {
    (void)state;
    fa *f = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    char *m = manifest("nostream", 0, fa_base(f), "stream = true\n");
    const char *in[] = {"plain\n", NULL};
    const char *out[] = {"echo: plain\n", NULL};
    rt_proc *p = run(m, in, out);
    assert_int_equal(fa_count_method(f, "SendStreamingMessage"), 0);
    assert_int_equal(fa_count_method(f, "SendMessage"), 1);
    rt_free(p);
    free(m);
    fa_stop(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_v10),
        cmocka_unit_test(test_stream_v03),
        cmocka_unit_test(test_stream_not_offered),
        cmocka_unit_test(test_stream_final_without_close),
        cmocka_unit_test(test_stream_input_required),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
