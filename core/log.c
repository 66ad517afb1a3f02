/* Text log on standard error, and each line to the hook that feeds the
 * sinks (events.c sets it; redact.c masks secrets). */
#include "core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static rd_log_level min_level = RD_LOG_INFO;
static atomic_bool text_on = true;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *level_name[] = {"DEBUG", "INFO", "WARN", "ERROR"};

static bool on_tty;
static _Atomic(log_hook_fn) hook;

void log_init(void) {
    setvbuf(stderr, NULL, _IOLBF, 0);
    on_tty = isatty(STDERR_FILENO);
}

void log_set_level(rd_log_level lvl) {
    min_level = lvl;
}

void log_set_text(bool on) {
    atomic_store(&text_on, on);
}

void log_set_hook(log_hook_fn fn) {
    atomic_store(&hook, fn);
}

void log_reopen(void) {
    /* stderr is inherited; nothing to reopen for the text log. Sinks that
     * write files reopen on their own flush. */
}

void log_vmsg(const char *source, rd_log_level lvl, const char *fmt, va_list ap) {
    if (lvl < min_level) return;
    /* Redact before cutting to length: a cut secret would not match. */
    char *raw = NULL, msg[2048];
    if (vasprintf(&raw, fmt, ap) < 0) return;
    redact(raw, msg, sizeof msg);
    free(raw);
    bool to_text = atomic_load(&text_on);
    if (to_text) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char when[32];
        pthread_mutex_lock(&log_mu);
        if (on_tty) { /* a person reads it: the time of day is enough */
            strftime(when, sizeof when, "%H:%M:%S", &tm);
            fprintf(stderr, "%s %-5s [%s] %s\n", when, level_name[lvl], source, msg);
        } else {
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
            fprintf(stderr, "%s.%03ldZ %-5s [%s] %s\n", when, ts.tv_nsec / 1000000, level_name[lvl],
                    source, msg);
        }
        pthread_mutex_unlock(&log_mu);
    }
    log_hook_fn fn = atomic_load(&hook);
    if (fn) fn(source, lvl, msg);
}

void log_msg(const char *source, rd_log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(source, lvl, fmt, ap);
    va_end(ap);
}
