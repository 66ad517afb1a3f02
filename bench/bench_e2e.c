/* End-to-end benchmark: the real routerd with the telegram transport and
 * the a2a backend, against the fake Telegram Bot API server and a minimal
 * A2A agent, all on 127.0.0.1.
 *
 *   bench_e2e throughput [messages] [chats]   messages/s through the router
 *   bench_e2e latency [messages]              added latency, one at a time
 *   bench_e2e inflight [messages] [delay_ms]  slow agent calls in flight
 *   bench_e2e idle                            resident memory when idle
 */
#include "bench_agent.h"
#include "fake_telegram.h"
#include "harness.h"

#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN "123456:bench-token"

static char *dir;

static rt_proc *start_router(ftg *tg, bench_agent *ag, int workers, int queue) {
    char text[4096];
    snprintf(text, sizeof text,
             "[router]\nenv = bench\nadmin_listen = off\nstate_dir = %s/state\n"
             "queue_depth = %d\nworkers = %d\nrate_limit_per_minute = 0\nlog_level = warn\n%s\n"
             "[transport.main]\nplugin = telegram\ntoken = " TOKEN "\napi_base = %s\n"
             "throttle = off\ntyping = false\ntimeout = 1\n"
             "[backend.agent]\nplugin = a2a\nurl = %s\n"
             "[persona.p]\nbackend = agent\nchats = *\n",
             dir, queue, workers, getenv("BENCH_ROUTER") ? getenv("BENCH_ROUTER") : "",
             ftg_base(tg), bench_agent_url(ag));
    char *m = rt_write_file(dir, "bench.ini", text);
    rt_proc *p = rt_start(m, NULL, NULL);
    free(m);
    return p;
}

/* Waits for the n-th reply, checking every 20 us: finer than the fake's
 * own wait helper, which sleeps in 5 ms steps. */
static size_t wait_replies(ftg *tg, size_t n, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    size_t have;
    struct timespec ts = {0, 20000};
    while ((have = ftg_count(tg, "sendMessage", 1)) < n && rt_now_ms() < end)
        nanosleep(&ts, NULL);
    return have;
}

static long rss_kb(int pid, const char *field) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, strlen(field))) v = atol(line + strlen(field) + 1);
    if (f) fclose(f);
    return v;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static int stop_router(rt_proc *p) {
    rt_signal(p, SIGTERM);
    int rc = rt_wait(p, 60000);
    if (rc != 0) fprintf(stderr, "routerd exited %d:\n%s\n", rc, rt_stderr(p));
    rt_free(p);
    return rc;
}

