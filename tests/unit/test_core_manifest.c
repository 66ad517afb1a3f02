/* manifest_parse_string: sections, line numbers and every error message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle))) fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle)); \
    } while (0)

static char err[1024];

static manifest *parse(const char *text) {
    err[0] = 0;
    return manifest_parse_string("t.ini", text, err, sizeof err);
}

/* Parses text that must fail and returns the message. */
static const char *parse_err(const char *text) {
    manifest *m = parse(text);
    if (m) {
        manifest_free(m);
        fail_msg("manifest was accepted:\n%s", text);
    }
    assert_true(err[0] != 0);
    return err;
}

static void sections_and_lines(void **state) {
    (void)state;
    const char *text = "; routerd test manifest\n" /* 1 */
                       "[router]\n"                /* 2 */
                       "env = test\n"              /* 3 */
                       "\n"                        /* 4 */
                       "queue_depth=256\n"         /* 5 */
                       "# another comment\n"       /* 6 */
                       "[transport.main]\n"        /* 7 */
                       "plugin = console\n"        /* 8 */
                       "[backend.helper]\n"        /* 9 */
                       "plugin = mock\n"           /* 10 */
                       "mode = echo\n"             /* 11 */
                       "\n"                        /* 12 */
                       "[persona.helper]\n"        /* 13 */
                       "backend = helper\n"        /* 14 */
                       "chats = *\n";              /* 15 */
    manifest *m = parse(text);
    assert_non_null(m);
    assert_string_equal(m->path, "t.ini");
    assert_int_equal(m->nsec, 4);

    const char *names[] = {"router", "transport.main", "backend.helper", "persona.helper"};
    const char *kinds[] = {"router", "transport", "backend", "persona"};
    const char *insts[] = {"", "main", "helper", "helper"};
    const int lines[] = {2, 7, 9, 13};
    const size_t nkv[] = {2, 1, 2, 2};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(m->sec[i].name, names[i]);
        assert_string_equal(m->sec[i].kind, kinds[i]);
        assert_string_equal(m->sec[i].inst, insts[i]);
        assert_int_equal(m->sec[i].line, lines[i]);
        assert_int_equal(m->sec[i].nkv, nkv[i]);
        assert_ptr_equal(manifest_section(m, names[i]), &m->sec[i]);
    }
    assert_null(manifest_section(m, "backend.other"));

    mf_section *r = manifest_section(m, "router");
    mf_kv *kv = section_get(r, "env");
    assert_non_null(kv);
    assert_string_equal(kv->val, "test");
    assert_int_equal(kv->line, 3);
    assert_false(kv->used);
    kv = section_get(r, "queue_depth");
    assert_non_null(kv);
    assert_string_equal(kv->val, "256");
    assert_int_equal(kv->line, 5);
    assert_null(section_get(r, "plugin"));
    assert_null(section_get(NULL, "env"));

    kv = section_get(manifest_section(m, "backend.helper"), "mode");
    assert_int_equal(kv->line, 11);
    kv = section_get(manifest_section(m, "persona.helper"), "chats");
    assert_string_equal(kv->val, "*");
    assert_int_equal(kv->line, 15);

    /* The hash covers the exact bytes, so pins can be computed offline. */
    char want[65];
    sha256_hex(text, strlen(text), want);
    assert_string_equal(m->sha256, want);
    manifest_free(m);
}

static void empty_manifest(void **state) {
    (void)state;
    manifest *m = parse("");
    assert_non_null(m);
    assert_int_equal(m->nsec, 0);
    manifest_free(m);
    m = parse("; only a comment\n\n   \n");
    assert_non_null(m);
    assert_int_equal(m->nsec, 0);
    manifest_free(m);
}

static void raw_and_expanded_values(void **state) {
    (void)state;
    setenv("RT_MF_HOST", "example.org", 1);
    manifest *m = parse("[router]\nadmin_listen = ${RT_MF_HOST}:${RT_MF_UNSET_PORT:-9000}\n");
    assert_non_null(m);
    mf_kv *kv = section_get(&m->sec[0], "admin_listen");
    assert_string_equal(kv->raw, "${RT_MF_HOST}:${RT_MF_UNSET_PORT:-9000}");
    assert_string_equal(kv->val, "example.org:9000");
    manifest_free(m);
    unsetenv("RT_MF_HOST");
}

