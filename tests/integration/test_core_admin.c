/*
 * The admin server under hostile clients, with the real binary, the
 * telegram transport in webhook mode against the fake Bot API and the mock
 * backend: hundreds of connections trickling header bytes leave /livez,
 * /healthz and the webhook answering; a slow sender is closed after
 * admin_header_timeout_s however it trickles; unauthenticated 1 MiB uploads
 * get 401/404/413 from their headers and cost no memory; a decoded %00
 * matches no route; /livez stays 200 while Telegram does not answer getMe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_telegram.h"
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOKEN "626262:AAadminSecret-part_z"
#define HOOK "adminHook-123_abc"

static rt_fix *fx;
static ftg *F;
static const char *const env[] = {"TG_TOKEN=" TOKEN, "TG_HOOK=" HOOK, NULL};

static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};

/* Starts routerd on fx->port; ready_ms > 0 waits for /healthz. */
static rt_proc *start_router(const char *router_extra, const char *tg_extra, int ready_ms) {
    rt_fix_manifest(
        fx,
        "rate_limit_per_minute = 0\n%s\n"
        "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
        "mode = webhook\nsecret_token = ${TG_HOOK}\n"
        "webhook_url = https://bot.example.invalid/hook\nthrottle = off\ntyping = false\n%s\n"
        "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\n"
        "[persona.p]\nbackend = mock\nchats = *\n",
        router_extra ? router_extra : "", ftg_base(F), tg_extra ? tg_extra : "");
    return rt_fix_start(fx, env, ready_ms);
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until the status line is complete: its code, 0 on EOF first, -1
 * on timeout. */
static int read_status(int fd, int timeout_ms) {
    char buf[256];
    size_t len = 0;
    long long end = rt_now_ms() + timeout_ms;
    while (len < sizeof buf - 1) {
        int left = (int)(end - rt_now_ms());
        if (left <= 0) return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0) continue;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) return 0;
        len += (size_t)n;
        buf[len] = 0;
        int code;
        if (strstr(buf, "\r\n") && sscanf(buf, "HTTP/1.%*d %d", &code) == 1) return code;
    }
    return -1;
}

static int request(int port, const char *raw, int timeout_ms) {
    int fd = dial(port);
    if (fd < 0) return -2;
    size_t len = strlen(raw), off = 0;
    while (off < len) {
        ssize_t n = write(fd, raw + off, len - off);
        if (n <= 0) break;
        off += (size_t)n;
    }
    int st = read_status(fd, timeout_ms);
    close(fd);
    return st;
}

static int hook_post(int port, const char *secret, const char *body, int timeout_ms) {
    char *raw = NULL;
    if (asprintf(&raw,
                 "POST /telegram/tg HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "%s%s%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 secret ? "X-Telegram-Bot-Api-Secret-Token: " : "", secret ? secret : "",
                 secret ? "\r\n" : "", strlen(body), body) < 0)
        return -3;
    int st = request(port, raw, timeout_ms);
    free(raw);
    return st;
}

static int replies(const char *text) {
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += r[i].text && !strcmp(r[i].text, text);
    ftg_recs_free(r, n);
    return k;
}

static long vm_kib(int pid, const char *field) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl) && line[fl] == ':') v = atol(line + fl + 1);
    if (f) fclose(f);
    return v;
}

#define NSLOW 600

/* 600 connections (more than MHD's old cap of 512) send a partial request line and then one byte
 * every 400 ms: probes and the webhook answer promptly all along, and every slow sender is closed
 * within admin_header_timeout_s (+ slack) although each byte would reset an idle timer. */
