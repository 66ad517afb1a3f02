/*
 * The real routerd (console transport) with the a2a backend against the
 * fake agent: replies, tasks, input-required and streams as the user sees
 * them; every failure class as a notice on stdout and a classification in
 * the log; headers and secrets; contextId per chat across a restart;
 * readiness while the agent is late.
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

#define TOKEN "a2a-T0ken-never-logged"
/* The router's default failure_notice. */
#define ROUTER_NOTICE "Sorry, I could not get an answer right now. Please try again in a moment."

static rt_fix *fx;
static const char *scrape_url; /* when set, run() fetches it before ending input */
static char *scraped;

static rt_fix_spec fix = {.fx = &fx};

/* A manifest: console in, the a2a backend at url with extra keys. */
static char *manifest(const char *name, int admin_port, const char *url, const char *extra) {
    return rt_manifest(fx->dir, name, admin_port,
                       "rate_limit_per_minute = 0\n"
                       "[transport.console]\nplugin = console\n"
                       "[backend.agent]\nplugin = a2a\nurl = %s\ntoken = " TOKEN "\n"
                       "connect_timeout_s = 2\npoll_interval_ms = 20\nretry_base_ms = 20\n%s\n"
                       "[persona.p]\nbackend = agent\nchats = *\n",
                       url, extra ? extra : "");
}

/* Writes each line and waits for its answer (expect[i], whole lines),
 * ends input, expects a clean exit and exactly the expected output. */
static rt_proc *run(const char *m, const char *const *lines, const char *const *expect) {
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    char want[8192] = "";
    int nl = 0;
    for (int i = 0; lines[i]; i++) {
        assert_int_equal(rt_write(p, lines[i]), 0);
        strncat(want, expect[i], sizeof want - strlen(want) - 1);
        for (const char *c = expect[i]; *c; c++)
            nl += *c == '\n';
        if (rt_wait_stdout_lines(p, nl, 15000) < nl) {
            fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", rt_stdout(p), rt_stderr(p));
            fail_msg("no answer to '%s'", lines[i]);
        }
    }
    if (scrape_url) { /* the metrics while the router still runs */
        free(scraped);
        scraped = NULL;
        assert_int_equal(rt_http("GET", scrape_url, NULL, NULL, &scraped), 200);
    }
    rt_close_stdin(p);
    int rc = rt_wait(p, 20000);
    if (rc != 0 || strcmp(rt_stdout(p), want))
        fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", rt_stdout(p), rt_stderr(p));
    assert_int_equal(rc, 0);
    assert_string_equal(rt_stdout(p), want);
    return p;
}

static void test_replies_and_headers(void **state) {
    (void)state;
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V10, .token = TOKEN});
    char *m = manifest("replies", 0, fa2a_url(f), NULL);
    const char *in[] = {"hello there\n", "task 150\n", "ask\n", "Bob\n", "@42 ctx\n", NULL};
    const char *out[] = {"echo: hello there\n", "done: task 150\n", "What is your name?\n",
                         "Hello, Bob!\n", "@42 ctx=none task=none\n"};
    rt_proc *p = run(m, in, out);
    fa_req r;
    assert_int_equal(fa2a_req(f, 0, &r), 0);
    assert_string_equal(r.method, "SendMessage");
    assert_string_equal(r.a2a_version, "1.0");
    assert_string_equal(r.authorization, "Bearer " TOKEN);
    /* W3C traceparent: 00-<32 hex trace>-<16 hex span>-01 */
    assert_int_equal(strlen(r.traceparent), 55);
    assert_int_equal(strncmp(r.traceparent, "00-", 3), 0);
    assert_int_equal(strlen(r.message_id), 36);
    /* the answer to the question continued task-2 (task 150 was task-1) */
    assert_int_equal(fa2a_last(f, "SendMessage", &r), 0);
    assert_string_equal(r.context_id, "");
    assert_int_equal(fa2a_req(f, fa2a_count(f, NULL) - 2, &r), 0);
    assert_string_equal(r.task_id, "task-2");
    assert_true(fa2a_count(f, "GetTask") >= 1);
    assert_null(strstr(rt_stderr(p), TOKEN));
    rt_free(p);
    free(m);
    assert_int_equal(fa2a_executions(f, NULL), 1); /* no message ran twice */
    fa2a_stop(f);
}

/* The value of one series in a Prometheus text exposition, or -1. */
static double metric(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, series, n) && l[n] == ' ') return strtod(l + n + 1, NULL);
    return -1;
}

