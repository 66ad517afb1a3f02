/* Unit tests: JSON log line builder (mandatory fields, hostile text,
 * timestamps) and the jsonlog plugin over a fake host (level filter,
 * redaction, reopen on rotation and on flush, whole lines and one report
 * per episode on a full disk). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "jsonlog_line.h"
#include "fake_host.h"

static const char *const mandatory[] = {"ts",           "level",       "event",  "correlation_id",
                                        "chat_id_hash", "persona_tag", "status", "latency_ms",
                                        "env",          "build_sha",   NULL};

static cJSON *parse_line(const char *line, size_t len) {
    /* Exactly one line, ending in '\n'. */
    assert_true(len > 1);
    assert_int_equal(line[len - 1], '\n');
    assert_null(memchr(line, '\n', len - 1));
    cJSON *o = cJSON_ParseWithLength(line, len);
    assert_non_null(o);
    assert_true(cJSON_IsObject(o));
    for (int i = 0; mandatory[i]; i++)
        assert_non_null(cJSON_GetObjectItemCaseSensitive(o, mandatory[i]));
    return o;
}

static const char *str(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool is_null(cJSON *o, const char *k) {
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, k));
}

static int64_t ns_of(int y, int mo, int d, int h, int mi, int s, int ms) {
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    return (int64_t)timegm(&tm) * 1000000000 + (int64_t)ms * 1000000;
}

static void test_rfc3339(void **state) {
    (void)state;
    char b[40];
    jl_rfc3339(ns_of(2026, 11, 26, 17, 50, 0, 123) + 999999, b,
               sizeof b); /* truncated, not rounded */
    assert_string_equal(b, "2026-11-26T17:50:00.123Z");
    jl_rfc3339(0, b, sizeof b);
    assert_string_equal(b, "1970-01-01T00:00:00.000Z");
    jl_rfc3339(ns_of(2024, 2, 29, 23, 59, 59, 7), b, sizeof b);
    assert_string_equal(b, "2024-02-29T23:59:59.007Z");
    jl_rfc3339(-1, b, sizeof b); /* one ns before the epoch */
    assert_string_equal(b, "1969-12-31T23:59:59.999Z");
}

static void test_levels(void **state) {
    (void)state;
    assert_int_equal(jl_level_parse("debug"), RD_LOG_DEBUG);
    assert_int_equal(jl_level_parse("INFO"), RD_LOG_INFO);
    assert_int_equal(jl_level_parse("warning"), RD_LOG_WARN);
    assert_int_equal(jl_level_parse("error"), RD_LOG_ERROR);
    assert_int_equal(jl_level_parse("loud"), -1);
    assert_string_equal(jl_level_name(RD_LOG_WARN), "warn");
    assert_string_equal(jl_event_name(RD_EV_SEND_FAILED), "send_failed");
}

static void test_log_line_nulls(void **state) {
    (void)state;
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_LOG,
                   .level = RD_LOG_INFO,
                   .ts_ns = ns_of(2026, 11, 26, 17, 50, 0, 123),
                   .source = "core",
                   .msg = "started"};
    sbuf b = {0};
    jl_format(&b, &ev, ev.msg, "staging", "abc123");
    /* Field order is stable: operators grep and eyeball these. */
    assert_string_equal(b.p,
                        "{\"ts\":\"2026-11-26T17:50:00.123Z\",\"level\":\"info\",\"event\":\"log\","
                        "\"correlation_id\":null,\"chat_id_hash\":null,\"persona_tag\":null,"
                        "\"status\":null,\"latency_ms\":null,\"env\":\"staging\","
                        "\"build_sha\":\"abc123\",\"source\":\"core\",\"msg\":\"started\"}\n");
    cJSON *o = parse_line(b.p, b.len);
    assert_true(is_null(o, "correlation_id") && is_null(o, "latency_ms"));
    cJSON_Delete(o);
    /* Unknown env/build: null, still present. */
    sbuf_reset(&b);
    jl_format(&b, &ev, NULL, NULL, NULL);
    o = parse_line(b.p, b.len);
    assert_true(is_null(o, "env") && is_null(o, "build_sha"));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "msg"));
    cJSON_Delete(o);
    sbuf_free(&b);
}

