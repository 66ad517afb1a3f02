/* End-to-end benchmark: the real routerd (telegram transport, a2a backend)
 * and, in the same run, the minimal client (bench_minimal.c) that makes
 * the same HTTP calls and nothing else, against the fake Telegram Bot API
 * server of the tests and a fast A2A agent (bench_agent.c), all on
 * 127.0.0.1. See bench/README.md.
 *
 *   bench_e2e [--repeat K] [--client both|routerd|minimal] SCENARIO [ARGS]
 *     burst  [N] [CHATS]               N messages over CHATS chats at once
 *     slow   [CHATS] [DELAY_MS] [WITHIN_S]  one message per chat, slow agent
 *     steady [RATE] [SECONDS] [CHATS]  RATE messages/s, router-added latency
 *     start                            exec to ready; idle private memory
 *     smoke                            every scenario at small N
 *
 * BENCH_AGENT_MODE=task (slow, --client routerd): the agent answers with
 * tasks that routerd polls, or with BENCH_PUSH=1 pushes to its webhook;
 * BENCH_AGENT_MODE=stream: with a stream (routerd's stream = true);
 * BENCH_PROGRESS=1 also shows its partial answers (progress = true).
 * BENCH_LATENCIES=FILE (steady): each message's injection time and added
 * latency, one line each.
 *
 * Every run checks that each message was answered exactly once and in
 * order per chat, and exits non-zero otherwise. Each run prints a
 * "RESULT key=value ..." line; with --repeat a "MEDIAN" line per client and
 * a "RATIO" line of routerd against the minimal client follow. */
#include "bench_agent.h"
#include "fake_telegram.h"
#include "harness.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define TOKEN "123456:bench-token"
#define BASE_CHAT 1000
#define WARM_CHAT 1
/* routerd's defaults of workers and queue_depth, for both clients. */
#define DEF_WORKERS 256
#define DEF_QUEUE 256

static char *dir;
static int keep_state; /* the next routerd start reuses the state directory */
static int repeat = 1;
static const char *clients = "both";
/* BENCH_AGENT_MODE=task: the slow scenario's agent answers non-blocking
 * sends with a working Task (bench_agent.h); BENCH_PUSH=1 also gives
 * routerd a push_url, so the agent pushes instead of routerd polling.
 * BENCH_AGENT_MODE=stream: it streams (routerd gets stream = true), and
 * with BENCH_PROGRESS=1 routerd shows the partial answer it streams first
 * (progress = true): replies are then edits of that message. */
static int task_mode, push_mode, stream_mode, progress_mode;
#define PARTIAL "working on it" /* bench_agent.c's partial answer */

/* ------------------------------------------------------------------------ */
/* Metrics of one run                                                        */

#define MAXM 40
typedef struct metrics {
    int n;
    const char *name[MAXM];
    double v[MAXM];
} metrics;

static void put(metrics *m, const char *name, double v) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->name[i], name)) {
            m->v[i] = v;
            return;
        }
    if (m->n < MAXM) {
        m->name[m->n] = name;
        m->v[m->n++] = v;
    }
}

static double get(const metrics *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->name[i], name)) return m->v[i];
    return -1;
}

static void print_metrics(const metrics *m) {
    for (int i = 0; i < m->n; i++) {
        double v = m->v[i];
        if (v == (double)(long long)v && (v < 0 ? -v : v) < 1e15)
            printf(" %s=%lld", m->name[i], (long long)v);
        else
            printf(" %s=%.6g", m->name[i], v);
    }
}

static double load1(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* ------------------------------------------------------------------------ */
/* /proc probes of the client process                                        */

static long status_kb(int pid, const char *field) {
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

/* user + system CPU of the whole process (every thread, dead ones too), ms. */
static double cpu_ms(int pid) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* Context switches summed over the live threads. */
static void ctxsw(int pid, long *vol, long *invol) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    *vol = *invol = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p2[320], line[256];
        snprintf(p2, sizeof p2, "/proc/%d/task/%s/status", pid, e->d_name);
        FILE *f = fopen(p2, "r");
        while (f && fgets(line, sizeof line, f)) {
            if (!strncmp(line, "voluntary_ctxt_switches:", 24)) *vol += atol(line + 24);
            if (!strncmp(line, "nonvoluntary_ctxt_switches:", 27)) *invol += atol(line + 27);
        }
        if (f) fclose(f);
    }
    if (d) closedir(d);
}

static long long io_field(int pid, const char *field) {
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/io", pid);
    FILE *f = fopen(path, "r");
    long long v = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl) && line[fl] == ':') v = atoll(line + fl + 1);
    if (f) fclose(f);
    return v;
}

typedef struct snap {
    long long t_us;
    double cpu;
    long vol, invol;
    long long wbytes, syscr, syscw;
    double commits, writes; /* routerd's store counters from /metrics; -1 = none */
    /* sums and counts of routerd's latency histograms, for where a message's
     * time goes: queued, at the backend, sending the reply, end to end */
    double st_sum[4], st_n[4];
} snap;