static void test_slow_clients(void **state) {
    (void)state;
    int port = fx->port;
    rt_proc *p = start_router("admin_header_timeout_s = 3\n", NULL, 20000);
    assert_non_null(p);

    int fds[NSLOW];
    long long opened[NSLOW], closed_at[NSLOW];
    int nopen = 0;
    for (int i = 0; i < NSLOW; i++) {
        fds[i] = dial(port);
        if (fds[i] < 0) continue;
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        if (write(fds[i], "GET /livez HTTP/1.1\r\nX-Slow: ", 29) < 0) {
        }
        opened[i] = rt_now_ms();
        closed_at[i] = 0;
        nopen++;
    }
    assert_true(nopen > NSLOW / 2);
    long long t0 = rt_now_ms(), last_trickle = 0, worst = 0;
    int probes = 0, hooks = 0;
    while (rt_now_ms() - t0 < 8000) {
        if (rt_now_ms() - last_trickle >= 400) {
            last_trickle = rt_now_ms();
            for (int i = 0; i < NSLOW; i++) {
                if (fds[i] < 0 || closed_at[i]) continue;
                char c;
                ssize_t r = read(fds[i], &c, 1);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
                    write(fds[i], "a", 1) < 0)
                    closed_at[i] = rt_now_ms();
            }
        }
        long long a = rt_now_ms();
        assert_int_equal(
            request(port, "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3000),
            200);
        assert_int_equal(
            request(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3000),
            200);
        char text[32];
        snprintf(text, sizeof text, "slow%d", hooks);
        ftg_msg m = {.chat_id = 500 + hooks, .text = text};
        char *u = ftg_build_update(F, &m, NULL);
        assert_int_equal(hook_post(port, HOOK, u, 3000), 200);
        free(u);
        hooks++;
        if (rt_now_ms() - a > worst) worst = rt_now_ms() - a;
        probes++;
        rt_sleep_ms(100);
    }
    print_message("%d probe rounds, slowest %lld ms\n", probes, worst);
    /* Every slow sender was closed, none later than the header timeout
     * plus a generous margin. */
    int closed = 0;
    long long latest = 0;
    for (int i = 0; i < NSLOW; i++) {
        if (fds[i] < 0) continue;
        if (closed_at[i]) {
            closed++;
            if (closed_at[i] - opened[i] > latest) latest = closed_at[i] - opened[i];
        }
        close(fds[i]);
    }
    print_message("%d/%d slow connections closed by the server, latest after %lld ms\n", closed,
                  nopen, latest);
    assert_int_equal(closed, nopen);
    assert_true(latest < 3000 + 3000);
    /* Every webhook update was answered once. */
    for (int i = 0; i < hooks; i++) {
        char want[40];
        snprintf(want, sizeof want, "echo: slow%d", i);
        long long end = rt_now_ms() + 10000;
        while (!replies(want) && rt_now_ms() < end)
            rt_sleep_ms(20);
        assert_int_equal(replies(want), 1);
    }
    /* The refusals are counted by reason in the log. */
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_non_null(strstr(rt_stderr(p), "header_timeout"));
}

#define NUP 150
#define BODY (1024 * 1024)

/* Unauthenticated 1 MiB uploads: each is refused from its headers (401 for
 * the webhook without the secret, 404 elsewhere, 413 when announced too
 * large), before its body is sent, and the router's peak memory barely
 * moves. */
