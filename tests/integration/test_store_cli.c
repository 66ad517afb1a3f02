/*
 * The state-store keys through the real binary: store_url is a secret (the
 * password inside a URI never printed, also percent-decoded), store =
 * postgresql needs store_url, an unreachable server is a clear start-up
 * error; with SQLite the files are 0600 and an open state_dir is warned
 * about.
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

#define PW_ENC "Pa%24%24w0rd-xyz"
#define PW_DEC "Pa$$w0rd-xyz"

static rt_fix *fx;

static rt_fix_spec fix = {.fx = &fx};

static char *manifest(const char *router_extra) {
    return rt_write_filef(fx->dir, "routerd.ini",
                          "[router]\nadmin_listen = off\nstate_dir = %s/state\n%s"
                          "[transport.console]\nplugin = console\n"
                          "[backend.mock]\nplugin = mock\n"
                          "[persona.p]\nbackend = mock\nchats = *\n",
                          fx->dir, router_extra);
}

static int run(const char *m, const char *arg, rt_proc **out) {
    const char *const args[] = {arg, NULL};
    const char *const env[] = {"STORE_URL=postgresql://routerd:" PW_ENC "@127.0.0.1:1/routerd",
                               NULL};
    rt_proc *p = rt_start(m, arg ? args : NULL, env);
    assert_non_null(p);
    rt_close_stdin(p);
    int rc = rt_wait(p, 30000);
    *out = p;
    return rc;
}

static void assert_no_password(rt_proc *p) {
    const char *outs[] = {rt_stdout(p), rt_stderr(p)};
    for (int i = 0; i < 2; i++) {
        if (strstr(outs[i], PW_ENC) || strstr(outs[i], PW_DEC) || strstr(outs[i], "w0rd-xyz"))
            fail_msg("password printed:\n%s", outs[i]);
    }
}

static void store_url_is_secret(void **state) {
    (void)state;
    char *m = manifest("store = postgresql\nstore_url = ${STORE_URL}\n");
    rt_proc *p;
    assert_int_equal(run(m, "--print-config", &p), 0);
    assert_non_null(strstr(rt_stdout(p), "store_url = ***"));
    assert_no_password(p);
    rt_free(p);
    /* Nothing listens on port 1: routerd says why and waits for the
     * server (it may be booting too), without the password; SIGTERM ends
     * the wait. */
    const char *const env[] = {"STORE_URL=postgresql://routerd:" PW_ENC "@127.0.0.1:1/routerd",
                               NULL};
    p = rt_start(m, NULL, env);
    assert_true(rt_wait_stderr(p, "waiting for it", 20000));
    assert_non_null(strstr(rt_stderr(p), "cannot connect to PostgreSQL"));
    rt_sleep_ms(1500); /* a retry or two */
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 10000), 0);
    assert_no_password(p);
    rt_free(p);
    free(m);
    /* A malformed store_url is a configuration error. */
    m = manifest("store = postgresql\nstore_url = host=x bogus_option=1\n");
    assert_int_equal(run(m, NULL, &p), 78);
    assert_non_null(strstr(rt_stderr(p), "bogus_option"));
    rt_free(p);
    free(m);
}

static void postgresql_needs_url(void **state) {
    (void)state;
    char *m = manifest("store = postgresql\n");
    rt_proc *p;
    assert_int_equal(run(m, "--check-config", &p), 78);
    assert_non_null(strstr(rt_stderr(p), "store_url"));
    rt_free(p);
    free(m);
    m = manifest("store = mysql\n");
    assert_int_equal(run(m, "--check-config", &p), 78);
    assert_non_null(strstr(rt_stderr(p), "postgresql"));
    rt_free(p);
    free(m);
}

static void sqlite_files_private(void **state) {
    (void)state;
    char *sd = NULL;
    assert_true(asprintf(&sd, "%s/state", fx->dir) > 0);
    assert_int_equal(mkdir(sd, 0755), 0);
    char *m = manifest("");
    rt_proc *p;
    assert_int_equal(run(m, NULL, &p), 0);
    assert_non_null(strstr(rt_stderr(p), "accessible to group or others"));
    rt_free(p);
    char *db = NULL;
    assert_true(asprintf(&db, "%s/routerd.db", sd) > 0);
    struct stat st;
    assert_int_equal(stat(db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A private state_dir: no warning. */
    assert_int_equal(chmod(sd, 0700), 0);
    assert_int_equal(run(m, NULL, &p), 0);
    assert_null(strstr(rt_stderr(p), "accessible to group or others"));
    rt_free(p);
    free(db);
    free(sd);
    free(m);
}

static void set_fsize(rt_proc *p, const char *limit) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "prlimit --pid %d --fsize=%s:", rt_pid(p), limit);
    assert_int_equal(system(cmd), 0);
}

/* A disk that fills and frees (a file-size limit on the running process
 * stands in for it): not ready while nothing can be committed, the cause
 * logged once, ready again by itself. */
static void disk_full_not_ready_then_back(void **state) {
    (void)state;
    char *m = rt_write_filef(
        fx->dir, "full.ini",
        "[router]\nadmin_listen = 127.0.0.1:%d\nstate_dir = %s/state\nrate_limit_per_minute = 0\n"
        "[transport.console]\nplugin = console\n"
        "[backend.mock]\nplugin = mock\n"
        "[persona.p]\nbackend = mock\nchats = *\nselectable = true\n"
        "[persona.q]\nbackend = mock\nselectable = true\n",
        fx->port, fx->dir);
    rt_proc *p = rt_start_ready(m, NULL, fx->port, 20000);
    assert_non_null(p);
    const char *url = rt_fix_url(fx, "/healthz");
    set_fsize(p, "1024"); /* the soft limit only: raising it back needs no privilege */
    /* A /persona choice other than the manifest's is stored: the commit
     * fails. */
    for (int i = 0; i < 3; i++)
        rt_write(p, i % 2 ? "/persona p\n" : "/persona q\n");
    assert_true(rt_wait_http(url, 503, 10000));
    char *body = NULL;
    assert_int_equal(rt_http("GET", url, NULL, NULL, &body), 503);
    assert_non_null(strstr(body, "\"store\":\"unavailable\""));
    free(body);
    rt_sleep_ms(2500); /* probes fail meanwhile: still one line */
    set_fsize(p, "unlimited");
    assert_true(rt_wait_http(url, 200, 15000));
    rt_write(p, "/persona q\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    const char *err = rt_stderr(p);
    const char *first = strstr(err, "cannot commit");
    assert_non_null(first);
    assert_null(strstr(first + 1, "cannot commit"));
    assert_non_null(strstr(err, "File too large"));
    assert_non_null(strstr(err, "commits succeed again"));
    rt_free(p);
    free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(store_url_is_secret, &fix),
        RT_FIX_TEST(postgresql_needs_url, &fix),
        RT_FIX_TEST(sqlite_files_private, &fix),
        RT_FIX_TEST(disk_full_not_ready_then_back, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
