/* jsonlog sink: one JSON object per line for every log line and message
 * event, to a file or standard error. It takes over the core's text log
 * (RD_PF_LOGS). The file is reopened on every flush (the core flushes sinks
 * on SIGHUP and at drain) and when the path stops naming the open file
 * (renamed or deleted by a rotation), checked at most once a second. With
 * tty_path, a terminal on standard error gets short human-readable lines
 * and the JSON lines go to that file. */
#include <routerd/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonlog_line.h"

/* The keys, written by cfg_bind(). */
typedef struct {
    const char *path, *tty_path;
    int level; /* index into levels: RD_LOG_* */
    int events;
} jsonlog_conf;

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    jsonlog_conf cf;
    char *path; /* NULL = standard error */
    int fd;
    dev_t dev;
    ino_t ino;
    int64_t checked_ms;
    int level;
    bool events;
    const char *env, *build_sha;
    sbuf line;
    bool human; /* short lines on the terminal (standard error), JSON to path */
    sbuf hline;
    char *red; /* redaction buffer */
    size_t redsz;
    bool reopen_reported; /* a failed reopen was told on stderr */
    bool failing;         /* lines are being lost: told once when it starts */
    uint64_t lost;        /* lines lost in this episode */
    bool need_nl;         /* a fragment could not be cut off: start a new line */
    int open_errno;       /* why the file could not be opened */
    rd_series *lines, *errors;
} jsonlog;

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

static const rd_option opts[] = {
    {"path", RD_OPT_STRING, 0, "-", "file to append to; - is standard error", 0, 0, NULL,
     RD_BIND(jsonlog_conf, path)},
    {"level", RD_OPT_ENUM, 0, "info", "lowest level written", 0, 0, levels,
     RD_BIND(jsonlog_conf, level)},
    {"tty_path", RD_OPT_STRING, 0, NULL,
     "when path is - and standard error is a terminal: JSON lines go to this file, and the "
     "terminal gets short human-readable lines",
     0, 0, NULL, RD_BIND(jsonlog_conf, tty_path)},
    {"events", RD_OPT_BOOL, 0, "true",
     "also write one line per message event (received, replied, rejected, send_failed)", 0, 0, NULL,
     RD_BIND(jsonlog_conf, events)},
    {0},
};

static bool put_whole(jsonlog *j, const char *p, size_t n, int *e);

/* The sink's own trouble cannot go through host->log (its lines would come
 * back to this sink, or nowhere): one JSON line on standard error. */
static void tell(jsonlog *j, rd_log_level lvl, const char *msg, bool to_file) {
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_LOG,
                   .level = lvl,
                   .ts_ns = j->h->wall_ns(),
                   .source = "sink.jsonlog"};
    sbuf b = {0}, t = {0};
    jl_format(&b, &ev, msg, j->env, j->build_sha);
    if (j->human) jl_human(&t, &ev, msg);
    const sbuf *out = j->human ? &t : &b;
    if (out->p && write(STDERR_FILENO, out->p, out->len) < 0) {
        /* nothing left to tell it to */
    }
    sbuf_free(&t);
    int e;
    /* The file shows where its gap is. */
    if (b.p && to_file && j->fd >= 0 && j->fd != STDERR_FILENO) put_whole(j, b.p, b.len, &e);
    sbuf_free(&b);
}

static void complain(jsonlog *j, const char *what, int e) {
    char msg[512];
    snprintf(msg, sizeof msg, "jsonlog: %s %s: %s", what, j->path ? j->path : "-", strerror(e));
    tell(j, RD_LOG_ERROR, msg, false);
}

/* One report when lines start to be lost (disk full, file gone), one when
 * they are written again: each episode is told, none line by line. */
static void lose_line(jsonlog *j, const char *what, int e) {
    j->h->add(j->errors, 1);
    j->lost++;
    if (j->failing) return;
    j->failing = true;
    j->lost = 1;
    complain(j, what, e);
}

static void written_again(jsonlog *j) {
    j->failing = false;
    char msg[512];
    snprintf(msg, sizeof msg, "jsonlog: writing to %s again; %llu line(s) were lost",
             j->path ? j->path : "-", (unsigned long long)j->lost);
    tell(j, RD_LOG_WARN, msg, true);
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
        if (!j->reopen_reported) complain(j, "cannot reopen", errno);
        j->reopen_reported = true;
        return;
    }
    if (j->fd >= 0 && j->fd != STDERR_FILENO) close(j->fd);
    j->fd = fd;
    j->reopen_reported = false;
    j->need_nl = false; /* a new file starts clean */
}

