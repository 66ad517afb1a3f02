/* The SSE parser: the same events whatever the read boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "a2a.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char log[4096];
    int n;
} rec;

static void on_ev(void *arg, const char *event, const char *data, size_t len) {
    rec *r = arg;
    assert_int_equal(data[len], 0);
    size_t used = strlen(r->log);
    snprintf(r->log + used, sizeof r->log - used, "[%s|%s]", event, data);
    r->n++;
}

static const char stream[] = ": hello\r\n"
                             "data: {\"a\":1}\n"
                             "\n"
                             "event: error\r\n"
                             "data: line1\r\n"
                             "data:line2\r\n"
                             "id: 7\r\n"
                             "\r\n"
                             "data\n"
                             "\n"
                             ":comment only\n"
                             "\n"
                             "data: x\r"
                             "data: y\r"
                             "\r"
                             "retry: 10\n"
                             "data: tail-without-blank-line";

static const char expect[] = "[message|{\"a\":1}][error|line1\nline2][message|][message|x\ny]";

static void test_whole(void **state) {
    (void)state;
    rec r = {0};
    a2a_sse p;
    a2a_sse_init(&p, 0);
    assert_int_equal(a2a_sse_feed(&p, stream, strlen(stream), on_ev, &r), 0);
    a2a_sse_free(&p);
    assert_string_equal(r.log, expect);
    assert_int_equal(r.n, 4);
}

/* Split in two at every offset, then byte by byte. */
static void test_every_split(void **state) {
    (void)state;
    size_t n = strlen(stream);
    for (size_t cut = 0; cut <= n; cut++) {
        rec r = {0};
        a2a_sse p;
        a2a_sse_init(&p, 0);
        a2a_sse_feed(&p, stream, cut, on_ev, &r);
        a2a_sse_feed(&p, stream + cut, n - cut, on_ev, &r);
        a2a_sse_free(&p);
        if (strcmp(r.log, expect)) fail_msg("split at %zu: %s", cut, r.log);
    }
    rec r = {0};
    a2a_sse p;
    a2a_sse_init(&p, 0);
    for (size_t i = 0; i < n; i++)
        a2a_sse_feed(&p, stream + i, 1, on_ev, &r);
    a2a_sse_free(&p);
    assert_string_equal(r.log, expect);
}

/* A CRLF split between the CR and the LF is one line end, not two. */
static void test_crlf_split(void **state) {
    (void)state;
    rec r = {0};
    a2a_sse p;
    a2a_sse_init(&p, 0);
    a2a_sse_feed(&p, "data: a\r", 8, on_ev, &r);
    a2a_sse_feed(&p, "\ndata: b\r", 9, on_ev, &r);
    a2a_sse_feed(&p, "\n\r", 2, on_ev, &r);
    a2a_sse_feed(&p, "\n", 1, on_ev, &r);
    a2a_sse_free(&p);
    assert_string_equal(r.log, "[message|a\nb]");
}

static void test_oversize(void **state) {
    (void)state;
    rec r = {0};
    a2a_sse p;
    a2a_sse_init(&p, 64);
    char big[300];
    memset(big, 'x', sizeof big);
    assert_int_equal(a2a_sse_feed(&p, "data: ", 6, on_ev, &r), 0);
    assert_int_equal(a2a_sse_feed(&p, big, sizeof big, on_ev, &r), -1);
    assert_int_equal(a2a_sse_feed(&p, "\n\n", 2, on_ev, &r), -1);
    a2a_sse_free(&p);
    assert_int_equal(r.n, 0);
    /* Many small data lines add up too. */
    a2a_sse_init(&p, 64);
    int rc = 0;
    for (int i = 0; i < 40 && !rc; i++)
        rc = a2a_sse_feed(&p, "data: 0123\n", 11, on_ev, &r);
    assert_int_equal(rc, -1);
    a2a_sse_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_crlf_split),
        cmocka_unit_test(test_oversize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