static void test_failures_classified(void **state) {
    (void)state;
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V03});
    int admin = rt_free_port();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", admin);
    char *m = manifest("failures", admin, fa2a_url(f),
                       "retries = 1\ntimeout_s = 1\nfailure_notice = The agent is unavailable.\n"
                       "timeout_notice = The agent is too slow.\n"
                       "max_response_bytes = 1048576\n"
                       "[sink.metrics]\nplugin = prometheus\n");
    scrape_url = url;
    const char *in[] = {"rpcerr -32603\n", "rpcerr -32602\n", "malformed\n",
                        "big\n",           "slow 3000\n",     "http 503\n",
                        "fail\n",          "still here\n",    NULL};
    const char *out[] = {"The agent is unavailable.\n",
                         "The agent is unavailable.\n",
                         "The agent is unavailable.\n",
                         "The agent is unavailable.\n",
                         "The agent is too slow.\n",
                         "The agent is unavailable.\n",
                         "The agent could not complete this request.\nthe tool crashed\n",
                         "echo: still here\n"};
    rt_proc *p = run(m, in, out);
    scrape_url = NULL;
    /* the metric, per class: two each, one timeout */
    const char *k[] = {"transient", "fatal", "protocol", "timeout"};
    const double want[] = {2, 2, 2, 1};
    for (int i = 0; i < 4; i++) {
        char series[128];
        snprintf(series, sizeof series, "routerd_a2a_failures_total{classification=\"%s\"}", k[i]);
        if (metric(scraped, series) != want[i])
            fail_msg("%s != %g in:\n%s", series, want[i], scraped);
    }
    assert_true(
        metric(scraped, "routerd_a2a_replies_total{backend=\"agent\",outcome=\"failed\"}") == 1);
    /* only the 503 (the agent asked) is retried */
    assert_true(metric(scraped, "routerd_a2a_retries_total{backend=\"agent\"}") == 1);
    free(scraped);
    scraped = NULL;
    const char *err = rt_stderr(p);
    /* the plugin's classification and the core's, for each class */
    assert_non_null(strstr(err, "classification=transient: message/send: error -32603"));
    assert_non_null(strstr(err, "classification=fatal: message/send: error -32602"));
    assert_non_null(strstr(err, "classification=protocol"));
    assert_non_null(strstr(err, "larger than max_response_bytes"));
    assert_non_null(strstr(err, "classification=timeout"));
    assert_non_null(strstr(err, "HTTP 503"));
    assert_non_null(strstr(err, "backend failed (transient)"));
    assert_non_null(strstr(err, "backend failed (fatal)"));
    assert_non_null(strstr(err, "backend failed (protocol)"));
    assert_non_null(strstr(err, "backend failed (timeout)"));
    /* users never see raw agent output */
    assert_null(strstr(rt_stdout(p), "{"));
    assert_null(strstr(rt_stdout(p), "scripted error"));
    /* -32603 may come after the work ran: not sent again; nothing ran twice */
    fa_req a;
    assert_int_equal(fa2a_req(f, 0, &a), 0);
    assert_string_equal(a.text, "rpcerr -32603");
    assert_int_equal(fa2a_req(f, 1, &a), 0);
    assert_string_equal(a.text, "rpcerr -32602"); /* fatal: not retried */
    assert_int_equal(fa2a_executions(f, NULL), 1);
    rt_free(p);
    free(m);
    assert_int_equal(fa2a_executions(f, NULL), 1); /* no message ran twice */
    fa2a_stop(f);
}

/* contextId per chat, kept across a restart; /new starts over. */
static void test_context_restart(void **state) {
    (void)state;
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_BOTH});
    char *m = manifest("restart", 0, fa2a_url(f), NULL);
    const char *in1[] = {"ctx\n", "@2 ctx\n", "ctx\n", "@2 ctx\n", NULL};
    const char *out1[] = {"ctx=none task=none\n", "@2 ctx=none task=none\n",
                          "ctx=ctx-1 task=none\n", "@2 ctx=ctx-2 task=none\n"};
    rt_proc *p = run(m, in1, out1);
    rt_free(p);
    const char *in2[] = {"ctx\n", "@2 ctx\n", "/new\n", "ctx\n", "@2 ctx\n", NULL};
    const char *out2[] = {"ctx=ctx-1 task=none\n", "@2 ctx=ctx-2 task=none\n",
                          "Started a new conversation.\n", "ctx=none task=none\n",
                          "@2 ctx=ctx-2 task=none\n"};
    p = run(m, in2, out2);
    /* /new never reached the agent */
    for (int i = 0, n = fa2a_count(f, NULL); i < n; i++) {
        fa_req r;
        fa2a_req(f, i, &r);
        assert_string_not_equal(r.text, "/new");
    }
    rt_free(p);
    free(m);
    assert_int_equal(fa2a_executions(f, NULL), 1); /* no message ran twice */
    fa2a_stop(f);
}

