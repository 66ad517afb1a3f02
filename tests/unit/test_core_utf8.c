/* utf8_clean: what submit() does to message text and the router to reply
 * text. Hostile sequences become U+FFFD, one per maximal ill-formed
 * subpart; valid text passes unchanged; the result is always valid UTF-8
 * without NUL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"
#include "utf8_check.h"

#include <stdlib.h>
#include <string.h>

#define R3 "\xef\xbf\xbd" /* U+FFFD */

static void expect(const char *in, size_t len, const char *want) {
    size_t n;
    char *out = utf8_clean_dup(in, len, &n);
    assert_int_equal(n, strlen(want));
    if (memcmp(out, want, n)) fail_msg("got '%s', want '%s'", out, want);
    assert_int_equal(out[n], 0);
    assert_int_equal(utf8_clean(in, len, NULL), n);
    free(out);
}
#define EXPECT(in, want) expect(in, sizeof in - 1, want)

static void valid_text_unchanged(void **state) {
    (void)state;
    EXPECT("hello", "hello");
    EXPECT("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
           "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    EXPECT("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    EXPECT("\xed\x9f\xbf", "\xed\x9f\xbf");         /* U+D7FF, just below the surrogates */
    EXPECT(R3, R3);
    EXPECT("", "");
}

static void overlongs(void **state) {
    (void)state;
    EXPECT("a\xc0\x80z", "a" R3 R3 "z");            /* NUL as two bytes */
    EXPECT("\xc1\xbf", R3 R3);                      /* U+007F in two bytes */
    EXPECT("\xe0\x80\xaf", R3 R3 R3);               /* '/' in three bytes */
    EXPECT("\xf0\x80\x80\xaf", R3 R3 R3 R3);        /* '/' in four bytes */
    EXPECT("\xf8\x88\x80\x80\x80", R3 R3 R3 R3 R3); /* five-byte form */
}

static void surrogates_and_beyond(void **state) {
    (void)state;
    EXPECT("\xed\xa0\x80", R3 R3 R3);        /* U+D800 */
    EXPECT("\xed\xbf\xbfx", R3 R3 R3 "x");   /* U+DFFF */
    EXPECT("\xf4\x90\x80\x80", R3 R3 R3 R3); /* U+110000 */
    EXPECT("\xf5\x80\x80\x80", R3 R3 R3 R3);
    EXPECT("\xff\xfe", R3 R3);
}

static void truncated_and_stray(void **state) {
    (void)state;
    EXPECT("\xf0\x9f\x98", R3);  /* a 4-byte sequence cut at the end */
    EXPECT("\xe2\x82x", R3 "x"); /* cut in the middle: one U+FFFD */
    EXPECT("\xf0\x9f\x98\xf0\x9f\x98\x80", R3 "\xf0\x9f\x98\x80");
    EXPECT("\x80\xbf", R3 R3); /* stray continuation bytes */
    EXPECT("\xc3", R3);
}

static void nul_bytes(void **state) {
    (void)state;
    expect("a\0b\0", 4, "a" R3 "b" R3);
}

static void random_bytes_come_out_valid(void **state) {
    (void)state;
    unsigned char buf[64];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(x % sizeof buf);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* Bias towards the interesting bytes. */
            buf[i] = (x & 3) ? (unsigned char)(0x80 | (x >> 8 & 0x7f)) : (unsigned char)(x >> 16);
        }
        size_t on;
        char *out = utf8_clean_dup((const char *)buf, n, &on);
        if (!utf8_check(out, on)) fail_msg("round %d: invalid output", round);
        /* Valid input is left as it is. */
        if (utf8_check((const char *)buf, n)) assert_memory_equal(out, buf, n);
        free(out);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_text_unchanged),
        cmocka_unit_test(overlongs),
        cmocka_unit_test(surrogates_and_beyond),
        cmocka_unit_test(truncated_and_stray),
        cmocka_unit_test(nul_bytes),
        cmocka_unit_test(random_bytes_come_out_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
