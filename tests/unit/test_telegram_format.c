/*
 * Unit tests: Markdown replies rendered to text + Telegram entities, and
 * split into parts that keep their formatting. Each construct is checked
 * for its exact text and entities; a property test feeds random Markdown
 * and checks every part against tg_entity_check (Telegram's rules).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "telegram_format.h"
#include "telegram_parse.h"
#include "tg_entity_check.h"

/* Renders md as one part and checks its text and entities (JSON). */
static void expect(const char *md, const char *text, const char *ents) {
    tg_part *p = NULL;
    size_t n = tg_format(md, strlen(md), 1, 4096, &p);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].text, text);
    char *j = tg_entities_json(&p[0]);
    if (!ents) {
        if (j) fprintf(stderr, "unexpected entities %s\n", j);
        assert_null(j);
    } else {
        assert_non_null(j);
        assert_string_equal(j, ents);
    }
    assert_null(tgc_check(p[0].text, p[0].len, j, 4096));
    free(j);
    tg_parts_free(p, n);
}

static void test_inline(void **state) {
    (void)state;
    expect("plain text", "plain text", NULL);
    expect("a **bold** b", "a bold b", "[{\"type\":\"bold\",\"offset\":2,\"length\":4}]");
    expect("a __bold__ b", "a bold b", "[{\"type\":\"bold\",\"offset\":2,\"length\":4}]");
    expect("*it* and _it_", "it and it",
           "[{\"type\":\"italic\",\"offset\":0,\"length\":2},"
           "{\"type\":\"italic\",\"offset\":7,\"length\":2}]");
    expect("~~gone~~", "gone", "[{\"type\":\"strikethrough\",\"offset\":0,\"length\":4}]");
    expect("run `ls -l` now", "run ls -l now", "[{\"type\":\"code\",\"offset\":4,\"length\":5}]");
    expect("***both***", "both",
           "[{\"type\":\"italic\",\"offset\":0,\"length\":4},"
           "{\"type\":\"bold\",\"offset\":0,\"length\":4}]");
    /* Intraword underscores stay text. */
    expect("snake_case_name", "snake_case_name", NULL);
}

static void test_links(void **state) {
    (void)state;
    expect("see [the docs](https://example.com/a?b=1&c=2)", "see the docs",
           "[{\"type\":\"text_link\",\"offset\":4,\"length\":8,"
           "\"url\":\"https://example.com/a?b=1&c=2\"}]");
    /* A link with bold inside: bold may be part of a link. */
    expect("[**x** y](http://e.org)", "x y",
           "[{\"type\":\"text_link\",\"offset\":0,\"length\":3,\"url\":\"http://e.org\"},"
           "{\"type\":\"bold\",\"offset\":0,\"length\":1}]");
    /* Code inside a link: the link wins (links cannot contain code). */
    expect("[`f()`](https://e.org)", "f()",
           "[{\"type\":\"text_link\",\"offset\":0,\"length\":3,\"url\":\"https://e.org\"}]");
    /* Links Telegram would refuse or that lead nowhere stay text. */
    expect("[rel](/path) [js](javascript:alert(1)) [x](http:///)", "rel js x", NULL);
    /* Images become links to the image; without alt text the address shows. */
    expect("![a cat](https://i.example/cat.png)", "a cat",
           "[{\"type\":\"text_link\",\"offset\":0,\"length\":5,"
           "\"url\":\"https://i.example/cat.png\"}]");
    /* An autolink stays a link with its address as text. */
    expect("<https://e.org/x>", "https://e.org/x",
           "[{\"type\":\"text_link\",\"offset\":0,\"length\":15,\"url\":\"https://e.org/x\"}]");
}