static const struct {
    const char *name, *label, *out;
} stages[4] = {
    {"routerd_queue_wait_seconds", NULL, "queue_wait_ms_avg"},
    {"routerd_backend_latency_seconds", NULL, "backend_ms_avg"},
    {"routerd_telegram_api_request_seconds", "method=\"sendMessage\"", "send_ms_avg"},
    {"routerd_round_trip_seconds", NULL, "round_trip_ms_avg"},
};

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void take_snap(int pid, snap *s) {
    s->t_us = now_us(); /* commits and writes: store_counts() */
    s->cpu = cpu_ms(pid);
    ctxsw(pid, &s->vol, &s->invol);
    s->wbytes = io_field(pid, "write_bytes");
    s->syscr = io_field(pid, "syscr");
    s->syscw = io_field(pid, "syscw");
}

/* Peak RSS and thread count, sampled every 5 ms. */
typedef struct sampler {
    int pid;
    atomic_int stop;
    long peak_rss, peak_threads;
    pthread_t th;
} sampler;

static void *sample_loop(void *arg) {
    sampler *s = arg;
    while (!s->stop) {
        long r = status_kb(s->pid, "VmRSS"), t = status_kb(s->pid, "Threads");
        if (r > s->peak_rss) s->peak_rss = r;
        if (t > s->peak_threads) s->peak_threads = t;
        rt_sleep_ms(5);
    }
    return NULL;
}

static void sampler_start(sampler *s, int pid) {
    memset(s, 0, sizeof *s);
    s->pid = pid;
    pthread_create(&s->th, NULL, sample_loop, s);
}

static void sampler_stop(sampler *s) {
    s->stop = 1;
    pthread_join(s->th, NULL);
}

/* ------------------------------------------------------------------------ */
/* The two clients                                                           */

typedef struct client {
    int minimal;
    rt_proc *p;
    int pid;
    int admin_port;
    struct rusage ru0; /* children's rusage before it exited */
} client;

static int envint(const char *name, int def) {
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : def;
}

