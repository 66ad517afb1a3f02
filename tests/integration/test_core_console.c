/* The real binary through the console transport and the mock backend:
 * per-chat order, drain on SIGTERM, health endpoints, allowlist, rate
 * limits, personas and failure notices, and how many worker threads a
 * burst starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static rt_fix *fx;

static rt_fix_spec fix = {.fx = &fx};

/* Writes a manifest: router keys, then the rest. */
static char *manifest(const char *name, int port, const char *router_extra, const char *rest) {
    return rt_manifest(fx->dir, name, port, "%s\n[transport.console]\nplugin = console\n%s",
                       router_extra ? router_extra : "", rest);
}

static void test_echo_one_line(void **state) {
    (void)state;
    char *m = manifest("echo", 0, NULL,
                       "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\n"
                       "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, "hi there\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_string_equal(rt_stdout(p), "echo: hi there\n");
    assert_non_null(strstr(rt_stderr(p), "drained"));
    rt_free(p);
    free(m);
}

/* 200 messages interleaved over 3 chats with random backend latency:
 * every one answered once, each chat in order. */
static void test_order_three_chats(void **state) {
    (void)state;
    char *m = manifest("order", 0, "rate_limit_per_minute = 0\n",
                       "[backend.mock]\nplugin = mock\nprefix = \"\"\nlatency_ms = 0\n"
                       "latency_max_ms = 8\nseed = 7\n"
                       "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    int next[3] = {0, 0, 0};
    char line[64];
    unsigned r = 12345;
    for (int i = 0; i < 200; i++) {
        r = r * 1103515245u + 12345u;
        int c = (int)((r >> 16) % 3);
        snprintf(line, sizeof line, "@%d c%d-m%d\n", 101 + c, c, next[c]++);
        assert_int_equal(rt_write(p, line), 0);
    }
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 60000), 0);
    const char *out = rt_stdout(p);
    int seen[3] = {0, 0, 0}, lines = 0;
    for (const char *s = out; *s;) {
        const char *nl = strchr(s, '\n');
        assert_non_null(nl);
        int chat, c, k;
        assert_int_equal(sscanf(s, "@%d c%d-m%d", &chat, &c, &k), 3);
        assert_int_equal(chat, 101 + c);
        assert_int_equal(k, seen[c]); /* in order, none missing, none twice */
        seen[c]++;
        lines++;
        s = nl + 1;
    }
    assert_int_equal(lines, 200);
    for (int c = 0; c < 3; c++)
        assert_int_equal(seen[c], next[c]);
    rt_free(p);
    free(m);
}

/* SIGTERM with slow replies in flight: all answered, exit 0, and
 * /healthz says 503 while draining. */