static void test_code_blocks(void **state) {
    (void)state;
    expect("```python\ndef f():\n    return 1\n```", "def f():\n    return 1",
           "[{\"type\":\"pre\",\"offset\":0,\"length\":21,\"language\":\"python\"}]");
    expect("text\n\n```\nno lang\n```\n\nafter", "text\n\nno lang\n\nafter",
           "[{\"type\":\"pre\",\"offset\":6,\"length\":7}]");
    /* Indented code blocks are pre without a language. */
    expect("    x = 1", "x = 1", "[{\"type\":\"pre\",\"offset\":0,\"length\":5}]");
    /* A strange info string is no language. */
    expect("```a b c\nx\n```", "x",
           "[{\"type\":\"pre\",\"offset\":0,\"length\":1,\"language\":\"a\"}]");
    expect("```<bad>\nx\n```", "x", "[{\"type\":\"pre\",\"offset\":0,\"length\":1}]");
    /* Markup inside code is text. */
    expect("```\n**not bold**\n```", "**not bold**",
           "[{\"type\":\"pre\",\"offset\":0,\"length\":12}]");
}

static void test_blocks(void **state) {
    (void)state;
    expect("# Title\n\nbody", "Title\n\nbody", "[{\"type\":\"bold\",\"offset\":0,\"length\":5}]");
    expect("Setext\n===", "Setext", "[{\"type\":\"bold\",\"offset\":0,\"length\":6}]");
    expect("> quoted **b**\n> line two", "quoted b\nline two",
           "[{\"type\":\"blockquote\",\"offset\":0,\"length\":17},"
           "{\"type\":\"bold\",\"offset\":7,\"length\":1}]");
    /* Nested quotes are one blockquote (Telegram does not nest them). */
    expect("> a\n>> b", "a\n\nb", "[{\"type\":\"blockquote\",\"offset\":0,\"length\":4}]");
    expect("- one\n- two\n  - deep\n- three",
           "\xE2\x80\xA2 one\n\xE2\x80\xA2 two\n  "
           "\xE2\x97\xA6 deep\n\xE2\x80\xA2 three",
           NULL);
    expect("3. c\n4. d", "3. c\n4. d", NULL);
    expect("1) x\n2) y", "1) x\n2) y", NULL);
    expect("- [ ] todo\n- [x] done", "\xE2\x98\x90 todo\n\xE2\x98\x91 done", NULL);
    /* Loose list: items apart; continuation paragraphs indented. */
    expect("1. a\n\n   more\n2. b", "1. a\n\n   more\n\n2. b", NULL);
    expect("a\n\n---\n\nb", "a\n\n\xE2\x80\x94\xE2\x80\x94\xE2\x80\x94\n\nb", NULL);
    expect("| h | i |\n|---|---|\n| 1 | `2` |", "h | i\n1 | 2",
           "[{\"type\":\"bold\",\"offset\":0,\"length\":1},"
           "{\"type\":\"bold\",\"offset\":4,\"length\":1},"
           "{\"type\":\"code\",\"offset\":10,\"length\":1}]");
    /* Soft line breaks stay line breaks; hard ones too. */
    expect("line one\nline two  \nthree", "line one\nline two\nthree", NULL);
}

static void test_text_details(void **state) {
    (void)state;
    /* Entity references decode; unknown ones stay as written. */
    expect("a &amp; b &lt;x&gt; &#233; &#x1F600; &bogus;",
           "a & b <x> \xC3\xA9 \xF0\x9F\x98\x80 &bogus;", NULL);
    expect("&#0; &#xD800;", "\xEF\xBF\xBD \xEF\xBF\xBD", NULL);
    /* Offsets are UTF-16 units: an emoji counts two. */
    expect("\xF0\x9F\x98\x80 **b**", "\xF0\x9F\x98\x80 b",
           "[{\"type\":\"bold\",\"offset\":3,\"length\":1}]");
    /* Bold around code is cut around it (bold may not contain code). */
    expect("**a `b` c**", "a b c",
           "[{\"type\":\"bold\",\"offset\":0,\"length\":2},"
           "{\"type\":\"code\",\"offset\":2,\"length\":1},"
           "{\"type\":\"bold\",\"offset\":3,\"length\":2}]");
    expect("**`only`**", "only", "[{\"type\":\"code\",\"offset\":0,\"length\":4}]");
    /* Carriage returns vanish, control characters become spaces. */
    expect("a\r\nb\x01"
           "c",
           "a\nb c", NULL);
    /* Raw HTML shows as written. */
    expect("<b>x</b>", "<b>x</b>", NULL);
    /* Nothing visible: the source is sent as it is. */
    expect("[](https://e.org)", "[](https://e.org)", NULL);
}

