/* A small fake host for the sink unit tests: configuration from a table,
 * a settable clock, a metrics registry the tests can read, recorded log
 * lines and HTTP routes, and redaction of listed secrets. */
#ifndef TEST_SINKS_HOST_H
#define TEST_SINKS_HOST_H

#include <routerd/plugin.h>

extern const rd_host th_host;
/* The context handed to create(); one instance at a time. */
extern rd_ctx *th_ctx;

/* Forget configuration, metrics, logs and routes. */
void th_reset(void);
/* Manifest key = value (NULL removes it). Numbers are parsed on demand. */
void th_cfg(const char *key, const char *value);
/* Router facts for host->info. */
void th_info(const char *what, const char *value);
/* Values host->redact() masks. */
void th_secret(const char *value);
/* Pins the clock host->now_ms() reads (0: the real monotonic clock). */
void th_set_now_ms(int64_t ms);
/* Sum of a counter/gauge over series whose label values contain every
 * listed value (NULL-terminated; NULL = all series). */
double th_metric(const char *name, const char *const *values);
/* Log lines so far joined by '\n' (owned by the host). */
const char *th_logs(void);
/* The handler registered for path (NULL if none). */
rd_http_fn th_route(const char *path, void **arg);
/* The plugin linked into the test. */
const rd_plugin *th_plugin(void);
/* Sets every option default of the plugin's schema, as the host would. */
void th_defaults(void);

#endif
