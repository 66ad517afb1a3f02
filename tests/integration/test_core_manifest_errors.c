/* Every way a manifest can be wrong exits 78 with one line naming the
 * place: file:line, section and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dir;

#define BASE                                                                                       \
    "[router]\nenv = test\nadmin_listen = off\nstate_dir = %s/state\n"                             \
    "[transport.console]\nplugin = console\n"

typedef struct {
    const char *name;
    const char *body;    /* appended after BASE */
    const char *want[4]; /* substrings of the one stderr line */
    const char *const *env;
} bad_case;

static int setup(void **state) {
    (void)state;
    dir = rt_tmpdir();
    free(rt_write_file(dir, "notso.so", "this is not a shared object\n"));
    return dir ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    rt_rmtree(dir);
    free(dir);
    return 0;
}

static void run_case(const bad_case *c, const char *mode) {
    char text[4096];
    int n = snprintf(text, sizeof text, BASE, dir);
    snprintf(text + n, sizeof text - (size_t)n, c->body, dir, dir);
    char fname[64];
    snprintf(fname, sizeof fname, "%s.ini", c->name);
    char *path = rt_write_file(dir, fname, text);
    const char *args[] = {mode, NULL};
    rt_proc *p = rt_start(path, mode ? args : NULL, c->env);
    assert_non_null(p);
    int rc = rt_wait(p, 20000);
    const char *err = rt_stderr(p);
    if (rc != 78) fprintf(stderr, "case %s: rc=%d stderr=%s\n", c->name, rc, err);
    assert_int_equal(rc, 78);
    /* One line, starting with the program name and the manifest path. */
    const char *nl = strchr(err, '\n');
    assert_non_null(nl);
    assert_int_equal(strlen(nl), 1);
    assert_non_null(strstr(err, path));
    for (int i = 0; i < 4 && c->want[i]; i++) {
        if (!strstr(err, c->want[i]))
            fprintf(stderr, "case %s: missing '%s' in: %s", c->name, c->want[i], err);
        assert_non_null(strstr(err, c->want[i]));
    }
    assert_string_equal(rt_stdout(p), "");
    rt_free(p);
    free(path);
}

