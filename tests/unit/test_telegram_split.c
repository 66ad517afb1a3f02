/* Unit tests: splitting long replies by UTF-16 code units. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "telegram_parse.h"

/* Whether s[0..n) is valid UTF-8 on its own (no cut sequence). */
static int valid_utf8(const char *s, size_t n) {
    size_t out;
    char *c = tg_utf8_sanitize(s, n, &out);
    int ok = out == n && memcmp(c, s, n) == 0;
    free(c);
    return ok;
}

/* Checks the invariants of a split and returns the chunk count. For
 * invalid input, chunks repaired one by one must equal the repaired whole
 * (no valid sequence was cut). */
static size_t check_split_ex(const char *text, size_t len, size_t max, int strict) {
    tg_chunk *ch = NULL;
    size_t n = tg_split(text, len, max, &ch);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ch[i].off, pos);
        assert_true(ch[i].len > 0);
        assert_true(tg_utf16_len(text + ch[i].off, ch[i].len) <= max);
        if (strict) assert_true(valid_utf8(text + ch[i].off, ch[i].len));
        pos += ch[i].len;
    }
    assert_int_equal(pos, len);
    if (!strict) {
        size_t wl, acc = 0;
        char *whole = tg_utf8_sanitize(text, len, &wl);
        for (size_t i = 0; i < n; i++) {
            size_t cl;
            char *c = tg_utf8_sanitize(text + ch[i].off, ch[i].len, &cl);
            assert_true(acc + cl <= wl);
            assert_memory_equal(whole + acc, c, cl);
            acc += cl;
            free(c);
        }
        assert_int_equal(acc, wl);
        free(whole);
    }
    free(ch);
    return n;
}

static size_t check_split(const char *text, size_t len, size_t max) {
    return check_split_ex(text, len, max, 1);
}

static void test_trivial(void **state) {
    (void)state;
    tg_chunk *ch = (tg_chunk *)1;
    assert_int_equal(tg_split("", 0, 4096, &ch), 0);
    assert_null(ch);
    assert_int_equal(check_split("hello", 5, 4096), 1);
    assert_int_equal(check_split("hello", 5, 5), 1);
    assert_int_equal(check_split("hello!", 6, 5), 2);
}

static size_t first_len(const char *text, size_t max) {
    tg_chunk *ch = NULL;
    size_t n = tg_split(text, strlen(text), max, &ch);
    size_t l = n ? ch[0].len : 0;
    free(ch);
    return l;
}

static void test_boundaries(void **state) {
    (void)state;
    /* Paragraph beats line beats sentence beats word, when in the later
     * half of the window. */
    const char *t = "aaaa aaaa\naaaa. aaaa aa\n\nbbbb bbbb bbbb";
    assert_int_equal(first_len(t, 30), strlen("aaaa aaaa\naaaa. aaaa aa\n\n"));
    t = "aaaa aaaa aaaa. aaaa aa\nbbbb bbbb bbbb";
    assert_int_equal(first_len(t, 30), strlen("aaaa aaaa aaaa. aaaa aa\n"));
    t = "aaaa aaaa aaaa. aaaa aa bbbb bbbb bbbb";
    assert_int_equal(first_len(t, 30), strlen("aaaa aaaa aaaa. "));
    t = "aaaa aaaa aaaa aaaa aaaa bbbb bbbb bbbb";
    assert_int_equal(first_len(t, 30), strlen("aaaa aaaa aaaa aaaa aaaa bbbb "));
    /* A paragraph break too early (first half) is not worth a tiny chunk. */
    t = "a\n\nbbbbbbbbbbbbbbbbbbbbbbbbbbbb cccccccccc";
    assert_int_equal(first_len(t, 40), strlen("a\n\nbbbbbbbbbbbbbbbbbbbbbbbbbbbb "));
    /* CJK sentence ends count as boundaries. */
    t = "这是第一个句子。这是第二个句子。这是第三个句子。";
    size_t l = first_len(t, 20);
    assert_true(l > 0 && l % 3 == 0);
    assert_memory_equal(t + l - 3, "。", 3);
    /* No boundary at all: hard cut, at a code point. */
    assert_int_equal(first_len("abcdefghijklmnopqrstuvwxyz", 10), 10);
}

