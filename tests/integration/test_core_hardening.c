/*
 * The real binary through the console transport and the mock backend:
 * commands see the state that earlier messages of their chat produced;
 * --check-config refuses what start would refuse; hostile manifest and env
 * file inputs fail fast with file:line; admin_listen must name its host.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static rt_fix *fx;

static rt_fix_spec fix = {.fx = &fx};

static const char *const base_rest = "[transport.console]\nplugin = console\n"
                                     "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\n"
                                     "[persona.p]\nbackend = mock\nchats = *\n";

static char *manifest(const char *name, const char *router, const char *rest) {
    char fname[128];
    snprintf(fname, sizeof fname, "%s.ini", name);
    return rt_write_filef(fx->dir, fname, "[router]\nenv = test\nstate_dir = %s/state-%s\n%s\n%s",
                          fx->dir, name, router, rest ? rest : base_rest);
}

/* Runs routerd with args; returns the exit code, stderr copied to err. */
static int run(const char *const *argv, char *err, size_t errsz, int timeout_ms) {
    rt_proc *p = rt_spawn(argv, NULL);
    rt_close_stdin(p);
    int rc = rt_wait(p, timeout_ms);
    snprintf(err, errsz, "%s", rt_stderr(p));
    rt_free(p);
    return rc;
}

/* /persona NAME then /persona, written at once: the listing shows the
 * persona just chosen, and so does the next message. */
static void test_persona_commands_in_order(void **state) {
    (void)state;
    const char *rest = "[transport.console]\nplugin = console\n"
                       "[backend.a]\nplugin = mock\nprefix = \"A:\"\nlatency_ms = 50\n"
                       "[backend.b]\nplugin = mock\nprefix = \"B:\"\n"
                       "[persona.alpha]\nbackend = a\nchats = *\nselectable = yes\n"
                       "[persona.beta]\nbackend = b\nselectable = yes\n";
    char *m = manifest("persona", "rate_limit_per_minute = 0\nadmin_listen = off\n", rest);
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, "one\n/persona beta\n/persona\ntwo\n/persona alpha\n/persona\nthree\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    const char *out = rt_stdout(p);
    const char *a = strstr(out, "A:one");
    const char *sw = strstr(out, "Persona switched to beta.");
    const char *cur_b = strstr(out, "Current persona: beta");
    const char *two = strstr(out, "B:two");
    const char *sw2 = strstr(out, "Persona switched to alpha.");
    const char *cur_a = cur_b ? strstr(cur_b, "Current persona: alpha") : NULL;
    const char *three = strstr(out, "A:three");
    if (!(a && sw && cur_b && two && sw2 && cur_a && three)) fail_msg("output:\n%s", out);
    assert_true(a < sw && sw < cur_b && cur_b < two && two < sw2 && sw2 < cur_a && cur_a < three);
    assert_non_null(strstr(cur_b, "- beta (current)"));
    rt_free(p);
    free(m);
}

/* Each of these passes the schema but fails at start: --check-config and
 * the start both refuse it with 78 and the same reason. */