static const bad_case cases[] = {
    {"unknown_key",
     "[backend.mock]\nplugin = mock\nprefx = x\n[persona.p]\nbackend = mock\nchats = *\n",
     {":9: ", "[backend.mock]", "unknown key 'prefx'", "did you mean 'prefix'?"},
     NULL},
    {"duplicate_router",
     "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n[router]\n",
     {"duplicate section"},
     NULL},
    {"missing_required",
     "[backend.mock]\nplugin = mock\n[persona.p]\nchats = *\n",
     {"[persona.p]", "missing required key 'backend'"},
     NULL},
    {"missing_plugin",
     "[backend.mock]\nmode = echo\n[persona.p]\nbackend = mock\nchats = *\n",
     {"[backend.mock]", "missing required key 'plugin'"},
     NULL},
    {"dangling_backend",
     "[backend.helper]\nplugin = mock\n[persona.p]\nbackend = helpr\nchats = *\n",
     {":10: ", "[persona.p] backend", "no [backend.helpr] section", "did you mean 'helper'?"},
     NULL},
    {"undefined_var",
     "[backend.mock]\nplugin = mock\nprefix = ${ROUTERD_TEST_UNSET_VAR_ABC}\n"
     "[persona.p]\nbackend = mock\nchats = *\n",
     {":9: ", "[backend.mock] prefix", "${ROUTERD_TEST_UNSET_VAR_ABC} is not set"},
     NULL},
    {"wrong_abi_major",
     "[backend.bad]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/wrong_major.so\n"
     "[persona.p]\nbackend = bad\nchats = *\n",
     {":8: ", "[backend.bad] plugin", "ABI 2.x", "speaks 1.x"},
     NULL},
    {"not_shared_object",
     "[backend.bad]\nplugin = %s/notso.so\n[persona.p]\nbackend = bad\nchats = *\n",
     {":8: ", "[backend.bad] plugin", "cannot load plugin"},
     NULL},
    {"no_symbol",
     "[backend.bad]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/no_symbol.so\n"
     "[persona.p]\nbackend = bad\nchats = *\n",
     {"[backend.bad] plugin", "no symbol routerd_plugin_v1"},
     NULL},
    {"missing_op",
     "[backend.bad]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/no_handle.so\n"
     "[persona.p]\nbackend = bad\nchats = *\n",
     {"[backend.bad] plugin", "backend without ops.handle"},
     NULL},
    {"newer_minor",
     "[backend.bad]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/newer_minor.so\n"
     "[persona.p]\nbackend = bad\nchats = *\n",
     {"needs plugin ABI 1.8, this routerd speaks 1.7", "upgrade routerd"},
     NULL},
    {"inbound_no_intercept",
     "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n"
     "[inbound.people]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/inbound_no_intercept.so\n",
     {":13: ", "[inbound.people] plugin", "inbound without ops.intercept"},
     NULL},
    {"inbound_old_ops",
     "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n"
     "[inbound.people]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/inbound_old_ops.so\n",
     {"[inbound.people] plugin", "inbound without ops.intercept"},
     NULL},
    {"inbound_wrong_kind",
     "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n"
     "[inbound.people]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/no_handle.so\n",
     {"[inbound.people] plugin", "is a backend plugin, not an inbound"},
     NULL},
    {"inbound_unknown_plugin",
     "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n"
     "[inbound.people]\nplugin = console\n",
     {"[inbound.people] plugin", "no inbound plugin 'console'", "inbound_console.so"},
     NULL},
    {"inbound_transport_typo",
     "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n"
     "[inbound.people]\nplugin = a2a\nlisten = 127.0.0.1:1\nhumans = alice=consle:42\n"
     "callers = planner=0123456789abcdefXYZ\nallow = planner:*\n",
     {"[inbound.people]", "humans: 'alice' names transport 'consle'", "transports are: console"},
     NULL},
    {"bind_len",
     "[backend.bad]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/bind_len.so\n"
     "[persona.p]\nbackend = bad\nchats = *\n",
     {"plugin 'bind_len' refused", "option 'count'", "4-byte member", "needs 8 bytes (int64_t)"},
     NULL},
    {"bind_outside",
     "[backend.bad]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/bind_outside.so\n"
     "[persona.p]\nbackend = bad\nchats = *\n",
     {"[backend.bad]", "cfg_bind", "option 'count'", "outside the 8-byte config struct"},
     NULL},
    {"option_size",
     "[backend.bad]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/option_size.so\n"
     "[persona.p]\nbackend = bad\nchats = *\n",
     {"plugin 'option_size' refused", "option_size 16 is smaller than the ABI 1.0 rd_option"},
     NULL},
    {"reserved_set",
     "[backend.bad]\nplugin = " ROUTERD_BAD_PLUGIN_DIR "/reserved_set.so\n"
     "[persona.p]\nbackend = bad\nchats = *\n",
     {"reserved descriptor fields must be NULL"},
     NULL},
    {"kind_mismatch",
     "[backend.con]\nplugin = console\n[persona.p]\nbackend = con\nchats = *\n",
     {"[backend.con] plugin", "no backend plugin 'console'"},
     NULL},
    {"unknown_plugin",
     "[backend.x]\nplugin = nosuch\n[persona.p]\nbackend = x\nchats = *\n",
     {"[backend.x] plugin", "no backend plugin 'nosuch'"},
     NULL},
    {"bad_int",
     "[backend.mock]\nplugin = mock\nlatency_ms = soon\n[persona.p]\nbackend = mock\nchats = *\n",
     {"[backend.mock] latency_ms", "expected an integer"},
     NULL},
    {"bad_enum",
     "[backend.mock]\nplugin = mock\nmode = eco\n[persona.p]\nbackend = mock\nchats = *\n",
     {"[backend.mock] mode", "not one of", "did you mean 'echo'?"},
     NULL},
    {"two_defaults",
     "[backend.mock]\nplugin = mock\n[persona.a]\nbackend = mock\nchats = *\n"
     "[persona.b]\nbackend = mock\nchats = *\n",
     {"[persona.b] chats", "already taken by [persona.a]"},
     NULL},
    {"bad_allowlist",
     "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n",
     {"allowlist"},
     NULL},
    {"pinned_hash",
     "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *\n",
     {"persona_map_sha256", "pins 00"},
     NULL},
    {"unknown_section",
     "[backnd.mock]\nplugin = mock\n",
     {"unknown section kind 'backnd'", "did you mean 'backend'?"},
     NULL},
    {"no_persona", "[backend.mock]\nplugin = mock\n", {"no [persona.NAME] section"}, NULL},
    {"mock_refuses",
     "[backend.mock]\nplugin = mock\nmode = script\n[persona.p]\nbackend = mock\nchats = *\n",
     {"[backend.mock]", "mode = script needs script = FILE"},
     NULL},
};

