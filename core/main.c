/* routerd: command line, start-up and the drain on SIGTERM. */
#include "build_info.h"
#include "config.h"
#include "lease.h"
#include "router.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Drain timeout: work was still in flight and stays unacknowledged. */
#define EX_DRAIN_TIMEOUT_ 75

/* What start would refuse, checked without side effects (nothing created,
 * bound or opened for writing), for --check-config. */
static int check_runtime(char *err, size_t errsz) {
    struct sockaddr_storage ss;
    bool wildcard = false;
    int r = http_parse_listen(R.admin_listen, &ss, &wildcard, err, errsz);
    if (r < 0) return -1;
    if (r == 0 && wildcard)
        fprintf(stderr, "routerd: warning: admin_listen %s listens on every interface\n",
                R.admin_listen);
    struct stat st;
    if (stat(R.state_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(err, errsz, "state_dir %s: not a directory", R.state_dir);
            return -1;
        }
        if (access(R.state_dir, W_OK | X_OK) != 0) {
            snprintf(err, errsz, "state_dir %s: not writable: %s", R.state_dir, strerror(errno));
            return -1;
        }
    } else {
        /* start creates it: its parent must take a new entry. */
        char *parent = xstrdup(R.state_dir);
        char *slash = strrchr(parent, '/');
        if (slash == parent)
            slash[1] = 0;
        else if (slash)
            *slash = 0;
        else
            snprintf(parent, strlen(parent) + 1, ".");
        int ok = access(parent, W_OK | X_OK);
        int e = errno;
        if (ok != 0)
            snprintf(err, errsz, "state_dir %s: cannot be created in %s: %s", R.state_dir, parent,
                     strerror(e));
        free(parent);
        if (ok != 0) return -1;
    }
    return 0;
}

/* "verified" once the manifest's signature checked out, else "unsigned". */
static const char *sig_state = "unsigned";

/* Start-up errors may quote a plugin's or a peer's text: redacted too. */
static void print_error(const char *err) {
    char *shown = redact_dup(err);
    fprintf(stderr, "routerd: %s\n", shown);
    free(shown);
}

static void usage(FILE *out) {
    fprintf(out,
            "Usage: routerd -c FILE [options]\n"
            "Routes chat messages from transports to AI agent backends through plugins.\n\n"
            "  -c, --config FILE     manifest to load (default: $ROUTERD_CONFIG)\n"
            "  -e, --env-file FILE   read KEY=value lines into the environment first\n"
            "                        (variables already set win); may be repeated\n"
            "      --check-config    validate everything, print the persona-map and\n"
            "                        allowlist SHA-256, exit 0 (valid) or 78 (invalid)\n"
            "      --print-config    print the effective configuration, secrets redacted\n"
            "      --list-plugins    describe the plugins in the plugin directory\n"
            "      --markdown        with --list-plugins: a Markdown reference\n"
            "      --plugin-dir DIRS look plugins up in DIRS, comma-separated, in order\n"
            "                        (overrides the manifest)\n"
            "      --manifest-key PEM  require an Ed25519 signature of the manifest by\n"
            "                        this public key (default: $ROUTERD_MANIFEST_KEY); the\n"
            "                        base64 signature is FILE.sig or $CONFIG_MANIFEST_SIGNATURE\n"
            "      --diff-config B   compare the key sets of -c FILE and B, exit 1 on drift\n"
            "      --max-drift PCT   with --diff-config: allowed drift in percent (default 5)\n"
            "  -V, --version         print version and build, then exit\n"
            "  -h, --help            this text\n\n"
            "Signals: SIGTERM/SIGINT drain (a second one exits at once), SIGHUP reopens logs.\n"
            "Exit codes: 0 clean stop, 1 runtime failure, 64 bad usage, 75 drain timeout (work\n"
            "left unacknowledged, delivered again after a restart), 78 bad configuration.\n");
}

static const char *const core_round_trip_labels[] = {NULL};

/* The SQLite store's commits and the writes they carried (writes per
 * commit is the group commit's batching), copied from its counters by the
 * main loop. */
static rd_series *m_store_commits, *m_store_writes;
static uint64_t store_commits_seen, store_writes_seen;

static void store_metrics_tick(void) {
    uint64_t c, w;
    store_commit_counts(R.st, &c, &w);
    if (c > store_commits_seen) series_add(m_store_commits, (double)(c - store_commits_seen));
    if (w > store_writes_seen) series_add(m_store_writes, (double)(w - store_writes_seen));
    store_commits_seen = c;
    store_writes_seen = w;
}

