/* Fuzz target: the SSE parser fed the input whole and in pieces of sizes
 * taken from the first byte; both must give the same events, and each
 * event's data is parsed as a JSON-RPC response. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "a2a.h"

typedef struct {
    uint64_t h;
    size_t n;
} digest;

static void on_ev(void *arg, const char *event, const char *data, size_t len) {
    digest *d = arg;
    if (data[len] != 0) __builtin_trap(); /* NUL-terminated; NULs inside are data */
    for (const char *p = event; *p; p++)
        d->h = (d->h ^ (uint8_t)*p) * 1099511628211ull;
    for (size_t i = 0; i < len; i++)
        d->h = (d->h ^ (uint8_t)data[i]) * 1099511628211ull;
    d->h = (d->h ^ 0xff) * 1099511628211ull;
    d->n++;
    a2a_result r;
    a2a_parse_response(data, len, &r);
    a2a_result_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = 1 + data[0] % 17;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    digest a = {14695981039346656037ull, 0}, b = a;
    a2a_sse p;
    a2a_sse_init(&p, 1 << 16);
    int ra = a2a_sse_feed(&p, s, n, on_ev, &a);
    a2a_sse_free(&p);
    a2a_sse_init(&p, 1 << 16);
    int rb = 0;
    for (size_t i = 0; i < n && !rb; i += step)
        rb = a2a_sse_feed(&p, s + i, n - i < step ? n - i : step, on_ev, &b);
    a2a_sse_free(&p);
    if (!ra && !rb && (a.h != b.h || a.n != b.n)) __builtin_trap();
    return 0;
}