static void test_streams(void **state) {
    (void)state;
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V03, .streaming = 1});
    char *m = manifest("stream", 0, fa2a_url(f), "stream = true\n");
    const char *in[] = {"task\n", "drop\n", "ask\n", "Ann\n", "plain\n", "rpcerr -32602\n", NULL};
    /* no failure_notice of its own: the router's notice */
    const char *out[] = {"done: task\n",  "after drop\n",  "What is your name?\n",
                         "Hello, Ann!\n", "echo: plain\n", ROUTER_NOTICE "\n"};
    rt_proc *p = run(m, in, out);
    assert_int_equal(fa2a_count(f, "message/send"), 0);
    assert_true(fa2a_count(f, "tasks/resubscribe") >= 1);
    rt_free(p);
    free(m);
    assert_int_equal(fa2a_executions(f, NULL), 1); /* no message ran twice */
    fa2a_stop(f);
}

/* Files and choices end to end: a file on a console line reaches the
 * agent as a file part; the agent's file parts reach the console as
 * attachments, its data part as a JSON block; its choices as choices, and
 * a pick ("#1") continues the task. Both dialects. */
static void test_files_and_choices(void **state) {
    (void)state;
    free(rt_write_file(fx->dir, "note.txt", "hello from the console"));
    for (int d = FA_V10; d <= FA_V03; d++) {
        fa2a *f = fa2a_start(&(fa2a_opts){.speaks = (fa_dialect)d});
        char *m = manifest(d == FA_V10 ? "files10" : "files03", 0, fa2a_url(f), NULL);
        char line[512];
        snprintf(line, sizeof line, "look<file:%s/note.txt>\n", fx->dir);
        const char *in[] = {line, "files\n", "choose\n", "#1\n", NULL};
        const char *out[] = {
            "echo: look\n",
            "here are files\n```json\n{\n  \"total\": 3\n}\n```\n"
            "[file: hello.txt (text/plain, 10 bytes)]\n"
            "[file: report.pdf (application/pdf, https://files.example/report.pdf)]\n",
            "Proceed?\n[choices: 1) yes 2) no]\n", "Hello, yes!\n"};
        rt_proc *p = run(m, in, out);
        fa_req r;
        assert_int_equal(fa2a_req(f, 0, &r), 0);
        assert_string_equal(r.text, "look");
        assert_int_equal(r.nfiles, 1);
        assert_string_equal(r.file_name, "note.txt");
        assert_string_equal(r.file_mime, "text/plain");
        assert_int_equal(r.file_len, 22);
        assert_memory_equal(r.file_data, "hello from the console", 22);
        assert_int_equal(fa2a_last(f, NULL, &r), 0);
        assert_string_equal(r.text, "yes");
        assert_string_equal(r.task_id, "task-1");
        rt_free(p);
        free(m);
        assert_int_equal(fa2a_executions(f, NULL), 1);
        fa2a_stop(f);
    }
}

/* Push notifications: the card allows them, push_url is set: each polled
 * task registers the webhook with its own token, the agent's push wakes
 * the poller (which asks GetTask), long before push_fallback_s. A push
 * with a wrong token is refused and the task is still answered by the
 * fallback poll; a push without the route's bearer secret is refused. */
