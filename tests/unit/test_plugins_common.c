/* The code plugins share (plugins/common): string buffer, back-off, hash
 * mix, URL check, curl handle pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backoff.h"
#include "curl_pool.h"
#include "hash_mix.h"
#include "sbuf.h"
#include "url_check.h"

static void sbuf_grows_and_hands_over(void **state) {
    (void)state;
    sbuf b = {0};
    for (int i = 0; i < 1000; i++)
        sbuf_printf(&b, "%03d,", i);
    sbuf_putc(&b, '!');
    size_t len = 0;
    char *s = sbuf_take(&b, &len);
    assert_non_null(s);
    assert_int_equal(len, 4001);
    assert_int_equal(strlen(s), 4001);
    assert_memory_equal(s, "000,001,", 8);
    assert_memory_equal(s + 3996, "999,!", 5);
    free(s);
    assert_null(b.p); /* taken: the buffer starts over */
    assert_int_equal(b.len, 0);
    sbuf_free(&b);
}

static void sbuf_i64_prints_as_printf(void **state) {
    (void)state;
    const long long v[] = {0,         7,         -7,           10,
                           -10,       999999999, 1000000000,   9007199254740993LL,
                           LLONG_MAX, LLONG_MIN, LLONG_MIN + 1};
    sbuf b = {0};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        char want[40];
        snprintf(want, sizeof want, "[%lld]", v[i]);
        sbuf_reset(&b);
        sbuf_putc(&b, '[');
        sbuf_i64(&b, v[i]);
        sbuf_putc(&b, ']');
        assert_string_equal(b.p, want);
    }
    sbuf_free(&b);
}

static void sbuf_json_escapes_and_repairs(void **state) {
    (void)state;
    sbuf b = {0};
    sbuf_json_str(&b, "a\"b\\c\n\x01");
    assert_string_equal(b.p, "\"a\\\"b\\\\c\\n\\u0001\"");
    sbuf_reset(&b);
    sbuf_json_strn(&b,
                   "x\xff"
                   "y",
                   3); /* invalid byte: U+FFFD */
    assert_string_equal(b.p, "\"x\xef\xbf\xbdy\"");
    sbuf_reset(&b);
    sbuf_json_str(&b, NULL);
    assert_string_equal(b.p, "null");
    sbuf_free(&b);
    assert_int_equal(utf8_seq((const unsigned char *)"\xc3\xa9", 2), 2);
    assert_int_equal(utf8_seq((const unsigned char *)"\xc0\xaf", 2), 0);     /* overlong */
    assert_int_equal(utf8_seq((const unsigned char *)"\xed\xa0\x80", 3), 0); /* surrogate */
    assert_int_equal(utf8_seq((const unsigned char *)"\xe2\x82", 2), 0);     /* cut short */
}

static void backoff_doubles_caps_and_jitters(void **state) {
    (void)state;
    /* rnd 0 gives the low end d/2; rnd d/2 gives d itself. */
    assert_int_equal(backoff_jitter_ms(250, 30000, 0, 0), 125);
    assert_int_equal(backoff_jitter_ms(250, 30000, 0, 125), 250);
    assert_int_equal(backoff_jitter_ms(250, 30000, 1, 0), 250);
    assert_int_equal(backoff_jitter_ms(250, 30000, 3, 1000), 2000);
    /* Capped, however many attempts. */
    assert_int_equal(backoff_jitter_ms(250, 30000, 8, 15000), 30000);
    assert_int_equal(backoff_jitter_ms(250, 30000, 1000000, 0), 15000);
    /* Every rnd lands inside [d/2, d]. */
    for (uint64_t r = 0; r < 5000; r += 7) {
        int64_t d = backoff_jitter_ms(1000, 60000, 2, hash_mix64(r));
        assert_true(d >= 2000 && d <= 4000);
    }
    /* Nothing to wait: no division by zero. */
    assert_int_equal(backoff_jitter_ms(1, 1, 0, 12345), 0);
    assert_int_equal(backoff_jitter_ms(0, 0, 5, 12345), 0);
}

static void hash_known_values(void **state) {
    (void)state;
    assert_true(hash_mix64(0) == 0);
    assert_true(hash_mix64(1) != hash_mix64(2));
    /* Neighbours differ in their low bits, which tables index by. */
    unsigned seen = 0;
    for (uint64_t k = 0; k < 16; k++)
        seen |= 1u << (hash_mix64(k) & 15);
    assert_true(__builtin_popcount(seen) >= 8);
    /* FNV-1a reference values. */
    assert_true(hash_fnv1a(HASH_FNV1A_SEED, "", 0) == 0xcbf29ce484222325ULL);
    assert_true(hash_fnv1a(HASH_FNV1A_SEED, "a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(hash_fnv1a(HASH_FNV1A_SEED, "foobar", 6) == 0x85944171f73967e8ULL);
    /* Continuing from a prefix's hash is hashing the whole. */
    assert_true(hash_fnv1a(hash_fnv1a(HASH_FNV1A_SEED, "foo", 3), "bar", 3) ==
                hash_fnv1a(HASH_FNV1A_SEED, "foobar", 6));
}

static void url_http_only(void **state) {
    (void)state;
    assert_true(url_is_http("http://example.org"));
    assert_true(url_is_http("https://example.org/x"));
    assert_true(url_is_http("HTTPS://example.org"));
    assert_false(url_is_http("ftp://example.org"));
    assert_false(url_is_http("https:/example.org"));
    assert_false(url_is_http("example.org"));
    assert_false(url_is_http(""));
    assert_false(url_is_http(NULL));
}

static void pool_reuses_last_returned(void **state) {
    (void)state;
    easy_pool p;
    easy_pool_init(&p, 2);
    CURL *a = easy_pool_get(&p), *b = easy_pool_get(&p), *c = easy_pool_get(&p);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a != b && b != c && a != c);
    easy_pool_put(&p, a);
    easy_pool_put(&p, b);
    easy_pool_put(&p, c); /* full: cleaned up, not kept */
    easy_pool_put(&p, NULL);
    assert_int_equal(p.n, 2);
    assert_ptr_equal(easy_pool_get(&p), b); /* the warmest first */
    assert_ptr_equal(easy_pool_get(&p), a);
    CURL *d = easy_pool_get(&p); /* empty: a new one */
    assert_non_null(d);
    easy_pool_put(&p, a);
    easy_pool_put(&p, b);
    curl_easy_cleanup(d);
    easy_pool_destroy(&p); /* the idle ones go with it (ASan sees leaks) */
    assert_null(p.idle);
    assert_false(p.ready);
    easy_pool_init(&p, 0); /* keeps nothing */
    easy_pool_put(&p, easy_pool_get(&p));
    assert_int_equal(p.n, 0);
    easy_pool_destroy(&p);
    easy_pool zero = {0};
    easy_pool_destroy(&zero); /* never initialised: nothing to do */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sbuf_grows_and_hands_over),
        cmocka_unit_test(sbuf_i64_prints_as_printf),
        cmocka_unit_test(sbuf_json_escapes_and_repairs),
        cmocka_unit_test(backoff_doubles_caps_and_jitters),
        cmocka_unit_test(hash_known_values),
        cmocka_unit_test(url_http_only),
        cmocka_unit_test(pool_reuses_last_returned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
