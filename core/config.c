/* Builds the router from a manifest: router keys, plugin instances,
 * personas, allowlists and the pinned hashes. */
#include "config.h"
#include "router.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef ROUTERD_DEFAULT_PLUGIN_DIR
#define ROUTERD_DEFAULT_PLUGIN_DIR "/usr/local/lib/routerd"
#endif
#ifndef ROUTERD_PLUGIN_RELDIR
#define ROUTERD_PLUGIN_RELDIR "../lib/routerd"
#endif

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const sync_modes[] = {"full", "normal", NULL};
static const char *const store_kinds[] = {"sqlite", "postgresql", NULL};

const rd_option router_opts[] = {
    {"env", RD_OPT_STRING, 0, "dev", "deployment name carried by logs, spans and metrics", 0, 0,
     NULL, 0, 0},
    {"admin_listen", RD_OPT_STRING, 0, "127.0.0.1:9464",
     "admin HTTP server address HOST:PORT (port 0 picks one; off disables)", 0, 0, NULL, 0, 0},
    {"admin_header_timeout_s", RD_OPT_INT, 0, "10",
     "admin server: a connection must send complete request headers within this (a slow "
     "sender is closed, however it trickles)",
     1, 3600, NULL, 0, 0},
    {"admin_request_timeout_s", RD_OPT_INT, 0, "30",
     "admin server: a request must be received and answered within this after its headers", 1, 3600,
     NULL, 0, 0},
    {"admin_max_connections", RD_OPT_INT, 0, "256",
     "admin server: open connections; past it the oldest one without a request is closed", 8, 60000,
     NULL, 0, 0},
    {"admin_max_connections_per_ip", RD_OPT_INT, 0, "32",
     "admin server: open connections from one client address; past it that address's oldest one "
     "without a request is closed",
     2, 60000, NULL, 0, 0},
    {"admin_connection_grace_ms", RD_OPT_INT, 0, "1000",
     "admin server: a connection younger than this that has not sent its request yet is not "
     "closed for admin_max_connections_per_ip (a burst from one proxy gets its requests in); "
     "admin_max_connections still applies; 0 = no grace",
     0, 60000, NULL, 0, 0},
    {"admin_max_body_bytes", RD_OPT_INT, 0, "1048576",
     "admin server: largest request body (larger is refused with 413 from the headers)", 1024,
     67108864, NULL, 0, 0},
    {"state_dir", RD_OPT_STRING, 0, "/var/lib/routerd",
     "directory of the state store (offsets, journal, conversation ids)", 0, 0, NULL, 0, 0},
    {"plugin_dir", RD_OPT_STRING, 0, NULL,
     "folders where plugin = NAME is looked up, comma-separated, the first that has the file "
     "wins (default: plugins/ beside the binary in a build tree, else lib/routerd beside the "
     "binary's bin/)",
     0, 0, NULL, 0, 0},
    {"queue_depth", RD_OPT_INT, 0, "256",
     "messages waiting for a worker before transports are told to back off", 1, 10000000, NULL, 0,
     0},
    {"chat_queue_depth", RD_OPT_INT, 0, "0", "messages waiting per chat (0 = queue_depth)", 0,
     10000000, NULL, 0, 0},
    {"drain_timeout_s", RD_OPT_INT, 0, "30",
     "grace period on SIGTERM for work in flight before exiting", 0, 86400, NULL, 0, 0},
    {"drain_cancel_ms", RD_OPT_INT, 0, "2000",
     "after drain_timeout_s passed: no queued message starts any more, and backend calls still "
     "running get this long to see the cancellation and return before routerd exits",
     0, 60000, NULL, 0, 0},
    {"rate_limit_per_minute", RD_OPT_INT, 0, "20", "messages per chat per minute (0 = off)", 0,
     1000000, NULL, 0, 0},
    {"workers", RD_OPT_INT, 0, "256",
     "most worker threads, which carry messages to the backends and replies to the transports "
     "(started on demand, retired after 30 s idle)",
     1, 65536, NULL, 0, 0},
    {"worker_spawn_ms", RD_OPT_INT, 0, "5",
     "past twice the CPUs (at least 4), more workers start only when the run queue has not moved "
     "for this long with every worker busy: one for each worker blocked (not one waiting for a "
     "lock), at most as many as are "
     "queued, at most doubling each time (0 = start one whenever none is idle)",
     0, 10000, NULL, 0, 0},
    {"chat_idle_s", RD_OPT_INT, 0, "60",
     "a chat with nothing queued is forgotten after this long idle (its rate-limit state with it)",
     1, 86400, NULL, 0, 0},
    {"persona_override_idle_days", RD_OPT_DOUBLE, 0, "180",
     "a /persona choice unused this long is forgotten (the chat goes back to its manifest "
     "persona; 0 = never)",
     0, 36500, NULL, 0, 0},
    {"persona_overrides_max", RD_OPT_INT, 0, "100000",
     "most /persona choices kept; past it the least recently used is forgotten", 1, 100000000, NULL,
     0, 0},
    {"request_timeout_s", RD_OPT_INT, 0, "300", "deadline handed to backends (0 = none)", 0, 86400,
     NULL, 0, 0},
    {"failure_notice", RD_OPT_STRING, 0,
     "Sorry, I could not get an answer right now. Please try again in a moment.",
     "sent when a backend fails without a notice of its own", 0, 0, NULL, 0, 0},
    {"rate_limit_notice", RD_OPT_STRING, 0,
     "You are sending messages faster than I can answer. Please wait a minute.",
     "sent once when a chat or persona goes over its rate limit", 0, 0, NULL, 0, 0},
    {"chat_hash_key", RD_OPT_STRING, RD_OPT_SECRET, NULL,
     "HMAC key for chat_id_hash in logs (default: generated once and kept in state_dir)", 0, 0,
     NULL, 0, 0},
    {"log_level", RD_OPT_ENUM, 0, "info", "lowest level logged", 0, 0, log_levels, 0, 0},
    {"state_sync", RD_OPT_ENUM, 0, "full",
     "full: every commit survives power loss; normal: survives a crash of routerd", 0, 0,
     sync_modes, 0, 0},
    {"store", RD_OPT_ENUM, 0, "sqlite",
     "state store: sqlite (one machine, in state_dir) or postgresql (shared by replicas)", 0, 0,
     store_kinds, 0, 0},
    {"store_url", RD_OPT_STRING, RD_OPT_SECRET, NULL,
     "store = postgresql: libpq URI or conninfo (postgresql://user:password@host/db)", 0, 0, NULL,
     0, 0},
    {"lease_s", RD_OPT_INT, 0, "10",
     "leadership lease of a long-polling transport: a standby takes over a dead leader within "
     "this (plus about 1 s)",
     2, 3600, NULL, 0, 0},
    {"retention_days", RD_OPT_INT, 0, "90",
     "conversations idle longer than this are forgotten (0 = keep forever)", 0, 36500, NULL, 0, 0},
    {"store_wal_limit_mb", RD_OPT_INT, 0, "64",
     "sqlite: the WAL is truncated to this size after checkpoints", 1, 65536, NULL, 0, 0},
    {"store_cache_kib", RD_OPT_INT, 0, "256",
     "sqlite: page cache of each of the store's two connections; more keeps more of a large "
     "store in memory instead of the kernel's file cache",
     16, 1048576, NULL, 0, 0},
    {"store_commit_delay_us", RD_OPT_INT, 0, "0",
     "sqlite: a write that would commit alone waits up to this long for another to share its "
     "fsync, only while writes come closer together than that (0 = never waits)",
     0, 10000, NULL, 0, 0},
    {"persona_map_sha256", RD_OPT_STRING, 0, NULL,
     "pin: refuse to start unless the persona map hashes to this", 0, 0, NULL, 0, 0},
    {"allowlist_sha256", RD_OPT_STRING, 0, NULL,
     "pin: refuse to start unless the chat allowlists hash to this", 0, 0, NULL, 0, 0},
    {"max_attachments", RD_OPT_INT, 0, "10",
     "most files one message or one reply carries (a transport's message with more is refused)", 0,
     1000, NULL, 0, 0},
    {"max_attachment_bytes", RD_OPT_INT, 0, "20971520",
     "bytes of the files one message or one reply carries, all together", 0, 2147483647, NULL, 0,
     0},
    {0},
};