static void register_core_metrics(void) {
    m_store_commits = metric_series(
        metric_family(RD_METRIC_COUNTER, "routerd_store_commits_total",
                      "SQLite state store: transactions committed (each one fsync with "
                      "state_sync = full).",
                      NULL, NULL, 0),
        core_round_trip_labels);
    m_store_writes = metric_series(
        metric_family(RD_METRIC_COUNTER, "routerd_store_writes_total",
                      "SQLite state store: write requests, several of which can share a commit.",
                      NULL, NULL, 0),
        core_round_trip_labels);
    R.m_queue_depth =
        metric_series(metric_family(RD_METRIC_GAUGE, "routerd_queue_depth",
                                    "Messages queued and waiting for a worker.", NULL, NULL, 0),
                      core_round_trip_labels);
    R.m_inflight = metric_series(metric_family(RD_METRIC_GAUGE, "routerd_inflight",
                                               "Messages being handled by a backend or transport.",
                                               NULL, NULL, 0),
                                 core_round_trip_labels);
    R.m_workers = metric_series(metric_family(RD_METRIC_GAUGE, "routerd_worker_threads",
                                              "Worker threads currently started.", NULL, NULL, 0),
                                core_round_trip_labels);
    R.m_chats = metric_series(
        metric_family(RD_METRIC_GAUGE, "routerd_chats",
                      "Chats the router keeps state for (queued, running or recently active).",
                      NULL, NULL, 0),
        core_round_trip_labels);
    R.m_chat_slots =
        metric_series(metric_family(RD_METRIC_GAUGE, "routerd_chat_table_slots",
                                    "Slots of the chat table (follows the chats).", NULL, NULL, 0),
                      core_round_trip_labels);
    R.m_overrides = metric_series(metric_family(RD_METRIC_GAUGE, "routerd_persona_overrides",
                                                "/persona choices kept.", NULL, NULL, 0),
                                  core_round_trip_labels);
    R.m_round_trip = metric_series(
        metric_family(RD_METRIC_HISTOGRAM, "routerd_round_trip_seconds",
                      "Time from receiving a message to its reply being sent.", NULL, NULL, 0),
        core_round_trip_labels);
    R.m_uptime = metric_series(metric_family(RD_METRIC_GAUGE, "routerd_uptime_seconds",
                                             "Seconds since routerd started.", NULL, NULL, 0),
                               core_round_trip_labels);
    R.m_ready = metric_series(
        metric_family(
            RD_METRIC_GAUGE, "routerd_ready",
            "1 when every transport, backend and inbound instance finished its handshake.", NULL,
            NULL, 0),
        core_round_trip_labels);
    const char *bi[] = {ROUTERD_VERSION, ROUTERD_BUILD_SHA, R.mf->sha256, sig_state};
    series_set(
        metric_series(metric_family(RD_METRIC_GAUGE, "routerd_build_info",
                                    "Build and manifest identity; always 1.",
                                    (const char *const[]){"version", "build_sha", "manifest_sha256",
                                                          "signature", NULL},
                                    NULL, 0),
                      bi),
        1);
    R.m_backend_fail =
        metric_family(RD_METRIC_COUNTER, "routerd_backend_failures_total",
                      "Backend calls that failed, by backend and classification.",
                      (const char *const[]){"backend", "classification", NULL}, NULL, 0);
    rd_metric *rl = metric_family(RD_METRIC_COUNTER, "routerd_rate_limit_hits_total",
                                  "Messages refused by a rate limit, by persona.",
                                  (const char *const[]){"persona", NULL}, NULL, 0);
    rd_metric *rej = metric_family(RD_METRIC_COUNTER, "routerd_messages_rejected_total",
                                   "Messages not forwarded, by transport and reason.",
                                   (const char *const[]){"transport", "reason", NULL}, NULL, 0);
    rd_metric *rx = metric_family(RD_METRIC_COUNTER, "routerd_messages_received_total",
                                  "Messages accepted for routing, by transport and persona.",
                                  (const char *const[]){"transport", "persona", NULL}, NULL, 0);
    rd_metric *tx = metric_family(RD_METRIC_COUNTER, "routerd_messages_replied_total",
                                  "Messages answered (reply or notice), by transport and persona.",
                                  (const char *const[]){"transport", "persona", NULL}, NULL, 0);
    rd_metric *bl = metric_family(RD_METRIC_HISTOGRAM, "routerd_backend_latency_seconds",
                                  "Time spent in the backend per message.",
                                  (const char *const[]){"backend", NULL}, NULL, 0);
    for (size_t i = 0; i < R.ntr; i++) {
        rd_ctx *t = R.tr[i];
        t->m_rejected_allowlist = metric_series(rej, (const char *const[]){t->inst, "allowlist"});
        t->m_rejected_nopersona = metric_series(rej, (const char *const[]){t->inst, "no_persona"});
        t->m_rejected_ratelimit =
            metric_series(rej, (const char *const[]){t->inst, "rate_limited"});
    }
    R.m_queue_wait = metric_series(
        metric_family(RD_METRIC_HISTOGRAM, "routerd_queue_wait_seconds",
                      "Time from a message being queued to a worker taking it.", NULL, NULL, 0),
        core_round_trip_labels);
    /* Every classification the router counts, at 0 from the start, so rates
     * and alerts have a series before the first failure. */
    static const char *const klasses[] = {"transient", "fatal", "timeout", "protocol", "empty"};
    for (size_t i = 0; i < R.nctx; i++)
        if (R.ctx[i]->kind == RD_KIND_BACKEND) {
            R.ctx[i]->m_latency = metric_series(bl, (const char *const[]){R.ctx[i]->inst});
            for (size_t k = 0; k < sizeof klasses / sizeof *klasses; k++)
                metric_series(R.m_backend_fail, (const char *const[]){R.ctx[i]->inst, klasses[k]});
        }
    for (size_t i = 0; i < R.npersonas; i++) {
        persona *p = &R.personas[i];
        p->m_rl_hits = metric_series(rl, (const char *const[]){p->tag});
        p->m_received = xcalloc(R.ntr, sizeof *p->m_received);
        p->m_replied = xcalloc(R.ntr, sizeof *p->m_replied);
        for (size_t t = 0; t < R.ntr; t++) {
            p->m_received[t] = metric_series(rx, (const char *const[]){R.tr[t]->inst, p->tag});
            p->m_replied[t] = metric_series(tx, (const char *const[]){R.tr[t]->inst, p->tag});
        }
    }
}

