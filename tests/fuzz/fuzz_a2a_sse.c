/* SSE parser: the input is a raw event stream. It is parsed three times,
 * whole, byte by byte and in 7-byte pieces; the events must be the same
 * every time (splitting must never change what is seen). Each event's data
 * also goes through the JSON-RPC parser and a task track, as in the
 * backend. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "a2a_parse.h"
#include "a2a_sse.h"

typedef struct {
    char *log; /* event\0data\0... */
    size_t len;
    a2a_track t;
    int rpc;
} run;

static int on_event(void *arg, const char *event, const char *data, size_t len) {
    run *r = arg;
    if (strlen(data) > len) abort(); /* data may hold NULs, never run past len */
    size_t el = strlen(event);
    char *n = realloc(r->log, r->len + el + len + 2);
    if (!n) abort();
    r->log = n;
    memcpy(r->log + r->len, event, el + 1);
    memcpy(r->log + r->len + el + 1, data, len + 1);
    r->len += el + len + 2;
    if (r->rpc) {
        a2a_rpc x;
        if (a2a_rpc_parse(data, len, "1", &x, NULL, 0) == 0) {
            if (!x.is_error) a2a_track_apply(&r->t, &x.res);
            a2a_rpc_free(&x);
        }
    }
    return 0;
}

static int parse(const uint8_t *data, size_t size, size_t step, run *r) {
    a2a_sse p;
    a2a_sse_init(&p, 2048, on_event, r);
    int rc = 0;
    if (!step) step = size ? size : 1;
    for (size_t i = 0; i < size && rc == 0; i += step)
        rc = a2a_sse_feed(&p, (const char *)data + i, size - i < step ? size - i : step);
    if (rc == 0) rc = a2a_sse_finish(&p);
    a2a_sse_free(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run whole = {.rpc = 1}, bytes = {0}, sevens = {0};
    int r1 = parse(data, size, 0, &whole);
    int r2 = parse(data, size, 1, &bytes);
    int r3 = parse(data, size, 7, &sevens);
    if (r1 != r2 || r1 != r3) abort();
    if (whole.len != bytes.len || whole.len != sevens.len) abort();
    if (whole.len &&
        (memcmp(whole.log, bytes.log, whole.len) || memcmp(whole.log, sevens.log, whole.len)))
        abort();
    char *txt = a2a_track_artifact_text(&whole.t);
    (void)a2a_track_done(&whole.t);
    free(txt);
    a2a_track_free(&whole.t);
    free(whole.log);
    free(bytes.log);
    free(sevens.log);
    return 0;
}