static void test_sigterm_drain(void **state) {
    (void)state;
    int port = rt_free_port();
    char *m = manifest("drain", port, "rate_limit_per_minute = 0\n",
                       "[backend.mock]\nplugin = mock\nprefix = \"ok \"\nlatency_ms = 1500\n"
                       "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    assert_true(rt_wait_http(url, 200, 10000));
    char line[64];
    for (int i = 0; i < 20; i++) {
        snprintf(line, sizeof line, "@%d m%d\n", 1 + i % 5, i);
        rt_write(p, line);
    }
    /* Give the reader time to queue everything; replies take 1.5 s. */
    rt_sleep_ms(500);
    assert_int_equal(rt_stdout(p)[0], 0);
    long long t0 = rt_now_ms();
    rt_signal(p, SIGTERM);
    rt_sleep_ms(200);
    assert_int_equal(rt_http("GET", url, NULL, NULL, NULL), 503);
    assert_int_equal(rt_wait(p, 30000), 0);
    assert_true(rt_now_ms() - t0 < 20000);
    const char *out = rt_stdout(p);
    for (int i = 0; i < 20; i++) {
        snprintf(line, sizeof line, "ok m%d\n", i);
        assert_int_equal(rt_count(out, line), 1);
    }
    rt_free(p);
    free(m);
}

/* A second signal during the drain exits at once. */
static void test_second_signal(void **state) {
    (void)state;
    char *m = manifest("second", 0, NULL,
                       "[backend.mock]\nplugin = mock\nlatency_ms = 20000\n"
                       "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_true(rt_wait_stderr(p, "started", 20000)); /* signals are the router's now */
    rt_write(p, "slow\n");
    rt_sleep_ms(500);
    long long t0 = rt_now_ms();
    rt_signal(p, SIGTERM);
    rt_sleep_ms(300);
    rt_signal(p, SIGTERM);
    int rc = rt_wait(p, 5000);
    assert_int_equal(rc, 128 + SIGTERM);
    assert_true(rt_now_ms() - t0 < 3000);
    assert_non_null(strstr(rt_stderr(p), "exiting at once"));
    rt_free(p);
    free(m);
}

/* Past drain_timeout_s the router leaves anyway, without answering. */
static void test_drain_timeout(void **state) {
    (void)state;
    char *m = manifest("drain_to", 0, "drain_timeout_s = 1\n",
                       "[backend.mock]\nplugin = mock\nlatency_ms = 20000\n"
                       "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_true(rt_wait_stderr(p, "started", 20000)); /* signals are the router's now */
    rt_write(p, "slow\n");
    rt_sleep_ms(300);
    long long t0 = rt_now_ms();
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 10000), 75); /* its own code: work left unacknowledged */
    assert_true(rt_now_ms() - t0 < 5000);
    assert_string_equal(rt_stdout(p), "");
    assert_non_null(strstr(rt_stderr(p), "drain timeout: 1 message(s) still in flight"));
    rt_free(p);
    free(m);
}

static void test_health_endpoints(void **state) {
    (void)state;
    int port = rt_free_port();
    char *m = manifest("health", port, NULL,
                       "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    assert_true(rt_wait_http(url, 200, 10000));
    char *body = NULL;
    assert_int_equal(rt_http("GET", url, NULL, NULL, &body), 200);
    assert_non_null(strstr(body, "\"transport.console\":\"ready\""));
    assert_non_null(strstr(body, "\"backend.mock\":\"ready\""));
    free(body);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/livez", port);
    assert_int_equal(rt_http("GET", url, NULL, NULL, NULL), 200);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/nope", port);
    assert_int_equal(rt_http("GET", url, NULL, NULL, NULL), 404);
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    rt_free(p);
    free(m);
}

/* A second routerd on a taken admin port fails loudly. */
static void test_admin_port_taken(void **state) {
    (void)state;
    int port = rt_free_port();
    char *m = manifest("taken", port, NULL,
                       "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *a = rt_start(m, NULL, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    assert_true(rt_wait_http(url, 200, 10000));
    char *m2 = manifest("taken2", port, NULL,
                        "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *b = rt_start(m2, NULL, NULL);
    assert_int_equal(rt_wait(b, 10000), 78);
    assert_non_null(strstr(rt_stderr(b), "cannot listen"));
    rt_free(b);
    free(m2);
    /* The same state_dir is refused too: one router per journal. */
    char *m3 = manifest("taken", 0, NULL,
                        "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n");
    b = rt_start(m3, NULL, NULL);
    assert_int_equal(rt_wait(b, 10000), 78);
    assert_non_null(strstr(rt_stderr(b), "is locked: another routerd uses state_dir"));
    rt_free(b);
    free(m3);
    rt_close_stdin(a);
    assert_int_equal(rt_wait(a, 20000), 0);
    rt_free(a);
    free(m);
}

static void test_allowlist(void **state) {
    (void)state;
    char *m = rt_write_filef(fx->dir, "allow.ini",
                             "[router]\nadmin_listen = off\nstate_dir = %s/state-allow\n"
                             "[transport.console]\nplugin = console\nallowlist = 5, -100987\n"
                             "[backend.mock]\nplugin = mock\nprefix = \"\"\n"
                             "[persona.p]\nbackend = mock\nchats = *\n",
                             fx->dir);
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, "@5 yes\n@6 no\n@-100987 group\n@987654321 other\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    const char *out = rt_stdout(p);
    assert_non_null(strstr(out, "@5 yes\n"));
    assert_non_null(strstr(out, "@-100987 group\n"));
    assert_null(strstr(out, "no"));
    assert_null(strstr(out, "other"));
    /* Rejections are logged with a hashed chat id, never the raw one. */
    assert_non_null(strstr(rt_stderr(p), "not in allowlist"));
    assert_null(strstr(rt_stderr(p), "987654321"));
    rt_free(p);
    free(m);
}

/* Over the limit: one polite notice, then silence, nothing else lost. */
static void test_rate_limit(void **state) {
    (void)state;
    char *m = manifest("rl", 0,
                       "rate_limit_per_minute = 3\n"
                       "rate_limit_notice = \"slow down please\"\n",
                       "[backend.mock]\nplugin = mock\nprefix = \"\"\n"
                       "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, "a1\na2\na3\na4\na5\na6\n@2 b1\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    /* Chat 1 in order; chat 2 has its own budget and may come first. */
    const char *out = rt_stdout(p);
    const char *b = strstr(out, "@2 b1\n");
    assert_non_null(b);
    char rest[256];
    snprintf(rest, sizeof rest, "%.*s%s", (int)(b - out), out, b + 6);
    assert_string_equal(rest, "a1\na2\na3\nslow down please\n");
    assert_int_equal(rt_count(rt_stderr(p), "over its rate limit"), 3);
    rt_free(p);
    free(m);
}

static void test_failure_notice(void **state) {
    (void)state;
    char *m = manifest("fail", 0, "failure_notice = \"agent is down\"\n",
                       "[backend.mock]\nplugin = mock\nfail_fatal = 1\n"
                       "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, "x\ny\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_string_equal(rt_stdout(p), "agent is down\nagent is down\n");
    assert_non_null(strstr(rt_stderr(p), "backend failed (fatal): injected fatal failure"));
    rt_free(p);
    free(m);
}

/* With a seed the mock injects the same failures on every run. */
static void test_mock_seed_deterministic(void **state) {
    (void)state;
    char *m = manifest("seed", 0, "rate_limit_per_minute = 0\nfailure_notice = FAIL\n",
                       "[backend.mock]\nplugin = mock\nprefix = \"\"\nfail_transient = 0.2\n"
                       "seed = 42\n[persona.p]\nbackend = mock\nchats = *\n");
    char *outs[2];
    int fails[2];
    for (int run = 0; run < 2; run++) {
        rt_proc *p = rt_start(m, NULL, NULL);
        char line[32];
        for (int i = 0; i < 500; i++) {
            snprintf(line, sizeof line, "@%d m%d\n", i % 7, i);
            rt_write(p, line);
        }
        rt_close_stdin(p);
        assert_int_equal(rt_wait(p, 30000), 0);
        outs[run] = strdup(rt_stdout(p));
        fails[run] = rt_count(outs[run], "FAIL\n");
        assert_int_equal(fails[run], rt_count(rt_stderr(p), "backend failed (transient)"));
        rt_free(p);
    }
    assert_int_equal(fails[0], fails[1]);
    assert_true(fails[0] > 60 && fails[0] < 140); /* 20% of 500, loosely */
    free(outs[0]);
    free(outs[1]);
    free(m);
}

/* Completion later from another thread (RD_PENDING): 1,000 replies of
 * 1.5 s each are in flight at once with only 4 workers. */
static void test_async_many_in_flight(void **state) {
    (void)state;
    char *m = manifest("async", 0, "rate_limit_per_minute = 0\nworkers = 4\nqueue_depth = 2000\n",
                       "[backend.mock]\nplugin = mock\nprefix = \"\"\nasync = true\n"
                       "latency_ms = 1500\n[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    char line[64];
    long long t0 = rt_now_ms();
    for (int i = 0; i < 1000; i++) {
        snprintf(line, sizeof line, "@%d m%d\n", 1000 + i, i);
        rt_write(p, line);
    }
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 30000), 0);
    /* Serially on 4 workers this would take over 6 minutes. */
    assert_true(rt_now_ms() - t0 < 10000);
    assert_int_equal(rt_count(rt_stdout(p), "\n"), 1000);
    for (int i = 0; i < 1000; i += 97) {
        snprintf(line, sizeof line, "@%d m%d\n", 1000 + i, i);
        assert_non_null(strstr(rt_stdout(p), line));
    }
    rt_free(p);
    free(m);
}

/* Completions from the backend's thread are handed to the workers: each
 * chat's replies still come in the order of its messages, whatever order
 * the backend completes them in across chats (random latencies). */
static void test_async_completion_order(void **state) {
    (void)state;
    char *m =
        manifest("async-order", 0, "rate_limit_per_minute = 0\nworkers = 3\nqueue_depth = 2000\n",
                 "[backend.mock]\nplugin = mock\nprefix = \"\"\nasync = true\n"
                 "latency_ms = 1\nlatency_max_ms = 40\n[persona.p]\nbackend = mock\n"
                 "chats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    char line[64];
    enum { CHATS = 8, PER = 25 };
    for (int k = 0; k < PER; k++)
        for (int c = 0; c < CHATS; c++) {
            snprintf(line, sizeof line, "@%d c%d-m%d\n", 500 + c, c, k);
            rt_write(p, line);
        }
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 30000), 0);
    const char *out = rt_stdout(p);
    assert_int_equal(rt_count(out, "\n"), CHATS * PER);
    int next[CHATS] = {0};
    for (const char *l = out; *l;) {
        int c, k;
        assert_int_equal(sscanf(l, "@%*d c%d-m%d", &c, &k), 2);
        assert_true(c >= 0 && c < CHATS);
        assert_int_equal(k, next[c]); /* in order, none twice */
        next[c]++;
        const char *nl = strchr(l, '\n');
        l = nl ? nl + 1 : l + strlen(l);
    }
    for (int c = 0; c < CHATS; c++)
        assert_int_equal(next[c], PER);
    rt_free(p);
    free(m);
}

/* Workers started without waiting for a stall: twice the CPUs, at least 4
 * (as core/router.c). */
static int spawn_floor(void) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 2 ? (int)(2 * cpus) : 4;
}

/* Writes one message to each of n chats, then samples the thread count
 * until n replies came out. The most threads seen; *ms: the time from the
 * first write to the last reply. */
static int burst_peak_threads(rt_proc *p, int n, int timeout_ms, long long *ms) {
    char line[64];
    long long t0 = rt_now_ms();
    int peak = rt_threads(rt_pid(p));
    for (int i = 0; i < n; i++) {
        snprintf(line, sizeof line, "@%d m%d\n", 7000 + i, i);
        assert_int_equal(rt_write(p, line), 0);
        if (i % 50 == 0) {
            int t = rt_threads(rt_pid(p));
            if (t > peak) peak = t;
        }
    }
    while (rt_wait_stdout_lines(p, n, 5) < n && rt_now_ms() - t0 < timeout_ms) {
        int t = rt_threads(rt_pid(p));
        if (t > peak) peak = t;
    }
    *ms = rt_now_ms() - t0;
    assert_int_equal(rt_wait_stdout_lines(p, n, 0), n);
    return peak;
}

/* With the default workers (256), a backend that completes later
 * (RD_PENDING) keeps the pool near its floor: 2,000 chats arriving at
 * once no longer start a thread each while none happens to be idle. */
static void test_async_burst_few_threads(void **state) {
    (void)state;
    char *m = manifest("async-few", 0, "rate_limit_per_minute = 0\nqueue_depth = 4000\n",
                       "[backend.mock]\nplugin = mock\nprefix = \"\"\nasync = true\n"
                       "latency_ms = 1000\n[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_true(rt_wait_stderr(p, "started", 20000));
    int base = rt_threads(rt_pid(p)); /* no worker yet */
    assert_true(base > 0);
    long long ms;
    int peak = burst_peak_threads(p, 2000, 30000, &ms);
    print_message("async burst: %d threads before, %d at most (%d workers), %lld ms\n", base, peak,
                  peak - base, ms);
    /* One round started on a stall a busy machine made is tolerated;
     * a thread per waiting chat was over a hundred. */
    assert_true(peak - base <= 2 * spawn_floor());
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    rt_free(p);
    free(m);
}

/* A backend that blocks its worker still reaches full concurrency: past
 * the floor the stalled run queue starts more workers within a few
 * worker_spawn_ms, so 100 calls of 500 ms finish in about 500 ms, not in
 * 100 / floor rounds of 500 ms. */
static void test_blocking_reaches_concurrency(void **state) {
    (void)state;
    char *m = manifest("block-all", 0, "rate_limit_per_minute = 0\n",
                       "[backend.mock]\nplugin = mock\nprefix = \"\"\nlatency_ms = 500\n"
                       "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    assert_true(rt_wait_stderr(p, "started", 20000));
    int base = rt_threads(rt_pid(p));
    long long ms;
    int peak = burst_peak_threads(p, 100, 20000, &ms);
    print_message("blocking: %d workers at most, 100 calls of 500 ms in %lld ms\n", peak - base,
                  ms);
    assert_true(ms >= 500);
    assert_true(ms < 1500);
    assert_true(peak - base >= 100 - spawn_floor()); /* about one per call */
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    rt_free(p);
    free(m);
}

static void test_persona_switch_persists(void **state) {
    (void)state;
    const char *rest = "[backend.a]\nplugin = mock\nprefix = \"A:\"\n"
                       "[backend.b]\nplugin = mock\nprefix = \"B:\"\n"
                       "[persona.alpha]\nbackend = a\nchats = *\nselectable = yes\n"
                       "description = the first\n"
                       "[persona.beta]\nbackend = b\nselectable = yes\n"
                       "[persona.hidden]\nbackend = b\nchats = 77\n";
    char *m = manifest("persona", 0, NULL, rest);
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, "one\n/persona\n/persona hidden\n/persona beta\ntwo\n@9 three\n@77 four\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    const char *out = rt_stdout(p);
    assert_non_null(strstr(out, "A:one\n"));
    assert_non_null(strstr(out, "Current persona: alpha"));
    assert_non_null(strstr(out, "- alpha: the first (current)"));
    assert_non_null(strstr(out, "- beta"));
    assert_null(strstr(out, "- hidden"));
    assert_non_null(strstr(out, "Unknown persona 'hidden'"));
    assert_non_null(strstr(out, "Persona switched to beta."));
    assert_non_null(strstr(out, "B:two\n"));
    assert_non_null(strstr(out, "@9 A:three\n"));
    assert_non_null(strstr(out, "@77 B:four\n"));
    rt_free(p);
    /* The choice survives a restart. */
    p = rt_start(m, NULL, NULL);
    rt_write(p, "five\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_string_equal(rt_stdout(p), "B:five\n");
    rt_free(p);
    free(m);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Console input: empty, blank and "@42"-only lines are all ignored alike;
 * an "@N" beyond 64 bits is refused with a warning instead of reaching
 * another chat; "@name" is text. */
static void test_console_input_rules(void **state) {
    (void)state;
    char *m = manifest("input", 0, "rate_limit_per_minute = 0\n",
                       "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\n"
                       "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, "\n   \n\t \n@42\n@42   \n@99999999999999999999 hi\n"
                "@-99999999999999999999 x\n@9223372036854775807 max\n@-5 neg\n@name hi\n"
                "hello\n \r\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    char *out = strdup(rt_stdout(p)), *lines[16];
    int n = 0;
    for (char *l = strtok(out, "\n"); l && n < 16; l = strtok(NULL, "\n"))
        lines[n++] = l;
    qsort(lines, (size_t)n, sizeof *lines, cmp_str);
    const char *want[] = {"@-5 echo: neg", "@9223372036854775807 echo: max", "echo: @name hi",
                          "echo: hello"};
    if (n != 4) fail_msg("%d replies: %s", n, rt_stdout(p));
    for (int i = 0; i < 4; i++)
        assert_string_equal(lines[i], want[i]);
    assert_int_equal(rt_count(rt_stderr(p), "is not a chat id"), 2);
    assert_non_null(strstr(rt_stderr(p), "'@99999999999999999999' is not a chat id"));
    free(out);
    rt_free(p);
    free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_echo_one_line, &fix),
        RT_FIX_TEST(test_order_three_chats, &fix),
        RT_FIX_TEST(test_sigterm_drain, &fix),
        RT_FIX_TEST(test_second_signal, &fix),
        RT_FIX_TEST(test_drain_timeout, &fix),
        RT_FIX_TEST(test_health_endpoints, &fix),
        RT_FIX_TEST(test_admin_port_taken, &fix),
        RT_FIX_TEST(test_allowlist, &fix),
        RT_FIX_TEST(test_rate_limit, &fix),
        RT_FIX_TEST(test_failure_notice, &fix),
        RT_FIX_TEST(test_mock_seed_deterministic, &fix),
        RT_FIX_TEST(test_async_many_in_flight, &fix),
        RT_FIX_TEST(test_async_completion_order, &fix),
        RT_FIX_TEST(test_async_burst_few_threads, &fix),
        RT_FIX_TEST(test_blocking_reaches_concurrency, &fix),
        RT_FIX_TEST(test_persona_switch_persists, &fix),
        RT_FIX_TEST(test_console_input_rules, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