static void test_plain(void **state) {
    (void)state;
    const char *md = "**not** _rendered_\n\n";
    tg_part *p = NULL;
    size_t n = tg_format(md, strlen(md), 0, 4096, &p);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].text, md);
    assert_int_equal(p[0].nents, 0);
    assert_null(tg_entities_json(&p[0]));
    tg_parts_free(p, n);
    assert_int_equal(tg_format("", 0, 1, 4096, &p), 0);
    assert_null(p);
}

/* Every part passes the checker and fits; returns the count. */
static size_t check_parts(const tg_part *p, size_t n, size_t max) {
    for (size_t i = 0; i < n; i++) {
        char *j = tg_entities_json(&p[i]);
        const char *why = tgc_check(p[i].text, p[i].len, j, max);
        if (why) fprintf(stderr, "part %zu refused: %s\n%s\n%s\n", i, why, p[i].text, j ? j : "");
        assert_null(why);
        assert_true(tg_utf16_len(p[i].text, p[i].len) <= max);
        free(j);
    }
    return n;
}

static void test_split_code_block(void **state) {
    (void)state;
    /* A 300-line code block in parts of at most 1000 units: every part is
     * one pre entity with the language, covering the whole part. */
    size_t cap = 64 * 1024, len = 0;
    char *md = malloc(cap);
    len += (size_t)snprintf(md + len, cap - len, "Intro **bold**\n\n```c\n");
    for (int i = 0; i < 300; i++)
        len +=
            (size_t)snprintf(md + len, cap - len, "int v%03d = %d; /* \xF0\x9F\x98\x80 */\n", i, i);
    len += (size_t)snprintf(md + len, cap - len, "```\n\nOutro *it*");
    tg_part *p = NULL;
    size_t n = tg_format(md, len, 1, 1000, &p);
    assert_true(n >= 7);
    check_parts(p, n, 1000);
    assert_string_equal(p[0].ents[0].arg ? "" : "bold", "bold");
    for (size_t i = 1; i + 1 < n; i++) {
        assert_int_equal(p[i].nents, 1);
        assert_int_equal(p[i].ents[0].type, TG_ENT_PRE);
        assert_string_equal(p[i].ents[0].arg, "c");
        assert_int_equal(p[i].ents[0].off, 0);
        assert_int_equal(p[i].ents[0].len, tg_utf16_len(p[i].text, p[i].len));
        /* Cut at line ends: each part starts with a whole line. */
        assert_memory_equal(p[i].text, "int v", 5);
    }
    /* The last part ends the block and carries the italic outro. */
    const tg_part *last = &p[n - 1];
    assert_int_equal(last->ents[last->nents - 1].type, TG_ENT_ITALIC);
    /* All the code made it, once, in order. */
    int next = 0;
    for (size_t i = 0; i < n; i++)
        for (const char *s = p[i].text; (s = strstr(s, "int v")); s++) {
            assert_int_equal(atoi(s + 5), next);
            next++;
        }
    assert_int_equal(next, 300);
    tg_parts_free(p, n);
    free(md);
}

