/*
 * The real routerd with the prometheus sink under load: /metrics is
 * scraped continuously while 400 messages flow; every scrape is checked
 * for histogram consistency here and a sample of them by `promtool check
 * metrics`; a real Prometheus server (127.0.0.1, temp fx->dir, 200 ms scrape
 * interval) scrapes routerd and its query API reports the round-trip
 * histogram's count equal to the messages sent. The StatsD push is read
 * back from a UDP socket. Exits 77 (skipped) when there is no prometheus
 * binary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "test_sinks_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MESSAGES 400
#define KEEP 6 /* scrapes handed to promtool */

static rt_fix *fx;

static rt_fix_spec fix = {.fx = &fx};

/* ---- exposition checks the text format leaves to the producer ------------ */

typedef struct hist_key {
    char key[512]; /* family + labels without le */
    double last, inf;
    bool have_inf;
} hist_key;

/* Buckets cumulative (never decreasing), +Inf present and equal to
 * _count, one TYPE per family and families contiguous. NULL when fine. */
static char *check_exposition(const char *text) {
    static char why[1024];
    hist_key *keys = calloc(512, sizeof *keys);
    size_t nkeys = 0;
    char families[256][128];
    size_t nfam = 0;
    char current[128] = "";
    char *copy = strdup(text), *save = NULL, *res = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(l, "# TYPE ", 7)) {
            char name[128];
            sscanf(l + 7, "%127s", name);
            for (size_t i = 0; i < nfam; i++)
                if (!strcmp(families[i], name)) {
                    snprintf(why, sizeof why, "second TYPE for %s", name);
                    res = why;
                    goto out;
                }
            if (nfam < 256) snprintf(families[nfam++], sizeof families[0], "%s", name);
            snprintf(current, sizeof current, "%s", name);
            continue;
        }
        if (l[0] == '#') continue;
        size_t nl = strcspn(l, "{ ");
        if (strncmp(l, current, strlen(current)) || nl < strlen(current)) {
            snprintf(why, sizeof why, "sample outside its family block: %.200s", l);
            res = why;
            goto out;
        }
        const char *sp = strrchr(l, ' ');
        double v = strtod(sp + 1, NULL);
        bool bucket = nl > 7 && !strncmp(l + nl - 7, "_bucket", 7);
        bool count = nl > 6 && !strncmp(l + nl - 6, "_count", 6);
        if (!bucket && !count) continue;
        /* key: family name and the labels other than le */
        char key[512];
        size_t base = nl - (bucket ? 7 : 6);
        snprintf(key, sizeof key, "%.*s", (int)base, l);
        const char *lab = l[nl] == '{' ? l + nl : NULL;
        const char *le = lab ? strstr(lab, "le=\"") : NULL;
        if (lab) {
            size_t k = strlen(key);
            for (const char *q = lab; *q && *q != ' ' && k + 1 < sizeof key; q++) {
                if (le && q == le) {
                    q = strchr(le + 4, '"');
                    if (q[1] == ',') q++;
                    continue;
                }
                key[k++] = *q;
            }
            key[k] = 0;
        }
        hist_key *h = NULL;
        for (size_t i = 0; i < nkeys; i++)
            if (!strcmp(keys[i].key, key)) h = &keys[i];
        if (!h && bucket && nkeys < 512) {
            h = &keys[nkeys++];
            snprintf(h->key, sizeof h->key, "%s", key);
            h->last = -1;
        }
        if (!h) continue; /* a _count of a non-histogram metric */
        if (bucket) {
            if (v < h->last) {
                snprintf(why, sizeof why, "bucket decreases: %.200s", l);
                res = why;
                goto out;
            }
            h->last = v;
            if (le && !strncmp(le, "le=\"+Inf\"", 9)) {
                h->have_inf = true;
                h->inf = v;
            }
        } else {
            if (!h->have_inf || h->inf != v) {
                snprintf(why, sizeof why, "+Inf bucket differs from _count: %.200s", l);
                res = why;
                goto out;
            }
        }
    }
out:
    free(copy);
    free(keys);
    return res;
}

/* ---- a scraper thread ----------------------------------------------------- */

typedef struct scraper {
    char url[128];
    atomic_bool stop;
    int scrapes, bad;
    char problem[1024];
    char *kept[KEEP];
    int nkept;
    pthread_t th;
} scraper;

