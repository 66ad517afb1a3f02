/*
 * The a2a backend's event loop with the real routerd (console transport)
 * against the fake agent on 127.0.0.1: hundreds of slow calls in flight
 * at once on a handful of threads, deadlines that pass while calls wait
 * on the loop (a slow answer, a task polled), and a hard stop that cuts
 * the calls in flight instead of waiting for them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_a2a.h"
#include "harness.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUTER_NOTICE "Sorry, I could not get an answer right now. Please try again in a moment."

static rt_fix *fx;
static rt_fix_spec fix = {.fx = &fx};

static char *manifest(const char *name, const char *router, const char *url, const char *extra) {
    return rt_manifest(fx->dir, name, 0,
                       "rate_limit_per_minute = 0\nqueue_depth = 2000\n%s\n"
                       "[transport.console]\nplugin = console\n"
                       "[backend.agent]\nplugin = a2a\nurl = %s\n"
                       "connect_timeout_s = 2\npoll_interval_ms = 50\nretry_base_ms = 20\n%s\n"
                       "[persona.p]\nbackend = agent\nchats = *\n",
                       router, url, extra ? extra : "");
}

/* Writes "@<100 + i> text" for chats i < n. */
static void to_chats(rt_proc *p, int n, const char *text) {
    char line[96];
    for (int i = 0; i < n; i++) {
        snprintf(line, sizeof line, "@%d %s\n", 100 + i, text);
        assert_int_equal(rt_write(p, line), 0);
    }
}

/* The most threads routerd ran until it printed lines (30 s at most). */
static int peak_threads(rt_proc *p, int lines, long long t0) {
    int peak = 0;
    while (rt_wait_stdout_lines(p, lines, 20) < lines && rt_now_ms() - t0 < 30000) {
        int n = rt_threads(rt_pid(p));
        if (n > peak) peak = n;
    }
    return peak;
}

/* 200 chats each wait 1.5 s on the agent, with 4 workers: all are in
 * flight at once (parking a worker each they would take 75 s) and
 * routerd never runs more than a few threads. */
static void test_many_slow_calls_few_threads(void **state) {
    (void)state;
    enum { CHATS = 200 };
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V10});
    char *m = manifest("many", "workers = 4", fa2a_url(f), NULL);
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(rt_write(p, "@1 warm\n"), 0);
    assert_int_equal(rt_wait_stdout_lines(p, 1, 15000), 1);
    long long t0 = rt_now_ms();
    to_chats(p, CHATS, "slow 1500");
    int peak = peak_threads(p, CHATS + 1, t0);
    long long took = rt_now_ms() - t0;
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    const char *out = rt_stdout(p);
    if (rt_count(out, "slow done\n") != CHATS) fprintf(stderr, "%s\n", rt_stderr(p));
    assert_int_equal(rt_count(out, "slow done\n"), CHATS);
    fprintf(stderr, "%d slow calls answered in %lld ms, at most %d threads\n", CHATS, took, peak);
    assert_true(took < 15000);
    assert_true(peak > 0 && peak <= 24);
    assert_int_equal(fa2a_executed_messages(f), CHATS + 1);
    assert_int_equal(fa2a_executions(f, NULL), 1); /* each ran once */
    rt_free(p);
    free(m);
    fa2a_stop(f);
}

/* Sockets a process holds open, from /proc/<pid>/fd. */
static int sockets_of(int pid) {
    char path[64], link[128], target[128];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(link, sizeof link, "%s/%.20s", path, e->d_name);
        ssize_t k = readlink(link, target, sizeof target - 1);
        if (k > 0) {
            target[k] = 0;
            n += !strncmp(target, "socket:", 7);
        }
    }
    closedir(d);
    return n;
}

/* One chat's messages, one after the other: n answers expected in all. */
static void in_turn(rt_proc *p, int k, int total) {
    for (int i = 0; i < k; i++) {
        char line[64];
        snprintf(line, sizeof line, "@1 turn %d\n", i);
        assert_int_equal(rt_write(p, line), 0);
    }
    assert_int_equal(rt_wait_stdout_lines(p, total, 15000), total);
}

