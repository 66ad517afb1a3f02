/* env_expand, dotenv_parse_line and dotenv_load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle))) fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle)); \
    } while (0)

static int setup_env(void **state) {
    (void)state;
    setenv("RT_A", "alpha", 1);
    setenv("RT_B", "beta", 1);
    setenv("RT_EMPTY", "", 1);
    unsetenv("RT_UNSET");
    return 0;
}

/* Expands text that must succeed and compares the result. */
static void expands_to(const char *in, const char *want) {
    char *bad = (char *)"sentinel";
    char *out = env_expand(in, &bad);
    if (!out) fail_msg("env_expand(\"%s\") failed: %s", in, bad ? bad : "(null)");
    assert_null(bad);
    assert_string_equal(out, want);
    free(out);
}

/* Expands text that must fail; returns the malloc()ed *bad. */
static char *expand_fails(const char *in) {
    char *bad = NULL;
    char *out = env_expand(in, &bad);
    if (out) fail_msg("env_expand(\"%s\") gave \"%s\"", in, out);
    assert_non_null(bad);
    return bad;
}

static void expand_plain_variables(void **state) {
    (void)state;
    expands_to("", "");
    expands_to("no variables here", "no variables here");
    expands_to("${RT_A}", "alpha");
    expands_to("x${RT_A}y", "xalphay");
    expands_to("${RT_A}${RT_B}", "alphabeta");
    expands_to("a ${RT_A} b ${RT_B} c ${RT_A}", "a alpha b beta c alpha");
    /* Set but empty, without a default: the empty value. */
    expands_to("[${RT_EMPTY}]", "[]");
}

static void expand_defaults(void **state) {
    (void)state;
    expands_to("${RT_UNSET:-dflt}", "dflt");
    expands_to("${RT_EMPTY:-dflt}", "dflt");
    expands_to("${RT_A:-dflt}", "alpha");
    expands_to("${RT_UNSET:-}", "");
    expands_to("http://${RT_UNSET:-127.0.0.1:9464}/x", "http://127.0.0.1:9464/x");
    expands_to("${RT_UNSET:-with spaces and : - chars}", "with spaces and : - chars");
    expands_to("${RT_UNSET:-a}${RT_B:-b}${RT_EMPTY:-c}", "abetac");
}

static void expand_undefined(void **state) {
    (void)state;
    char *bad = expand_fails("x ${RT_UNSET} y");
    assert_string_equal(bad, "RT_UNSET");
    free(bad);
    /* The first undefined one is named, even after good ones. */
    bad = expand_fails("${RT_A}${RT_UNSET_2}${RT_UNSET}");
    assert_string_equal(bad, "RT_UNSET_2");
    free(bad);
}

static void expand_dollars(void **state) {
    (void)state;
    expands_to("$$", "$");
    expands_to("cost: $$5", "cost: $5");
    expands_to("$${RT_A}", "${RT_A}");
    expands_to("$$${RT_A}", "$alpha");
    expands_to("$$$${RT_A}", "$${RT_A}"); /* two literal dollars, then plain text */
    expands_to("$RT_A", "$RT_A");         /* only the braced form expands */
    expands_to("a$", "a$");
    expands_to("$ {RT_A}", "$ {RT_A}");
    expands_to("price $5 {x}", "price $5 {x}");
}

static void expand_syntax_errors(void **state) {
    (void)state;
    const char *in[] = {"${RT_A", "x ${RT_A:-dflt", "${", "${}", "${1ABC}", "${RT_A!}", "${-x}"};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        char *bad = expand_fails(in[i]);
        /* Syntax problems start with a blank so callers can tell them from names. */
        if (bad[0] != ' ') fail_msg("\"%s\": message \"%s\" is not a syntax error", in[i], bad);
        free(bad);
    }
    char *bad = expand_fails("${RT_A");
    assert_contains(bad, "unterminated");
    free(bad);
}

/* Parses one dotenv line that must give key=val (frees before failing). */
static void line_is(const char *line, const char *key, const char *val) {
    char *k = NULL, *v = NULL;
    int r = dotenv_parse_line(line, &k, &v);
    char got[512];
    snprintf(got, sizeof got, "rc %d, key \"%s\", value \"%s\"", r, k ? k : "(null)",
             v ? v : "(null)");
    bool ok = r == 1 && !strcmp(k, key) && !strcmp(v, val);
    free(k);
    free(v);
    if (!ok) fail_msg("dotenv_parse_line(\"%s\"): %s; want \"%s\" = \"%s\"", line, got, key, val);
}

