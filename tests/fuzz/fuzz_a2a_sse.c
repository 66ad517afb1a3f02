/* SSE parser: arbitrary bytes fed in pieces whose sizes come from the input;
 * every dispatched event's data is run through the JSON-RPC parser and a
 * task track, as the backend does. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "a2a_parse.h"
#include "a2a_sse.h"

static int on_event(void *arg, const char *event, const char *data, size_t len) {
    a2a_track *t = arg;
    if (strlen(data) != len) __builtin_trap();
    (void)event;
    a2a_rpc r;
    if (a2a_rpc_parse(data, len, "1", &r, NULL, 0) == 0) {
        if (!r.is_error) a2a_track_apply(t, &r.res);
        a2a_rpc_free(&r);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    /* first byte: piece size (1..256); the rest: the stream */
    size_t step = (size_t)data[0] + 1;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    a2a_track t = {0};
    a2a_sse p;
    a2a_sse_init(&p, 4096, on_event, &t);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += step)
        rc = a2a_sse_feed(&p, s + i, n - i < step ? n - i : step);
    if (rc == 0) a2a_sse_finish(&p);
    a2a_sse_free(&p);
    char *txt = a2a_track_artifact_text(&t);
    (void)a2a_track_done(&t);
    if (txt) {
        (void)strlen(txt);
        __builtin_free(txt);
    }
    a2a_track_free(&t);
    return 0;
}