static void test_each_case_check_config(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bad_case c = cases[i];
        char body[2048];
        if (!strcmp(c.name, "bad_allowlist")) {
            /* The allowlist sits in the transport section of BASE. */
            snprintf(body, sizeof body, "allowlist = 12, abc\n%s", c.body);
            c.body = body;
        } else if (!strcmp(c.name, "pinned_hash")) {
            snprintf(body, sizeof body, "%s[router]\n", c.body);
            c.body = "";
            /* Written below with the pin inside [router]. */
        }
        if (!strcmp(c.name, "pinned_hash")) {
            char text[2048];
            snprintf(text, sizeof text,
                     "[router]\nenv = test\nadmin_listen = off\nstate_dir = %s/state\n"
                     "persona_map_sha256 = 0000000000000000000000000000000000000000000000000000000"
                     "000000000\n[transport.console]\nplugin = console\n%s",
                     dir, cases[i].body);
            char *path = rt_write_file(dir, "pinned.ini", text);
            const char *args[] = {"--check-config", NULL};
            rt_proc *p = rt_start(path, args, NULL);
            assert_int_equal(rt_wait(p, 20000), 78);
            assert_non_null(strstr(rt_stderr(p), "pins 00"));
            assert_non_null(strstr(rt_stderr(p), ":5: [router] persona_map_sha256"));
            rt_free(p);
            free(path);
            continue;
        }
        run_case(&c, "--check-config");
    }
}

/* Starting for real fails the same way as --check-config. */
static void test_run_fails_like_check(void **state) {
    (void)state;
    run_case(&cases[0], NULL);
    run_case(&cases[5], NULL);
    run_case(&cases[6], NULL);
}

static void test_pinned_hash_matches(void **state) {
    (void)state;
    char text[2048];
    snprintf(text, sizeof text,
             BASE "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = 5, *\n",
             dir);
    char *path = rt_write_file(dir, "pin_ok.ini", text);
    const char *args[] = {"--check-config", NULL};
    rt_proc *p = rt_start(path, args, NULL);
    assert_int_equal(rt_wait(p, 20000), 0);
    const char *out = rt_stdout(p);
    const char *h = strstr(out, "persona_map_sha256 = ");
    assert_non_null(h);
    assert_non_null(strstr(out, "allowlist_sha256 = "));
    char sha[65];
    memcpy(sha, h + 21, 64);
    sha[64] = 0;
    rt_free(p);
    /* The same map pinned passes; reordering chats keeps the hash. */
    snprintf(text, sizeof text,
             "[router]\nenv = test\nadmin_listen = off\nstate_dir = %s/state\n"
             "persona_map_sha256 = %s\n[transport.console]\nplugin = console\n"
             "[backend.mock]\nplugin = mock\n[persona.p]\nbackend = mock\nchats = *, 5\n",
             dir, sha);
    free(path);
    path = rt_write_file(dir, "pin_ok2.ini", text);
    p = rt_start(path, args, NULL);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_non_null(strstr(rt_stdout(p), sha));
    rt_free(p);
    free(path);
}