static void test_unauthenticated_uploads(void **state) {
    (void)state;
    int port = fx->port;
    /* Limits high enough that all uploads are open at once. */
    rt_proc *p = start_router("admin_max_connections = 1000\nadmin_max_connections_per_ip = 500\n",
                              NULL, 20000);
    assert_non_null(p);
    long hwm0 = vm_kib(rt_pid(p), "VmHWM");
    assert_true(hwm0 > 0);
    char *junk = malloc(BODY);
    memset(junk, 'x', BODY);
    int fds[NUP];
    for (int i = 0; i < NUP; i++) {
        char hdr[512];
        snprintf(hdr, sizeof hdr,
                 "POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\n"
                 "Content-Length: %d\r\n\r\n",
                 i % 3 == 2 ? "/nowhere" : "/telegram/tg",
                 i % 3 == 1 ? "X-Telegram-Bot-Api-Secret-Token: wrong\r\n" : "", BODY);
        fds[i] = dial(port);
        assert_true(fds[i] >= 0);
        assert_true(write(fds[i], hdr, strlen(hdr)) > 0);
    }
    /* The answers come without a body byte sent. */
    for (int i = 0; i < NUP; i++)
        assert_int_equal(read_status(fds[i], 3000), i % 3 == 2 ? 404 : 401);
    /* Pushing the bodies anyway is not buffered. */
    for (int i = 0; i < NUP; i++) {
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        size_t off = 0;
        long long end = rt_now_ms() + 200;
        while (off < BODY && rt_now_ms() < end) {
            ssize_t n = write(fds[i], junk + off, BODY - off);
            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                break;
        }
    }
    rt_sleep_ms(500);
    for (int i = 0; i < NUP; i++)
        close(fds[i]);
    long hwm1 = vm_kib(rt_pid(p), "VmHWM");
    print_message("peak RSS %ld KiB -> %ld KiB\n", hwm0, hwm1);
    assert_true(hwm1 - hwm0 < 32 * 1024);
    free(junk);
    /* Announced larger than admin_max_body_bytes, with the secret: 413
     * at once; a hostile length: 400 or 413, never a crash. */
    char raw[512];
    snprintf(raw, sizeof raw,
             "POST /telegram/tg HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: %s\r\n"
             "Content-Length: 5000000\r\n\r\n",
             HOOK);
    assert_int_equal(request(port, raw, 3000), 413);
    snprintf(raw, sizeof raw,
             "POST /telegram/tg HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: %s\r\n"
             "Content-Length: 99999999999999999999999999\r\n\r\n",
             HOOK);
    int st = request(port, raw, 3000);
    assert_true(st == 400 || st == 413);
    snprintf(raw, sizeof raw,
             "POST /telegram/tg HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: %s\r\n"
             "Content-Length: -5\r\n\r\n",
             HOOK);
    st = request(port, raw, 3000);
    assert_true(st == 400 || st == 413);
    assert_int_equal(
        request(port, "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3000), 200);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 20000), 0);
}

/* A decoded %00 must not cut the path down to a route. */
static void test_nul_in_path(void **state) {
    (void)state;
    int port = fx->port;
    rt_proc *p = start_router(NULL, NULL, 20000);
    assert_non_null(p);
    ftg_msg m = {.chat_id = 77, .text = "nul"};
    char *u = ftg_build_update(F, &m, NULL);
    char *raw = NULL;
    assert_true(asprintf(&raw,
                         "POST /telegram/tg%%00x HTTP/1.1\r\nHost: x\r\n"
                         "X-Telegram-Bot-Api-Secret-Token: %s\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n%s",
                         HOOK, strlen(u), u) > 0);
    assert_int_equal(request(port, raw, 3000), 404);
    free(raw);
    int st;
    assert_int_equal(
        request(port, "GET /livez%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3000), 404);
    assert_int_equal(
        request(port, "GET /live%7a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3000), 200);
    /* Hostile sizes from the headers: a path past 2048 bytes, headers
     * past the connection's memory. */
    char *lp = malloc(3100), *lh = malloc(40100);
    snprintf(lp, 3100, "GET /%03000d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 7);
    assert_int_equal(request(port, lp, 3000), 414);
    snprintf(lh, 40100, "GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: %040000d\r\n\r\n", 7);
    st = request(port, lh, 3000);
    assert_true(st == 431 || st == 413 || st == 400 || st == 0);
    free(lp);
    free(lh);
    assert_int_equal(
        request(port, "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3000), 200);
    rt_sleep_ms(500);
    assert_int_equal(replies("echo: nul"), 0);
    /* The same update on the real path goes through once. */
    assert_int_equal(hook_post(port, HOOK, u, 3000), 200);
    long long end = rt_now_ms() + 10000;
    while (!replies("echo: nul") && rt_now_ms() < end)
        rt_sleep_ms(20);
    assert_int_equal(replies("echo: nul"), 1);
    free(u);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 20000), 0);
}

/* Telegram does not answer getMe for longer than the stale threshold of
 * /livez (10 s): the router is starting, not wedged. */
static void test_livez_during_slow_start(void **state) {
    (void)state;
    ftg_fail(F, "getMe", FTG_FAULT_SLOW, 16000, 1);
    rt_proc *p = start_router(NULL, "start_timeout_s = 14\n", 0);
    char url[128];
    snprintf(url, sizeof url, "%s", rt_fix_url(fx, "/livez"));
    assert_true(rt_wait_http(url, 200, 5000));
    long long t0 = rt_now_ms();
    int n = 0;
    while (rt_now_ms() - t0 < 12500) {
        char *body = NULL;
        long st = rt_http("GET", url, NULL, NULL, &body);
        if (st != 200) print_message("livez %ld: %s\n", st, body ? body : "");
        assert_int_equal(st, 200);
        free(body);
        n++;
        rt_sleep_ms(500);
    }
    assert_true(n > 10);
    assert_int_equal(rt_http("GET", rt_fix_url(fx, "/healthz"), NULL, NULL, NULL), 503);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 40000), 0);
    ftg_clear_faults(F);
}

/* Telegram answers getMe with 500 for good: the log may say "retrying"
 * many times, but never "giving up" before a retry, and a shutdown is not
 * reported as a failure to retry. */
static void test_log_sequence_consistent(void **state) {
    (void)state;
    ftg_fail(F, "getMe", FTG_FAULT_500, 0, 1000000);
    rt_proc *p =
        start_router(NULL, "start_timeout_s = 1\nretry_base_ms = 50\nretry_max_ms = 300\n", 0);
    assert_true(rt_wait_http(rt_fix_url(fx, "/livez"), 200, 10000));
    rt_sleep_ms(4000);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 30000), 0);
    const char *err = rt_stderr(p);
    assert_non_null(strstr(err, "retrying"));
    const char *gave = strstr(err, "giving up");
    if (gave) {
        const char *eol = strchr(gave, '\n');
        print_message("after a give-up: %.200s\n", eol ? eol : "");
        assert_null(eol ? strstr(eol, "retrying") : NULL);
    }
    assert_null(strstr(err, "stopped; retrying"));
    ftg_clear_faults(F);
}

/* An idle router does not tick where nothing can be due: the admin
 * server's reaper sleeps while no connection is open, and the lease
 * thread until its next renewal or maintenance (both woke 5-10 times a
 * second). */
static void test_idle_threads_sleep(void **state) {
    (void)state;
    rt_proc *p = start_router(NULL, NULL, 10000);
    assert_non_null(p);
    rt_sleep_ms(500); /* the readiness probe's connection closes */
    long r0 = rt_thread_wakeups(rt_pid(p), "rd-http-reaper"),
         l0 = rt_thread_wakeups(rt_pid(p), "rd-lease");
    rt_sleep_ms(2000);
    long r1 = rt_thread_wakeups(rt_pid(p), "rd-http-reaper"),
         l1 = rt_thread_wakeups(rt_pid(p), "rd-lease");
    print_message("in 2 s idle: reaper %ld, lease %ld wake-ups\n", r1 - r0, l1 - l0);
    assert_true(r0 >= 0 && l0 >= 0);
    assert_true(r1 - r0 <= 3);
    assert_true(l1 - l0 <= 4);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 30000), 0);
}

/* Opens n connections, then sends a request on each: how many got 200. */
static int burst(int port, int n) {
    int fds[64], ok = 0;
    assert_true(n <= 64);
    for (int i = 0; i < n; i++)
        fds[i] = dial(port);
    const char *rq = "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0 && write(fds[i], rq, strlen(rq)) < 0) {
        }
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0 && read_status(fds[i], 3000) == 200) ok++;
        if (fds[i] >= 0) close(fds[i]);
    }
    return ok;
}

