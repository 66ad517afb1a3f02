/* jsonlog sink: one JSON object per line for every log line and message
 * event, to a file or standard error. It takes over the core's text log
 * (RD_PF_LOGS). The file is reopened on every flush (the core flushes sinks
 * on SIGHUP and at drain) and when the path stops naming the open file
 * (renamed or deleted by a rotation), checked at most once a second. */
#include <routerd/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonlog_line.h"

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    char *path; /* NULL = standard error */
    int fd;
    dev_t dev;
    ino_t ino;
    int64_t checked_ms;
    int level;
    bool events;
    const char *env, *build_sha;
    sbuf line;
    char *red; /* redaction buffer */
    size_t redsz;
    bool reported; /* an open/write problem was already told on stderr */
    rd_series *lines, *errors;
} jsonlog;

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

static const rd_option opts[] = {
    {"path", RD_OPT_STRING, 0, "-", "file to append to; - is standard error", 0, 0, NULL},
    {"level", RD_OPT_ENUM, 0, "info", "lowest level written", 0, 0, levels},
    {"events", RD_OPT_BOOL, 0, "true",
     "also write one line per message event (received, replied, rejected, send_failed)", 0, 0,
     NULL},
    {0},
};

/* The sink's own trouble cannot go through host->log (its lines would come
 * back to this sink, or nowhere): one JSON line on standard error. */
static void complain(jsonlog *j, const char *what, int e) {
    if (j->reported) return;
    j->reported = true;
    char msg[512];
    snprintf(msg, sizeof msg, "jsonlog: %s %s: %s", what, j->path ? j->path : "-", strerror(e));
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_LOG,
                   .level = RD_LOG_ERROR,
                   .ts_ns = j->h->wall_ns(),
                   .source = "sink.jsonlog"};
    sbuf b = {0};
    jl_format(&b, &ev, msg, j->env, j->build_sha);
    if (b.p && write(STDERR_FILENO, b.p, b.len) < 0) {
        /* nothing left to tell it to */
    }
    sbuf_free(&b);
}

static int open_file(jsonlog *j) {
    if (!j->path) return STDERR_FILENO;
    errno = 0;
    int fd = open(j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) == 0) {
        j->dev = st.st_dev;
        j->ino = st.st_ino;
    }
    return fd;
}

static void reopen(jsonlog *j) {
    if (!j->path) return;
    int fd = open_file(j);
    if (fd < 0) { /* keep the old file rather than lose lines */
        complain(j, "cannot reopen", errno);
        return;
    }
    if (j->fd >= 0 && j->fd != STDERR_FILENO) close(j->fd);
    j->fd = fd;
    j->reported = false;
}

/* A rotation renamed or removed the file: follow the path. The file is
 * opened here, on the dispatcher thread, not in start(): the core may hand
 * events to a sink before its start() ran. */
static void check_rotation(jsonlog *j) {
    if (j->fd < 0) {
        j->fd = open_file(j);
        if (j->fd < 0) complain(j, "cannot open", errno);
        j->checked_ms = j->h->now_ms();
        return;
    }
    if (!j->path) return;
    int64_t now = j->h->now_ms();
    if (now - j->checked_ms < 1000) return;
    j->checked_ms = now;
    struct stat st;
    if (stat(j->path, &st) != 0 || st.st_dev != j->dev || st.st_ino != j->ino) reopen(j);
}

