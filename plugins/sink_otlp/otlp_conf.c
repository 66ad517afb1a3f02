/* Exporter settings: manifest keys over OTEL_* variables over defaults. */
#include "otlp_conf.h"
#include "url_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *nz(const char *s) {
    return s && *s ? s : NULL;
}

/* base + "/v1/traces", as the OTLP exporter spec builds the signal URL
 * from OTEL_EXPORTER_OTLP_ENDPOINT (a base already ending in /v1/traces is
 * taken as it is). */
static char *traces_url(const char *base) {
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    const char *suffix = "/v1/traces";
    if (n >= strlen(suffix) && !strncmp(base + n - strlen(suffix), suffix, strlen(suffix)))
        suffix = "";
    char *u = malloc(n + strlen(suffix) + 1);
    if (!u) return NULL;
    memcpy(u, base, n);
    strcpy(u + n, suffix);
    return u;
}

static int parse_ratio(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    while (*end == ' ')
        end++;
    if (end == s || *end || !(v >= 0 && v <= 1)) return -1;
    *out = v;
    return 0;
}

static void note(otlp_conf *c, const char *text) {
    size_t n = strlen(c->note);
    snprintf(c->note + n, sizeof c->note - n, "%s%s", n ? "; " : "", text);
}

int otlp_conf_resolve(const otlp_manifest *m, otlp_getenv_fn get, otlp_conf *out, char *err,
                      size_t errsz) {
    *out = (otlp_conf){0};
    /* URL */
    const char *e_tr = nz(get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
    const char *e_base = nz(get("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if (nz(m->traces_endpoint))
        out->url = strdup(m->traces_endpoint);
    else if (nz(m->endpoint))
        out->url = traces_url(m->endpoint);
    else if (e_tr)
        out->url = strdup(e_tr);
    else if (e_base)
        out->url = traces_url(e_base);
    else
        out->url = strdup("http://localhost:4318/v1/traces");
    if (!out->url) goto oom;
    if (!url_is_http(out->url)) {
        snprintf(err, errsz, "endpoint: '%s' is not an http:// or https:// URL", out->url);
        otlp_conf_free(out);
        return -1;
    }

    /* Trust: the manifest, then the OTel certificate variables. */
    const char *ca = nz(m->ca_file);
    if (!ca) ca = nz(get("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"));
    if (!ca) ca = nz(get("OTEL_EXPORTER_OTLP_CERTIFICATE"));
    if (ca && !(out->ca_file = strdup(ca))) goto oom;

    /* Protocol: only http/json is spoken. */
    const char *proto = nz(get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"));
    if (!proto) proto = nz(get("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if (proto && strcmp(proto, "http/json"))
        note(out, "OTEL_EXPORTER_OTLP_PROTOCOL is not http/json: sending http/json anyway");

    /* Headers: generic, then traces-specific, then the manifest. */
    int bad = otlp_kv_parse(&out->headers, get("OTEL_EXPORTER_OTLP_HEADERS"));
    bad += otlp_kv_parse(&out->headers, get("OTEL_EXPORTER_OTLP_TRACES_HEADERS"));
    bad += otlp_kv_parse(&out->headers, m->headers);
    if (bad) note(out, "ignored header items without 'name=value'");

    /* Resource: defaults < OTEL_RESOURCE_ATTRIBUTES < OTEL_SERVICE_NAME <
     * manifest resource_attributes < manifest service_name. */
    if (otlp_kv_set(&out->resource, "service.name", "routerd")) goto oom;
    if (m->version) otlp_kv_set(&out->resource, "service.version", m->version);
    if (m->env) {
        otlp_kv_set(&out->resource, "deployment.environment.name", m->env);
        otlp_kv_set(&out->resource, "deployment.environment", m->env); /* older semconv */
    }
    if (m->build_sha) otlp_kv_set(&out->resource, "routerd.build_sha", m->build_sha);
    if (otlp_kv_parse(&out->resource, get("OTEL_RESOURCE_ATTRIBUTES")))
        note(out, "ignored OTEL_RESOURCE_ATTRIBUTES items without 'key=value'");
    if (nz(get("OTEL_SERVICE_NAME")))
        otlp_kv_set(&out->resource, "service.name", get("OTEL_SERVICE_NAME"));
    if (otlp_kv_parse(&out->resource, m->resource_attributes))
        note(out, "ignored resource_attributes items without 'key=value'");
    if (nz(m->service_name)) otlp_kv_set(&out->resource, "service.name", m->service_name);

    /* Sampling */
    out->ratio = 1;
    if (m->ratio_set) {
        out->ratio = m->ratio;
    } else {
        const char *sampler = nz(get("OTEL_TRACES_SAMPLER"));
        const char *arg = nz(get("OTEL_TRACES_SAMPLER_ARG"));
        if (sampler &&
            (!strcmp(sampler, "always_off") || !strcmp(sampler, "parentbased_always_off")))
            out->ratio = 0;
        else if (sampler &&
                 (!strcmp(sampler, "always_on") || !strcmp(sampler, "parentbased_always_on")))
            out->ratio = 1;
        else if (arg && (!sampler || !strcmp(sampler, "traceidratio") ||
                         !strcmp(sampler, "parentbased_traceidratio"))) {
            if (parse_ratio(arg, &out->ratio)) {
                out->ratio = 1;
                note(out, "OTEL_TRACES_SAMPLER_ARG is not a ratio in [0, 1]: sampling everything");
            }
        } else if (sampler && strcmp(sampler, "traceidratio") &&
                   strcmp(sampler, "parentbased_traceidratio")) {
            note(out, "OTEL_TRACES_SAMPLER not supported: sampling everything");
        }
    }
    if (!(out->ratio >= 0 && out->ratio <= 1)) {
        snprintf(err, errsz, "sample_ratio: %g is not in [0, 1]", out->ratio);
        otlp_conf_free(out);
        return -1;
    }

    /* Timeout */
    out->timeout_ms = 5000;
    const char *t = nz(get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"));
    if (!t) t = nz(get("OTEL_EXPORTER_OTLP_TIMEOUT"));
    if (m->timeout_set) {
        out->timeout_ms = m->timeout_ms;
    } else if (t) {
        char *end;
        long long v = strtoll(t, &end, 10);
        if (*end || v <= 0)
            note(out, "OTEL_EXPORTER_OTLP_TIMEOUT is not a positive number of ms: using 5000");
        else
            out->timeout_ms = v;
    }
    return 0;
oom:
    snprintf(err, errsz, "out of memory");
    otlp_conf_free(out);
    return -1;
}

void otlp_conf_free(otlp_conf *c) {
    free(c->url);
    c->url = NULL;
    free(c->ca_file);
    c->ca_file = NULL;
    otlp_kv_free(&c->headers);
    otlp_kv_free(&c->resource);
}