/* The chat hash key: configured, or generated once and kept. */
static void load_hash_key(void) {
    cfg_val *k = cfg_find(&R.cfg, "chat_hash_key");
    if (k->have && *k->str) {
        snprintf(R.hash_key, sizeof R.hash_key, "%s", k->str);
        return;
    }
    char *v = NULL;
    /* Insert-if-absent, then read: replicas starting together agree. */
    random_hex(R.hash_key, 32);
    store_add(R.st, "core", "chat_hash_key", R.hash_key, 64);
    if (store_get(R.st, "core", "chat_hash_key", &v, NULL) == RD_OK && strlen(v) == 64)
        snprintf(R.hash_key, sizeof R.hash_key, "%s", v);
    free(v);
    secret_add(R.hash_key);
}

/* A config getter misused during create()/start() fails the start. */
static int cfg_misused(rd_ctx *c, char *err, size_t errsz) {
    if (!atomic_load(&c->cfg_bug)) return 0;
    snprintf(
        err, errsz, "%s:%d: [%s] plugin '%s' reads its configuration wrongly (a plugin bug): %s",
        R.mf->path, manifest_section(R.mf, c->name)->line, c->name, c->desc->name, c->cfg_bug_msg);
    return -1;
}

static int create_all(char *err, size_t errsz) {
    for (size_t i = 0; i < R.nctx; i++) {
        rd_ctx *c = R.ctx[i];
        rd_error e = {0};
        rd_status st = c->ops->create(&host_api, c, &c->self, &e);
        if (st != RD_OK) {
            snprintf(err, errsz, "%s:%d: [%s] %s", R.mf->path,
                     manifest_section(R.mf, c->name)->line, c->name,
                     e.msg[0] ? e.msg : "plugin refused its configuration");
            return -1;
        }
        c->created = true;
        if (cfg_misused(c, err, errsz)) return -1;
    }
    return 0;
}