static void test_push_notifications(void **state) {
    (void)state;
    for (int d = FA_V10; d <= FA_V03; d++) {
        fa2a *f = fa2a_start(&(fa2a_opts){.speaks = (fa_dialect)d, .token = TOKEN, .push = 1});
        int port = rt_free_port();
        char extra[200];
        snprintf(extra, sizeof extra, "push_url = http://127.0.0.1:%d/\npush_fallback_s = 120\n",
                 port);
        char *m = manifest("push", port, fa2a_url(f), extra);
        const char *in[] = {"task 1200\n", NULL};
        const char *out[] = {"done: task 1200\n"};
        rt_proc *p = run(m, in, out); /* within 15 s: the push, not the 120 s poll */
        const char *set =
            d == FA_V10 ? "CreateTaskPushNotificationConfig" : "tasks/pushNotificationConfig/set";
        assert_int_equal(fa2a_count(f, set), 1);
        int delivered = 0, status = 0;
        assert_int_equal(fa2a_pushes(f, &delivered, &status), 1);
        assert_int_equal(delivered, 1);
        assert_int_equal(status, 200);
        /* one look after registering, one after the push */
        int gets = fa2a_count(f, d == FA_V10 ? "GetTask" : "tasks/get");
        assert_true(gets >= 1 && gets <= 3);
        assert_null(strstr(rt_stderr(p), TOKEN));
        rt_free(p);
        free(m);
        assert_int_equal(fa2a_executions(f, NULL), 1);
        fa2a_stop(f);
    }

    /* a wrong per-task token: refused (401), answered by the fallback poll */
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V10, .push = 1, .push_bad_token = 1});
    int port = rt_free_port();
    char extra[200];
    snprintf(extra, sizeof extra, "push_url = http://127.0.0.1:%d\npush_fallback_s = 3\n", port);
    char *m = manifest("push-bad", port, fa2a_url(f), extra);
    const char *in[] = {"task 300\n", NULL};
    const char *out[] = {"done: task 300\n"};
    rt_proc *p = run(m, in, out);
    int delivered = -1, status = 0;
    assert_int_equal(fa2a_pushes(f, &delivered, &status), 1);
    assert_int_equal(delivered, 0);
    assert_int_equal(status, 401);
    assert_non_null(strstr(rt_stderr(p), "wrong X-A2A-Notification-Token"));
    rt_free(p);
    free(m);

    /* an agent that refuses registrations is polled (once refused, not
     * asked again) */
    fa2a *g = fa2a_start(&(fa2a_opts){.speaks = FA_V03, .push = 1, .push_refuse = 1});
    snprintf(extra, sizeof extra, "push_url = http://127.0.0.1:%d/\npush_fallback_s = 120\n", port);
    m = manifest("push-refused", port, fa2a_url(g), extra);
    const char *in2[] = {"task 200\n", "task 100\n", NULL};
    const char *out2[] = {"done: task 200\n", "done: task 100\n"};
    p = run(m, in2, out2);
    assert_int_equal(fa2a_count(g, "tasks/pushNotificationConfig/set"), 1);
    assert_true(fa2a_count(g, "tasks/get") >= 2);
    assert_non_null(strstr(rt_stderr(p), "refused a push notification config"));
    rt_free(p);
    free(m);
    fa2a_stop(g);

    /* the route itself: no bearer secret, no entry (nothing read) */
    snprintf(extra, sizeof extra, "push_url = http://127.0.0.1:%d/\n", port);
    m = manifest("push-route", port, fa2a_url(f), extra);
    p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    rt_wait_http(url, 200, 10000);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/a2a/agent/push", port);
    const char *hd[] = {"Content-Type: application/json", "Authorization: Bearer guessed", NULL};
    assert_int_equal(rt_http("POST", url, "{\"task\":{\"id\":\"task-1\"}}", hd, NULL), 401);
    assert_int_equal(rt_http("POST", url, "{}", NULL, NULL), 401);
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    rt_free(p);
    free(m);
    fa2a_stop(f);
}

/* The agent starts after the router: /healthz is 503 until the card is
 * fetched, then 200, and messages go through. */
static void test_late_agent_readiness(void **state) {
    (void)state;
    int admin = rt_free_port(), agent_port = rt_free_port();
    char url[64], health[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", agent_port);
    snprintf(health, sizeof health, "http://127.0.0.1:%d/healthz", admin);
    char *m = manifest("late", admin, url, NULL);
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    assert_true(rt_wait_http(health, 503, 10000));
    assert_true(rt_wait_stderr(p, "/.well-known/agent-card.json", 10000));
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V10, .port = agent_port});
    assert_non_null(f);
    assert_true(rt_wait_http(health, 200, 20000));
    assert_int_equal(rt_write(p, "now\n"), 0);
    assert_true(rt_wait_stdout(p, "echo: now\n", 10000));
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    rt_free(p);
    free(m);
    assert_int_equal(fa2a_executions(f, NULL), 1); /* no message ran twice */
    fa2a_stop(f);
}

/* A bad configuration stops the start with a clear message (EX_CONFIG). */
static void test_bad_config(void **state) {
    (void)state;
    char *m = manifest("badcfg", 0, "ftp://agent.example", NULL);
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_int_equal(rt_wait(p, 10000), 78);
    assert_non_null(strstr(rt_stderr(p), "url must be an http"));
    rt_free(p);
    free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_replies_and_headers, &fix),  RT_FIX_TEST(test_failures_classified, &fix),
        RT_FIX_TEST(test_context_restart, &fix),      RT_FIX_TEST(test_streams, &fix),
        RT_FIX_TEST(test_late_agent_readiness, &fix), RT_FIX_TEST(test_bad_config, &fix),
        RT_FIX_TEST(test_push_notifications, &fix),   RT_FIX_TEST(test_files_and_choices, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