static const char *envor(const char *name, const char *def) {
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* The manifest of a deployment (see bench/README.md for each choice);
 * BENCH_* variables change one choice at a time. */
static char *manifest(ftg *tg, bench_agent *ag, int workers, int queue, int admin_port) {
    char sinks[512] = "";
    const char *s = envor("BENCH_SINKS", "metrics");
    if (strstr(s, "metrics")) strcat(sinks, "[sink.metrics]\nplugin = prometheus\n");
    if (strstr(s, "log"))
        strcat(sinks, "[sink.logs]\nplugin = jsonlog\npath = /dev/null\nlevel = info\n");
    char admin[64], push[128] = "";
    snprintf(admin, sizeof admin, "127.0.0.1:%d", admin_port);
    /* routerd serves the webhook on its admin server */
    if (push_mode) snprintf(push, sizeof push, "push_url = http://127.0.0.1:%d/\n", admin_port);
    if (stream_mode)
        snprintf(push, sizeof push, "stream = true\n%s",
                 progress_mode ? "progress = true\nprogress_interval_ms = 100\n" : "");
    char *text;
    if (asprintf(&text,
                 "[router]\nenv = bench\nadmin_listen = %s\nstate_dir = %s/state\n"
                 "queue_depth = %d\nworkers = %d\nrate_limit_per_minute = 0\nlog_level = warn\n"
                 "state_sync = %s\n%s\n"
                 "[transport.main]\nplugin = telegram\ntoken = " TOKEN "\napi_base = %s\n"
                 "throttle = %s\ntyping = %s\ntimeout = %s\nlimit = %s\n%s\n"
                 "[backend.agent]\nplugin = a2a\nurl = %s\n%s%s\n"
                 "[persona.p]\nbackend = agent\nchats = *\n%s",
                 admin_port > 0 ? admin : "off", dir, queue, workers, envor("BENCH_SYNC", "full"),
                 envor("BENCH_ROUTER", ""), ftg_base(tg), envor("BENCH_THROTTLE", "off"),
                 envor("BENCH_TYPING", "on"), envor("BENCH_POLL_TIMEOUT", "1"),
                 envor("BENCH_LIMIT", "100"), envor("BENCH_TELEGRAM", ""), bench_agent_url(ag),
                 push, envor("BENCH_A2A", ""), sinks) < 0)
        return NULL;
    char *path = rt_write_file(dir, "bench.ini", text);
    free(text);
    return path;
}

/* BENCH_WRAP="valgrind --tool=memcheck ..." runs the client under a tool. */
static rt_proc *spawn_wrapped(const char *bin, const char *const *args, const char *const *env) {
    const char *argv[64];
    int n = 0;
    char *wrap = strdup(envor("BENCH_WRAP", ""));
    for (char *tok = strtok(wrap, " "); tok && n < 40; tok = strtok(NULL, " "))
        argv[n++] = tok;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    rt_proc *p = rt_spawn(argv, env);
    free(wrap);
    return p;
}

static int client_start(client *c, int minimal, ftg *tg, bench_agent *ag, int workers, int queue) {
    memset(c, 0, sizeof *c);
    c->minimal = minimal;
    getrusage(RUSAGE_CHILDREN, &c->ru0);
    if (minimal) {
        char w[16], q[16];
        snprintf(w, sizeof w, "%d", workers);
        snprintf(q, sizeof q, "%d", queue);
        const char *args[] = {
            ftg_base(tg), bench_agent_url(ag), w, q, envor("BENCH_POLL_TIMEOUT", "1"), NULL};
        const char *env[] = {"BENCH_TOKEN=" TOKEN, NULL};
        c->p = spawn_wrapped(BENCH_MINIMAL_BIN, args, env);
    } else {
        c->admin_port = strcmp(envor("BENCH_ADMIN", "on"), "off") ? rt_free_port() : 0;
        char state[1024];
        snprintf(state, sizeof state, "%s/state", dir);
        if (!keep_state) rt_rmtree(state); /* every run starts with an empty journal */
        char *m = manifest(tg, ag, workers, queue, c->admin_port);
        if (!m) return -1;
        const char *args[] = {"-c", m, NULL};
        c->p = spawn_wrapped(ROUTERD_BIN, args, NULL);
        free(m);
    }
    if (!c->p) return -1;
    c->pid = rt_pid(c->p);
    return 0;
}

static const char *client_name(const client *c) {
    return c->minimal ? "minimal" : "routerd";
}

/* SIGTERM, wait; the whole life's CPU and context switches into m. */
static int client_stop(client *c, metrics *m) {
    rt_signal(c->p, SIGTERM);
    int rc = rt_wait(c->p, 120000);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    if (m) {
        double cpu = (double)(ru.ru_utime.tv_sec - c->ru0.ru_utime.tv_sec + ru.ru_stime.tv_sec -
                              c->ru0.ru_stime.tv_sec) *
                         1000.0 +
                     (double)(ru.ru_utime.tv_usec - c->ru0.ru_utime.tv_usec + ru.ru_stime.tv_usec -
                              c->ru0.ru_stime.tv_usec) /
                         1000.0;
        put(m, "life_cpu_ms", cpu);
        put(m, "life_vcsw", (double)(ru.ru_nvcsw - c->ru0.ru_nvcsw));
    }
    if (rc != 0) fprintf(stderr, "%s exited %d:\n%s\n", client_name(c), rc, rt_stderr(c->p));
    rt_free(c->p);
    c->p = NULL;
    return rc;
}

/* Waits for the n-th sendMessage (including the warm-up). */
/* Replies sent: sendMessage calls, or with progress_mode the calls that
 * are not the partial answer (a reply edits it in, or is sent anew). */
static size_t replies(ftg *tg) {
    size_t n = ftg_count(tg, "sendMessage", 1);
    if (!progress_mode) return n;
    return n + ftg_count(tg, "editMessageText", 1) - ftg_count_text(tg, PARTIAL);
}

static size_t wait_sends(ftg *tg, size_t n, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    size_t have;
    int step = progress_mode ? 20 : n > 30000 ? 10 : 2;
    while ((have = replies(tg)) < n && rt_now_ms() < end)
        rt_sleep_ms(step);
    return have;
}

/* One warm-up message from a chat of its own, so that start-up is not
 * part of what is measured. */
static int warm_up(client *c, ftg *tg) {
    ftg_add_text(tg, WARM_CHAT, "warm-up");
    if (wait_sends(tg, 1, 60000) < 1) {
        fprintf(stderr, "%s: no answer to the warm-up message:\n%s\n", client_name(c),
                rt_stderr(c->p));
        return -1;
    }
    return 0;
}

/* Answered once, in order: the echoes "echo: c<C>-m<K>" of n messages,
 * message i from chat BASE_CHAT + i % chats with K = i / chats. */
static int check(ftg *tg, int n, int chats, metrics *m) {
    int per_chat = (n + chats - 1) / chats;
    ftg_tally t;
    ftg_tally_answers(tg, BASE_CHAT, chats, per_chat, progress_mode ? PARTIAL : NULL, &t);
    if (progress_mode) put(m, "partials_shown", t.partials);
    put(m, "answered", t.answered);
    put(m, "duplicates", t.duplicates);
    put(m, "order_ok", t.order_ok);
    int ok = t.answered == n && t.duplicates == 0 && t.order_ok && t.foreign == 1;
    if (!ok)
        fprintf(stderr,
                "CORRECTNESS FAILED: %d of %d answered, %d duplicates, order %s, %d other "
                "replies (1 expected: the warm-up)\n",
                t.answered, n, t.duplicates, t.order_ok ? "kept" : "BROKEN", t.foreign);
    put(m, "correct", ok);
    return ok ? 0 : 1;
}

static void text_of(char *buf, size_t n, int i, int chats) {
    snprintf(buf, n, "c%d-m%d", i % chats, i / chats);
}

/* Where a message's time went, averaged over the phase (routerd only). */
static void stage_metrics(metrics *m, const snap *a, const snap *b) {
    for (int i = 0; i < 4; i++)
        if (a->st_n[i] >= 0 && b->st_n[i] > a->st_n[i])
            put(m, stages[i].out,
                (b->st_sum[i] - a->st_sum[i]) * 1000.0 / (b->st_n[i] - a->st_n[i]));
}

static void phase_metrics(metrics *m, const snap *a, const snap *b, int n) {
    double ms = (double)(b->t_us - a->t_us) / 1000.0;
    put(m, "elapsed_ms", ms);
    put(m, "msgs_per_s", ms > 0 ? n * 1000.0 / ms : 0);
    put(m, "cpu_ms_per_msg", (b->cpu - a->cpu) / n);
    put(m, "vcsw_per_msg", (double)(b->vol - a->vol) / n);
    put(m, "ivcsw_per_msg", (double)(b->invol - a->invol) / n);
    put(m, "vfs_rw_syscalls_per_msg", (double)(b->syscr - a->syscr + b->syscw - a->syscw) / n);
    put(m, "disk_write_bytes_per_msg", (double)(b->wbytes - a->wbytes) / n);
    if (a->commits >= 0 && b->writes > a->writes) { /* SQLite only */
        put(m, "store_commits_per_msg", (b->commits - a->commits) / n);
        put(m, "store_writes_per_msg", (b->writes - a->writes) / n);
    }
    stage_metrics(m, a, b);
}

/* BENCH_VERBOSE=1: one body of each call, to compare the two clients. */
static void show_bodies(ftg *tg, bench_agent *ag, const char *who) {
    char *a = bench_agent_sample(ag);
    fprintf(stderr, "%s message/send: %s\n", who, a ? a : "(none)");
    free(a);
    const char *methods[] = {"getUpdates", "sendMessage", "sendChatAction", NULL};
    for (int i = 0; methods[i]; i++) {
        ftg_rec *r;
        size_t n = ftg_records(tg, methods[i], 0, &r);
        fprintf(stderr, "%s %s: %zu calls, last body %s\n", who, methods[i], n,
                n ? r[n - 1].body : "");
        ftg_recs_free(r, n);
    }
}

/* A tool attached for the measured phase only, stopped with SIGINT:
 * BENCH_STRACE=FILE runs strace -c -f -o FILE -p PID; BENCH_ATTACH="perf
 * record -g -o FILE -p" runs that command with the pid appended. */
static rt_proc *strace_start(int pid) {
    char cmd[1024], ps[16];
    const char *out = getenv("BENCH_STRACE"), *att = getenv("BENCH_ATTACH");
    snprintf(ps, sizeof ps, "%d", pid);
    if (out && *out)
        snprintf(cmd, sizeof cmd, "/usr/bin/strace -c -f -o %s -p", out);
    else if (att && *att)
        snprintf(cmd, sizeof cmd, "%s", att);
    else
        return NULL;
    const char *argv[40];
    int n = 0;
    for (char *tok = strtok(cmd, " "); tok && n < 38; tok = strtok(NULL, " "))
        argv[n++] = tok;
    argv[n++] = ps;
    argv[n] = NULL;
    rt_proc *s = rt_spawn(argv, NULL);
    rt_sleep_ms(500); /* attaching to every thread */
    return s;
}

static void strace_stop(rt_proc *s) {
    if (!s) return;
    rt_signal(s, SIGINT);
    rt_wait(s, 30000);
    rt_free(s);
}

/* The measured phase: peaks sampled, a tool attached, counters at both ends. */
typedef struct phase {
    sampler sm;
    rt_proc *tool;
    snap a, b;
    int admin_port; /* routerd's: its store counters are read from /metrics */
} phase;

static double metric_value(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ') return atof(p + n + 1);
    return -1;
}

/* Sums every series of a metric (name then '{' or ' '), or only those
 * whose labels hold `label`. */
static double metric_sum(const char *text, const char *name, const char *label) {
    size_t n = strlen(name);
    double v = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) || (p[n] != ' ' && p[n] != '{')) continue;
        const char *eol = strchr(p, '\n');
        const char *sp = p[n] == '{' ? strchr(p, '}') : p + n;
        if (!sp || (eol && sp > eol)) continue;
        if (label) {
            const char *l = strstr(p, label);
            if (!l || l > sp) continue;
        }
        v += atof(sp + 1);
    }
    return v;
}