static void test_replied_line(void **state) {
    (void)state;
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_REPLIED,
                   .level = RD_LOG_WARN,
                   .ts_ns = 1,
                   .source = "core",
                   .correlation_id = "0af7651916cd43dd8448eb211c80319c",
                   .chat_id_hash = "9f86d081884c7d65",
                   .persona = "helper",
                   .transport = "main",
                   .backend = "agent",
                   .status = "failed",
                   .failure_class = "fatal",
                   .update_id = 9007199254740993LL,
                   .latency_ms = 1234.5678,
                   .trace_id = "0af7651916cd43dd8448eb211c80319c",
                   .span_id = "b7ad6b7169203331"};
    sbuf b = {0};
    jl_format(&b, &ev, NULL, "prod", "sha");
    cJSON *o = parse_line(b.p, b.len);
    assert_string_equal(str(o, "event"), "replied");
    assert_string_equal(str(o, "level"), "warn");
    assert_string_equal(str(o, "persona_tag"), "helper");
    assert_string_equal(str(o, "status"), "failed");
    assert_string_equal(str(o, "failure_class"), "fatal");
    assert_string_equal(str(o, "chat_id_hash"), "9f86d081884c7d65");
    assert_true(cJSON_GetObjectItem(o, "latency_ms")->valuedouble == 1234.568);
    /* Large ids are written exactly (no float rounding). */
    assert_non_null(strstr(b.p, "\"update_id\":9007199254740993,"));
    cJSON_Delete(o);
    /* A received event has no latency yet. */
    ev.type = RD_EV_RECEIVED;
    sbuf_reset(&b);
    jl_format(&b, &ev, NULL, "prod", "sha");
    o = parse_line(b.p, b.len);
    assert_true(is_null(o, "latency_ms"));
    assert_null(cJSON_GetObjectItem(o, "caller")); /* not an inbound message */
    cJSON_Delete(o);
    sbuf_free(&b);
}

/* An inbound question's events name the calling agent; a 1.2-sized event
 * has no caller member, whatever lies behind it. */
static void test_caller(void **state) {
    (void)state;
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_REPLIED,
                   .level = RD_LOG_INFO,
                   .ts_ns = 1,
                   .source = "core",
                   .correlation_id = "task-1",
                   .transport = "main",
                   .backend = "inbound.people",
                   .status = "answered",
                   .caller = "planner"};
    sbuf b = {0};
    jl_format(&b, &ev, NULL, "prod", "sha");
    cJSON *o = parse_line(b.p, b.len);
    assert_string_equal(str(o, "caller"), "planner");
    assert_string_equal(str(o, "correlation_id"), "task-1");
    assert_non_null(strstr(b.p, "\"backend\":\"inbound.people\",\"caller\":\"planner\","));
    cJSON_Delete(o);
    ev.size = (uint32_t)offsetof(rd_event, caller);
    sbuf_reset(&b);
    jl_format(&b, &ev, NULL, "prod", "sha");
    o = parse_line(b.p, b.len);
    assert_null(cJSON_GetObjectItem(o, "caller"));
    cJSON_Delete(o);
    sbuf_free(&b);
}

static void test_hostile_text(void **state) {
    (void)state;
    const char *msg = "line one\nline two\r\n\"quoted\" \\ back\ttab \x01\x1f del\x7f "
                      "bad\xff\xc0\xaf utf8 \xe2\x82\xac \xf0\x9f\x98\x80 "
                      "\n{\"level\":\"error\",\"forged\":true}";
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_LOG,
                   .level = RD_LOG_ERROR,
                   .ts_ns = 5,
                   .source = "backend.x\"y"};
    sbuf b = {0};
    jl_format(&b, &ev, msg, "e\nv", "s");
    cJSON *o = parse_line(b.p, b.len);
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "forged"));
    assert_string_equal(str(o, "level"), "error");
    assert_string_equal(str(o, "source"), "backend.x\"y");
    assert_string_equal(str(o, "env"), "e\nv");
    const char *m = str(o, "msg");
    assert_non_null(m);
    assert_non_null(strstr(m, "line one\nline two\r\n\"quoted\" \\ back\ttab \x01\x1f del\x7f"));
    /* Bad bytes became U+FFFD, good multibyte characters stayed. */
    assert_non_null(strstr(m, "bad\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd utf8 \xe2\x82\xac "
                              "\xf0\x9f\x98\x80"));
    assert_non_null(strstr(b.p, "\\u0001\\u001f"));
    cJSON_Delete(o);
    sbuf_free(&b);
}

