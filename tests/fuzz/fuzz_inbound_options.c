/* The inbound A2A server's `humans`, `callers` and `allow` options:
 * arbitrary bytes as their values (one a line: humans, callers, allow;
 * allow absent without a third line; items split at ',' as in a
 * manifest list) through ib_parse_lists(), the code create() runs, on a
 * stub host that knows transports "main" and "tg2". (Through the plugin
 * test kit each caller list would be registered as a secret for good,
 * and the runs would slow down as they pile up.) A refused configuration
 * is fine; an accepted one must hold what the docs promise: valid names,
 * chat ids, tokens of min_token_bytes without white space, the allow
 * flags counted. */
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inbound.h"

static void die(const char *what) {
    fprintf(stderr, "fuzz_inbound_options: %s\n", what);
    abort();
}

static const char *stub_info(rd_ctx *ctx, const char *what) {
    (void)ctx;
    return what && !strcmp(what, "transports") ? "main,tg2" : NULL;
}

static void stub_error(rd_error *err, rd_status code, const char *klass, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    snprintf(err->klass, sizeof err->klass, "%s", klass);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (!n || n > IB_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i])) return 0;
    return 1;
}

static void check(const ib *b) {
    if (!b->nhumans || !b->ncallers) die("accepted without humans or callers");
    for (size_t i = 0; i < b->nhumans; i++)
        if (!name_ok(b->humans[i].name) || !name_ok(b->humans[i].transport) || !b->humans[i].chat)
            die("a human accepted with a bad name, transport or chat");
    for (size_t i = 0; i < b->ncallers; i++) {
        const ib_caller *c = &b->callers[i];
        if (!name_ok(c->name) || strlen(c->token) != c->token_len ||
            c->token_len < (size_t)b->cf.min_token_bytes)
            die("a caller accepted with a bad name or a short token");
        for (const char *p = c->token; *p; p++)
            if (isspace((unsigned char)*p)) die("a token with white space accepted");
        size_t n = 0;
        for (size_t k = 0; k < b->nhumans; k++)
            n += c->allow[k] != 0;
        if (n != c->nallowed) die("nallowed disagrees with the allow flags");
    }
}

/* A list value split at ',' into a NULL-terminated array (items point
 * into s); NULL for an absent value. */
static char **split(char *s) {
    if (!s) return NULL;
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    char **v = calloc(n + 1, sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i] = s;
        s = strchr(s, ',');
        if (s) *s++ = 0;
    }
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static rd_host host;
    host.info = stub_info;
    host.error = stub_error;
    char *s = malloc(size + 1), *line[3] = {0};
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0;
    char *p = s;
    for (int i = 0; i < 3 && p; i++) {
        line[i] = p;
        p = strchr(p, '\n');
        if (p) *p++ = 0;
    }
    char **hu = split(line[0]), **ca = split(line[1]), **al = split(line[2]);
    ib b = {.h = &host};
    b.cf.humans = (const char *const *)hu;
    b.cf.callers = (const char *const *)ca;
    b.cf.allow = (const char *const *)al;
    b.cf.min_token_bytes = 16; /* the default */
    rd_error e = {0};
    if (ib_parse_lists(&b, &e) == 0) check(&b);
    ib_free_lists(&b);
    free(hu);
    free(ca);
    free(al);
    free(s);
    return 0;
}