/* The store counters, read after the main loop has copied them (every
 * 200 ms), outside the timed part of the phase. */
static void store_counts(int port, snap *s) {
    s->commits = s->writes = -1;
    for (int i = 0; i < 4; i++)
        s->st_sum[i] = s->st_n[i] = -1;
    if (port <= 0) return;
    rt_sleep_ms(300);
    char url[64], *body = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    if (rt_http("GET", url, NULL, NULL, &body) == 200 && body) {
        s->commits = metric_value(body, "routerd_store_commits_total");
        s->writes = metric_value(body, "routerd_store_writes_total");
        char nm[96];
        for (int i = 0; i < 4; i++) {
            snprintf(nm, sizeof nm, "%s_sum", stages[i].name);
            s->st_sum[i] = metric_sum(body, nm, stages[i].label);
            snprintf(nm, sizeof nm, "%s_count", stages[i].name);
            s->st_n[i] = metric_sum(body, nm, stages[i].label);
        }
    }
    free(body);
}

static void phase_begin(phase *ph, int pid, int admin_port) {
    ph->admin_port = admin_port;
    store_counts(admin_port, &ph->a);
    sampler_start(&ph->sm, pid);
    ph->tool = strace_start(pid);
    take_snap(pid, &ph->a);
}

static void phase_end(phase *ph, int pid) {
    take_snap(pid, &ph->b);
    strace_stop(ph->tool);
    sampler_stop(&ph->sm);
    store_counts(ph->admin_port, &ph->b);
}