static void undefined_variable(void **state) {
    (void)state;
    unsetenv("RT_MF_NOPE");
    const char *e = parse_err("[router]\nenv = a\nstate_dir = ${RT_MF_NOPE}/x\n");
    assert_contains(e, "t.ini:3:");
    assert_contains(e, "[router] state_dir");
    assert_contains(e, "${RT_MF_NOPE} is not set");
    e = parse_err("[router]\nenv = ${RT_MF_NOPE\n");
    assert_contains(e, "t.ini:2:");
    assert_contains(e, "unterminated");
}

static void duplicate_section(void **state) {
    (void)state;
    const char *e = parse_err("[router]\n"
                              "env = a\n"
                              "[persona.x]\n"
                              "backend = b\n"
                              "\n"
                              "[persona.x]\n"
                              "backend = c\n");
    assert_string_equal(e, "t.ini:6: [persona.x] duplicate section (first at line 3)");
    e = parse_err("[router]\n[router]\n");
    assert_string_equal(e, "t.ini:2: [router] duplicate section (first at line 1)");
}

static void duplicate_key(void **state) {
    (void)state;
    const char *e = parse_err("[router]\n"
                              "env = a\n"
                              "queue_depth = 1\n"
                              "\n"
                              "env = b\n");
    assert_string_equal(e, "t.ini:5: [router] env: duplicate key (first at line 2)");
    /* The same key in two sections is fine. */
    manifest *m = parse("[backend.a]\nplugin = mock\n[backend.b]\nplugin = mock\n");
    assert_non_null(m);
    manifest_free(m);
}

static void unknown_section_kind(void **state) {
    (void)state;
    const char *e = parse_err("[router]\nenv = a\n[backnd.helper]\nplugin = mock\n");
    assert_contains(e, "t.ini:3:");
    assert_contains(e, "unknown section kind 'backnd'");
    assert_contains(e, "did you mean 'backend'");
    e = parse_err("[transprot.main]\n");
    assert_contains(e, "t.ini:1:");
    assert_contains(e, "did you mean 'transport'");
    e = parse_err("[router]\n[zzzzzzzzzz.q]\n");
    assert_contains(e, "t.ini:2:");
    assert_contains(e, "unknown section kind 'zzzzzzzzzz'");
    assert_null(strstr(e, "did you mean"));
}

static void bad_section_names(void **state) {
    (void)state;
    /* Plugin sections need an instance name, [router] must not have one. */
    const char *bad[] = {"[transport]\n", "[router.main]\n", "[backend.]\n", "[backend.a.b]\n",
                         "[persona.a/b]\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *e = parse_err(bad[i]);
        assert_contains(e, "t.ini:1:");
        assert_contains(e, "section names are");
    }
    manifest *m = parse("[backend.a-b_C9]\n");
    assert_non_null(m);
    assert_string_equal(m->sec[0].inst, "a-b_C9");
    manifest_free(m);
}

static void quoted_values_keep_spaces(void **state) {
    (void)state;
    manifest *m = parse("[backend.mock]\n"
                        "prefix = \"echo: \"\n"
                        "pad = \"  both  \"\n"
                        "plain =    trimmed   \n"
                        "one = \"\n"
                        "empty = \"\"\n"
                        "inner = say \"hi\" now\n");
    assert_non_null(m);
    mf_section *s = &m->sec[0];
    assert_string_equal(section_get(s, "prefix")->val, "echo: ");
    assert_string_equal(section_get(s, "pad")->val, "  both  ");
    assert_string_equal(section_get(s, "plain")->val, "trimmed");
    assert_string_equal(section_get(s, "one")->val, "\"");
    assert_string_equal(section_get(s, "empty")->val, "");
    assert_string_equal(section_get(s, "inner")->val, "say \"hi\" now");
    manifest_free(m);
}