const rd_option persona_opts[] = {
    {"backend", RD_OPT_STRING, RD_OPT_REQUIRED, NULL, "backend instance answering this persona", 0,
     0, NULL, 0, 0},
    {"chats", RD_OPT_LIST, 0, NULL, "chat ids served by this persona, or * for every other chat", 0,
     0, NULL, 0, 0},
    {"selectable", RD_OPT_BOOL, 0, "false", "chats may switch to it with /persona NAME", 0, 0, NULL,
     0, 0},
    {"description", RD_OPT_STRING, 0, NULL, "one line shown by /persona", 0, 0, NULL, 0, 0},
    {"chat_rate_limit_per_minute", RD_OPT_INT, 0, "-1",
     "messages per chat per minute for this persona (-1 = [router] rate_limit_per_minute)", -1,
     1000000, NULL, 0, 0},
    {"rate_limit_per_minute", RD_OPT_INT, 0, "0",
     "messages per minute for the whole persona, all chats together (0 = off)", 0, 1000000, NULL, 0,
     0},
    {0},
};

static int fail_at(char *err, size_t errsz, const manifest *m, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail_at(char *err, size_t errsz, const manifest *m, int line, const char *fmt, ...) {
    int n = snprintf(err, errsz, "%s:%d: ", m->path, line);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < errsz) vsnprintf(err + n, errsz - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The plugin folder that belongs to this executable: plugins/ in a build
 * tree, else the install layout's folder relative to the binary (any
 * prefix, any DESTDIR copy), else the configured install directory. */
static char *default_plugin_dir(void) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char *dir = xasprintf("%s/plugins", exe);
            char *probe = xasprintf("%s/CMakeCache.txt", exe);
            struct stat st;
            /* Only a build tree gets the plugins/ beside the binary. */
            bool build_tree = is_dir(dir) && stat(probe, &st) == 0;
            free(probe);
            if (build_tree) return dir;
            free(dir);
            dir = xasprintf("%s/%s", exe, ROUTERD_PLUGIN_RELDIR);
            char real[PATH_MAX];
            if (is_dir(dir) && realpath(dir, real)) {
                free(dir);
                return xstrdup(real);
            }
            free(dir);
        }
    }
    return xstrdup(ROUTERD_DEFAULT_PLUGIN_DIR);
}