static void test_check_config_catches_start_failures(void **state) {
    (void)state;
    char *file = rt_write_file(fx->dir, "plainfile", "x");
    struct {
        const char *name, *router, *rest, *want;
    } cases[] = {
        {"port", "admin_listen = 127.0.0.1:99999\n", NULL, "port must be a number"},
        {"portword", "admin_listen = 127.0.0.1:http\n", NULL, "port must be a number"},
        {"addr", "admin_listen = 300.1.2.3:9464\n", NULL, "is not an IP address"},
        {"nohost", "admin_listen = :9464\n", NULL, "name the host"},
        {"log", "admin_listen = off\n",
         "[transport.console]\nplugin = console\n[backend.mock]\nplugin = mock\n"
         "[persona.p]\nbackend = mock\nchats = *\n"
         "[sink.logs]\nplugin = jsonlog\npath = /nonexistent-routerd-dir/routerd.log\n",
         "path /nonexistent-routerd-dir/routerd.log"},
        {"logdir", "admin_listen = off\n", NULL, "is a directory"},
        {"state", NULL, NULL, "state_dir"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char router[512], rest[1024];
        if (!strcmp(cases[i].name, "state"))
            snprintf(router, sizeof router, "admin_listen = off\nstate_dir = %s/sub\n", file);
        else
            snprintf(router, sizeof router, "%s", cases[i].router);
        if (!strcmp(cases[i].name, "logdir"))
            snprintf(rest, sizeof rest,
                     "[transport.console]\nplugin = console\n[backend.mock]\nplugin = mock\n"
                     "[persona.p]\nbackend = mock\nchats = *\n"
                     "[sink.logs]\nplugin = jsonlog\npath = %s\n",
                     fx->dir);
        char *m = manifest(cases[i].name, router,
                           !strcmp(cases[i].name, "logdir") ? rest : cases[i].rest);
        char err[4096];
        const char *check[] = {ROUTERD_BIN, "-c", m, "--check-config", NULL};
        int rc = run(check, err, sizeof err, 20000);
        if (rc != 78 || !strstr(err, cases[i].want))
            fail_msg("%s: --check-config exit %d: %s", cases[i].name, rc, err);
        const char *start[] = {ROUTERD_BIN, "-c", m, NULL};
        rc = run(start, err, sizeof err, 20000);
        if (rc != 78 || !strstr(err, cases[i].want))
            fail_msg("%s: start exit %d: %s", cases[i].name, rc, err);
        free(m);
    }
    free(file);
}

/* Every interface is allowed when named, and said out loud. */
static void test_wildcard_listen_warns(void **state) {
    (void)state;
    int port = rt_free_port();
    char router[128];
    snprintf(router, sizeof router, "admin_listen = 0.0.0.0:%d\n", port);
    char *m = manifest("wild", router, NULL);
    char err[4096];
    const char *check[] = {ROUTERD_BIN, "-c", m, "--check-config", NULL};
    assert_int_equal(run(check, err, sizeof err, 20000), 0);
    assert_non_null(strstr(err, "every interface"));
    rt_proc *p = rt_start(m, NULL, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/livez", port);
    assert_true(rt_wait_http(url, 200, 10000));
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_non_null(strstr(rt_stderr(p), "listens on every interface"));
    rt_free(p);
    free(m);
}

/* A device as manifest or env file fails at once instead of reading for
 * ever; a NUL in an env file names file and line. */
static void test_hostile_input_files(void **state) {
    (void)state;
    char err[4096];
    long long t0 = rt_now_ms();
    const char *zero[] = {ROUTERD_BIN, "-c", "/dev/zero", "--check-config", NULL};
    assert_int_equal(run(zero, err, sizeof err, 10000), 78);
    assert_non_null(strstr(err, "not a regular file"));
    char *m = manifest("files", "admin_listen = off\n", NULL);
    const char *zenv[] = {ROUTERD_BIN, "-c", m, "--env-file", "/dev/zero", "--check-config", NULL};
    assert_int_equal(run(zenv, err, sizeof err, 10000), 78);
    assert_non_null(strstr(err, "not a regular file"));
    assert_true(rt_now_ms() - t0 < 8000);
    char path[512];
    snprintf(path, sizeof path, "%s/nul.env", fx->dir);
    FILE *f = fopen(path, "w");
    fwrite("A=1\nB=x\0y\n", 1, 10, f);
    fclose(f);
    const char *nul[] = {ROUTERD_BIN, "-c", m, "--env-file", path, "--check-config", NULL};
    assert_int_equal(run(nul, err, sizeof err, 10000), 78);
    assert_non_null(strstr(err, "nul.env:2:"));
    /* Too big a manifest is refused by its size. */
    char *big = malloc(2 << 20);
    memset(big, ';', (2 << 20) - 1);
    big[(2 << 20) - 1] = 0;
    char *bm = rt_write_file(fx->dir, "big.ini", big);
    free(big);
    const char *bigc[] = {ROUTERD_BIN, "-c", bm, "--check-config", NULL};
    assert_int_equal(run(bigc, err, sizeof err, 10000), 78);
    assert_non_null(strstr(err, "larger than"));
    free(bm);
    free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_persona_commands_in_order, &fix),
        RT_FIX_TEST(test_check_config_catches_start_failures, &fix),
        RT_FIX_TEST(test_wildcard_listen_warns, &fix),
        RT_FIX_TEST(test_hostile_input_files, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