static void test_split_entities(void **state) {
    (void)state;
    /* A long bold run and a long link are cut and re-based per part. */
    size_t cap = 32 * 1024, len = 0;
    char *md = malloc(cap);
    len += (size_t)snprintf(md + len, cap - len, "**");
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(md + len, cap - len, "word%d ", i);
    len += (size_t)snprintf(md + len, cap - len, "end**");
    tg_part *p = NULL;
    size_t n = tg_format(md, len, 1, 300, &p);
    assert_true(n >= 4);
    check_parts(p, n, 300);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(p[i].nents, 1);
        assert_int_equal(p[i].ents[0].type, TG_ENT_BOLD);
        assert_int_equal(p[i].ents[0].off, 0);
        assert_int_equal(p[i].ents[0].len, tg_utf16_len(p[i].text, p[i].len));
    }
    tg_parts_free(p, n);
    free(md);
}

/* Deep nesting cannot blow the output up: indentation stops growing, and
 * bold around many code spans is cut in linear time. */
static void test_bounded_output(void **state) {
    (void)state;
    size_t cap = 256 * 1024, len = 0;
    char *md = malloc(cap);
    for (int i = 0; i < 10000; i++)
        len += (size_t)snprintf(md + len, cap - len, "- ");
    len += (size_t)snprintf(md + len, cap - len, "x");
    for (int i = 0; i < 10000; i++)
        len += (size_t)snprintf(md + len, cap - len, "\ny");
    tg_part *p = NULL;
    size_t n = tg_format(md, len, 1, 4096, &p);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += p[i].len;
    check_parts(p, n, 4096);
    assert_true(total > 0);
    assert_true(total < 30 * len);
    tg_parts_free(p, n);
    len = (size_t)snprintf(md, cap, "**");
    for (int i = 0; i < 20000; i++)
        len += (size_t)snprintf(md + len, cap - len, "a `b` ");
    len += (size_t)snprintf(md + len, cap - len, "end**");
    n = tg_format(md, len, 1, 4096, &p);
    size_t ents = 0;
    for (size_t i = 0; i < n; i++)
        ents += p[i].nents;
    check_parts(p, n, 4096);
    assert_true(ents >= 40000);
    tg_parts_free(p, n);
    free(md);
}

/* Deterministic xorshift so failures reproduce. */
static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void gen(char *buf, size_t cap, size_t *len) {
    static const char *const atoms[] = {"**",
                                        "*",
                                        "_",
                                        "__",
                                        "~~",
                                        "`",
                                        "```",
                                        "```py\n",
                                        "\n```\n",
                                        "> ",
                                        "\n> ",
                                        "- ",
                                        "\n- ",
                                        "1. ",
                                        "\n2) ",
                                        "# ",
                                        "\n## ",
                                        "[",
                                        "](",
                                        ")",
                                        "](https://e.org/x)",
                                        "![",
                                        "<https://a.b>",
                                        "\n",
                                        "\n\n",
                                        "  ",
                                        "    ",
                                        "word",
                                        "text ",
                                        "\xF0\x9F\x98\x80",
                                        "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
                                        "\xE4\xBD\xA0\xE5\xA5\xBD",
                                        "e\xCC\x81",
                                        "&amp;",
                                        "&#x1F600;",
                                        "<b>",
                                        "</b>",
                                        "|",
                                        "\n|---|---|\n",
                                        "---\n",
                                        "\\*",
                                        "\t",
                                        "- [x] ",
                                        "\r\n",
                                        "  \n"};
    size_t n = 0;
    size_t count = 1 + rnd(rnd(8) == 0 ? 2000 : 120);
    for (size_t i = 0; i < count; i++) {
        const char *a = atoms[rnd(sizeof atoms / sizeof atoms[0])];
        size_t l = strlen(a);
        if (n + l >= cap) break;
        memcpy(buf + n, a, l);
        n += l;
    }
    *len = n;
}