/* 120 slow calls in flight at once hold 120 connections; once they are
 * answered the loop keeps at most max_idle_connections of them open.
 * Calls one at a time reuse a kept connection, before and after. */
static void test_idle_connections_bounded(void **state) {
    (void)state;
    enum { CHATS = 120, IDLE = 16 };
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V10});
    char extra[64];
    snprintf(extra, sizeof extra, "max_idle_connections = %d", IDLE);
    char *m = manifest("idle", "workers = 4", fa2a_url(f), extra);
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(rt_write(p, "@1 warm\n"), 0);
    assert_int_equal(rt_wait_stdout_lines(p, 1, 15000), 1);
    int before = sockets_of(rt_pid(p));
    int c0 = fa2a_connections(f);
    in_turn(p, 20, 21);
    int c1 = fa2a_connections(f);
    to_chats(p, CHATS, "slow 800");
    int peak = 0;
    long long t0 = rt_now_ms();
    while (rt_wait_stdout_lines(p, CHATS + 1, 20) < CHATS + 1 && rt_now_ms() - t0 < 30000) {
        int n = sockets_of(rt_pid(p));
        if (n > peak) peak = n;
    }
    rt_sleep_ms(300);
    int after = sockets_of(rt_pid(p));
    int c2 = fa2a_connections(f);
    in_turn(p, 20, CHATS + 41);
    int c3 = fa2a_connections(f);
    fprintf(stderr,
            "sockets: %d before, %d with the calls in flight, %d after (max_idle_connections %d); "
            "agent connections: %d, %d after 20 calls in turn, %d after the burst, %d after 20 "
            "more\n",
            before, peak, after, IDLE, c0, c1, c2, c3);
    assert_true(peak >= CHATS / 2); /* the calls were in flight together */
    /* routerd's other sockets, and the idle connections kept */
    assert_true(after >= 0 && after <= before + IDLE);
    assert_true(c1 - c0 <= 1);
    assert_true(c2 - c1 >= CHATS / 2);
    assert_true(c3 - c2 <= 1);
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_int_equal(rt_count(rt_stdout(p), "slow done\n"), CHATS);
    rt_free(p);
    free(m);
    fa2a_stop(f);
}

/* Deadlines that pass on the loop: a send the agent holds longer than
 * timeout_s, and a task still working when it is polled at the deadline
 * (canceled at the agent). Each user gets the timeout notice in time. */
static void test_deadlines_on_the_loop(void **state) {
    (void)state;
    enum { CHATS = 20 };
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V10});
    char *m = manifest("deadline", "workers = 2", fa2a_url(f),
                       "timeout_s = 1\ntimeout_notice = too slow\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    long long t0 = rt_now_ms();
    char line[64];
    for (int i = 0; i < CHATS; i++) {
        snprintf(line, sizeof line, "@%d %s\n", 100 + i, i % 2 ? "slow 4000" : "hang");
        assert_int_equal(rt_write(p, line), 0);
    }
    int got = rt_wait_stdout_lines(p, CHATS, 15000);
    long long took = rt_now_ms() - t0;
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    if (got != CHATS) fprintf(stderr, "%s\n%s\n", rt_stdout(p), rt_stderr(p));
    assert_int_equal(got, CHATS);
    assert_int_equal(rt_count(rt_stdout(p), "too slow\n"), CHATS);
    /* the deadline is 1 s; the hung tasks are canceled within cancel_timeout_ms */
    assert_true(took < 8000);
    assert_int_equal(fa2a_count(f, "CancelTask"), CHATS / 2);
    rt_free(p);
    free(m);
    fa2a_stop(f);
}

/* SIGTERM with drain_timeout_s = 1 and drain_cancel_ms = 1000: routerd
 * exits within that, not when the agent would answer. */