static void destroy_all(void) {
    for (size_t i = R.nctx; i-- > 0;) {
        rd_ctx *c = R.ctx[i];
        if (c->created && c->ops->destroy) c->ops->destroy(c->self);
        c->created = false;
    }
}

static int start_kind(rd_kind kind, char *err, size_t errsz, rd_status *code) {
    for (size_t i = 0; i < R.nctx; i++) {
        rd_ctx *c = R.ctx[i];
        if (c->kind != kind) continue;
        rd_error e = {0};
        rd_status st = c->ops->start ? c->ops->start(c->self, &e) : RD_OK;
        if (st != RD_OK) {
            snprintf(err, errsz, "[%s] cannot start: %s", c->name,
                     e.msg[0] ? e.msg : "plugin start failed");
            *code = st;
            return -1;
        }
        c->started = true;
        if (cfg_misused(c, err, errsz)) {
            *code = RD_E_CONFIG;
            return -1;
        }
        if (!c->ops->start && kind != RD_KIND_SINK) atomic_store(&c->ready, 1);
    }
    return 0;
}

static void stop_kind(rd_kind kind) {
    for (size_t i = R.nctx; i-- > 0;) {
        rd_ctx *c = R.ctx[i];
        if (c->kind == kind && c->started && c->ops->stop) c->ops->stop(c->self);
        if (c->kind == kind) c->started = false;
    }
}

static void flush_sinks(void) {
    sinks_flush(5000);
}

static bool all_ready(void) {
    for (size_t i = 0; i < R.nctx; i++)
        if (R.ctx[i]->kind != RD_KIND_SINK && !atomic_load(&R.ctx[i]->ready)) return false;
    return store_healthy(R.st);
}

static int wait_signal(sigset_t *set, int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    return sig < 0 ? 0 : sig;
}

/* Keep-alives at half the watchdog timeout, only while the loop turns. */
static void watchdog_tick(int64_t wd_ms, int64_t *last) {
    if (!wd_ms || mono_ms() - *last < wd_ms) return;
    sd_notify_send("WATCHDOG=1");
    *last = mono_ms();
}

/* Opens the state store the manifest names. A shared store that does not
 * answer yet (booting together with the database) is waited for, not a
 * configuration error; SIGTERM or SIGINT meanwhile sets *stopped. NULL
 * with a message in err when it cannot be opened. */
static store *open_state_store(sigset_t *set, bool *stopped, char *err, size_t errsz) {
    store_opts so = {.sync_full = cfg_find(&R.cfg, "state_sync")->i == 0,
                     .lease_ms = cfg_find(&R.cfg, "lease_s")->i * 1000,
                     .retention_s = cfg_find(&R.cfg, "retention_days")->i * 86400,
                     .wal_limit_b = cfg_find(&R.cfg, "store_wal_limit_mb")->i << 20,
                     .cache_kib = cfg_find(&R.cfg, "store_cache_kib")->i,
                     .commit_delay_us = cfg_find(&R.cfg, "store_commit_delay_us")->i};
    const char *kind = cfg_find(&R.cfg, "store")->str;
    bool shared = strcmp(kind, "sqlite") != 0, unreachable = false;
    so.unreachable = &unreachable;
    store *st;
    int tries = 0;
    for (;; tries++) {
        unreachable = false;
        st = store_open_with(kind, shared ? cfg_find(&R.cfg, "store_url")->str : R.state_dir,
                             R.plugin_dir, &so, err, errsz);
        if (st || !unreachable) break;
        if (!tries) {
            char red[1024];
            redact(err, red, sizeof red);
            LOGW("%s; waiting for it", red);
        }
        int s = wait_signal(set, tries < 5 ? 1000 : 5000);
        if (s == SIGTERM || s == SIGINT) {
            LOGI("%s: stopped while waiting for the state store", strsignal(s));
            *stopped = true;
            return NULL;
        }
    }
    if (st && tries) LOGI("state store reached");
    return st;
}

/* Turns every 200 ms (less under a short watchdog) until a stop signal
 * or a stop request: readiness, SIGHUP, sink reports, the sweep. Returns
 * the signal, 0 for a stop request. */
