/* A small fake routerd host for in-process tests of the a2a backend:
 * config from a table over the schema's defaults, an in-memory state store
 * that outlives plugin instances, metrics, readiness and captured logs. */
#ifndef TEST_A2A_HOST_H
#define TEST_A2A_HOST_H

#include <routerd/plugin.h>
#include <stddef.h>
#include <stdint.h>

/* Forgets config, store, metrics and logs. */
void ah_reset(void);
void ah_cfg(const char *key, const char *val);
/* create + start; NULL on failure (st/err say why). */
void *ah_launch(rd_status *st, rd_error *err);
void ah_shutdown(void *self);

/* The outcome of one handle() call. */
typedef struct ah_result {
    rd_status st;
    rd_error err;
    char *text;   /* reply text (malloc()ed) */
    int progress; /* reply_progress calls */
    char *last_progress;
    /* ABI 1.2: one line per reply_attach "name|mime|len|data or -|url or -"
     * (NULL = none), one line per choice offered (NULL = none) */
    char *files, *choices;
} ah_result;

/* Calls handle() for chat with a fresh correlation id; deadline_ms is
 * relative (0 = none). traceparent NULL = none. */
ah_result ah_call(void *self, int64_t chat, const char *text, int64_t deadline_ms,
                  const char *traceparent);
void ah_result_free(ah_result *r);
/* The same for a transport whose updates are re-delivered under the same
 * id (meta names it): update_id != 0 gives a stable messageId. */
ah_result ah_call_update(void *self, int64_t chat, const char *text, int64_t deadline_ms,
                         const char *traceparent, int64_t update_id);
/* With text, flags and attachments (ABI 1.2). */
ah_result ah_call_files(void *self, int64_t chat, const char *text, uint32_t flags,
                        const rd_attachment *const *atts, size_t natts);
/* Instances launched from now on get a 1.1 host (no reply_attach,
 * reply_choices). */
void ah_no_media(int on);
/* Simulates the router's hard stop (drain timeout): cancelled() is true. */
void ah_hard_stop(int on);

/* Readiness as last reported, and its reason. */
int ah_ready(char *reason, size_t sz);
int ah_wait_ready(int want, int timeout_ms);
/* Sum of a metric's series whose label values contain every given value
 * (NULL-terminated list; NULL = all series). */
double ah_metric(const char *name, const char *const *values);
/* 1 when a captured log line contains needle. */
int ah_logged(const char *needle);
/* The value stored under key in the plugin's namespace (malloc()ed) or NULL. */
char *ah_kv(const char *key);
void ah_kv_put(const char *key, const char *val);

#endif
