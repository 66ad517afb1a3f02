/* Test harness: temp dirs, free ports, the routerd process, HTTP probes. */
#ifndef ROUTERD_TEST_HARNESS_H
#define ROUTERD_TEST_HARNESS_H

#include <stddef.h>

typedef struct rt_proc rt_proc;

/* A fresh directory under $TMPDIR (or /tmp); removed by rt_rmtree(). */
char *rt_tmpdir(void);
void rt_rmtree(const char *dir);
/* Writes text to dir/name and returns the malloc()ed path. */
char *rt_write_file(const char *dir, const char *name, const char *text);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int rt_free_port(void);

/* Starts argv[0] (a path) with pipes on stdin/stdout/stderr. env_extra is a
 * NULL-terminated list of NAME=VALUE added to the environment (or NULL). */
rt_proc *rt_spawn(const char *const *argv, const char *const *env_extra);
/* Starts the built routerd with "-c manifest" followed by extra args. */
rt_proc *rt_start(const char *manifest, const char *const *extra_args,
                  const char *const *env_extra);

int rt_pid(rt_proc *p);
int rt_write(rt_proc *p, const char *text); /* to stdin; 0 on success */
void rt_close_stdin(rt_proc *p);
void rt_signal(rt_proc *p, int sig);
/* Waits for exit: exit code, 128+signal when killed, -1 on timeout. */
int rt_wait(rt_proc *p, int timeout_ms);
/* Snapshots of everything read so far (NUL-terminated, owned by p, valid
 * until rt_free even while the process writes more). */
const char *rt_stdout(rt_proc *p);
const char *rt_stderr(rt_proc *p);
/* Waits until stdout (or stderr) contains needle; 1 found, 0 timeout. */
int rt_wait_stdout(rt_proc *p, const char *needle, int timeout_ms);
int rt_wait_stderr(rt_proc *p, const char *needle, int timeout_ms);
/* Occurrences of needle in hay (not overlapping). */
int rt_count(const char *hay, const char *needle);
/* Threads of process pid (/proc/PID/task), -1 when it is gone. */
int rt_threads(int pid);
/* Those of them named name (their comm). */
int rt_threads_named(int pid, const char *name);
/* Voluntary context switches (wake-ups) of pid's threads named name,
 * summed (pid 0: this process); -1 when there is no such thread. */
long rt_thread_wakeups(int pid, const char *name);
/* Waits until stdout has at least n lines; returns the count reached. */
int rt_wait_stdout_lines(rt_proc *p, int n, int timeout_ms);
/* Kills (SIGKILL) if still running, reaps and frees. */
void rt_free(rt_proc *p);

/* HTTP GET/POST on loopback: returns the status (or -1) and a malloc()ed body. */
long rt_http(const char *method, const char *url, const char *body, const char *const *headers,
             char **resp_body);
/* Polls url until it answers `status`; 1 on success, 0 on timeout. */
int rt_wait_http(const char *url, long status, int timeout_ms);

/* rt_start, then waits until http://127.0.0.1:port/healthz answers 200.
 * NULL when it did not start or get ready in time (the process is killed
 * and its stderr copied to the test's). */
rt_proc *rt_start_ready(const char *manifest, const char *const *env_extra, int port,
                        int timeout_ms);
/* rt_write_file with the text formatted as printf does. */
char *rt_write_filef(const char *dir, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes dir/<name>.ini: "[router]", "env = test", admin_listen on
 * 127.0.0.1:admin_port (0: off) and state_dir = dir/state-<name>, then the
 * rest formatted as printf does (more [router] keys first, then the other
 * sections). The malloc()ed path or NULL. */
char *rt_manifest(const char *dir, const char *name, int admin_port, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------------------ */
/* A fixture: what an integration test sets up around one routerd.         */

typedef struct ftg ftg;
typedef struct fotlp fotlp;

typedef struct rt_fix {
    char *dir;      /* a fresh directory, removed by rt_fix_free */
    int port;       /* for admin_listen: free when the fixture was made */
    ftg *tg;        /* the fake Bot API (rt_fix_new with a token), else NULL */
    fotlp *otlp;    /* the fake OTLP collector once rt_fix_otlp started it */
    char *manifest; /* the last one rt_fix_manifest wrote */
    rt_proc *p;     /* the last routerd rt_fix_start started */
    char url[4][192];
    unsigned next_url;
} rt_fix;

/* NULL on failure. tg_token non-NULL also starts the fake Bot API for it. */
rt_fix *rt_fix_new(const char *tg_token);
/* Starts the fake OTLP collector (fx->otlp), stopped by rt_fix_free. */
fotlp *rt_fix_otlp(rt_fix *fx);
/* Kills the routerd if still running, stops the fakes, removes the
 * directory, frees. NULL is a no-op. */
void rt_fix_free(rt_fix *fx);
/* Writes dir/routerd.ini as rt_manifest does, with admin_listen on
 * fx->port and state_dir = dir/state. The path (owned by fx) or NULL. */
const char *rt_fix_manifest(rt_fix *fx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the previous process, starts routerd with fx->manifest and, when
 * ready_ms > 0, waits that long for /healthz to answer 200. The process
 * (owned by fx, also fx->p) or NULL when it did not start or get ready. */
rt_proc *rt_fix_start(rt_fix *fx, const char *const *env_extra, int ready_ms);
/* SIGTERM, then waits up to timeout_ms: the exit code as rt_wait. The
 * process stays for its output until the next start or rt_fix_free. */
int rt_fix_stop(rt_fix *fx, int timeout_ms);

/* cmocka set-up and tear-down around one fixture per test: the test's
 * initial state is an rt_fix_spec; set-up makes the fixture (and the fakes
 * asked for) and stores it and them where the spec points, tear-down frees
 * it and clears them. RT_FIX_TEST(test, &spec) is the table entry. */
typedef struct rt_fix_spec {
    rt_fix **fx;
    const char *tg_token; /* non-NULL: run the fake Bot API for this token */
    ftg **tg;             /* where the fake Bot API goes, or NULL */
    fotlp **otlp;         /* non-NULL: run the fake OTLP collector, stored here */
} rt_fix_spec;
int rt_fix_setup(void **state);
int rt_fix_teardown(void **state);
#define RT_FIX_TEST(test, spec)                                                                    \
    cmocka_unit_test_prestate_setup_teardown(test, rt_fix_setup, rt_fix_teardown, spec)

/* "http://127.0.0.1:<port><path>", in one of four buffers of fx that
 * later calls reuse in turn. */
const char *rt_fix_url(rt_fix *fx, const char *path);

/* For tests run through tests/support/pg.sh: empties the database at
 * $ROUTERD_TEST_PG_URL and writes "PG_URL=<url>" into env (for
 * store_url = ${PG_URL}). 0, or -1 when not run through pg.sh or psql
 * failed. */
int rt_pg_reset(char *env, size_t n);

/* Sleep helper. */
void rt_sleep_ms(int ms);
/* Monotonic milliseconds. */
long long rt_now_ms(void);

#endif