/* ------------------------------------------------------------------------ */
/* Scenarios                                                                 */

typedef struct params {
    int n, chats, delay_ms, within_s, rate, seconds;
} params;

/* The fake Bot API; BENCH_TG_SEND_MS holds every sendMessage that long
 * (a Bot API some distance away) for both clients. */
static ftg *tg_start(void) {
    ftg *tg = ftg_start(TOKEN);
    int ms = envint("BENCH_TG_SEND_MS", 0);
    if (tg && ms) ftg_fail(tg, "sendMessage", FTG_FAULT_SLOW, ms, INT_MAX);
    return tg;
}

static int run_burst(int minimal, const params *pa, metrics *m) {
    int n = pa->n, chats = pa->chats;
    ftg *tg = tg_start();
    bench_agent *ag = bench_agent_start(0);
    client c;
    int rc = 1;
    if (client_start(&c, minimal, tg, ag, DEF_WORKERS, DEF_QUEUE) || warm_up(&c, tg)) goto out;
    phase ph;
    phase_begin(&ph, c.pid, c.minimal ? 0 : c.admin_port);
    char text[64];
    for (int i = 0; i < n; i++) {
        text_of(text, sizeof text, i, chats);
        ftg_add_text(tg, BASE_CHAT + i % chats, text);
    }
    size_t got = wait_sends(tg, (size_t)n + 1, 600000);
    phase_end(&ph, c.pid);
    put(m, "n", n);
    put(m, "chats", chats);
    phase_metrics(m, &ph.a, &ph.b, n);
    put(m, "peak_rss_kib", (double)ph.sm.peak_rss);
    put(m, "hwm_rss_kib", (double)status_kb(c.pid, "VmHWM"));
    put(m, "threads_peak", (double)ph.sm.peak_threads);
    int stop_rc = client_stop(&c, m);
    rc = check(tg, n, chats, m) || stop_rc || got < (size_t)n + 1;
    if (getenv("BENCH_VERBOSE")) show_bodies(tg, ag, client_name(&c));
out:
    if (c.p) client_stop(&c, NULL);
    bench_agent_stop(ag);
    ftg_stop(tg);
    return rc;
}

static int run_slow(int minimal, const params *pa, metrics *m) {
    int chats = pa->chats;
    ftg *tg = tg_start();
    bench_agent *ag = bench_agent_start_tasks(pa->delay_ms, task_mode     ? BENCH_AGENT_TASKS
                                                            : stream_mode ? BENCH_AGENT_STREAM
                                                                          : 0);
    client c;
    int rc = 1;
    /* The minimal client needs a thread per call in flight; routerd's a2a
     * backend waits on the agent without a worker (RD_PENDING), so its
     * workers (the default bound; BENCH_SLOW_WORKERS changes it) only carry
     * the work before and after the call. */
    int workers = minimal ? chats + 16 : envint("BENCH_SLOW_WORKERS", DEF_WORKERS);
    if (client_start(&c, minimal, tg, ag, workers, chats + 256) || warm_up(&c, tg)) goto out;
    long rss0 = status_kb(c.pid, "VmRSS");
    phase ph;
    phase_begin(&ph, c.pid, c.minimal ? 0 : c.admin_port);
    char text[64];
    for (int i = 0; i < chats; i++) {
        text_of(text, sizeof text, i, chats);
        ftg_add_text(tg, BASE_CHAT + i, text);
    }
    long long last = now_us();
    size_t got = wait_sends(tg, (size_t)chats + 1, pa->within_s * 1000 + pa->delay_ms + 120000);
    phase_end(&ph, c.pid);
    double after_ms = (double)(ph.b.t_us - last) / 1000.0;
    put(m, "chats", chats);
    put(m, "delay_ms", pa->delay_ms);
    put(m, "answered_after_last_ms", after_ms);
    put(m, "within_target", after_ms <= pa->within_s * 1000.0);
    put(m, "agent_max_inflight", (double)bench_agent_max_inflight(ag));
    /* How long the client took to take every update, and to get every call
     * to the agent. */
    put(m, "last_update_out_after_last_ms", (double)(ftg_last_handout_us(tg) - last) / 1000.0);
    put(m, "last_call_after_last_ms", (double)(bench_agent_last_arrival_us(ag) - last) / 1000.0);
    put(m, "cpu_ms_per_msg", (ph.b.cpu - ph.a.cpu) / chats);
    stage_metrics(m, &ph.a, &ph.b);
    put(m, "rss_start_kib", (double)rss0);
    put(m, "peak_rss_kib", (double)ph.sm.peak_rss);
    put(m, "threads_peak", (double)ph.sm.peak_threads);
    if (task_mode) { /* warm-up included */
        long ok, pushes = bench_agent_pushes(ag, &ok);
        put(m, "polls", (double)bench_agent_polls(ag));
        put(m, "pushes", (double)pushes);
        put(m, "pushes_ok", (double)ok);
        double lag, lag_max; /* how late routerd saw a completed task */
        bench_agent_fetch_lag(ag, &lag, &lag_max);
        put(m, "fetch_lag_ms_avg", lag);
        put(m, "fetch_lag_ms_max", lag_max);
    }
    int stop_rc = client_stop(&c, m);
    rc = check(tg, chats, chats, m) || stop_rc || got < (size_t)chats + 1;
out:
    if (c.p) client_stop(&c, NULL);
    bench_agent_stop(ag);
    ftg_stop(tg);
    return rc;
}