static void line_rc(const char *line, int want) {
    char *k = NULL, *v = NULL;
    int r = dotenv_parse_line(line, &k, &v);
    if (r != want) fail_msg("dotenv_parse_line(\"%s\") = %d, want %d", line, r, want);
    if (r == 1) {
        free(k);
        free(v);
    } else {
        assert_null(k);
        assert_null(v);
    }
}

static void dotenv_simple(void **state) {
    (void)state;
    line_is("FOO=bar", "FOO", "bar");
    line_is("  FOO = bar  ", "FOO", "bar");
    line_is("_x1=y", "_x1", "y");
    line_is("FOO=", "FOO", "");
    line_is("FOO=a=b", "FOO", "a=b");
    line_is("URL=http://h:1/p?q=1&r=2", "URL", "http://h:1/p?q=1&r=2");
}

static void dotenv_comments_and_blanks(void **state) {
    (void)state;
    line_rc("", 0);
    line_rc("   \t ", 0);
    line_rc("# a comment", 0);
    line_rc("   # indented comment", 0);
    line_rc("#FOO=bar", 0);
}

static void dotenv_export_prefix(void **state) {
    (void)state;
    line_is("export FOO=bar", "FOO", "bar");
    line_is("export\tFOO=bar", "FOO", "bar");
    line_is("  export   FOO = \"q\"", "FOO", "q");
    /* Only "export" followed by a blank is the prefix. */
    line_is("exported=1", "exported", "1");
    line_is("export=1", "export", "1");
}

static void dotenv_quotes(void **state) {
    (void)state;
    line_is("FOO='a b # c'", "FOO", "a b # c");
    line_is("FOO='no \\n escapes'", "FOO", "no \\n escapes");
    line_is("FOO='has \"double\"'", "FOO", "has \"double\"");
    line_is("FOO=\"a\\nb\"", "FOO", "a\nb");
    line_is("FOO=\"t\\tr\\r\"", "FOO", "t\tr\r");
    line_is("FOO=\"q\\\"q\"", "FOO", "q\"q");
    line_is("FOO=\"back\\\\slash\"", "FOO", "back\\slash");
    line_is("FOO=\"it's # not a comment\"", "FOO", "it's # not a comment");
    line_is("FOO=\"  padded  \"", "FOO", "  padded  ");
    line_is("FOO=\"\"", "FOO", "");
    line_is("FOO=\"x\" # trailing comment", "FOO", "x");
}

static void dotenv_inline_comments(void **state) {
    (void)state;
    line_is("FOO=bar # note", "FOO", "bar");
    line_is("FOO=bar\t# note", "FOO", "bar");
    line_is("FOO=a#b", "FOO", "a#b");
    line_is("FOO=http://h/#frag", "FOO", "http://h/#frag");
    line_is("FOO=#not-a-comment", "FOO", "#not-a-comment");
}

/* "TOKEN=   # fill me in" (common in .env templates) is an empty value, not
 * the text of the comment: otherwise a required key looks set. */
static void dotenv_comment_after_blank_value(void **state) {
    (void)state;
    line_is("FOO= # fill me in", "FOO", "");
    line_is("FOO=\t# fill me in", "FOO", "");
}