static int main_loop(sigset_t *set, int64_t wd_ms, int64_t *wd_last) {
    int64_t last_sweep = mono_ms();
    int sig = 0;
    bool notified_ready = false;
    while (!atomic_load(&R.stop_requested)) {
        sig = wait_signal(set, wd_ms && wd_ms < 200 ? (int)wd_ms : 200);
        atomic_store(&R.heartbeat_ms, mono_ms());
        watchdog_tick(wd_ms, wd_last);
        series_set(R.m_uptime, (double)(mono_ms() - R.start_ms) / 1000.0);
        bool ready = all_ready() && !atomic_load(&R.draining);
        series_set(R.m_ready, ready);
        if (ready != notified_ready) {
            /* READY=1 exactly when /healthz turns 200. */
            char msg[160];
            snprintf(msg, sizeof msg, "%sSTATUS=%s (env %s)", ready ? "READY=1\n" : "",
                     ready ? "ready" : "handshake lost, not ready", R.env);
            if (ready || notified_ready) sd_notify_send(msg);
            notified_ready = ready;
        }
        if (sig == SIGHUP) {
            LOGI("SIGHUP: reopening logs");
            log_reopen();
            flush_sinks();
        } else if (sig) {
            break;
        }
        sinks_report();
        store_metrics_tick();
        if (mono_ms() - last_sweep >= 1000) { /* costs what it frees */
            router_sweep();
            last_sweep = mono_ms();
        }
    }
    return sig;
}

/* Quiesces the transports and waits up to drain_timeout_s for the work in
 * flight, then stops the plugins in order. On a timeout, or a second
 * signal, the process exits from here. */
static void drain(sigset_t *set, int rc, int64_t wd_ms, int64_t *wd_last) {
    atomic_store(&R.heartbeat_ms, mono_ms());
    atomic_store(&R.phase, PHASE_DRAINING);
    atomic_store(&R.draining, true);
    sd_notify_send("STOPPING=1\nSTATUS=draining");
    series_set(R.m_ready, 0);
    router_drop_parked(); /* a failed start: routed by no one, acknowledged to no one */
    for (size_t i = R.nctx; i-- > 0;)
        if ((R.ctx[i]->kind == RD_KIND_TRANSPORT || R.ctx[i]->kind == RD_KIND_INBOUND) &&
            R.ctx[i]->started && R.ctx[i]->ops->quiesce)
            R.ctx[i]->ops->quiesce(R.ctx[i]->self);
    int64_t deadline = mono_ms() + (int64_t)R.drain_timeout_s * 1000;
    bool idle = false;
    while (!(idle = router_wait_idle(deadline)) && mono_ms() < deadline) {
        atomic_store(&R.heartbeat_ms, mono_ms());
        watchdog_tick(wd_ms, wd_last);
        int s2 = wait_signal(set, 0);
        if (s2 == SIGTERM || s2 == SIGINT) {
            fprintf(stderr, "routerd: second %s: exiting at once\n", strsignal(s2));
            _exit(128 + s2);
        }
    }
    if (!idle) {
        /* Workers are still inside backends: close the transports to them
         * first (a backend that sees the cancellation returns at once, and
         * its reply must not go out unacknowledged), let the transports
         * persist what is acknowledged, and leave without tearing the rest
         * down. */
        router_close_transports();
        atomic_store(&R.hard_stop, true);
        LOGW("drain timeout: %zu message(s) still in flight; they stay unacknowledged and will "
             "be delivered again",
             R.inflight + R.waiting);
        /* No queued message may start now (its backend would only record a
         * send cut by the exit), and the calls still running get a moment
         * to return and record what they leave running. */
        router_stop_workers(mono_ms() + cfg_find(&R.cfg, "drain_cancel_ms")->i);
        stop_kind(RD_KIND_TRANSPORT);
        lease_release_all();
        flush_sinks();
        sinks_stop();
        fflush(NULL);
        _exit(rc ? rc : EX_DRAIN_TIMEOUT_);
    }
    /* Queued deliveries went out with the drain; inbound instances stop
     * before the transports they deliver through. */
    stop_kind(RD_KIND_INBOUND);
    stop_kind(RD_KIND_TRANSPORT);
    lease_release_all(); /* handover: the watermark is stored, a standby takes over now */
    router_stop_workers(mono_ms() + 5000);
    stop_kind(RD_KIND_BACKEND);
    LOGI("drained: all messages answered");
    flush_sinks();
    sinks_stop();
    stop_kind(RD_KIND_SINK);
    log_set_text(true);
}