static void *scrape_loop(void *arg) {
    scraper *s = arg;
    while (!atomic_load(&s->stop)) {
        char *body = NULL;
        long st = rt_http("GET", s->url, NULL, NULL, &body);
        if (st != 200 || !body) {
            s->bad++;
            snprintf(s->problem, sizeof s->problem, "HTTP %ld", st);
        } else {
            char *why = check_exposition(body);
            if (why) {
                s->bad++;
                snprintf(s->problem, sizeof s->problem, "%s", why);
            }
            if (s->scrapes % 4 == 0 && s->nkept < KEEP) {
                s->kept[s->nkept++] = body;
                body = NULL;
            }
            s->scrapes++;
        }
        free(body);
        rt_sleep_ms(5);
    }
    return NULL;
}

static int promtool_check(const char *text, char **out) {
    char path[1024], cmd[1200];
    snprintf(path, sizeof path, "%s/scrape.txt", fx->dir);
    free(rt_write_file(fx->dir, "scrape.txt", text));
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    return sk_run(cmd, out);
}

/* ---- Prometheus ------------------------------------------------------------ */

static double prom_query(int port, const char *q) {
    char url[512], *body = NULL;
    char enc[256];
    size_t k = 0;
    for (const char *p = q; *p && k + 4 < sizeof enc; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '_')
            enc[k++] = *p;
        else
            k += (size_t)snprintf(enc + k, sizeof enc - k, "%%%02X", (unsigned char)*p);
    }
    enc[k] = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/query?query=%s", port, enc);
    double v = NAN;
    if (rt_http("GET", url, NULL, NULL, &body) == 200 && body) {
        cJSON *o = cJSON_Parse(body);
        cJSON *res = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "data"), "result");
        cJSON *val =
            cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 0), "value"), 1);
        if (cJSON_IsString(val)) v = strtod(val->valuestring, NULL);
        cJSON_Delete(o);
    }
    free(body);
    return v;
}

static double wait_query(int port, const char *q, double want, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    double v;
    do {
        v = prom_query(port, q);
        if (v == want) break;
        rt_sleep_ms(100);
    } while (rt_now_ms() < end);
    return v;
}

/* ---- StatsD ----------------------------------------------------------------- */

static int udp_listen(int *port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Sums the counter deltas of one StatsD metric received so far. */
static double statsd_sum(int fd, const char *prefix, double *acc, int *gauges) {
    char buf[2048];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf - 1, 0)) > 0) {
        buf[n] = 0;
        for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
            if (!strncmp(l, prefix, strlen(prefix)) && strstr(l, "|c"))
                *acc += strtod(l + strlen(prefix), NULL);
            if (strstr(l, "|g")) (*gauges)++;
        }
    }
    return *acc;
}