/* A proxy opens more connections at once than admin_max_connections_per_ip
 * allows (pushes from an agent): each gets its request in. A client that
 * holds connections without a request past the grace loses its oldest
 * ones to newer ones; with no grace, a burst loses connections. */
static void test_burst_from_one_address(void **state) {
    (void)state;
    int port = fx->port;
    rt_proc *p = start_router("admin_max_connections_per_ip = 4\n", NULL, 10000);
    assert_non_null(p);
    rt_sleep_ms(300); /* the readiness probe's connection closes */
    assert_int_equal(burst(port, 24), 24);
    int held[4];
    for (int i = 0; i < 4; i++)
        held[i] = dial(port);
    rt_sleep_ms(1300);
    int fresh[4];
    for (int i = 0; i < 4; i++)
        fresh[i] = dial(port);
    int cut = 0;
    for (int i = 0; i < 4; i++) {
        if (held[i] >= 0 && read_status(held[i], 2000) == 0) cut++; /* closed by routerd */
        if (held[i] >= 0) close(held[i]);
    }
    print_message("held past the grace: %d of 4 closed for newer ones\n", cut);
    assert_true(cut >= 3);
    for (int i = 0; i < 4; i++)
        if (fresh[i] >= 0) close(fresh[i]);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 20000), 0);

    p = start_router("admin_max_connections_per_ip = 4\nadmin_connection_grace_ms = 0\n", NULL,
                     10000);
    assert_non_null(p);
    rt_sleep_ms(300);
    int ok = burst(port, 24);
    print_message("with no grace: %d of 24 answered\n", ok);
    assert_true(ok < 24);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 20000), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_slow_clients, &fix),
        RT_FIX_TEST(test_unauthenticated_uploads, &fix),
        RT_FIX_TEST(test_nul_in_path, &fix),
        RT_FIX_TEST(test_livez_during_slow_start, &fix),
        RT_FIX_TEST(test_log_sequence_consistent, &fix),
        RT_FIX_TEST(test_idle_threads_sleep, &fix),
        RT_FIX_TEST(test_burst_from_one_address, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
