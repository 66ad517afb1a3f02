/*
 * Per-chat state of the core is bounded: 100,000 distinct chats through
 * the console, then idle past chat_idle_s, leave no chat state and a chat
 * table back at its minimal size; /persona choices expire after
 * persona_override_idle_days and are capped by persona_overrides_max (least
 * recently used first), in memory and in the store. Read from /metrics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rt_fix *fx;

static rt_fix_spec fix = {.fx = &fx};

static double metric(int port, const char *series) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    char *body = NULL;
    if (rt_http("GET", url, NULL, NULL, &body) != 200) {
        free(body);
        return -1;
    }
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') v = atof(p + n + 1);
    free(body);
    return v;
}

/* Polls until metric == want; returns the last value seen. */
static double wait_metric(int port, const char *series, double want, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    double v;
    while ((v = metric(port, series)) != want && rt_now_ms() < end)
        rt_sleep_ms(200);
    return v;
}

static char *manifest(const char *name, int port, const char *router, const char *personas) {
    return rt_manifest(fx->dir, name, port,
                       "rate_limit_per_minute = 0\nqueue_depth = 100000\n%s\n"
                       "[transport.console]\nplugin = console\n"
                       "[backend.a]\nplugin = mock\nprefix = \"A:\"\n"
                       "[backend.b]\nplugin = mock\nprefix = \"B:\"\n"
                       "[sink.metrics]\nplugin = prometheus\n%s",
                       router, personas);
}

#define NCHATS 100000

static void test_chats_shrink_when_idle(void **state) {
    (void)state;
    int port = rt_free_port();
    /* Long enough that no chat is swept while the burst is still being
     * answered, even in a sanitizer build. */
    char *m =
        manifest("chats", port, "chat_idle_s = 30\n", "[persona.p]\nbackend = a\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    assert_true(rt_wait_http(url, 200, 10000));
    double slots0 = metric(port, "routerd_chat_table_slots");
    assert_true(slots0 > 0);
    size_t cap = (size_t)NCHATS * 24 + 1, off = 0;
    char *in = malloc(cap);
    for (int i = 1; i <= NCHATS; i++)
        off += (size_t)snprintf(in + off, cap - off, "@%d m\n", 1000 + i);
    assert_int_equal(rt_write(p, in), 0);
    free(in);
    assert_true(rt_wait_stdout_lines(p, NCHATS, 180000) >= NCHATS);
    double peak = metric(port, "routerd_chat_table_slots");
    print_message("chat table slots: %.0f at start, %.0f after %d chats\n", slots0, peak, NCHATS);
    assert_true(peak >= NCHATS / 2);
    /* The gauge counts chats as they come, not only at the idle sweeps
     * (a burst answered between two sweeps would read 0 here). */
    assert_true(metric(port, "routerd_chats") >= NCHATS / 2);
    /* Idle: every chat forgotten, the table back to its start size. */
    assert_true(wait_metric(port, "routerd_chats", 0, 90000) == 0);
    assert_true(wait_metric(port, "routerd_chat_table_slots", slots0, 10000) == slots0);
    /* And chats still work afterwards. */
    rt_write(p, "@1007 again\n");
    assert_true(rt_wait_stdout(p, "@1007 A:again", 10000));
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 30000), 0);
    rt_free(p);
    free(m);
}

static const char *const two_personas =
    "[persona.alpha]\nbackend = a\nchats = *\nselectable = yes\n"
    "[persona.beta]\nbackend = b\nselectable = yes\n";

static void test_persona_overrides_expire_and_are_capped(void **state) {
    (void)state;
    int port = rt_free_port();
    /* 0.00004 days = 3.5 s. */
    char *m = manifest("ovr", port, "persona_override_idle_days = 0.00004\n", two_personas);
    rt_proc *p = rt_start(m, NULL, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    assert_true(rt_wait_http(url, 200, 10000));
    char line[64];
    for (int i = 1001; i <= 1300; i++) {
        snprintf(line, sizeof line, "@%d /persona beta\n", i);
        rt_write(p, line);
    }
    assert_true(rt_wait_stdout_lines(p, 300, 20000) >= 300);
    assert_true(metric(port, "routerd_persona_overrides") == 300);
    rt_write(p, "@1005 x\n");
    assert_true(rt_wait_stdout(p, "@1005 B:x", 10000));
    /* Switching back to the manifest's persona keeps nothing. */
    rt_write(p, "@1006 /persona alpha\n");
    assert_true(rt_wait_stdout(p, "@1006 Persona switched to alpha.", 10000));
    assert_true(wait_metric(port, "routerd_persona_overrides", 299, 5000) == 299);
    /* Unused past the idle limit: forgotten, the chat is back on alpha. */
    assert_true(wait_metric(port, "routerd_persona_overrides", 0, 20000) == 0);
    rt_write(p, "@1005 y\n");
    assert_true(rt_wait_stdout(p, "@1005 A:y", 10000));
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 30000), 0);
    rt_free(p);
    /* The store forgot them too. */
    p = rt_start(m, NULL, NULL);
    assert_true(rt_wait_http(url, 200, 10000));
    assert_true(metric(port, "routerd_persona_overrides") == 0);
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 30000), 0);
    rt_free(p);
    free(m);

    /* The cap: the least recently used choices go first. */
    m = manifest("cap", port, "persona_overrides_max = 100\n", two_personas);
    p = rt_start(m, NULL, NULL);
    assert_true(rt_wait_http(url, 200, 10000));
    /* Chats run in parallel: two batches make the use order known. */
    for (int i = 1001; i <= 1150; i++) {
        snprintf(line, sizeof line, "@%d /persona beta\n", i);
        rt_write(p, line);
        if (i == 1050) assert_true(rt_wait_stdout_lines(p, 50, 20000) >= 50);
    }
    assert_true(rt_wait_stdout_lines(p, 150, 20000) >= 150);
    assert_true(metric(port, "routerd_persona_overrides") == 100);
    rt_write(p, "@1001 old\n@1150 new\n");
    assert_true(rt_wait_stdout(p, "@1001 A:old", 10000));
    assert_true(rt_wait_stdout(p, "@1150 B:new", 10000));
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 30000), 0);
    rt_free(p);
    free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_chats_shrink_when_idle, &fix),
        RT_FIX_TEST(test_persona_overrides_expire_and_are_capped, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