static int run(void) {
    char err[1024];
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* Blocked before any thread starts, so only the main loop sees them. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit is a failed write, not death */

    R.start_ms = mono_ms();
    atomic_store(&R.heartbeat_ms, mono_ms());
    if (sd_notify_init() < 0) LOGW("NOTIFY_SOCKET is not a usable socket address; not notifying");
    int64_t wd_ms = sd_watchdog_interval_ms(), wd_last = mono_ms();
    if (wd_ms) sd_notify_send("WATCHDOG=1");
    bool stopped = false;
    R.st = open_state_store(&set, &stopped, err, sizeof err);
    if (stopped) return 0;
    if (!R.st) {
        print_error(err);
        return EX_CONFIG_;
    }
    lease_init(cfg_find(&R.cfg, "lease_s")->i * 1000);
    lease_start();
    load_hash_key();
    register_core_metrics();
    router_init(err, sizeof err);
    int rc = 0;
    rd_status code = RD_OK;
    if (create_all(err, sizeof err)) {
        print_error(err);
        rc = EX_CONFIG_;
        goto out;
    }
    if (http_start(R.admin_listen, &R.http, err, sizeof err)) {
        print_error(err);
        rc = EX_CONFIG_;
        goto out;
    }
    /* Sinks first (start before their dispatchers, so event() never
     * precedes start()), and a log sink takes over before anything else
     * starts, so start-up lines come out in one format. */
    if (start_kind(RD_KIND_SINK, err, sizeof err, &code) == 0) {
        sinks_start();
        for (size_t i = 0; i < R.nctx; i++)
            if (R.ctx[i]->kind == RD_KIND_SINK && (R.ctx[i]->desc->flags & RD_PF_LOGS))
                log_set_text(false);
    }
    atomic_store(&R.phase, PHASE_STARTING);
    /* Inbound instances deliver through the transports: they start last,
     * and messages wait for them before routing (router_open_inbound). */
    if (code != RD_OK || start_kind(RD_KIND_BACKEND, err, sizeof err, &code) ||
        start_kind(RD_KIND_TRANSPORT, err, sizeof err, &code) ||
        start_kind(RD_KIND_INBOUND, err, sizeof err, &code)) {
        router_log_event("core", RD_LOG_ERROR, err); /* to the sinks; stderr gets one line */
        print_error(err);
        rc = code == RD_E_CONFIG ? EX_CONFIG_ : 1;
        atomic_store(&R.draining, true);
        goto stop;
    }
    LOGI("routerd %s (%s) started: env=%s, %zu plugin instance(s), admin %s, manifest sha256 %s "
         "(signature %s)",
         ROUTERD_VERSION, ROUTERD_BUILD_SHA, R.env, R.nctx, R.admin_listen, R.mf->sha256,
         sig_state);

    router_open_inbound();
    atomic_store(&R.heartbeat_ms, mono_ms());
    atomic_store(&R.phase, PHASE_RUNNING);
    int sig = main_loop(&set, wd_ms, &wd_last);
    LOGI("%s: draining (grace %d s)", sig ? strsignal(sig) : "end of input", R.drain_timeout_s);

stop:
    drain(&set, rc, wd_ms, &wd_last);
out:
    http_stop();
    lease_stop(); /* before router_fini: a new term re-reads router state */
    destroy_all();
    router_fini();
    store_close(R.st);
    sd_notify_close();
    return rc;
}

typedef struct cli {
    const char *config, *plugin_dir, *key, *diff;
    double max_drift;
    bool check, print, list, md;
} cli;