static char *plugin_dir_buf;

/* Every folder of a configured plugin_dir list exists: a misspelt one
 * would otherwise only show as a plugin not found. */
static int check_plugin_dirs(const manifest *m, mf_section *rs, const char *override, char *err,
                             size_t errsz) {
    const char *list = override ? override : cfg_find(&R.cfg, "plugin_dir")->str;
    char **dirs = split_list(list);
    int rc = 0;
    if (!dirs[0]) {
        rc = -1;
        snprintf(err, errsz, "plugin_dir: no folder given");
    }
    for (size_t i = 0; !rc && dirs[i]; i++) {
        if (is_dir(dirs[i])) continue;
        mf_kv *kv = rs && !override ? section_get(rs, "plugin_dir") : NULL;
        rc = override ? (snprintf(err, errsz, "--plugin-dir: '%s' is not a folder", dirs[i]), -1)
                      : fail_at(err, errsz, m, kv ? kv->line : 0,
                                "[router] plugin_dir: '%s' is not a folder", dirs[i]);
    }
    free_list(dirs);
    return rc;
}

char *config_default_plugin_dir(void) {
    return default_plugin_dir();
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int parse_ids(char **list, int64_t **out, size_t *n, const char **bad) {
    size_t k = 0;
    while (list && list[k])
        k++;
    *out = xmalloc((k ? k : 1) * sizeof **out);
    *n = 0;
    for (size_t i = 0; i < k; i++) {
        if (parse_i64(list[i], &(*out)[*n])) {
            *bad = list[i];
            free(*out);
            *out = NULL;
            return -1;
        }
        (*n)++;
    }
    qsort(*out, *n, sizeof **out, cmp_i64);
    return 0;
}

typedef struct {
    char *s;
    size_t len, cap;
} text;

static void tprintf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tprintf(text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->len + (size_t)n + 1 > t->cap)
        t->s = xrealloc(t->s, t->cap = (t->len + (size_t)n) * 2 + 64);
    memcpy(t->s + t->len, s, (size_t)n + 1);
    t->len += (size_t)n;
    free(s);
}

