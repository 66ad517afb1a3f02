/* The incremental SSE parser: events split across reads at every byte
 * boundary, comments, multi-line data, CR / LF / CRLF, event types, size
 * caps, BOM, unterminated events, stopping early. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a2a_sse.h"

typedef struct {
    char ev[16][64];
    char data[16][256];
    int n;
    int stop_after; /* 0 = never */
} rec;

static int on_ev(void *arg, const char *event, const char *data, size_t len) {
    rec *r = arg;
    assert_int_equal(strlen(data), len);
    if (r->n < 16) {
        snprintf(r->ev[r->n], sizeof r->ev[0], "%s", event);
        snprintf(r->data[r->n], sizeof r->data[0], "%s", data);
    }
    r->n++;
    return r->stop_after && r->n >= r->stop_after;
}

/* Feeds text in pieces of `step` bytes (0 = at once). */
static int feed(rec *r, const char *text, size_t step, size_t max) {
    a2a_sse p;
    memset(r, 0, sizeof *r);
    a2a_sse_init(&p, max, on_ev, r);
    size_t n = strlen(text);
    int rc = 0;
    if (!step) step = n ? n : 1;
    for (size_t i = 0; i < n && rc == 0; i += step)
        rc = a2a_sse_feed(&p, text + i, n - i < step ? n - i : step);
    if (rc == 0) rc = a2a_sse_finish(&p);
    a2a_sse_free(&p);
    return rc;
}

static const char *stream_text = ": keep-alive comment\n"
                                 "\n"
                                 "data: {\"a\":1}\n"
                                 "\n"
                                 "event: error\r\n"
                                 "data: {\"b\":2}\r\n"
                                 "\r\n"
                                 "data:{\"c\":\n"
                                 "data: 3}\n"
                                 "id: 7\n"
                                 "retry: 100\n"
                                 "\r"
                                 "data: last\r"
                                 "\r";

static void check_stream(rec *r) {
    assert_int_equal(r->n, 4);
    assert_string_equal(r->ev[0], "message");
    assert_string_equal(r->data[0], "{\"a\":1}");
    assert_string_equal(r->ev[1], "error");
    assert_string_equal(r->data[1], "{\"b\":2}");
    assert_string_equal(r->ev[2], "message");
    assert_string_equal(r->data[2], "{\"c\":\n3}");
    assert_string_equal(r->data[3], "last");
}

static void test_whole(void **state) {
    (void)state;
    rec r;
    assert_int_equal(feed(&r, stream_text, 0, 0), 0);
    check_stream(&r);
}

/* The same stream cut into pieces of every size from 1 byte up. */
static void test_every_split(void **state) {
    (void)state;
    size_t n = strlen(stream_text);
    for (size_t step = 1; step <= n; step++) {
        rec r;
        assert_int_equal(feed(&r, stream_text, step, 0), 0);
        check_stream(&r);
    }
}

/* Every two-piece cut, including between CR and LF. */
static void test_every_cut_point(void **state) {
    (void)state;
    size_t n = strlen(stream_text);
    for (size_t cut = 0; cut <= n; cut++) {
        rec r;
        a2a_sse p;
        memset(&r, 0, sizeof r);
        a2a_sse_init(&p, 0, on_ev, &r);
        assert_int_equal(a2a_sse_feed(&p, stream_text, cut), 0);
        assert_int_equal(a2a_sse_feed(&p, stream_text + cut, n - cut), 0);
        assert_int_equal(a2a_sse_finish(&p), 0);
        a2a_sse_free(&p);
        check_stream(&r);
    }
}

static void test_crlf_split_is_one_terminator(void **state) {
    (void)state;
    rec r;
    a2a_sse p;
    memset(&r, 0, sizeof r);
    a2a_sse_init(&p, 0, on_ev, &r);
    /* "data: x\r" | "\n" | "\r" | "\n": one event, not two blank lines */
    assert_int_equal(a2a_sse_feed(&p, "data: x\r", 8), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(a2a_sse_feed(&p, "\n", 1), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(a2a_sse_feed(&p, "\r", 1), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(a2a_sse_feed(&p, "\ndata: y\n\n", 10), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.data[1], "y");
    a2a_sse_free(&p);
}

static void test_field_forms(void **state) {
    (void)state;
    rec r;
    /* no space after colon, two spaces (one kept), empty data, field
     * without colon, unknown field, event type reset after dispatch */
    assert_int_equal(feed(&r,
                          "data:a\n\n"
                          "data:  b\n\n"
                          "data\n\n"
                          "event: x\nfoo: bar\ndata: c\n\n"
                          "data: d\n\n",
                          3, 0),
                     0);
    assert_int_equal(r.n, 5);
    assert_string_equal(r.data[0], "a");
    assert_string_equal(r.data[1], " b");
    assert_string_equal(r.data[2], "");
    assert_string_equal(r.ev[3], "x");
    assert_string_equal(r.data[3], "c");
    assert_string_equal(r.ev[4], "message");
}

static void test_unterminated_event_dropped(void **state) {
    (void)state;
    rec r;
    assert_int_equal(feed(&r, "data: one\n\ndata: two", 0, 0), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(feed(&r, "data: one\n\ndata: two\n", 0, 0), 0);
    assert_int_equal(r.n, 1);
    /* only comments and blank lines: nothing */
    assert_int_equal(feed(&r, ":x\n\n\n:y\r\n\r\n", 1, 0), 0);
    assert_int_equal(r.n, 0);
}

static void test_bom(void **state) {
    (void)state;
    rec r;
    assert_int_equal(feed(&r,
                          "\xEF\xBB\xBF"
                          "data: z\n\n",
                          1, 0),
                     0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.data[0], "z");
    assert_int_equal(feed(&r,
                          "\xEF\xBB\xBF"
                          "data: z\n\n",
                          0, 0),
                     0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.data[0], "z");
}

static void test_size_cap(void **state) {
    (void)state;
    rec r;
    char big[400];
    memset(big, 'q', sizeof big);
    memcpy(big, "data: ", 6);
    big[sizeof big - 3] = '\n';
    big[sizeof big - 2] = '\n';
    big[sizeof big - 1] = 0;
    assert_int_equal(feed(&r, big, 0, 100), A2A_SSE_TOO_BIG);
    assert_int_equal(r.n, 0);
    assert_int_equal(feed(&r, big, 7, 100), A2A_SSE_TOO_BIG);
    /* many small lines adding up to a big event */
    char many[2000] = "";
    for (int i = 0; i < 60; i++)
        strcat(many, "data: 0123456789\n");
    strcat(many, "\n");
    assert_int_equal(feed(&r, many, 5, 200), A2A_SSE_TOO_BIG);
    assert_int_equal(feed(&r, many, 5, 4000), 0);
    assert_int_equal(r.n, 1);
}

static void test_stop(void **state) {
    (void)state;
    rec r;
    a2a_sse p;
    memset(&r, 0, sizeof r);
    r.stop_after = 1;
    a2a_sse_init(&p, 0, on_ev, &r);
    assert_int_equal(a2a_sse_feed(&p, "data: 1\n\ndata: 2\n\n", 18), A2A_SSE_STOPPED);
    assert_int_equal(a2a_sse_feed(&p, "data: 3\n\n", 9), A2A_SSE_STOPPED);
    assert_int_equal(r.n, 1);
    a2a_sse_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_every_cut_point),
        cmocka_unit_test(test_crlf_split_is_one_terminator),
        cmocka_unit_test(test_field_forms),
        cmocka_unit_test(test_unterminated_event_dropped),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