static void test_scrape_under_load(void **state) {
    (void)state;
    char prom[512], *out = NULL;
    assert_int_equal(sk_run("command -v prometheus", &out), 0);
    snprintf(prom, sizeof prom, "%.*s", (int)strcspn(out, "\n"), out);
    free(out);
    int port = fx->port, pport = rt_free_port(), uport;
    int ufd = udp_listen(&uport);
    rt_fix_manifest(fx,
                    "rate_limit_per_minute = 0\n"
                    "[transport.console]\nplugin = console\n"
                    "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\nlatency_ms = 2\n"
                    "latency_max_ms = 40\nfail_transient = 0.05\nseed = 3\n"
                    "[sink.metrics]\nplugin = prometheus\nstatsd_address = 127.0.0.1:%d\n"
                    "statsd_interval_ms = 200\n"
                    "[persona.helper]\nbackend = mock\nchats = *\n",
                    uport);
    rt_proc *p = rt_fix_start(fx, NULL, 0);
    scraper s = {0};
    snprintf(s.url, sizeof s.url, "http://127.0.0.1:%d/metrics", port);
    assert_true(rt_wait_http(s.url, 200, 10000));

    /* A real Prometheus scraping routerd every 200 ms. */
    char text[4096];
    snprintf(text, sizeof text,
             "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n"
             "scrape_configs:\n  - job_name: routerd\n    static_configs:\n"
             "      - targets: ['127.0.0.1:%d']\n",
             port);
    char *cfg = rt_write_file(fx->dir, "prometheus.yml", text);
    char a_cfg[1100], a_db[1100], a_listen[64];
    snprintf(a_cfg, sizeof a_cfg, "--config.file=%s", cfg);
    snprintf(a_db, sizeof a_db, "--storage.tsdb.path=%s/tsdb", fx->dir);
    snprintf(a_listen, sizeof a_listen, "--web.listen-address=127.0.0.1:%d", pport);
    const char *argv[] = {prom, a_cfg, a_db, a_listen, "--log.level=warn", NULL};
    rt_proc *pr = rt_spawn(argv, NULL);
    assert_non_null(pr);

    /* Load, scraped all along. */
    pthread_create(&s.th, NULL, scrape_loop, &s);
    char line[64];
    for (int i = 0; i < MESSAGES; i++) {
        snprintf(line, sizeof line, "@%d m%d\n", 100 + i % 40, i);
        rt_write(p, line);
        if (i % 50 == 49) rt_sleep_ms(100);
    }
    assert_int_equal(rt_wait_stdout_lines(p, MESSAGES, 30000), MESSAGES);
    atomic_store(&s.stop, true);
    pthread_join(s.th, NULL);
    if (s.bad) fail_msg("%d bad scrape(s): %s", s.bad, s.problem);
    assert_true(s.scrapes >= 10);

    char *body = NULL;
    assert_int_equal(rt_http("GET", s.url, NULL, NULL, &body), 200);
    assert_null(check_exposition(body));
    if (s.nkept == KEEP) free(s.kept[--s.nkept]); /* the final scrape is checked too */
    s.kept[s.nkept++] = body;
    for (int i = 0; i < s.nkept; i++) {
        int rc = promtool_check(s.kept[i], &out);
        if (rc != 0 || *out) fail_msg("promtool check metrics: exit %d: %s", rc, out);
        free(out);
    }
    /* The figures themselves. */
    assert_true(sk_metric(body, "routerd_round_trip_seconds_count", NULL) == MESSAGES);
    assert_true(sk_metric(body, "routerd_messages_replied_total", NULL) == MESSAGES);
    assert_true(sk_metric(body, "routerd_backend_failures_total", NULL) > 0);
    assert_true(sk_metric(body, "process_resident_memory_bytes", NULL) > 1e6);
    assert_true(sk_metric(body, "process_open_fds", NULL) > 3);
    assert_true(sk_metric(body, "process_cpu_seconds_total", NULL) > 0);
    double start = sk_metric(body, "process_start_time_seconds", NULL);
    assert_true(fabs(start - (double)time(NULL)) < 600);
    assert_non_null(strstr(body, "# TYPE routerd_round_trip_seconds histogram\n"));
    assert_non_null(strstr(body, "routerd_round_trip_seconds_bucket{le=\"+Inf\"} 400\n"));

    /* Prometheus saw the same. */
    double v = wait_query(pport, "routerd_round_trip_seconds_count", MESSAGES, 30000);
    if (v != MESSAGES) fail_msg("Prometheus: routerd_round_trip_seconds_count = %g", v);
    assert_true(wait_query(pport, "sum(routerd_messages_replied_total)", MESSAGES, 5000) ==
                MESSAGES);
    assert_true(wait_query(pport, "up{job=\"routerd\"}", 1, 5000) == 1);
    /* A P95 from the buckets, as the alert rule computes it: finite. */
    double p95 = prom_query(pport, "histogram_quantile(0.95, routerd_round_trip_seconds_bucket)");
    assert_true(isfinite(p95) && p95 > 0 && p95 < 1);

    /* StatsD: counter deltas add up to the total. */
    double acc = 0;
    int gauges = 0;
    long long end = rt_now_ms() + 3000;
    while (statsd_sum(ufd, "routerd_messages_replied_total:", &acc, &gauges) < MESSAGES &&
           rt_now_ms() < end)
        rt_sleep_ms(50);
    assert_true(acc == MESSAGES);
    assert_true(gauges > 0);
    close(ufd);

    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    rt_signal(pr, SIGTERM);
    assert_true(rt_wait(pr, 20000) >= 0);
    for (int i = 0; i < s.nkept; i++)
        free(s.kept[i]);
    rt_free(pr);
    free(cfg);
}

int main(void) {
    if (!sk_have("prometheus")) {
        fprintf(stderr, "prometheus is not installed (Debian package prometheus): skipped\n");
        return 77;
    }
    if (!sk_have("promtool")) {
        fprintf(stderr, "promtool is missing though prometheus is installed\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_scrape_under_load, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