static void write_all(jsonlog *j, const char *p, size_t n) {
    if (j->fd < 0) {
        j->h->add(j->errors, 1);
        return;
    }
    while (n) {
        ssize_t w = write(j->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            complain(j, "cannot write", errno);
            j->h->add(j->errors, 1);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
    j->h->add(j->lines, 1);
}

static const char *redacted(jsonlog *j, const char *msg) {
    if (!msg) return NULL;
    size_t need = strlen(msg) + 64;
    if (need > j->redsz) {
        char *r = realloc(j->red, need);
        if (!r) return "[message dropped: out of memory]";
        j->red = r;
        j->redsz = need;
    }
    j->h->redact(j->ctx, msg, j->red, j->redsz);
    return j->red;
}

static void j_event(void *self, const rd_event *ev) {
    jsonlog *j = self;
    if ((int)ev->level < j->level) return;
    if (ev->type != RD_EV_LOG && !j->events) return;
    check_rotation(j);
    sbuf_reset(&j->line);
    jl_format(&j->line, ev, redacted(j, ev->msg), j->env, j->build_sha);
    if (j->line.failed) return;
    write_all(j, j->line.p, j->line.len);
    /* A big message once should not pin its buffer for ever. */
    if (j->line.cap > 65536) sbuf_free(&j->line);
}

static rd_status j_flush(void *self, rd_error *err) {
    (void)err;
    reopen(self);
    return RD_OK;
}

/* NULL when path can be opened for appending (or created), else why not. */
static const char *writable_path(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return "is a directory";
        return access(path, W_OK) == 0 ? NULL : strerror(errno);
    }
    if (errno != ENOENT) return strerror(errno);
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return NULL;
    const char *why = access(dir, W_OK | X_OK) == 0 ? NULL : strerror(errno);
    free(dir);
    return why;
}

static rd_status j_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    jsonlog *j = calloc(1, sizeof *j);
    if (!j) return RD_E_INTERNAL;
    *self = j;
    j->h = h;
    j->ctx = ctx;
    j->fd = -1;
    const char *path = h->cfg_str(ctx, "path");
    if (path && *path && strcmp(path, "-")) {
        j->path = strdup(path);
        if (!j->path) return RD_E_INTERNAL;
        /* What start() would refuse, found without creating anything, so
         * --check-config sees it too. */
        const char *why = writable_path(j->path);
        if (why) {
            h->error(err, RD_E_CONFIG, "fatal", "path %s: %s", j->path, why);
            free(j->path);
            free(j);
            *self = NULL; /* the host does not destroy() what create() refused */
            return RD_E_CONFIG;
        }
    }
    j->level = jl_level_parse(h->cfg_str(ctx, "level"));
    if (j->level < 0) {
        h->error(err, RD_E_CONFIG, "fatal", "level: expected debug, info, warn or error");
        return RD_E_CONFIG;
    }
    j->events = h->cfg_bool(ctx, "events");
    j->env = h->info(ctx, "env");
    j->build_sha = h->info(ctx, "build_sha");
    const char *inst = h->info(ctx, "instance");
    const char *lv[] = {inst ? inst : "jsonlog"};
    j->lines = h->series(h->metric(ctx, RD_METRIC_COUNTER, "routerd_jsonlog_lines_total",
                                   "JSON log lines written.", (const char *const[]){"sink", NULL},
                                   NULL, 0),
                         lv);
    j->errors = h->series(h->metric(ctx, RD_METRIC_COUNTER, "routerd_jsonlog_write_errors_total",
                                    "JSON log lines that could not be written.",
                                    (const char *const[]){"sink", NULL}, NULL, 0),
                          lv);
    return RD_OK;
}

/* Fails the start when the file cannot be written; the dispatcher thread
 * opens its own descriptor on the first line. */
static rd_status j_start(void *self, rd_error *err) {
    jsonlog *j = self;
    if (!j->path) return RD_OK;
    int fd = open(j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        j->h->error(err, RD_E_CONFIG, "fatal", "path %s: %s", j->path, strerror(errno));
        return RD_E_CONFIG;
    }
    close(fd);
    return RD_OK;
}

static void j_destroy(void *self) {
    jsonlog *j = self;
    if (!j) return;
    if (j->fd >= 0 && j->fd != STDERR_FILENO) close(j->fd);
    sbuf_free(&j->line);
    free(j->red);
    free(j->path);
    free(j);
}

static const rd_ops ops = {.size = sizeof ops,
                           .create = j_create,
                           .start = j_start,
                           .destroy = j_destroy,
                           .event = j_event,
                           .flush = j_flush};

RD_PLUGIN_DEFINE(.kind = RD_KIND_SINK, .name = "jsonlog", .version = "1.0.0",
                 .summary = "JSON log lines (one object per line) to a file or standard error",
                 .options = opts, .ops = &ops, .flags = RD_PF_LOGS);