static void test_env_file(void **state) {
    (void)state;
    char text[2048];
    snprintf(text, sizeof text,
             BASE "[backend.mock]\nplugin = mock\nprefix = ${ROUTERD_T_PREFIX}\n"
                  "[persona.p]\nbackend = mock\nchats = *\n",
             dir);
    char *path = rt_write_file(dir, "envfile.ini", text);
    char *envf =
        rt_write_file(dir, "test.env", "# comment\nexport ROUTERD_T_PREFIX=\"from file: \"\n\n");
    const char *args[] = {"--env-file", envf, NULL};
    rt_proc *p = rt_start(path, args, NULL);
    rt_write(p, "hello\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_string_equal(rt_stdout(p), "from file: hello\n");
    rt_free(p);
    free(path);
    free(envf);
}

static void test_print_config_redacts(void **state) {
    (void)state;
    char text[2048];
    snprintf(text, sizeof text,
             "[router]\nenv = test\nadmin_listen = off\nstate_dir = %s/state\n"
             "chat_hash_key = ${ROUTERD_T_SECRET}\n[transport.console]\nplugin = console\n"
             "[backend.mock]\nplugin = mock\nprefix = ${ROUTERD_T_SECRET}\n"
             "[persona.p]\nbackend = mock\nchats = *\n",
             dir);
    char *path = rt_write_file(dir, "print.ini", text);
    const char *args[] = {"--print-config", NULL};
    const char *env[] = {"ROUTERD_T_SECRET=s3cr3t-value-123", NULL};
    rt_proc *p = rt_start(path, args, env);
    assert_int_equal(rt_wait(p, 20000), 0);
    const char *out = rt_stdout(p);
    assert_null(strstr(out, "s3cr3t-value-123"));
    assert_non_null(strstr(out, "chat_hash_key = ***"));
    /* The same value in a non-secret key is masked too. */
    assert_non_null(strstr(out, "prefix = ***"));
    assert_non_null(strstr(out, "queue_depth = 256   ; default"));
    rt_free(p);
    free(path);
}

/* Two files that both claim to be the mock backend. */
static void test_duplicate_plugin_name(void **state) {
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp %s/backend_mock.so %s/copy_of_mock.so", ROUTERD_PLUGIN_DIR, dir);
    assert_int_equal(system(cmd), 0);
    char text[2048];
    snprintf(text, sizeof text,
             BASE "[backend.a]\nplugin = mock\n[backend.b]\nplugin = %s/copy_of_mock.so\n"
                  "[persona.p]\nbackend = a\nchats = *\n",
             dir, dir);
    char *path = rt_write_file(dir, "dup.ini", text);
    const char *args[] = {"--check-config", NULL};
    rt_proc *p = rt_start(path, args, NULL);
    assert_int_equal(rt_wait(p, 20000), 78);
    assert_non_null(strstr(rt_stderr(p), "[backend.b] plugin"));
    assert_non_null(strstr(rt_stderr(p), "a backend plugin named 'mock' is already loaded"));
    rt_free(p);
    free(path);
}

static void test_usage_errors(void **state) {
    (void)state;
    const char *argv1[] = {ROUTERD_BIN, "--bogus", NULL};
    rt_proc *p = rt_spawn(argv1, NULL);
    assert_int_equal(rt_wait(p, 10000), 64);
    rt_free(p);
    const char *argv2[] = {ROUTERD_BIN, "--help", NULL};
    p = rt_spawn(argv2, NULL);
    assert_int_equal(rt_wait(p, 10000), 0);
    assert_non_null(strstr(rt_stdout(p), "--check-config"));
    rt_free(p);
    const char *argv3[] = {ROUTERD_BIN, "--version", NULL};
    p = rt_spawn(argv3, NULL);
    assert_int_equal(rt_wait(p, 10000), 0);
    assert_non_null(strstr(rt_stdout(p), "routerd "));
    assert_non_null(strstr(rt_stdout(p), "plugin ABI 1."));
    rt_free(p);
    const char *argv4[] = {ROUTERD_BIN, "-c", "/nonexistent/routerd.ini", NULL};
    p = rt_spawn(argv4, NULL);
    assert_int_equal(rt_wait(p, 10000), 78);
    assert_non_null(strstr(rt_stderr(p), "/nonexistent/routerd.ini: cannot open manifest"));
    rt_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_case_check_config), cmocka_unit_test(test_run_fails_like_check),
        cmocka_unit_test(test_pinned_hash_matches),    cmocka_unit_test(test_env_file),
        cmocka_unit_test(test_print_config_redacts),   cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_duplicate_plugin_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