/* Reads the command line (and ROUTERD_CONFIG, ROUTERD_MANIFEST_KEY, an
 * --env-file) into c. -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, cli *c) {
    enum { O_CHECK = 256, O_PRINT, O_LIST, O_MD, O_PDIR, O_KEY, O_DIFF, O_DRIFT };
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"env-file", required_argument, NULL, 'e'},
                                             {"check-config", no_argument, NULL, O_CHECK},
                                             {"print-config", no_argument, NULL, O_PRINT},
                                             {"list-plugins", no_argument, NULL, O_LIST},
                                             {"markdown", no_argument, NULL, O_MD},
                                             {"plugin-dir", required_argument, NULL, O_PDIR},
                                             {"manifest-key", required_argument, NULL, O_KEY},
                                             {"diff-config", required_argument, NULL, O_DIFF},
                                             {"max-drift", required_argument, NULL, O_DRIFT},
                                             {"version", no_argument, NULL, 'V'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0, 0, 0, 0}};
    *c = (cli){.config = getenv("ROUTERD_CONFIG"),
               .key = getenv("ROUTERD_MANIFEST_KEY"),
               .max_drift = 5.0};
    char err[1024];
    int o;
    while ((o = getopt_long(argc, argv, "c:e:Vh", longopts, NULL)) != -1) {
        switch (o) {
        case 'c':
            c->config = optarg;
            break;
        case 'e':
            if (dotenv_load(optarg, err, sizeof err)) {
                print_error(err);
                return EX_CONFIG_;
            }
            break;
        case O_CHECK:
            c->check = true;
            break;
        case O_PRINT:
            c->print = true;
            break;
        case O_LIST:
            c->list = true;
            break;
        case O_MD:
            c->md = true;
            break;
        case O_PDIR:
            c->plugin_dir = optarg;
            break;
        case O_KEY:
            c->key = optarg;
            break;
        case O_DIFF:
            c->diff = optarg;
            break;
        case O_DRIFT: {
            char *end = NULL;
            c->max_drift = strtod(optarg, &end);
            if (!end || end == optarg || *end || !(c->max_drift >= 0 && c->max_drift <= 100)) {
                fprintf(stderr, "routerd: --max-drift: '%s' is not a percentage (0-100)\n", optarg);
                return EX_USAGE_;
            }
            break;
        }
        case 'V':
            printf("routerd %s (build %s, plugin ABI %d.%d)\n", ROUTERD_VERSION, ROUTERD_BUILD_SHA,
                   RD_ABI_MAJOR, RD_ABI_MINOR);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE_;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "routerd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return EX_USAGE_;
    }
    return -1;
}

int main(int argc, char **argv) {
    log_init();
    cli c;
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0) return rc;
    const char *config = c.config, *plugin_dir = c.plugin_dir, *key = c.key;
    bool list = c.list, md = c.md;
    char err[1024];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (list && !config) {
        char *dir = NULL;
        if (!plugin_dir) dir = config_default_plugin_dir();
        rc = plugin_list(plugin_dir ? plugin_dir : dir, md, stdout) ? 1 : 0;
        free(dir);
        plugins_unload_all();
        curl_global_cleanup();
        return rc;
    }
    if (!config) {
        fprintf(stderr, "routerd: no manifest given (use -c FILE or set ROUTERD_CONFIG)\n");
        usage(stderr);
        return EX_USAGE_;
    }
    char signed_sha[65] = "";
    if (key && *key) {
        if (manifest_verify(config, key, signed_sha, err, sizeof err)) {
            fprintf(stderr, "routerd: %s\n", err);
            curl_global_cleanup();
            return EX_CONFIG_;
        }
        sig_state = "verified";
    }
    if (c.diff) {
        char *dir = NULL;
        if (!plugin_dir) {
            if (config_build("/dev/null", NULL, err, sizeof err) && R.plugin_dir)
                dir = xstrdup(R.plugin_dir);
            config_free();
        }
        rc = diff_config(config, c.diff, c.max_drift, plugin_dir ? plugin_dir : dir, stdout);
        free(dir);
        plugins_unload_all();
        curl_global_cleanup();
        return rc;
    }
    if (config_build(config, plugin_dir, err, sizeof err)) {
        print_error(err);
        rc = EX_CONFIG_;
    } else if (*signed_sha && strcmp(signed_sha, R.mf->sha256)) {
        /* The file changed between the signature check and the parse. */
        fprintf(stderr, "routerd: %s: manifest changed while it was being verified\n", config);
        rc = EX_CONFIG_;
    } else if (list) {
        rc = plugin_list(R.plugin_dir, md, stdout) ? 1 : 0;
    } else if (c.print) {
        config_print(stdout);
        rc = 0;
    } else if (c.check) {
        rc = check_runtime(err, sizeof err) || create_all(err, sizeof err) ? EX_CONFIG_ : 0;
        destroy_all();
        if (rc)
            print_error(err);
        else
            printf("configuration OK: %s\npersona_map_sha256 = %s\nallowlist_sha256 = %s\n"
                   "manifest_sha256 = %s\nsignature = %s\n",
                   config, R.persona_sha, R.allow_sha, R.mf->sha256, sig_state);
    } else {
        rc = run();
    }
    config_free();
    metrics_free_all();
    plugins_unload_all();
    curl_global_cleanup();
    return rc;
}