static void test_surrogates_and_clusters(void **state) {
    (void)state;
    /* 😀 is 2 UTF-16 units: with an odd limit a chunk holds fewer, never
     * half of one. */
    char buf[4 * 100 + 1] = "";
    for (int i = 0; i < 100; i++)
        strcat(buf, "😀");
    tg_chunk *ch = NULL;
    size_t n = tg_split(buf, strlen(buf), 7, &ch);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ch[i].len % 4, 0);
        assert_true(tg_utf16_len(buf + ch[i].off, ch[i].len) <= 7);
    }
    free(ch);
    check_split(buf, strlen(buf), 7);

    /* A ZWJ family (👨‍👩‍👧 = 8 units) is not split when it fits. */
    const char *fam = "👨‍👩‍👧";
    char text[512] = "xxxxxxxxxx";
    strcat(text, fam);
    strcat(text, fam);
    size_t first = first_len(text, 14);
    assert_int_equal(first, 10); /* the family does not fit after 10 x: cut before it */
    /* e + combining acute stays together. */
    const char *comb = "aaaaaaae\xCC\x81zzzz";
    assert_int_equal(first_len(comb, 8), 7);
    /* Flags are pairs of regional indicators (4 units each flag). */
    const char *flags = "🇩🇪🇫🇷🇯🇵🇧🇷";
    tg_chunk *fc = NULL;
    size_t fn = tg_split(flags, strlen(flags), 6, &fc);
    for (size_t i = 0; i < fn; i++)
        assert_int_equal(fc[i].len % 8, 0);
    free(fc);
}

static uint32_t rnd(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void test_random_property(void **state) {
    (void)state;
    static const char *const parts[] = {
        "word ", "longerword ", "\n", "\n\n", "。", "中文字符", "😀",       "👨‍👩‍👧",
        "é",     "e\xCC\x81",   ". ", "🇯🇵",   "\t", "!",        "العربية", "\xF0\x9F\x8F\xBD",
        "x",     "𝔘𝔫𝔦",         "  ", "\r\n", "—",  "ok? ",     "ｶﾀｶﾅ",    "\xEF\xB8\x8F"};
    size_t np = sizeof parts / sizeof parts[0];
    uint32_t seed = 0x12345678;
    static const size_t maxes[] = {16, 17, 31, 64, 100, 257, 4096};
    for (int round = 0; round < 300; round++) {
        size_t cap = 20000, len = 0;
        char *text = malloc(cap + 64);
        size_t want = rnd(&seed) % cap;
        while (len < want) {
            const char *p = parts[rnd(&seed) % np];
            size_t pl = strlen(p);
            memcpy(text + len, p, pl);
            len += pl;
        }
        text[len] = 0;
        for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++)
            check_split(text, len, maxes[m]);
        free(text);
    }
    /* Invalid bytes count one unit each and still partition the input. */
    const char bad[] = "ab\xFF\xFE\xC3(\xE2\x82 cd\xF0\x9F\x98";
    for (size_t m = 2; m < 8; m++)
        check_split_ex(bad, sizeof bad - 1, m, 0);
}

static void test_ten_thousand(void **state) {
    (void)state;
    /* The shape of the integration test: 10,000 characters of mixed text. */
    size_t cap = 64 * 1024, len = 0;
    char *text = malloc(cap);
    const char *unit[] = {"Hello world, ", "你好世界。", "😀🎉 ", "Ünïcödé ", "\n"};
    size_t chars = 0, k = 0;
    static const size_t unit_chars[] = {13, 5, 3, 8, 1};
    while (chars < 10000) {
        size_t i = k++ % 5;
        strcpy(text + len, unit[i]);
        len += strlen(unit[i]);
        chars += unit_chars[i];
    }
    size_t n = check_split(text, len, 4096);
    assert_true(n >= 3);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trivial),
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_surrogates_and_clusters),
        cmocka_unit_test(test_random_property),
        cmocka_unit_test(test_ten_thousand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