/* ---- the plugin over the fake host ---------------------------------------- */

static char *dir;

static int setup(void **state) {
    (void)state;
    th_reset();
    th_defaults();
    th_info("env", "test");
    th_info("build_sha", "deadbeef");
    th_info("instance", "logs");
    dir = rt_tmpdir();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    rt_rmtree(dir);
    free(dir);
    th_reset();
    return 0;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc(1, (size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    return b;
}

static int nlines(const char *s) {
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static void log_ev(const rd_plugin *p, void *self, rd_log_level lvl, const char *msg) {
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_LOG,
                   .level = lvl,
                   .ts_ns = th_host.wall_ns(),
                   .source = "core",
                   .msg = msg};
    p->ops->event(self, &ev);
}

static void test_plugin_file_filter_redact(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/routerd.log", dir);
    th_cfg("path", path);
    th_cfg("level", "info");
    th_secret("hunter2-token");
    const rd_plugin *p = th_plugin();
    assert_int_equal(p->flags & RD_PF_LOGS, RD_PF_LOGS);
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    log_ev(p, self, RD_LOG_DEBUG, "too chatty");
    log_ev(p, self, RD_LOG_INFO, "token is hunter2-token, keep it");
    log_ev(p, self, RD_LOG_ERROR, "multi\nline");
    rd_event rx = {.size = sizeof rx, .type = RD_EV_RECEIVED, .level = RD_LOG_DEBUG, .ts_ns = 1};
    p->ops->event(self, &rx); /* below the level */
    rd_event rep = {.size = sizeof rep,
                    .type = RD_EV_REPLIED,
                    .level = RD_LOG_INFO,
                    .ts_ns = 1,
                    .correlation_id = "c1",
                    .status = "ok",
                    .latency_ms = 3};
    p->ops->event(self, &rep);
    char *text = slurp(path);
    assert_non_null(text);
    assert_int_equal(nlines(text), 3);
    assert_null(strstr(text, "too chatty"));
    assert_null(strstr(text, "hunter2-token"));
    assert_non_null(strstr(text, "token is ***, keep it"));
    assert_non_null(strstr(text, "\"msg\":\"multi\\nline\""));
    assert_non_null(strstr(text, "\"env\":\"test\",\"build_sha\":\"deadbeef\""));
    assert_true(rdpt_metric("routerd_jsonlog_lines_total", NULL) == 3);
    free(text);
    p->ops->destroy(self);
}

static void test_plugin_reopen(void **state) {
    (void)state;
    char path[512], rotated[600];
    snprintf(path, sizeof path, "%s/r.log", dir);
    snprintf(rotated, sizeof rotated, "%s.1", path);
    th_cfg("path", path);
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    th_set_now_ms(10000);
    log_ev(p, self, RD_LOG_INFO, "first");
    /* logrotate renames; the sink notices within a second of its clock. */
    assert_int_equal(rename(path, rotated), 0);
    th_set_now_ms(10500);
    log_ev(p, self, RD_LOG_INFO, "second"); /* not checked yet: still the old file */
    th_set_now_ms(11600);
    log_ev(p, self, RD_LOG_INFO, "third");
    char *old = slurp(rotated), *cur = slurp(path);
    assert_non_null(old);
    assert_non_null(cur);
    assert_non_null(strstr(old, "first"));
    assert_non_null(strstr(old, "second"));
    assert_non_null(strstr(cur, "third"));
    assert_int_equal(nlines(cur), 1);
    free(old);
    free(cur);
    /* Flush (SIGHUP, drain) reopens at once, no clock needed. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(p->ops->flush(self, &err), RD_OK);
    log_ev(p, self, RD_LOG_INFO, "fourth");
    cur = slurp(path);
    assert_non_null(cur);
    assert_string_not_equal(cur, "");
    assert_non_null(strstr(cur, "fourth"));
    free(cur);
    p->ops->destroy(self);
}

static void test_plugin_bad_path(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/missing-dir/x.log", dir);
    th_cfg("path", path);
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    /* Found at create(), without creating anything, so --check-config
     * refuses it too. */
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_E_CONFIG);
    assert_non_null(strstr(err.msg, "missing-dir"));
    p->ops->destroy(self);
}

static int stderr_pipe[2] = {-1, -1}, saved_stderr = -1;

static void capture_stderr(void) {
    assert_int_equal(pipe(stderr_pipe), 0);
    fcntl(stderr_pipe[0], F_SETFL, O_NONBLOCK);
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(stderr_pipe[1], 2);
}

/* Restores stderr and returns what was written to it (malloc). */
static char *captured_stderr(void) {
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    close(stderr_pipe[1]);
    char *b = calloc(1, 65537);
    ssize_t n = read(stderr_pipe[0], b, 65536);
    b[n > 0 ? n : 0] = 0;
    close(stderr_pipe[0]);
    return b;
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void set_fsize(rlim_t cur) {
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = cur == RLIM_INFINITY ? rl.rlim_max : cur;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static off_t size_of(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* A disk that fills and frees twice (simulated with the file size limit,
 * which writes what fits and then fails, like ENOSPC): no fragment stays in
 * the file, every line in it is whole, and each episode is reported once
 * when it starts and once when lines are written again. */
static void test_plugin_disk_full_episodes(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/full.log", dir);
    th_cfg("path", path);
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    signal(SIGXFSZ, SIG_IGN);
    capture_stderr();
    log_ev(p, self, RD_LOG_INFO, "line one");
    off_t s1 = size_of(path);
    set_fsize((rlim_t)s1 + 100); /* room for a fragment of the next line */
    log_ev(p, self, RD_LOG_INFO, "lost A, a line longer than the room that is left on the disk");
    log_ev(p, self, RD_LOG_INFO, "lost B");
    log_ev(p, self, RD_LOG_INFO, "lost C");
    off_t s2 = size_of(path);
    set_fsize(RLIM_INFINITY);
    log_ev(p, self, RD_LOG_INFO, "back one");
    off_t s3 = size_of(path);
    set_fsize((rlim_t)s3 + 30);
    log_ev(p, self, RD_LOG_WARN, "lost D, in the second episode");
    set_fsize(RLIM_INFINITY);
    log_ev(p, self, RD_LOG_INFO, "back two");
    char *errs = captured_stderr();
    p->ops->destroy(self);

    assert_int_equal(s2, s1); /* the fragment was cut off */
    char *text = slurp(path);
    assert_non_null(text);
    int lines = 0;
    for (char *l = text, *nl; (nl = strchr(l, '\n')); l = nl + 1, lines++)
        cJSON_Delete(parse_line(l, (size_t)(nl - l + 1)));
    assert_int_equal(strlen(text) > 0 && text[strlen(text) - 1] == '\n', 1);
    assert_null(strstr(text, "lost A"));
    assert_null(strstr(text, "lost D"));
    assert_non_null(strstr(text, "line one"));
    assert_non_null(strstr(text, "back one"));
    assert_non_null(strstr(text, "back two"));
    /* Lines, in the file: the three kept and a note per recovery. */
    assert_int_equal(lines, 5);
    assert_int_equal(count_of(text, "3 line(s) were lost"), 1);
    assert_int_equal(count_of(text, "1 line(s) were lost"), 1);
    /* Standard error: each episode's start and end, once each. */
    assert_int_equal(count_of(errs, "jsonlog: cannot write"), 2);
    assert_int_equal(count_of(errs, "again;"), 2);
    assert_true(rdpt_metric("routerd_jsonlog_write_errors_total", NULL) == 4);
    assert_true(rdpt_metric("routerd_jsonlog_lines_total", NULL) == 3);
    free(errs);
    free(text);
}

/* The terminal's short lines: time, level unless info, source, text; no
 * control character survives; quiet events are left out. */
static void test_human_lines(void **state) {
    (void)state;
    int64_t t = ns_of(2026, 11, 26, 17, 50, 7, 123);
    rd_event ev = {
        .size = sizeof ev, .type = RD_EV_LOG, .level = RD_LOG_INFO, .ts_ns = t, .source = "core"};
    sbuf b = {0};
    assert_true(jl_human(&b, &ev, "routerd started"));
    assert_string_equal(b.p, "17:50:07 [core] routerd started\n");
    sbuf_reset(&b);
    ev.level = RD_LOG_WARN;
    ev.source = "transport.tg";
    assert_true(jl_human(&b, &ev, "bad\x1b[2Jtext\nnext\xc2\x9b!"));
    assert_string_equal(b.p, "17:50:07 WARN [transport.tg] bad?[2Jtext?next?!\n");
    sbuf_reset(&b);
    rd_event rej = {.size = sizeof rej,
                    .type = RD_EV_REJECTED,
                    .level = RD_LOG_WARN,
                    .ts_ns = t,
                    .status = "rate_limited",
                    .persona = "helper"};
    assert_true(jl_human(&b, &rej, NULL));
    assert_string_equal(b.p, "17:50:07 WARN [core] rejected rate_limited persona helper\n");
    sbuf_reset(&b);
    rd_event fail = {.size = sizeof fail,
                     .type = RD_EV_REPLIED,
                     .level = RD_LOG_WARN,
                     .ts_ns = t,
                     .status = "failed",
                     .failure_class = "timeout"};
    assert_true(jl_human(&b, &fail, NULL));
    assert_string_equal(b.p, "17:50:07 WARN [core] replied failed (timeout)\n");
    sbuf_reset(&b);
    rd_event ok = {
        .size = sizeof ok, .type = RD_EV_REPLIED, .level = RD_LOG_INFO, .ts_ns = t, .status = "ok"};
    assert_false(jl_human(&b, &ok, NULL));
    ok.type = RD_EV_RECEIVED;
    assert_false(jl_human(&b, &ok, NULL));
    assert_int_equal(b.len, 0);
    sbuf_free(&b);
}

/* tty_path: with a terminal on standard error, it gets short lines and
 * the JSON lines go to the file; without one, JSON stays on stderr. */
static void test_plugin_tty(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/tty.log", dir);
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) skip(); /* no pseudo-terminals here */
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    assert_true(slave >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(slave, 2);
    th_cfg("path", "-");
    th_cfg("tty_path", path);
    const rd_plugin *p = th_plugin();
    void *self = NULL;
    rd_error err = {0};
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    log_ev(p, self, RD_LOG_INFO, "hello terminal");
    rd_event rep = {.size = sizeof rep,
                    .type = RD_EV_REPLIED,
                    .level = RD_LOG_INFO,
                    .ts_ns = 1,
                    .correlation_id = "c1",
                    .status = "ok"};
    p->ops->event(self, &rep);
    p->ops->destroy(self);
    dup2(saved, 2);
    close(saved);
    /* Read while the slave is still open: once it closes, reads fail. */
    char term[4096] = "";
    size_t got = 0;
    for (int i = 0; i < 50 && !strstr(term, "hello terminal"); i++) {
        struct pollfd pf = {.fd = master, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0) continue;
        ssize_t n = read(master, term + got, sizeof term - 1 - got);
        if (n > 0) got += (size_t)n;
        term[got] = 0;
    }
    close(slave);
    close(master);
    assert_non_null(strstr(term, " [core] hello terminal"));
    assert_null(strchr(term, '{'));
    char *text = slurp(path);
    assert_non_null(text);
    assert_int_equal(nlines(text), 2);
    assert_non_null(strstr(text, "\"msg\":\"hello terminal\""));
    assert_non_null(strstr(text, "\"event\":\"replied\""));
    free(text);
    assert_int_equal(unlink(path), 0);

    /* Standard error not a terminal: JSON there, tty_path unused. */
    capture_stderr();
    self = NULL;
    assert_int_equal(p->ops->create(&th_host, th_ctx, &self, &err), RD_OK);
    assert_int_equal(p->ops->start(self, &err), RD_OK);
    log_ev(p, self, RD_LOG_INFO, "hello pipe");
    p->ops->destroy(self);
    char *errs = captured_stderr();
    assert_non_null(strstr(errs, "\"msg\":\"hello pipe\""));
    assert_int_equal(access(path, F_OK), -1);
    free(errs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_log_line_nulls),
        cmocka_unit_test(test_replied_line),
        cmocka_unit_test(test_caller),
        cmocka_unit_test(test_hostile_text),
        cmocka_unit_test_setup_teardown(test_plugin_file_filter_redact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_bad_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_disk_full_episodes, setup, teardown),
        cmocka_unit_test(test_human_lines),
        cmocka_unit_test_setup_teardown(test_plugin_tty, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