static void stop_within_drain(rt_proc *p) {
    long long t0 = rt_now_ms();
    rt_signal(p, SIGTERM);
    int rc = rt_wait(p, 15000);
    long long took = rt_now_ms() - t0;
    if (rc < 0 || took > 6000) fprintf(stderr, "%s\n", rt_stderr(p));
    assert_true(rc >= 0);
    assert_true(took < 6000);
}

/* A manifest whose agent's tasks register a webhook on the admin server
 * (the fallback poll 120 s away, so only pushes answer in time). */
static char *push_manifest(const char *name, const char *url, const char *router) {
    int port = rt_free_port();
    return rt_manifest(fx->dir, name, port,
                       "rate_limit_per_minute = 0\n%s\n"
                       "[transport.console]\nplugin = console\n"
                       "[backend.agent]\nplugin = a2a\nurl = %s\n"
                       "push_url = http://127.0.0.1:%d/\npush_fallback_s = 120\n"
                       "[persona.p]\nbackend = agent\nchats = *\n",
                       router, url, port);
}

/* A burst of quick calls connects max_connecting at a time: later calls
 * reuse the connections earlier ones freed instead of each opening its
 * own (with no limit the same burst holds a socket per call). */
static void test_burst_connects_bounded(void **state) {
    (void)state;
    enum { CHATS = 300 };
    const int lim = 4;
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V10});
    char extra[64];
    snprintf(extra, sizeof extra, "max_connecting = %d", lim);
    char *m = manifest("connecting", "workers = 4", fa2a_url(f), extra);
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(rt_write(p, "@1 warm\n"), 0);
    assert_int_equal(rt_wait_stdout_lines(p, 1, 15000), 1);
    int before = sockets_of(rt_pid(p));
    char buf[CHATS * 16];
    size_t n = 0;
    for (int i = 0; i < CHATS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "@%d hi%d\n", 100 + i, i);
    assert_int_equal(rt_write(p, buf), 0);
    int peak = 0;
    long long t0 = rt_now_ms();
    while (rt_wait_stdout_lines(p, CHATS + 1, 2) < CHATS + 1 && rt_now_ms() - t0 < 30000) {
        int k = sockets_of(rt_pid(p));
        if (k > peak) peak = k;
    }
    fprintf(stderr, "sockets: %d before, at most %d during a burst of %d (max_connecting %d)\n",
            before, peak, CHATS, lim);
    assert_true(peak - before < CHATS / 3); /* about 300 with no limit */
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_int_equal(rt_count(rt_stdout(p), "echo: hi"), CHATS);
    rt_free(p);
    free(m);
    fa2a_stop(f);
}

/* Tasks followed through push notifications wait on the loop too: 150
 * chats each with a task the agent works on for 1.5 s, the webhook
 * registered for each, answered after the pushes (the fallback poll is
 * 120 s away) on a handful of threads, each task asked for twice at most
 * (a look right after registering, one after its push). */
static void test_pushed_tasks_few_threads(void **state) {
    (void)state;
    enum { CHATS = 150 };
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V03, .push = 1});
    /* the fake pushes each task on a connection of its own */
    char *m = push_manifest("pushed", fa2a_url(f),
                            "queue_depth = 2000\nworkers = 4\nadmin_max_connections_per_ip = 512");
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(rt_write(p, "@1 warm\n"), 0);
    assert_int_equal(rt_wait_stdout_lines(p, 1, 15000), 1);
    long long t0 = rt_now_ms();
    to_chats(p, CHATS, "task 1500");
    int peak = peak_threads(p, CHATS + 1, t0);
    long long took = rt_now_ms() - t0;
    rt_close_stdin(p);
    int rc = rt_wait(p, 20000);
    const char *out = rt_stdout(p);
    if (rc || rt_count(out, "done: task 1500\n") != CHATS) fprintf(stderr, "%s\n", rt_stderr(p));
    assert_int_equal(rc, 0);
    assert_int_equal(rt_count(out, "done: task 1500\n"), CHATS);
    fprintf(stderr, "%d pushed tasks answered in %lld ms, at most %d threads\n", CHATS, took, peak);
    assert_true(took < 15000);
    assert_true(peak > 0 && peak <= 24);
    assert_int_equal(fa2a_count(f, "tasks/pushNotificationConfig/set"), CHATS);
    int delivered = 0, status = 0;
    assert_int_equal(fa2a_pushes(f, &delivered, &status), CHATS);
    assert_int_equal(delivered, CHATS);
    int gets = fa2a_count(f, "tasks/get");
    assert_true(gets >= CHATS && gets <= 2 * CHATS);
    assert_int_equal(fa2a_executions(f, NULL), 1);
    rt_free(p);
    free(m);
    fa2a_stop(f);
}