static int cmp_persona(const void *a, const void *b) {
    return strcmp((*(persona *const *)a)->tag, (*(persona *const *)b)->tag);
}

static int cmp_ctx(const void *a, const void *b) {
    return strcmp((*(rd_ctx *const *)a)->name, (*(rd_ctx *const *)b)->name);
}

/* Canonical texts, so equal maps hash equal whatever the manifest order. */
static void compute_hashes(void) {
    text t = {0};
    tprintf(&t, "%s", "");
    persona **ps = xcalloc(R.npersonas, sizeof *ps);
    for (size_t i = 0; i < R.npersonas; i++)
        ps[i] = &R.personas[i];
    qsort(ps, R.npersonas, sizeof *ps, cmp_persona);
    for (size_t i = 0; i < R.npersonas; i++) {
        persona *p = ps[i];
        tprintf(&t, "persona %s backend %s selectable %d chats", p->tag, p->backend->inst,
                p->selectable);
        if (p->is_default) tprintf(&t, " *");
        /* Entries were validated: each is * or a chat id. */
        size_t n = 0;
        for (char **c = p->chats; c && *c; c++)
            n++;
        int64_t *ids = xcalloc(n ? n : 1, sizeof *ids);
        size_t nids = 0;
        for (char **c = p->chats; c && *c; c++)
            if (!parse_i64(*c, &ids[nids])) nids++;
        qsort(ids, nids, sizeof *ids, cmp_i64);
        for (size_t k = 0; k < nids; k++)
            tprintf(&t, " %" PRId64, ids[k]);
        free(ids);
        tprintf(&t, "\n");
    }
    free(ps);
    sha256_hex(t.s, t.len, R.persona_sha);
    t.len = 0;
    t.s[0] = 0;
    rd_ctx **trs = xcalloc(R.ntr ? R.ntr : 1, sizeof *trs);
    memcpy(trs, R.tr, R.ntr * sizeof *trs);
    qsort(trs, R.ntr, sizeof *trs, cmp_ctx);
    for (size_t i = 0; i < R.ntr; i++) {
        tprintf(&t, "transport %s allow", trs[i]->inst);
        if (!trs[i]->allow) tprintf(&t, " *");
        for (size_t k = 0; k < trs[i]->nallow; k++)
            tprintf(&t, " %" PRId64, trs[i]->allow[k]);
        tprintf(&t, "\n");
    }
    free(trs);
    sha256_hex(t.s, t.len, R.allow_sha);
    free(t.s);
}

/* sha256 pins the plugin file (checked before it is loaded). */
static const char *const transport_reserved[] = {"plugin", "allowlist", "sha256", NULL};
static const char *const plugin_reserved[] = {"plugin", "sha256", NULL};

