/* Exporter settings from the manifest and the standard OTEL_* variables
 * (manifest keys win). Pure: the environment comes through a callback. */
#ifndef ROUTERD_OTLP_CONF_H
#define ROUTERD_OTLP_CONF_H

#include <stdint.h>

#include "otlp_json.h"

typedef struct otlp_manifest {
    /* Manifest values; NULL (or *_set false) when not written. */
    const char *endpoint, *traces_endpoint, *headers, *service_name, *resource_attributes;
    const char *ca_file;
    bool ratio_set, timeout_set;
    double ratio;
    int64_t timeout_ms;
    /* Router facts for the resource. */
    const char *env, *version, *build_sha;
} otlp_manifest;

typedef struct otlp_conf {
    char *url;        /* full traces URL */
    char *ca_file;    /* PEM certificate authorities; NULL: the system's */
    otlp_kv headers;  /* extra HTTP headers */
    otlp_kv resource; /* resource attributes, service.name first */
    double ratio;
    int64_t timeout_ms;
    char note[256]; /* a non-fatal remark to log ("" = none); never holds a header value */
} otlp_conf;

typedef const char *(*otlp_getenv_fn)(const char *name);

/* Returns 0, or -1 with a message in err (a bad URL or ratio). */
int otlp_conf_resolve(const otlp_manifest *m, otlp_getenv_fn get, otlp_conf *out, char *err,
                      size_t errsz);
void otlp_conf_free(otlp_conf *c);

#endif
