/* Helpers shared by the sinks' integration tests. */
#ifndef TEST_SINKS_UTIL_H
#define TEST_SINKS_UTIL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* The whole file (malloc), NULL if unreadable. */
char *sk_slurp(const char *path);
/* Runs a shell command; its standard output (malloc) in *out when out is
 * not NULL. Returns the exit status (-1 if it could not run). */
int sk_run(const char *cmd, char **out);
/* True when a program is on PATH. */
bool sk_have(const char *prog);
/* True when num occurs in hay as a whole number (no digit around it). */
bool sk_has_number(const char *hay, const char *num);
/* Sum of the samples of metric `name` (exact, before '{' or ' ') whose
 * label text contains every "k=\"v\"" fragment listed (NULL-terminated). */
double sk_metric(const char *exposition, const char *name, const char *const *labels);
/* Checks one JSON log line: parses, has every mandatory field with the
 * right JSON type, ts in RFC 3339 UTC with milliseconds, level and event
 * known, env as given. Returns NULL (problem text in why) if not. */
cJSON *sk_log_line(const char *line, const char *env, char *why, size_t whysz);
/* Path of a file in the source tree. */
const char *sk_src(const char *rel);

#endif