/* The transport's allowlist key, sorted into c->allow (none: everyone). */
static int parse_allowlist(const manifest *m, mf_section *s, rd_ctx *c, char *err, size_t errsz) {
    mf_kv *al = section_get(s, "allowlist");
    if (al) {
        char **l = split_list(al->val);
        const char *bad = NULL;
        if (l[0] && parse_ids(l, &c->allow, &c->nallow, &bad)) {
            int r =
                fail_at(err, errsz, m, al->line,
                        "[%s] allowlist: '%s' is not a chat id (a 64-bit integer)", s->name, bad);
            free_list(l);
            return r;
        }
        free_list(l);
    }
    return 0;
}

/* Fills p from its [persona.NAME] section s: backend, chats (each chat
 * and * mapped once across personas built so far), limits. */
static int build_persona(const manifest *m, mf_section *s, persona *p, char *err, size_t errsz) {
    cfg_set pc = {0};
    if (schema_apply(m, s, persona_opts, NULL, &pc, err, errsz)) {
        cfg_free(&pc);
        return -1;
    }
    p->tag = xstrdup(s->inst);
    const char *bname = cfg_find(&pc, "backend")->str;
    mf_kv *bk = section_get(s, "backend");
    for (size_t k = 0; k < R.nctx; k++)
        if (R.ctx[k]->kind == RD_KIND_BACKEND && !strcmp(R.ctx[k]->inst, bname))
            p->backend = R.ctx[k];
    if (!p->backend) {
        const char **names = xcalloc(R.nctx + 1, sizeof *names);
        size_t nn = 0;
        for (size_t k = 0; k < R.nctx; k++)
            if (R.ctx[k]->kind == RD_KIND_BACKEND) names[nn++] = R.ctx[k]->inst;
        const char *sug = suggest(bname, names, nn);
        int r =
            fail_at(err, errsz, m, bk->line, "[%s] backend: no [backend.%s] section%s%s%s", s->name,
                    bname, sug ? " (did you mean '" : "", sug ? sug : "", sug ? "'?)" : "");
        free(names);
        cfg_free(&pc);
        return r;
    }
    cfg_val *cv = cfg_find(&pc, "chats");
    if (cv->have) {
        p->chats = cv->list;
        cv->list = NULL;
    }
    mf_kv *ck = section_get(s, "chats");
    for (char **c = p->chats; c && *c; c++) {
        int64_t id;
        if (!strcmp(*c, "*")) {
            if (R.default_persona) {
                int r = fail_at(err, errsz, m, ck->line,
                                "[%s] chats: * is already taken by [persona.%s]", s->name,
                                R.default_persona->tag);
                cfg_free(&pc);
                return r;
            }
            p->is_default = true;
            R.default_persona = p;
        } else if (parse_i64(*c, &id)) {
            int r =
                fail_at(err, errsz, m, ck->line,
                        "[%s] chats: '%s' is not a chat id (a 64-bit integer) or *", s->name, *c);
            cfg_free(&pc);
            return r;
        } else {
            for (size_t q = 0; q < (size_t)(p - R.personas); q++)
                for (char **o = R.personas[q].chats; o && *o; o++) {
                    int64_t oid;
                    if (!parse_i64(*o, &oid) && oid == id) {
                        int r = fail_at(err, errsz, m, ck->line,
                                        "[%s] chats: chat %s is already mapped to "
                                        "[persona.%s]",
                                        s->name, *c, R.personas[q].tag);
                        cfg_free(&pc);
                        return r;
                    }
                }
        }
    }
    p->selectable = cfg_find(&pc, "selectable")->i;
    R.persona_cmd |= p->selectable;
    cfg_val *d = cfg_find(&pc, "description");
    p->description = d->have ? xstrdup(d->str) : NULL;
    int cl = (int)cfg_find(&pc, "chat_rate_limit_per_minute")->i;
    p->chat_limit = cl < 0 ? R.rate_limit : cl;
    p->total_limit = (int)cfg_find(&pc, "rate_limit_per_minute")->i;
    cfg_free(&pc);
    return 0;
}