static void inline_comments(void **state) {
    (void)state;
    manifest *m = parse("[router] ; the router\n"
                        "env = test ; where we run\n"
                        "url = http://h/a;b\n"
                        "hash = x#y\n"
                        "tab = v\t; tab before the comment\n");
    assert_non_null(m);
    mf_section *s = &m->sec[0];
    assert_string_equal(s->name, "router");
    assert_string_equal(section_get(s, "env")->val, "test");
    /* A ; not preceded by a blank is part of the value. */
    assert_string_equal(section_get(s, "url")->val, "http://h/a;b");
    assert_string_equal(section_get(s, "hash")->val, "x#y");
    assert_string_equal(section_get(s, "tab")->val, "v");
    manifest_free(m);
}

/* "quoted" values keep ';' characters. */
static void quoted_value_keeps_semicolon(void **state) {
    (void)state;
    manifest *m = parse("[backend.mock]\nreply = \"a ; b\"\n");
    assert_non_null(m);
    assert_string_equal(section_get(&m->sec[0], "reply")->val, "a ; b");
    manifest_free(m);
}

static void indented_keys_are_not_continuations(void **state) {
    (void)state;
    manifest *m = parse("[router]\n"
                        "env = test\n"
                        "    queue_depth = 5\n"
                        "\tdrain_timeout_s = 3\n"
                        "  [persona.p]\n"
                        "  backend = b\n");
    assert_non_null(m);
    assert_int_equal(m->nsec, 2);
    mf_section *s = &m->sec[0];
    assert_int_equal(s->nkv, 3);
    assert_string_equal(section_get(s, "env")->val, "test");
    assert_string_equal(section_get(s, "queue_depth")->val, "5");
    assert_int_equal(section_get(s, "queue_depth")->line, 3);
    assert_string_equal(section_get(s, "drain_timeout_s")->val, "3");
    assert_string_equal(m->sec[1].name, "persona.p");
    assert_int_equal(m->sec[1].line, 5);
    assert_string_equal(section_get(&m->sec[1], "backend")->val, "b");
    manifest_free(m);
}

static char *long_line_manifest(size_t n, char fill) {
    const char *head = "[router]\nenv = test\nfailure_notice = ";
    size_t hl = strlen(head);
    char *t = malloc(hl + n + 32);
    memcpy(t, head, hl);
    memset(t + hl, fill, n);
    strcpy(t + hl + n, "\nqueue_depth = 7\n");
    return t;
}

static void long_lines(void **state) {
    (void)state;
    /* Notices and URLs can be long; up to about 16k per line must work. */
    const size_t sizes[] = {199, 200, 1000, 4096, 16000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char *t = long_line_manifest(sizes[i], 'x');
        manifest *m = parse(t);
        if (!m) {
            free(t);
            fail_msg("%zu-character value refused: %s", sizes[i], err);
        }
        mf_kv *kv = section_get(&m->sec[0], "failure_notice");
        assert_int_equal(strlen(kv->val), sizes[i]);
        assert_int_equal(kv->line, 3);
        assert_int_equal(section_get(&m->sec[0], "queue_depth")->line, 4);
        manifest_free(m);
        free(t);
    }
}

static void too_long_line_is_an_error(void **state) {
    (void)state;
    char *t = long_line_manifest(100000, 'y');
    const char *e = parse_err(t);
    assert_contains(e, "t.ini:3:");
    assert_contains(e, "longer than");
    free(t);
}

static void key_outside_section(void **state) {
    (void)state;
    const char *e = parse_err("; leading comment\nenv = test\n[router]\n");
    assert_string_equal(e, "t.ini:2: key 'env' outside of a section");
}

static void syntax_error_line(void **state) {
    (void)state;
    const char *e = parse_err("[router]\n"
                              "env = test\n"
                              "\n"
                              "this line has no equals sign\n"
                              "queue_depth = 1\n");
    assert_contains(e, "t.ini:4:");
    assert_contains(e, "syntax error");
    e = parse_err("[router]\n[persona.x\nbackend = a\n");
    assert_contains(e, "t.ini:2:");
    assert_contains(e, "syntax error");
}