static int throughput(int n, int chats) {
    ftg *tg = ftg_start(TOKEN);
    bench_agent *ag = bench_agent_start(0);
    char text[64];
    for (int i = 0; i < n; i++) {
        snprintf(text, sizeof text, "message %d", i);
        ftg_add_text(tg, 1000 + i % chats, text);
    }
    rt_proc *p = start_router(tg, ag, 64, 4096);
    long long t0 = rt_now_ms();
    size_t got = ftg_wait_count(tg, "sendMessage", (size_t)n, 600000);
    long long ms = rt_now_ms() - t0;
    printf("throughput: %zu/%d replies in %lld ms = %.0f messages/s (%d chats, "
           "includes start-up and getMe)\n",
           got, n, ms, ms ? got * 1000.0 / (double)ms : 0.0, chats);
    int rc = stop_router(p);
    /* Everything shares 2 cores: split the CPU between routerd and the fakes. */
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    double r = kids.ru_utime.tv_sec + kids.ru_stime.tv_sec +
               (kids.ru_utime.tv_usec + kids.ru_stime.tv_usec) / 1e6;
    double f = self.ru_utime.tv_sec + self.ru_stime.tv_sec +
               (self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
    printf("  CPU: routerd %.2f s (%.0f messages per routerd CPU-second), fake servers %.2f s\n", r,
           r > 0 ? got / r : 0.0, f);
    bench_agent_stop(ag);
    ftg_stop(tg);
    return rc || got != (size_t)n;
}

/* One message at a time: the time from the update being available to the
 * reply arriving, minus nothing (the agent answers at once), is what the
 * router, the plugins and both HTTP hops add. */
static int latency(int n) {
    ftg *tg = ftg_start(TOKEN);
    bench_agent *ag = bench_agent_start(0);
    rt_proc *p = start_router(tg, ag, 8, 256);
    ftg_add_text(tg, 42, "warm-up");
    ftg_wait_count(tg, "sendMessage", 1, 30000);
    long long *lat = calloc((size_t)n, sizeof *lat);
    for (int i = 0; i < n; i++) {
        char text[64];
        snprintf(text, sizeof text, "ping %d", i);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        ftg_add_text(tg, 42, text);
        wait_replies(tg, (size_t)i + 2, 30000);
        clock_gettime(CLOCK_MONOTONIC, &b);
        lat[i] = (b.tv_sec - a.tv_sec) * 1000000LL + (b.tv_nsec - a.tv_nsec) / 1000;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_ll);
    printf("latency (update available -> reply received, agent answers at once), %d messages:\n"
           "  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n",
           n, lat[n / 2] / 1000.0, lat[n * 9 / 10] / 1000.0, lat[n * 99 / 100] / 1000.0,
           lat[n - 1] / 1000.0);
    free(lat);
    int rc = stop_router(p);
    bench_agent_stop(ag);
    ftg_stop(tg);
    return rc;
}

static int inflight(int n, int delay_ms) {
    ftg *tg = ftg_start(TOKEN);
    bench_agent *ag = bench_agent_start(delay_ms);
    rt_proc *p = start_router(tg, ag, 1024, 4096);
    ftg_add_text(tg, 1, "warm-up");
    ftg_wait_count(tg, "sendMessage", 1, 30000);
    long rss0 = rss_kb(rt_pid(p), "VmRSS:");
    for (int i = 0; i < n; i++)
        ftg_add_text(tg, 10000 + i, "slow question");
    long long t0 = rt_now_ms();
    long peak = 0;
    while (ftg_count(tg, "sendMessage", 1) < (size_t)n + 1 && rt_now_ms() - t0 < 120000) {
        long r = rss_kb(rt_pid(p), "VmRSS:");
        if (r > peak) peak = r;
        rt_sleep_ms(20);
    }
    long long ms = rt_now_ms() - t0;
    printf("in flight: %d chats, agent takes %d ms: all answered in %lld ms, %ld calls in flight "
           "at the agent at once; RSS %ld KiB before, %ld KiB peak\n",
           n, delay_ms, ms, bench_agent_max_inflight(ag), rss0, peak);
    int rc = stop_router(p);
    bench_agent_stop(ag);
    ftg_stop(tg);
    return rc;
}

static int idle(void) {
    ftg *tg = ftg_start(TOKEN);
    bench_agent *ag = bench_agent_start(0);
    rt_proc *p = start_router(tg, ag, 64, 256);
    ftg_add_text(tg, 1, "warm-up");
    ftg_wait_count(tg, "sendMessage", 1, 30000);
    rt_sleep_ms(2000);
    int pid = rt_pid(p);
    printf("idle: VmRSS %ld KiB (RssAnon %ld KiB private, RssFile %ld KiB shared libraries), "
           "%ld threads\n",
           rss_kb(pid, "VmRSS:"), rss_kb(pid, "RssAnon:"), rss_kb(pid, "RssFile:"),
           rss_kb(pid, "Threads:"));
    int rc = stop_router(p);
    bench_agent_stop(ag);
    ftg_stop(tg);
    return rc;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "throughput";
    dir = rt_tmpdir();
    int rc;
    if (!strcmp(what, "throughput"))
        rc = throughput(argc > 2 ? atoi(argv[2]) : 20000, argc > 3 ? atoi(argv[3]) : 500);
    else if (!strcmp(what, "latency"))
        rc = latency(argc > 2 ? atoi(argv[2]) : 500);
    else if (!strcmp(what, "inflight"))
        rc = inflight(argc > 2 ? atoi(argv[2]) : 500, argc > 3 ? atoi(argv[3]) : 2000);
    else if (!strcmp(what, "idle"))
        rc = idle();
    else {
        fprintf(stderr, "usage: bench_e2e throughput|latency|inflight|idle [args]\n");
        rc = 64;
    }
    rt_rmtree(dir);
    free(dir);
    return rc;
}