/* The persona map and allowlist pins of [router] against the hashes. */
static int check_pins(const manifest *m, mf_section *rs, char *err, size_t errsz) {
    cfg_val *pin = cfg_find(&R.cfg, "persona_map_sha256");
    if (pin->have && strcasecmp(pin->str, R.persona_sha)) {
        mf_kv *k = section_get(rs, "persona_map_sha256");
        return fail_at(err, errsz, m, k ? k->line : 1,
                       "[router] persona_map_sha256: the manifest pins %s but its personas hash "
                       "to %s",
                       pin->str, R.persona_sha);
    }
    pin = cfg_find(&R.cfg, "allowlist_sha256");
    if (pin->have && strcasecmp(pin->str, R.allow_sha)) {
        mf_kv *k = section_get(rs, "allowlist_sha256");
        return fail_at(err, errsz, m, k ? k->line : 1,
                       "[router] allowlist_sha256: the manifest pins %s but the allowlists hash "
                       "to %s",
                       pin->str, R.allow_sha);
    }
    return 0;
}

int config_build(const char *path, const char *plugin_dir_override, char *err, size_t errsz) {
    manifest *m = manifest_load(path, err, errsz);
    if (!m) return -1;
    R.mf = m;
    mf_section none = {.name = "router", .kind = "router", .inst = "", .line = 0};
    mf_section *rs = manifest_section(m, "router");
    if (schema_apply(m, rs ? rs : &none, router_opts, NULL, &R.cfg, err, errsz)) return -1;
#define RSTR(k) (cfg_find(&R.cfg, k)->str)
#define RINT(k) ((int)cfg_find(&R.cfg, k)->i)
    R.env = RSTR("env");
    R.admin_listen = RSTR("admin_listen");
    R.state_dir = RSTR("state_dir");
    R.queue_depth = RINT("queue_depth");
    R.chat_queue_depth = RINT("chat_queue_depth");
    R.drain_timeout_s = RINT("drain_timeout_s");
    R.rate_limit = RINT("rate_limit_per_minute");
    R.max_workers = RINT("workers");
    R.worker_spawn_ms = RINT("worker_spawn_ms");
    R.request_timeout_s = RINT("request_timeout_s");
    R.max_attachments = (size_t)cfg_find(&R.cfg, "max_attachments")->i;
    R.max_attachment_bytes = (size_t)cfg_find(&R.cfg, "max_attachment_bytes")->i;
    R.http.header_timeout_s = RINT("admin_header_timeout_s");
    R.http.request_timeout_s = RINT("admin_request_timeout_s");
    R.http.max_conns = RINT("admin_max_connections");
    R.http.max_conns_per_ip = RINT("admin_max_connections_per_ip");
    R.http.grace_ms = RINT("admin_connection_grace_ms");
    R.http.max_body = (size_t)cfg_find(&R.cfg, "admin_max_body_bytes")->i;
    R.chat_idle_s = RINT("chat_idle_s");
    R.max_overrides = RINT("persona_overrides_max");
    R.override_idle_ms = (int64_t)(cfg_find(&R.cfg, "persona_override_idle_days")->d * 86400000.0);
    store_url_secrets(RSTR("store_url"));
    if (cfg_find(&R.cfg, "store")->i == 1 && !(RSTR("store_url") && *RSTR("store_url"))) {
        mf_kv *kv = rs ? section_get(rs, "store") : NULL;
        return fail_at(err, errsz, m, kv ? kv->line : 0,
                       "[router] store_url: required with store = postgresql");
    }
    R.failure_notice = RSTR("failure_notice");
    R.rate_limit_notice = RSTR("rate_limit_notice");
    log_set_level((rd_log_level)cfg_find(&R.cfg, "log_level")->i);
    if (plugin_dir_override)
        R.plugin_dir = plugin_dir_override;
    else if (cfg_find(&R.cfg, "plugin_dir")->have)
        R.plugin_dir = RSTR("plugin_dir");
    else
        R.plugin_dir = plugin_dir_buf = default_plugin_dir();
    if (R.plugin_dir != plugin_dir_buf && check_plugin_dirs(m, rs, plugin_dir_override, err, errsz))
        return -1;

    size_t nbackends = 0;
    for (size_t i = 0; i < m->nsec; i++) {
        mf_section *s = &m->sec[i];
        rd_kind kind = !strcmp(s->kind, "transport") ? RD_KIND_TRANSPORT
                       : !strcmp(s->kind, "backend") ? RD_KIND_BACKEND
                       : !strcmp(s->kind, "sink")    ? RD_KIND_SINK
                       : !strcmp(s->kind, "inbound") ? RD_KIND_INBOUND
                                                     : 0;
        if (!kind) continue;
        mf_kv *pk = section_get(s, "plugin");
        if (!pk || !*pk->val)
            return fail_at(err, errsz, m, pk ? pk->line : s->line,
                           "[%s] missing required key 'plugin' (name of a %s plugin, or a path "
                           "to its .so)",
                           s->name, s->kind);
        char perr[768];
        mf_kv *pin = section_get(s, "sha256");
        if (pin && (strlen(pin->val) != 64 || strspn(pin->val, "0123456789abcdefABCDEF") != 64))
            return fail_at(err, errsz, m, pin->line,
                           "[%s] sha256: '%s' is not a SHA-256 (64 hex digits; sha256sum FILE.so)",
                           s->name, pin->val);
        plugin_so *so =
            plugin_load(R.plugin_dir, kind, pk->val, pin ? pin->val : NULL, perr, sizeof perr);
        if (!so && pin && strstr(perr, "the manifest pins"))
            return fail_at(err, errsz, m, pin->line, "[%s] sha256: %s", s->name, perr);
        if (!so) return fail_at(err, errsz, m, pk->line, "[%s] plugin: %s", s->name, perr);
        rd_ctx *c = ctx_new(kind, s->name, s->inst);
        c->so = so;
        c->desc = so->desc;
        c->ops = so->desc->ops;
        R.ctx = xrealloc(R.ctx, (R.nctx + 1) * sizeof *R.ctx);
        R.ctx[R.nctx++] = c;
        if (schema_apply_sized(m, s, so->desc->options, plugin_option_size(so->desc),
                               kind == RD_KIND_TRANSPORT ? transport_reserved : plugin_reserved,
                               &c->cfg, err, errsz))
            return -1;
        if (kind == RD_KIND_BACKEND) nbackends++;
        if (kind == RD_KIND_TRANSPORT) {
            R.tr = xrealloc(R.tr, (R.ntr + 1) * sizeof *R.tr);
            R.tr[R.ntr++] = c;
            if (parse_allowlist(m, s, c, err, errsz)) return -1;
        }
        if (kind == RD_KIND_INBOUND) { /* offered messages in manifest order */
            R.inb = xrealloc(R.inb, (R.ninb + 1) * sizeof *R.inb);
            R.inb[R.ninb++] = c;
        }
    }
    if (!R.ntr)
        return fail_at(err, errsz, m, 1,
                       "no [transport.NAME] section: nothing would receive "
                       "messages");
    size_t tl = 1;
    for (size_t i = 0; i < R.ntr; i++)
        tl += strlen(R.tr[i]->inst) + 1;
    R.tr_names = xcalloc(1, tl);
    for (size_t i = 0; i < R.ntr; i++) {
        if (i) strcat(R.tr_names, ",");
        strcat(R.tr_names, R.tr[i]->inst);
    }
    if (!nbackends)
        return fail_at(err, errsz, m, 1, "no [backend.NAME] section: nothing would answer");

    for (size_t i = 0; i < m->nsec; i++)
        if (!strcmp(m->sec[i].kind, "persona")) R.npersonas++;
    if (!R.npersonas)
        return fail_at(err, errsz, m, 1,
                       "no [persona.NAME] section: add one with backend = NAME and chats = *");
    R.personas = xcalloc(R.npersonas, sizeof *R.personas);
    size_t pi = 0;
    for (size_t i = 0; i < m->nsec; i++) {
        mf_section *s = &m->sec[i];
        if (strcmp(s->kind, "persona")) continue;
        if (build_persona(m, s, &R.personas[pi++], err, errsz)) return -1;
    }
    compute_hashes();
    return check_pins(m, rs, err, errsz);
}