static void crlf_line_endings(void **state) {
    (void)state;
    manifest *m = parse("[router]\r\nenv = test\r\nqueue_depth = 3\r\n");
    assert_non_null(m);
    assert_string_equal(section_get(&m->sec[0], "env")->val, "test");
    assert_int_equal(section_get(&m->sec[0], "queue_depth")->line, 3);
    manifest_free(m);
}

/* Editors on Windows save a UTF-8 byte order mark before [router]. */
static void utf8_bom_is_ignored(void **state) {
    (void)state;
    manifest *m = parse("\xEF\xBB\xBF[router]\nenv = bom\n");
    if (!m) fail_msg("refused: %s", err);
    assert_string_equal(m->sec[0].name, "router");
    assert_string_equal(section_get(&m->sec[0], "env")->val, "bom");
    manifest_free(m);
}

/* "[ router ]" is trimmed to [router]; its keys belong to it. */
static void blanks_inside_brackets(void **state) {
    (void)state;
    manifest *m = parse("[ router ]\nenv = x\n[\tbackend.b ]\nplugin = mock\n");
    if (!m) fail_msg("refused: %s", err);
    assert_int_equal(m->nsec, 2);
    assert_string_equal(m->sec[0].name, "router");
    assert_string_equal(section_get(&m->sec[0], "env")->val, "x");
    assert_string_equal(m->sec[1].name, "backend.b");
    assert_int_equal(m->sec[1].nkv, 1);
    manifest_free(m);
}

/* Instance names are not limited to inih's 50-byte section buffer. */
static void long_section_names(void **state) {
    (void)state;
    const char *inst = "a-rather-long-instance-name-for-the-helper-backend-number-2";
    char *text = xasprintf("[backend.%s]\nplugin = mock\n", inst);
    manifest *m = parse(text);
    free(text);
    if (!m) fail_msg("refused: %s", err);
    assert_string_equal(m->sec[0].inst, inst);
    assert_string_equal(section_get(&m->sec[0], "plugin")->val, "mock");
    manifest_free(m);
}

static void error_buffer_is_bounded(void **state) {
    (void)state;
    char small[16];
    memset(small, 'Z', sizeof small);
    manifest *m = manifest_parse_string("a-rather-long-file-name.ini", "[router]\n[router]\n",
                                        small, sizeof small);
    assert_null(m);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, "a-rather-long-f", 15);
}

static void load_from_file(void **state) {
    (void)state;
    char path[] = "/tmp/rt-core-manifest-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[router]\nenv = file\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    manifest *m = manifest_load(path, err, sizeof err);
    assert_non_null(m);
    assert_string_equal(m->path, path);
    assert_string_equal(section_get(&m->sec[0], "env")->val, "file");
    manifest_free(m);
    /* A NUL byte means this is not the text file it should be. */
    FILE *f = fopen(path, "wb");
    fwrite("[router]\n\0env = x\n", 1, 18, f);
    fclose(f);
    assert_null(manifest_load(path, err, sizeof err));
    assert_contains(err, "not a text file");
    unlink(path);
    assert_null(manifest_load(path, err, sizeof err));
    assert_contains(err, path);
    assert_contains(err, "cannot open");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sections_and_lines),
        cmocka_unit_test(empty_manifest),
        cmocka_unit_test(raw_and_expanded_values),
        cmocka_unit_test(undefined_variable),
        cmocka_unit_test(duplicate_section),
        cmocka_unit_test(duplicate_key),
        cmocka_unit_test(unknown_section_kind),
        cmocka_unit_test(bad_section_names),
        cmocka_unit_test(quoted_values_keep_spaces),
        cmocka_unit_test(inline_comments),
        cmocka_unit_test(quoted_value_keeps_semicolon),
        cmocka_unit_test(indented_keys_are_not_continuations),
        cmocka_unit_test(long_lines),
        cmocka_unit_test(too_long_line_is_an_error),
        cmocka_unit_test(key_outside_section),
        cmocka_unit_test(syntax_error_line),
        cmocka_unit_test(crlf_line_endings),
        cmocka_unit_test(utf8_bom_is_ignored),
        cmocka_unit_test(blanks_inside_brackets),
        cmocka_unit_test(long_section_names),
        cmocka_unit_test(error_buffer_is_bounded),
        cmocka_unit_test(load_from_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