/* A hard stop cuts the waits for pushes too: tasks the agent works on for
 * 20 s, their webhooks registered, routerd told to stop with a 1 s drain:
 * it exits within the drain plus drain_cancel_ms, answering none. */
static void test_hard_stop_cuts_push_waits(void **state) {
    (void)state;
    enum { CHATS = 30 };
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V10, .push = 1});
    char *m = push_manifest("pushstop", fa2a_url(f),
                            "workers = 2\ndrain_timeout_s = 1\ndrain_cancel_ms = 1000");
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    to_chats(p, CHATS, "task 20000");
    long long end = rt_now_ms() + 10000;
    while (fa2a_count(f, "CreateTaskPushNotificationConfig") < CHATS && rt_now_ms() < end)
        rt_sleep_ms(20);
    assert_int_equal(fa2a_count(f, "CreateTaskPushNotificationConfig"), CHATS);
    stop_within_drain(p);
    assert_int_equal(rt_count(rt_stdout(p), "\n"), 0);
    rt_free(p);
    free(m);
    fa2a_stop(f);
}

/* A hard stop (the drain timed out) cuts the calls waiting on the loop:
 * routerd exits within the drain time plus drain_cancel_ms, not when the
 * agent would answer, and no answer nor notice goes out for them. */
static void test_hard_stop_cuts_calls_in_flight(void **state) {
    (void)state;
    enum { CHATS = 50 };
    fa2a *f = fa2a_start(&(fa2a_opts){.speaks = FA_V10});
    char *m = manifest("stop", "workers = 2\ndrain_timeout_s = 1\ndrain_cancel_ms = 1000",
                       fa2a_url(f), NULL);
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(rt_write(p, "@1 warm\n"), 0);
    assert_int_equal(rt_wait_stdout_lines(p, 1, 15000), 1);
    to_chats(p, CHATS, "slow 20000");
    long long end = rt_now_ms() + 10000;
    while (fa2a_executed_messages(f) < CHATS + 1 && rt_now_ms() < end)
        rt_sleep_ms(20);
    assert_int_equal(fa2a_executed_messages(f), CHATS + 1); /* all at the agent */
    stop_within_drain(p);
    assert_non_null(strstr(rt_stderr(p), "drain timeout"));
    /* only the warm-up was answered: the cut calls stay for a re-delivery */
    assert_int_equal(rt_count(rt_stdout(p), "\n"), 1);
    assert_null(strstr(rt_stdout(p), ROUTER_NOTICE));
    rt_free(p);
    free(m);
    fa2a_stop(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_many_slow_calls_few_threads, &fix),
        RT_FIX_TEST(test_idle_connections_bounded, &fix),
        RT_FIX_TEST(test_deadlines_on_the_loop, &fix),
        RT_FIX_TEST(test_burst_connects_bounded, &fix),
        RT_FIX_TEST(test_pushed_tasks_few_threads, &fix),
        RT_FIX_TEST(test_hard_stop_cuts_push_waits, &fix),
        RT_FIX_TEST(test_hard_stop_cuts_calls_in_flight, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