static void print_section(FILE *out, const char *name, cfg_set *c, const char *plugin,
                          const rd_ctx *x) {
    fprintf(out, "[%s]\n", name);
    if (plugin) fprintf(out, "plugin = %s\n", plugin);
    if (x && x->kind == RD_KIND_TRANSPORT) {
        fprintf(out, "allowlist =");
        for (size_t k = 0; k < x->nallow; k++)
            fprintf(out, "%s%" PRId64, k ? ", " : " ", x->allow[k]);
        fprintf(out, "%s\n", x->allow ? "" : " ; everyone");
    }
    for (size_t i = 0; i < c->n; i++) {
        cfg_val *v = &c->v[i];
        if (!v->have) {
            fprintf(out, "; %s is not set\n", v->opt->key);
            continue;
        }
        bool secret = v->opt->flags & RD_OPT_SECRET;
        char *shown = secret ? xstrdup("***") : redact_dup(v->str);
        bool quote =
            shown[0] == ' ' || (*shown && shown[strlen(shown) - 1] == ' ') || strchr(shown, ';');
        fprintf(out, "%s = %s%s%s%s\n", v->opt->key, quote ? "\"" : "", shown, quote ? "\"" : "",
                v->set ? "" : "   ; default");
        free(shown);
    }
    fputc('\n', out);
}

