/* The systemd notification code against a local AF_UNIX datagram socket,
 * then the real binary under a fake service manager: READY=1 exactly when
 * /healthz turns 200, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 at
 * the drain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core.h"
#include "fake_telegram.h"
#include "harness.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A datagram socket bound to name ("/path" or "@abstract"). */
static int listen_dgram(const char *name) {
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(a.sun_path, name, n);
    if (name[0] == '@') a.sun_path[0] = 0;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
    assert_int_equal(bind(s, (struct sockaddr *)&a, len), 0);
    return s;
}

/* One datagram, or "" after timeout_ms. */
static const char *recv_msg(int s, int timeout_ms, char *buf, size_t sz) {
    struct pollfd p = {.fd = s, .events = POLLIN};
    buf[0] = 0;
    if (poll(&p, 1, timeout_ms) == 1) {
        ssize_t n = recv(s, buf, sz - 1, 0);
        buf[n > 0 ? n : 0] = 0;
    }
    return buf;
}

static void test_no_socket_is_a_noop(void **state) {
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sd_notify_init(), 0);
    assert_int_equal(sd_notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(sd_notify_init(), -1);
    assert_int_equal(sd_notify_send("READY=1"), 0);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = 0;
    setenv("NOTIFY_SOCKET", longp, 1);
    assert_int_equal(sd_notify_init(), -1);
    unsetenv("NOTIFY_SOCKET");
}

static void test_path_socket(void **state) {
    (void)state;
    char *dir = rt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/notify", dir);
    int s = listen_dgram(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(sd_notify_init(), 1);
    assert_int_equal(sd_notify_send("READY=1\nSTATUS=ready"), 1);
    char buf[256];
    assert_string_equal(recv_msg(s, 2000, buf, sizeof buf), "READY=1\nSTATUS=ready");
    assert_int_equal(sd_notify_send("WATCHDOG=1"), 1);
    assert_string_equal(recv_msg(s, 2000, buf, sizeof buf), "WATCHDOG=1");
    /* The manager went away: an error, never a crash or a block. */
    close(s);
    unlink(path);
    assert_int_equal(sd_notify_send("STOPPING=1"), -1);
    sd_notify_close();
    assert_int_equal(sd_notify_send("STOPPING=1"), 0);
    unsetenv("NOTIFY_SOCKET");
    rt_rmtree(dir);
    free(dir);
}

static void test_abstract_socket(void **state) {
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "@routerd-test-%d", (int)getpid());
    int s = listen_dgram(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(sd_notify_init(), 1);
    assert_int_equal(sd_notify_send("STOPPING=1"), 1);
    char buf[64];
    assert_string_equal(recv_msg(s, 2000, buf, sizeof buf), "STOPPING=1");
    sd_notify_close();
    close(s);
    unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_interval(void **state) {
    (void)state;
    char pid[32], other[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(other, sizeof other, "%d", (int)getpid() + 1);
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(sd_watchdog_interval_ms(), 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    assert_int_equal(sd_watchdog_interval_ms(), 15000);
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(sd_watchdog_interval_ms(), 15000);
    /* Meant for another process (a child inherited the environment). */
    setenv("WATCHDOG_PID", other, 1);
    assert_int_equal(sd_watchdog_interval_ms(), 0);
    unsetenv("WATCHDOG_PID");
    const char *hostile[] = {"-5", "0", "abc", "12x", "99999999999999999999", "86400000001"};
    for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++) {
        setenv("WATCHDOG_USEC", hostile[i], 1);
        assert_int_equal(sd_watchdog_interval_ms(), 0);
    }
    setenv("WATCHDOG_USEC", "1", 1);
    assert_int_equal(sd_watchdog_interval_ms(), 1);
    unsetenv("WATCHDOG_USEC");
}

/* The binary: the Telegram handshake fails at first, so READY=1 must wait
 * for getMe; /healthz is 200 when it arrives and 503 before. */
static void test_binary_notifies(void **state) {
    (void)state;
    ftg *tg = ftg_start("42:notify-token");
    ftg_fail(tg, "getMe", FTG_FAULT_500, 0, 3);
    char *dir = rt_tmpdir();
    char sock[512], text[2048], url[128];
    snprintf(sock, sizeof sock, "%s/notify", dir);
    int s = listen_dgram(sock);
    int port = rt_free_port();
    snprintf(text, sizeof text,
             "[router]\nadmin_listen = 127.0.0.1:%d\nstate_dir = %s/state\ndrain_timeout_s = 5\n"
             "[transport.tg]\nplugin = telegram\ntoken = 42:notify-token\napi_base = %s\n"
             "retry_base_ms = 300\nretry_max_ms = 300\nstart_timeout_s = 1\n"
             "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n",
             port, dir, ftg_base(tg));
    char *m = rt_write_file(dir, "n.ini", text);
    char env_sock[600];
    snprintf(env_sock, sizeof env_sock, "NOTIFY_SOCKET=%s", sock);
    const char *env[] = {env_sock, "WATCHDOG_USEC=400000", NULL};
    rt_proc *p = rt_start(m, NULL, env);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    char buf[512];
    int watchdogs = 0, ready = 0;
    long long t0 = rt_now_ms();
    while (!ready && rt_now_ms() - t0 < 30000) {
        const char *msg = recv_msg(s, 500, buf, sizeof buf);
        if (!strcmp(msg, "WATCHDOG=1")) {
            watchdogs++;
            /* Still handshaking: not ready yet. */
            if (ftg_count(tg, "getMe", 1) == 0) {
                char *body = NULL;
                long st = rt_http("GET", url, NULL, NULL, &body);
                free(body);
                assert_true(st == 503 || st == -1);
            }
        } else if (strstr(msg, "READY=1")) {
            ready = 1;
            assert_non_null(strstr(msg, "STATUS=ready"));
            assert_true(ftg_count(tg, "getMe", 1) >= 1);
            char *body = NULL;
            assert_int_equal(rt_http("GET", url, NULL, NULL, &body), 200);
            free(body);
        } else {
            assert_string_equal(msg, ""); /* nothing else before READY */
        }
    }
    assert_int_equal(ready, 1);
    /* Keep-alives every 200 ms (half of 400 ms): at least 5 in 2.5 s even on
     * a loaded machine, and never many more than the interval allows. */
    int after = 0;
    t0 = rt_now_ms();
    while (rt_now_ms() - t0 < 2500)
        if (!strcmp(recv_msg(s, 100, buf, sizeof buf), "WATCHDOG=1")) after++;
    assert_true(after >= 5);
    assert_true(after <= 14);
    rt_signal(p, SIGTERM);
    int stopping = 0;
    t0 = rt_now_ms();
    while (!stopping && rt_now_ms() - t0 < 10000)
        if (strstr(recv_msg(s, 200, buf, sizeof buf), "STOPPING=1")) stopping = 1;
    assert_int_equal(stopping, 1);
    assert_int_equal(rt_wait(p, 15000), 0);
    (void)watchdogs;
    rt_free(p);
    close(s);
    free(m);
    rt_rmtree(dir);
    free(dir);
    ftg_stop(tg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_socket_is_a_noop), cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),     cmocka_unit_test(test_watchdog_interval),
        cmocka_unit_test(test_binary_notifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