static void dotenv_bad_lines(void **state) {
    (void)state;
    const char *bad[] = {"FOO",       "=bar",       "1FOO=x",    "FOO-BAR=x",      "FOO.BAR=x",
                         "FOO bar=x", "FOO=\"open", "FOO='open", "FOO=\"x\" junk", "FOO='x'y",
                         "export",    "export FOO", "$FOO=x",    "FOO:=x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        line_rc(bad[i], -1);
}

static void dotenv_load_file(void **state) {
    (void)state;
    char *dir = rt_tmpdir();
    assert_non_null(dir);
    unsetenv("RT_DOT_ONE");
    unsetenv("RT_DOT_TWO");
    unsetenv("RT_DOT_THREE");
    unsetenv("RT_DOT_FOUR");
    setenv("RT_DOT_KEEP", "from-environment", 1);
    char *path = rt_write_file(dir, ".env",
                               "# dotenv for tests\n"
                               "\n"
                               "RT_DOT_ONE=1\n"
                               "export RT_DOT_TWO='two words'\n"
                               "RT_DOT_THREE=\"line\\nbreak\" # comment\r\n"
                               "   # indented comment\n"
                               "RT_DOT_KEEP=from-file\n"
                               "RT_DOT_FOUR=last");
    char e[512] = "";
    assert_int_equal(dotenv_load(path, e, sizeof e), 0);
    assert_string_equal(getenv("RT_DOT_ONE"), "1");
    assert_string_equal(getenv("RT_DOT_TWO"), "two words");
    assert_string_equal(getenv("RT_DOT_THREE"), "line\nbreak");
    assert_string_equal(getenv("RT_DOT_FOUR"), "last");
    /* The real environment wins over the file. */
    assert_string_equal(getenv("RT_DOT_KEEP"), "from-environment");
    free(path);

    path = rt_write_file(dir, "bad.env", "RT_DOT_BAD_OK=1\n# c\nnot a line\nRT_DOT_AFTER=1\n");
    assert_int_equal(dotenv_load(path, e, sizeof e), -1);
    char where[600];
    snprintf(where, sizeof where, "%s:3:", path);
    assert_contains(e, where);
    assert_null(getenv("RT_DOT_AFTER"));
    /* A bad file changes nothing, not even the lines before the bad one. */
    assert_null(getenv("RT_DOT_BAD_OK"));
    free(path);

    path = rt_write_file(dir, "x", "");
    unlink(path);
    assert_int_equal(dotenv_load(path, e, sizeof e), -1);
    assert_contains(e, path);
    assert_contains(e, "cannot open");
    free(path);

    rt_rmtree(dir);
    free(dir);
    const char *vars[] = {"RT_DOT_ONE",  "RT_DOT_TWO",    "RT_DOT_THREE",
                          "RT_DOT_FOUR", "RT_DOT_BAD_OK", "RT_DOT_KEEP"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);
}

/* A default may itself use ${...}, nested to any depth. */
static void expand_nested_defaults(void **state) {
    (void)state;
    expands_to("${RT_UNSET:-${RT_B}}", "beta");
    expands_to("${RT_A:-${RT_B}}", "alpha");
    expands_to("x${RT_UNSET:-${RT_EMPTY:-${RT_A}}}y", "xalphay");
    expands_to("${RT_UNSET:-a${RT_B}b}", "abetab");
    expands_to("${RT_UNSET:-${RT_UNSET:-lit}}", "lit");
    expands_to("${RT_UNSET:-$${RT_B}}", "${RT_B}");
    char *bad = expand_fails("${RT_UNSET:-${RT_UNSET}}");
    assert_string_equal(bad, "RT_UNSET");
    free(bad);
    free(expand_fails("${RT_UNSET:-${RT_B}"));
}

/* A NUL in an env file is refused with file:line, not read as a cut line;
 * a device is refused instead of read forever. */
static void dotenv_refuses_nul_and_devices(void **state) {
    (void)state;
    char *dir = rt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/nul.env", dir);
    FILE *f = fopen(path, "w");
    fwrite("RT_NUL_OK=1\nRT_NUL_CUT=abc\0def\n", 1, 31, f);
    fclose(f);
    char e[512];
    unsetenv("RT_NUL_OK");
    assert_int_equal(dotenv_load(path, e, sizeof e), -1);
    assert_contains(e, "nul.env:2:");
    assert_contains(e, "NUL");
    assert_null(getenv("RT_NUL_OK")); /* nothing applied */
    assert_int_equal(dotenv_load("/dev/zero", e, sizeof e), -1);
    assert_contains(e, "not a regular file");
    rt_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expand_plain_variables),
        cmocka_unit_test(expand_defaults),
        cmocka_unit_test(expand_undefined),
        cmocka_unit_test(expand_dollars),
        cmocka_unit_test(expand_syntax_errors),
        cmocka_unit_test(dotenv_simple),
        cmocka_unit_test(dotenv_comments_and_blanks),
        cmocka_unit_test(dotenv_export_prefix),
        cmocka_unit_test(dotenv_quotes),
        cmocka_unit_test(dotenv_inline_comments),
        cmocka_unit_test(dotenv_comment_after_blank_value),
        cmocka_unit_test(dotenv_bad_lines),
        cmocka_unit_test(dotenv_load_file),
        cmocka_unit_test(expand_nested_defaults),
        cmocka_unit_test(dotenv_refuses_nul_and_devices),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