/* A rotation renamed or removed the file: follow the path. The file is
 * opened here, on the dispatcher thread, not in start(): the core may hand
 * events to a sink before its start() ran. */
static void check_rotation(jsonlog *j) {
    if (j->fd < 0) {
        j->fd = open_file(j);
        j->open_errno = errno;
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

static size_t write_some(int fd, const char *p, size_t n, int *e) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            *e = w < 0 ? errno : ENOSPC;
            break;
        }
        done += (size_t)w;
    }
    return done;
}

/* Writes one line whole or not at all: a short write (disk full, file size
 * limit) is cut off again, so the next line does not continue a fragment.
 * Where a cut is impossible (a pipe), the next line starts on its own. */
static bool put_whole(jsonlog *j, const char *p, size_t n, int *e) {
    if (j->need_nl) {
        if (write_some(j->fd, "\n", 1, e) != 1) return false;
        j->need_nl = false;
    }
    size_t done = write_some(j->fd, p, n, e);
    if (done == n) return true;
    if (done) {
        off_t end = lseek(j->fd, 0, SEEK_CUR), start = end - (off_t)done;
        if (end < (off_t)done || ftruncate(j->fd, start) != 0 || lseek(j->fd, start, SEEK_SET) < 0)
            j->need_nl = true;
    }
    return false;
}

static void write_line(jsonlog *j, const char *p, size_t n) {
    int e = j->open_errno;
    if (j->fd < 0) {
        lose_line(j, "cannot open", e);
        return;
    }
    if (!put_whole(j, p, n, &e)) {
        lose_line(j, "cannot write", e);
        return;
    }
    j->h->add(j->lines, 1);
    if (j->failing) written_again(j);
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
    const char *msg = redacted(j, ev->msg);
    if (j->human) {
        sbuf_reset(&j->hline);
        if (jl_human(&j->hline, ev, msg) && !j->hline.failed &&
            write(STDERR_FILENO, j->hline.p, j->hline.len) < 0) {
            /* the JSON line below still keeps it */
        }
        if (j->hline.cap > 65536) sbuf_free(&j->hline);
    }
    sbuf_reset(&j->line);
    jl_format(&j->line, ev, msg, j->env, j->build_sha);
    if (j->line.failed) return;
    write_line(j, j->line.p, j->line.len);
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

static void j_destroy(void *self);

static rd_status j_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    if (!RD_HAS(h, cfg_bind)) {
        h->error(err, RD_E_CONFIG, "fatal", "needs a routerd speaking plugin ABI 1.2");
        return RD_E_CONFIG;
    }
    jsonlog *j = calloc(1, sizeof *j);
    if (!j) return RD_E_INTERNAL;
    *self = j;
    j->h = h;
    j->ctx = ctx;
    j->fd = -1;
    rd_status st = h->cfg_bind(ctx, &j->cf, sizeof j->cf, err);
    if (st != RD_OK) {
        j_destroy(j);
        *self = NULL; /* the host does not destroy() what create() refused */
        return st;
    }
    const char *path = j->cf.path;
    const char *tty_path = j->cf.tty_path;
    /* A person at a terminal reads short lines; JSON goes to a file. */
    if ((!path || !*path || !strcmp(path, "-")) && tty_path && *tty_path && isatty(STDERR_FILENO)) {
        path = tty_path;
        j->human = true;
    }
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
    /* levels[] is in RD_LOG_* order */
    j->level = j->cf.level;
    j->events = j->cf.events;
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
        j->h->error(err, RD_E_CONFIG, "fatal", "%s %s: %s", j->human ? "tty_path" : "path", j->path,
                    strerror(errno));
        return RD_E_CONFIG;
    }
    close(fd);
    if (j->human) {
        char msg[600];
        snprintf(msg, sizeof msg, "JSON log lines go to %s", j->path);
        tell(j, RD_LOG_INFO, msg, false);
    }
    return RD_OK;
}

static void j_destroy(void *self) {
    jsonlog *j = self;
    if (!j) return;
    if (j->fd >= 0 && j->fd != STDERR_FILENO) close(j->fd);
    sbuf_free(&j->line);
    sbuf_free(&j->hline);
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