static void test_random_property(void **state) {
    (void)state;
    rng_state = 0x9E3779B97F4A7C15ULL;
    static const size_t limits[] = {16, 17, 40, 100, 333, 1000, 4096};
    size_t cap = 64 * 1024;
    char *buf = malloc(cap);
    size_t parts = 0, ents = 0;
    for (int c = 0; c < 3000; c++) {
        size_t len;
        gen(buf, cap, &len);
        size_t max = limits[rnd(sizeof limits / sizeof limits[0])];
        tg_part *p = NULL;
        size_t n = tg_format(buf, len, 1, max, &p);
        if (!tg_is_blank(buf, len)) assert_true(n > 0);
        check_parts(p, n, max);
        parts += n;
        for (size_t i = 0; i < n; i++)
            ents += p[i].nents;
        tg_parts_free(p, n);
    }
    /* The generator does exercise splitting and formatting. */
    assert_true(parts > 6000);
    assert_true(ents > 10000);
    free(buf);
}

/* The checker itself refuses what Telegram refuses. */
static void test_checker(void **state) {
    (void)state;
    const char *t = "ab\xF0\x9F\x98\x80"
                    "cd"; /* 6 units */
    assert_null(tgc_check(t, strlen(t), "[{\"type\":\"bold\",\"offset\":2,\"length\":2}]", 10));
    assert_non_null(tgc_check(t, strlen(t), "[{\"type\":\"bold\",\"offset\":3,\"length\":1}]", 10));
    assert_non_null(tgc_check(t, strlen(t), "[{\"type\":\"bold\",\"offset\":1,\"length\":2}]", 10));
    assert_non_null(tgc_check(t, strlen(t), "[{\"type\":\"bold\",\"offset\":5,\"length\":2}]", 10));
    assert_non_null(tgc_check(t, strlen(t), "[{\"type\":\"bold\",\"offset\":0,\"length\":0}]", 10));
    assert_non_null(tgc_check(t, strlen(t), NULL, 5));
    assert_non_null(tgc_check(" \n", 2, NULL, 5));
    /* Overlap, code in bold, bold in code, nested quotes, link in link. */
    assert_non_null(tgc_check("abcdef", 6,
                              "[{\"type\":\"bold\",\"offset\":0,\"length\":3},"
                              "{\"type\":\"italic\",\"offset\":2,\"length\":3}]",
                              10));
    assert_non_null(tgc_check("abcdef", 6,
                              "[{\"type\":\"bold\",\"offset\":0,\"length\":5},"
                              "{\"type\":\"code\",\"offset\":1,\"length\":2}]",
                              10));
    assert_non_null(tgc_check("abcdef", 6,
                              "[{\"type\":\"pre\",\"offset\":0,\"length\":5},"
                              "{\"type\":\"italic\",\"offset\":1,\"length\":2}]",
                              10));
    assert_non_null(tgc_check("abcdef", 6,
                              "[{\"type\":\"blockquote\",\"offset\":0,\"length\":5},"
                              "{\"type\":\"blockquote\",\"offset\":1,\"length\":2}]",
                              10));
    assert_non_null(tgc_check("abcdef", 6,
                              "[{\"type\":\"text_link\",\"offset\":0,\"length\":5,\"url\":\"x\"},"
                              "{\"type\":\"code\",\"offset\":1,\"length\":2}]",
                              10));
    assert_non_null(
        tgc_check("abcdef", 6, "[{\"type\":\"text_link\",\"offset\":0,\"length\":5}]", 10));
    assert_null(tgc_check("abcdef", 6,
                          "[{\"type\":\"blockquote\",\"offset\":0,\"length\":6},"
                          "{\"type\":\"pre\",\"offset\":1,\"length\":2},"
                          "{\"type\":\"bold\",\"offset\":3,\"length\":3},"
                          "{\"type\":\"text_link\",\"offset\":4,\"length\":2,\"url\":\"x\"}]",
                          10));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline),           cmocka_unit_test(test_links),
        cmocka_unit_test(test_code_blocks),      cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_text_details),     cmocka_unit_test(test_plain),
        cmocka_unit_test(test_split_code_block), cmocka_unit_test(test_split_entities),
        cmocka_unit_test(test_bounded_output),   cmocka_unit_test(test_random_property),
        cmocka_unit_test(test_checker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
