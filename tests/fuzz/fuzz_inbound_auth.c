/* The inbound A2A server's caller authentication: arbitrary bytes as the
 * Authorization and X-API-Key header values (as the listener reads them:
 * NUL-terminated, no NUL inside), through ib_auth_headers(). The first
 * byte says which headers are present; the rest is split at the first
 * line break (Authorization before it, X-API-Key after). A caller is
 * found exactly when the token given (the bearer one first) is a
 * caller's. */
#include <routerd/plugintest.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "inbound.h"

extern const rd_plugin routerd_plugin_v1;

static ib *b;

static void die(const char *what) {
    fprintf(stderr, "fuzz_inbound_auth: %s\n", what);
    abort();
}

static void setup(void) {
    char err[256];
    if (rdpt_use(&routerd_plugin_v1, err, sizeof err)) die(err);
    rdpt_reset();
    rdpt_set("listen", "127.0.0.1:9"); /* never opened: start() is not called */
    rdpt_set("humans", "alice=main:12345");
    rdpt_set("callers", "planner=tok-planner-0123456789abcdef, auditor=AUDITOR.key_0123456789");
    void *self = NULL;
    rd_error e = {0};
    if (rdpt_plugin()->ops->create(rdpt_host(), rdpt_ctx(), &self, &e) != RD_OK) die(e.msg);
    b = self;
}

static char *header(const uint8_t *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = 0; /* a NUL inside ends the value early, as in a C string */
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!b) setup();
    if (!size) return 0;
    unsigned flags = data[0];
    data++, size--;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t an = nl ? (size_t)(nl - data) : size;
    char *au = (flags & 1) ? header(data, an) : NULL;
    char *key = (flags & 2) && nl ? header(nl + 1, size - an - 1) : NULL;
    ib_caller *c = ib_auth_headers(b, au, key);
    /* The token that counts, worked out apart from the listener's code. */
    const char *given = NULL;
    if (au && !strncasecmp(au, "Bearer ", 7)) {
        given = au + 7;
        while (*given == ' ')
            given++;
    } else {
        given = key;
    }
    ib_caller *want = NULL;
    for (size_t i = 0; given && i < b->ncallers; i++)
        if (!strcmp(given, b->callers[i].token)) want = &b->callers[i];
    if (c != want) die("ib_auth_headers found another caller than the token names");
    free(au);
    free(key);
    return 0;
}
