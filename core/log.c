/* Text log on standard error, secret redaction, and log events to sinks. */
#include "core.h"
#include "router.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static rd_log_level min_level = RD_LOG_INFO;
static atomic_bool text_on = true;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

/* Secrets are registered during start-up only, then read concurrently. */
static char **secrets;
static size_t nsecrets;

static const char *level_name[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(void) {
    setvbuf(stderr, NULL, _IOLBF, 0);
}

void log_set_level(rd_log_level lvl) {
    min_level = lvl;
}

void log_set_text(bool on) {
    atomic_store(&text_on, on);
}

void log_reopen(void) {
    /* stderr is inherited; nothing to reopen for the text log. Sinks that
     * write files reopen on their own flush. */
}

void secret_add(const char *value) {
    if (!value || strlen(value) < 4) return; /* too short to mask meaningfully */
    for (size_t i = 0; i < nsecrets; i++)
        if (!strcmp(secrets[i], value)) return;
    secrets = xrealloc(secrets, (nsecrets + 1) * sizeof *secrets);
    secrets[nsecrets++] = xstrdup(value);
}

/* Length of the longest secret starting at p (0 if none). */
static size_t secret_at(const char *p) {
    size_t best = 0;
    for (size_t i = 0; i < nsecrets; i++) {
        size_t n = strlen(secrets[i]);
        if (n > best && !strncmp(p, secrets[i], n)) best = n;
    }
    return best;
}

size_t redact(const char *src, char *dst, size_t dstsz) {
    if (!dstsz) return 0;
    size_t o = 0;
    const char *p = src ? src : "";
    while (*p && o + 1 < dstsz) {
        size_t hit = secret_at(p);
        if (hit) {
            /* Mask over secrets that start inside this one and end later. */
            const char *end = p + hit;
            for (const char *q = p + 1; q < end; q++) {
                size_t h = secret_at(q);
                if (q + h > end) end = q + h;
            }
            for (const char *m = "***"; *m && o + 1 < dstsz; m++)
                dst[o++] = *m;
            p = end;
        } else {
            dst[o++] = *p++;
        }
    }
    dst[o] = 0;
    return o;
}

char *redact_dup(const char *src) {
    size_t n = strlen(src) + 1;
    char *d = xmalloc(n + 16);
    redact(src, d, n + 16);
    return d;
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
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        pthread_mutex_lock(&log_mu);
        fprintf(stderr, "%s.%03ldZ %-5s [%s] %s\n", when, ts.tv_nsec / 1000000, level_name[lvl],
                source, msg);
        pthread_mutex_unlock(&log_mu);
    }
    router_log_event(source, lvl, msg);
}

void log_msg(const char *source, rd_log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(source, lvl, fmt, ap);
    va_end(ap);
}
