/*
 * Core chaos: a burst of updates through the fake Telegram (long polling)
 * while hundreds of admin connections trickle header bytes and others push
 * unauthenticated 1 MiB bodies. Afterwards every update is answered exactly
 * once, the probes answered all along, and the router is alive and ready
 * and stops cleanly.
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
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOKEN "737373:AAchaosSecret-part_q"
#define NSLOW 400
#define NCHATS 40
#define PER_CHAT 15

static rt_fix *fx;
static ftg *F;
static int port;
static atomic_bool stop_attack;

static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};

static int dial(void) {
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

/* Probes come from another loopback address, as a kubelet does: the
 * attacker's address has its own connection cap. */
static int dial_from(const char *src) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in b = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &b.sin_addr);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&b, sizeof b) || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int probe(const char *path) {
    int fd = dial_from("127.0.0.2");
    if (fd < 0) return -2;
    char req[128];
    int n =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -3;
    }
    char buf[64] = "";
    size_t len = 0;
    /* Generous: the machine is loaded and sanitizer builds are slow; the
     * failure this catches is a probe that never gets an answer. */
    long long end = rt_now_ms() + 10000;
    while (len < 12 && rt_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    int code = -1;
    if (len >= 12) sscanf(buf, "HTTP/1.%*d %d", &code);
    return code;
}

/* From 127.0.0.1: keeps NSLOW trickling connections open (reopening the
 * ones the server closes) and pushes unauthenticated uploads, until told
 * to stop. */
static void *attacker(void *arg) {
    (void)arg;
    int fds[NSLOW];
    for (int i = 0; i < NSLOW; i++)
        fds[i] = -1;
    static char junk[1 << 16];
    memset(junk, 'j', sizeof junk);
    while (!atomic_load(&stop_attack)) {
        for (int i = 0; i < NSLOW && !atomic_load(&stop_attack); i++) {
            if (fds[i] >= 0) {
                char c;
                ssize_t r = read(fds[i], &c, 1);
                if (r == 0 || (r < 0 && errno != EAGAIN) || write(fds[i], "z", 1) < 0) {
                    close(fds[i]);
                    fds[i] = -1;
                }
            }
            if (fds[i] < 0 && (fds[i] = dial()) >= 0) {
                fcntl(fds[i], F_SETFL, O_NONBLOCK);
                if (write(fds[i], "GET /healthz HTTP/1.1\r\nX-Slow: ", 31) < 0) {
                }
            }
        }
        for (int k = 0; k < 10; k++) { /* unauthenticated uploads */
            int fd = dial();
            if (fd < 0) continue;
            fcntl(fd, F_SETFL, O_NONBLOCK);
            const char *h = "POST /telegram/nope HTTP/1.1\r\nHost: x\r\n"
                            "Content-Length: 1048576\r\n\r\n";
            if (write(fd, h, strlen(h)) > 0)
                for (int b = 0; b < 16; b++)
                    if (write(fd, junk, sizeof junk) < 0) break;
            close(fd);
        }
        rt_sleep_ms(300);
    }
    for (int i = 0; i < NSLOW; i++)
        if (fds[i] >= 0) close(fds[i]);
    return NULL;
}

static void test_core_chaos(void **state) {
    (void)state;
    port = fx->port;
    rt_fix_manifest(fx,
                    "rate_limit_per_minute = 0\nadmin_header_timeout_s = 2\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "timeout = 1\nthrottle = off\ntyping = false\n"
                    "[backend.mock]\nplugin = mock\nprefix = \"re: \"\nlatency_ms = 5\n"
                    "latency_max_ms = 40\nseed = 3\n"
                    "[persona.p]\nbackend = mock\nchats = *\n",
                    ftg_base(F));
    const char *const env[] = {"TG_TOKEN=" TOKEN, NULL};
    assert_non_null(rt_fix_start(fx, env, 20000));

    atomic_store(&stop_attack, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, attacker, NULL), 0);
    rt_sleep_ms(1000);
    /* The burst, in three waves, while the probes must keep answering. */
    char msg[64];
    int probes = 0;
    for (int wave = 0; wave < 3; wave++) {
        for (int c = 0; c < NCHATS; c++)
            for (int k = wave * 5; k < wave * 5 + 5; k++) {
                snprintf(msg, sizeof msg, "c%d m%d", c, k);
                ftg_add_text(F, 9000 + c, msg);
            }
        for (int i = 0; i < 5; i++, probes++) {
            assert_int_equal(probe("/livez"), 200);
            assert_int_equal(probe("/healthz"), 200);
            rt_sleep_ms(200);
        }
    }
    size_t want = NCHATS * PER_CHAT;
    size_t got = ftg_wait_count(F, "sendMessage", want, 60000);
    atomic_store(&stop_attack, true);
    pthread_join(th, NULL);
    assert_int_equal(got, want);
    rt_sleep_ms(1000); /* duplicates would show up now */
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, want);
    /* Each once, each chat in order. */
    int next[NCHATS] = {0};
    for (size_t i = 0; i < n; i++) {
        int c, k;
        assert_int_equal(sscanf(r[i].text, "re: c%d m%d", &c, &k), 2);
        assert_int_equal(r[i].chat_id, 9000 + c);
        assert_int_equal(k, next[c]);
        next[c]++;
    }
    ftg_recs_free(r, n);
    assert_int_equal(probe("/livez"), 200);
    assert_int_equal(probe("/healthz"), 200);
    print_message("%zu replies, %d probe rounds under attack\n", want, probes);
    assert_int_equal(rt_fix_stop(fx, 30000), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {RT_FIX_TEST(test_core_chaos, &fix)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