void config_print(FILE *out) {
    fprintf(out, "; effective configuration of %s (secrets shown as ***)\n", R.mf->path);
    print_section(out, "router", &R.cfg, NULL, NULL);
    /* The folders as searched, in order. */
    char **dirs = split_list(R.plugin_dir);
    fprintf(out, "; plugin_dir in use: ");
    for (size_t i = 0; dirs[i]; i++)
        fprintf(out, "%s%s", i ? "," : "", dirs[i]);
    fprintf(out, "\n\n");
    free_list(dirs);
    for (size_t i = 0; i < R.nctx; i++)
        print_section(out, R.ctx[i]->name, &R.ctx[i]->cfg, R.ctx[i]->desc->name, R.ctx[i]);
    for (size_t i = 0; i < R.npersonas; i++) {
        persona *p = &R.personas[i];
        fprintf(out, "[persona.%s]\nbackend = %s\nchats =", p->tag, p->backend->inst);
        for (char **c = p->chats; c && *c; c++)
            fprintf(out, "%s%s", c == p->chats ? " " : ", ", *c);
        fprintf(out, "\nselectable = %s\n", p->selectable ? "true" : "false");
        if (p->description) fprintf(out, "description = %s\n", p->description);
        fprintf(out, "chat_rate_limit_per_minute = %d\nrate_limit_per_minute = %d\n\n",
                p->chat_limit, p->total_limit);
    }
}

void config_free(void) {
    for (size_t i = 0; i < R.nctx; i++)
        ctx_free(R.ctx[i]);
    free(R.ctx);
    free(R.tr);
    free(R.tr_names);
    R.tr_names = NULL;
    free(R.inb);
    for (size_t i = 0; i < R.npersonas; i++) {
        persona *p = &R.personas[i];
        free(p->tag);
        free_list(p->chats);
        free(p->description);
        free(p->m_received);
        free(p->m_replied);
    }
    free(R.personas);
    cfg_free(&R.cfg);
    manifest_free(R.mf);
    free(plugin_dir_buf);
    plugin_dir_buf = NULL;
}