static int cmp_ll(const void *x, const void *y) {
    long long a = *(const long long *)x, b = *(const long long *)y;
    return a < b ? -1 : a > b;
}

static int run_steady(int minimal, const params *pa, metrics *m) {
    int n = pa->rate * pa->seconds, chats = pa->chats;
    int per_chat = (n + chats - 1) / chats;
    ftg *tg = tg_start();
    bench_agent *ag = bench_agent_start(pa->delay_ms);
    bench_agent_track(ag, chats, per_chat);
    long long *inj = calloc((size_t)n, sizeof *inj);
    client c;
    int rc = 1;
    if (client_start(&c, minimal, tg, ag, DEF_WORKERS, DEF_QUEUE) || warm_up(&c, tg)) goto out;
    long rss0 = status_kb(c.pid, "VmRSS");
    phase ph;
    phase_begin(&ph, c.pid, c.minimal ? 0 : c.admin_port);
    char text[64];
    long long t0 = now_us();
    for (int i = 0; i < n; i++) {
        long long due = t0 + (long long)i * 1000000 / pa->rate, wait = due - now_us();
        if (wait > 0) {
            struct timespec ts = {wait / 1000000, (long)(wait % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
        text_of(text, sizeof text, i, chats);
        inj[i] = now_us();
        ftg_add_text(tg, BASE_CHAT + i % chats, text);
    }
    size_t got = wait_sends(tg, (size_t)n + 1, 120000);
    phase_end(&ph, c.pid);
    long rss1 = status_kb(c.pid, "VmRSS");
    /* Router-added latency: reply arrival - injection - time at the agent. */
    ftg_rec *r;
    size_t nr = ftg_records(tg, "sendMessage", 1, &r);
    long long *lat = calloc(nr ? nr : 1, sizeof *lat);
    size_t nl = 0;
    /* BENCH_LATENCIES=FILE: one line per message, to see when the slow
     * ones happened (stalls come in clusters). */
    const char *lpath = getenv("BENCH_LATENCIES");
    FILE *lf = lpath && *lpath ? fopen(lpath, "w") : NULL;
    if (lf) fprintf(lf, "# injected_us added_us chat message\n");
    for (size_t i = 0; i < nr; i++) {
        int cc, k;
        if (!r[i].text || sscanf(r[i].text, "echo: c%d-m%d", &cc, &k) != 2 || cc < 0 ||
            cc >= chats || k < 0 || k >= per_chat || k * chats + cc >= n)
            continue;
        long long held = bench_agent_held_us(ag, cc, k);
        if (held < 0) continue;
        lat[nl++] = r[i].t_us - inj[k * chats + cc] - held;
        if (lf) fprintf(lf, "%lld %lld %d %d\n", inj[k * chats + cc] - t0, lat[nl - 1], cc, k);
    }
    if (lf) fclose(lf);
    ftg_recs_free(r, nr);
    qsort(lat, nl, sizeof *lat, cmp_ll);
    put(m, "rate", pa->rate);
    put(m, "seconds", pa->seconds);
    put(m, "chats", chats);
    put(m, "n", n);
    phase_metrics(m, &ph.a, &ph.b, n);
    put(m, "added_p50_ms", nl ? lat[nl / 2] / 1000.0 : -1);
    put(m, "added_p99_ms", nl ? lat[nl * 99 / 100] / 1000.0 : -1);
    put(m, "added_max_ms", nl ? lat[nl - 1] / 1000.0 : -1);
    put(m, "rss_start_kib", (double)rss0);
    put(m, "rss_end_kib", (double)rss1);
    put(m, "peak_rss_kib", (double)ph.sm.peak_rss);
    put(m, "threads_peak", (double)ph.sm.peak_threads);
    free(lat);
    int stop_rc = client_stop(&c, m);
    rc = check(tg, n, chats, m) || stop_rc || got < (size_t)n + 1;
out:
    if (c.p) client_stop(&c, NULL);
    free(inj);
    bench_agent_stop(ag);
    ftg_stop(tg);
    return rc;
}

static int run_start(int minimal, const params *pa, metrics *m) {
    (void)pa;
    ftg *tg = tg_start();
    bench_agent *ag = bench_agent_start(0);
    client c;
    int rc = 1;
    long long t0 = now_us();
    if (client_start(&c, minimal, tg, ag, DEF_WORKERS, DEF_QUEUE)) goto out;
    double healthz_ms = -1;
    if (c.admin_port > 0) {
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", c.admin_port);
        long long end = rt_now_ms() + 30000;
        while (rt_now_ms() < end && rt_http("GET", url, NULL, NULL, NULL) != 200)
            rt_sleep_ms(1);
        healthz_ms = (double)(now_us() - t0) / 1000.0;
    }
    long long end = rt_now_ms() + 30000;
    while (ftg_count(tg, "getUpdates", 0) < 1 && rt_now_ms() < end)
        rt_sleep_ms(1);
    ftg_rec *r;
    size_t nr = ftg_records(tg, "getUpdates", 0, &r);
    double poll_ms = nr ? (double)(r[0].t_us - t0) / 1000.0 : -1;
    ftg_recs_free(r, nr);
    put(m, "first_poll_ms", poll_ms);
    put(m, "healthz_ms", healthz_ms);
    /* Idle memory after one message has gone through. */
    ftg_add_text(tg, BASE_CHAT, "c0-m0");
    if (warm_up(&c, tg)) goto out;
    rt_sleep_ms(1000);
    put(m, "idle_rss_kib", (double)status_kb(c.pid, "VmRSS"));
    put(m, "idle_rss_anon_kib", (double)status_kb(c.pid, "RssAnon"));
    put(m, "idle_threads", (double)status_kb(c.pid, "Threads"));
    int stop_rc = client_stop(&c, m);
    rc = check(tg, 1, 1, m) || stop_rc || poll_ms < 0;
    /* A restart: the state store exists, as after a deployment's restart. */
    size_t polls = ftg_count(tg, "getUpdates", 0);
    keep_state = 1;
    t0 = now_us();
    int st = client_start(&c, minimal, tg, ag, DEF_WORKERS, DEF_QUEUE);
    keep_state = 0;
    if (st) goto out;
    end = rt_now_ms() + 30000;
    while (ftg_count(tg, "getUpdates", 0) <= polls && rt_now_ms() < end)
        rt_sleep_ms(1);
    nr = ftg_records(tg, "getUpdates", 0, &r);
    put(m, "restart_first_poll_ms", nr > polls ? (double)(r[polls].t_us - t0) / 1000.0 : -1);
    ftg_recs_free(r, nr);
    rc |= client_stop(&c, NULL) != 0 || nr <= polls;
out:
    if (c.p) client_stop(&c, NULL);
    bench_agent_stop(ag);
    ftg_stop(tg);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Repeats, medians, ratios                                                  */

typedef int (*scenario_fn)(int minimal, const params *pa, metrics *m);

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static void median_of(metrics *runs, int k, const char *name, double *med, double *lo, double *hi) {
    double v[64];
    int n = 0;
    for (int i = 0; i < k && n < 64; i++)
        v[n++] = get(&runs[i], name);
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    *lo = v[0];
    *hi = v[n - 1];
    *med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int scenario(const char *name, scenario_fn fn, const params *pa) {
    int which[2], nw = 0;
    if (strcmp(clients, "minimal")) which[nw++] = 0;
    if (strcmp(clients, "routerd")) which[nw++] = 1;
    metrics runs[2][64];
    memset(runs, 0, sizeof runs);
    int k = repeat > 64 ? 64 : repeat, fails = 0;
    for (int r = 0; r < k; r++)
        for (int w = 0; w < nw; w++) {
            int minimal = which[w];
            metrics *m = &runs[minimal][r];
            put(m, "load1", load1());
            int rc = fn(minimal, pa, m);
            fails += rc != 0;
            printf("RESULT scenario=%s client=%s rep=%d ok=%d", name,
                   minimal ? "minimal" : "routerd", r + 1, rc == 0);
            print_metrics(m);
            printf("\n");
            fflush(stdout);
        }
    double med[2][MAXM];
    for (int w = 0; w < nw; w++) {
        int minimal = which[w];
        metrics *m0 = &runs[minimal][0];
        if (k > 1)
            printf("MEDIAN scenario=%s client=%s k=%d", name, minimal ? "minimal" : "routerd", k);
        for (int i = 0; i < m0->n; i++) {
            double md, lo, hi;
            median_of(runs[minimal], k, m0->name[i], &md, &lo, &hi);
            med[minimal][i] = md;
            if (k > 1) printf(" %s=%.6g [%.6g..%.6g]", m0->name[i], md, lo, hi);
        }
        if (k > 1) printf("\n");
    }
    if (nw == 2) {
        metrics *r0 = &runs[0][0], *m0 = &runs[1][0];
        double rt = -1, mt = -1, rc = -1, mc = -1, rr = -1, mr = -1;
        for (int i = 0; i < r0->n; i++) {
            if (!strcmp(r0->name[i], "msgs_per_s")) rt = med[0][i];
            if (!strcmp(r0->name[i], "cpu_ms_per_msg")) rc = med[0][i];
            if (!strcmp(r0->name[i], "peak_rss_kib")) rr = med[0][i];
        }
        for (int i = 0; i < m0->n; i++) {
            if (!strcmp(m0->name[i], "msgs_per_s")) mt = med[1][i];
            if (!strcmp(m0->name[i], "cpu_ms_per_msg")) mc = med[1][i];
            if (!strcmp(m0->name[i], "peak_rss_kib")) mr = med[1][i];
        }
        printf("RATIO scenario=%s k=%d", name, k);
        if (rt > 0 && mt > 0) printf(" throughput_router_over_minimal=%.2f", rt / mt);
        if (rc > 0 && mc > 0) printf(" cpu_router_over_minimal=%.2f", rc / mc);
        if (rr > 0 && mr > 0) printf(" rss_router_over_minimal=%.2f", rr / mr);
        printf("\n");
        if (rt > 0 && mt > 0)
            printf("%s: routerd %.0f msgs/s, %.3f ms CPU/msg, %.1f MiB peak RSS; minimal client "
                   "%.0f msgs/s, %.3f ms CPU/msg, %.1f MiB (medians of %d)\n",
                   name, rt, rc, rr / 1024, mt, mc, mr / 1024, k);
    }
    fflush(stdout);
    return fails;
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--client") && i + 1 < argc)
            clients = argv[++i];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 64;
        }
    }
    if (repeat < 1) repeat = 1;
    const char *what = i < argc ? argv[i++] : "burst";
    task_mode = !strcmp(envor("BENCH_AGENT_MODE", "default"), "task");
    stream_mode = !strcmp(envor("BENCH_AGENT_MODE", "default"), "stream");
    progress_mode = stream_mode && !strcmp(envor("BENCH_PROGRESS", "0"), "1");
    push_mode = task_mode && !strcmp(envor("BENCH_PUSH", "0"), "1");
    if ((task_mode || stream_mode) && (strcmp(what, "slow") || strcmp(clients, "routerd"))) {
        /* bench_minimal follows neither tasks nor streams */
        fprintf(stderr, "BENCH_AGENT_MODE=%s runs only --client routerd slow\n",
                task_mode ? "task" : "stream");
        return 64;
    }
    if (push_mode && !strcmp(envor("BENCH_ADMIN", "on"), "off")) {
        fprintf(stderr, "BENCH_PUSH=1 needs routerd's admin server (not BENCH_ADMIN=off)\n");
        return 64;
    }
#define ARG(j, def) (i + (j) < argc ? atoi(argv[i + (j)]) : (def))
    dir = rt_tmpdir();
    int fails;
    if (!strcmp(what, "burst")) {
        params pa = {.n = ARG(0, 20000), .chats = ARG(1, 50)};
        fails = scenario("burst", run_burst, &pa);
    } else if (!strcmp(what, "slow")) {
        params pa = {.chats = ARG(0, 1000), .delay_ms = ARG(1, 2000), .within_s = ARG(2, 3)};
        fails = scenario("slow", run_slow, &pa);
    } else if (!strcmp(what, "steady")) {
        params pa = {.rate = ARG(0, 300), .seconds = ARG(1, 20), .chats = ARG(2, 1000)};
        fails = scenario("steady", run_steady, &pa);
    } else if (!strcmp(what, "start")) {
        params pa = {0};
        fails = scenario("start", run_start, &pa);
    } else if (!strcmp(what, "smoke")) {
        params b = {.n = 300, .chats = 10};
        params s = {.chats = 20, .delay_ms = 200, .within_s = 3};
        params st = {.rate = 50, .seconds = 2, .chats = 10};
        params z = {0};
        fails = scenario("burst", run_burst, &b) + scenario("slow", run_slow, &s) +
                scenario("steady", run_steady, &st) + scenario("start", run_start, &z);
    } else {
        fprintf(stderr, "usage: bench_e2e [--repeat K] [--client both|routerd|minimal] "
                        "burst|slow|steady|start|smoke [args]\n");
        fails = 64;
    }
    rt_rmtree(dir);
    free(dir);
    if (fails) fprintf(stderr, "%d run(s) failed\n", fails);
    return fails ? 1 : 0;
}
