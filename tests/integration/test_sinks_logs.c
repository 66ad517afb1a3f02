/*
 * The full production plugin set end to end (telegram against the fake
 * Bot API, a2a against the fake agent, prometheus + otlp + jsonlog) with
 * secret-looking values and chat ids like 987654321: every JSON log line
 * parses and carries the mandatory fields; the bot token, the A2A token,
 * the OTLP header, the chat hash key and the raw chat ids appear in no
 * log, span or metric; the span id the agent saw in traceparent is the
 * exported backend span. Error texts that spell the secrets as they travel
 * (URL-encoded, JSON-escaped, base64, the token's half) are masked too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_a2a.h"
#include "fake_otlp.h"
#include "fake_telegram.h"
#include "harness.h"
#include "test_sinks_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define BOT_SECRET "AAF-rtrd_s3cret-bot-Tok3n-x9q"
#define TOKEN "987650001:" BOT_SECRET
#define A2A_TOKEN "a2a-k3y-9f8e7d6c5b4a-secret"
#define OTLP_TOKEN "otlp-b3arer-55aa66bb-secret"
#define HASH_KEY "chat-hash-k3y-0123456789abcdef"

static const char *const secrets[] = {BOT_SECRET, A2A_TOKEN, OTLP_TOKEN, HASH_KEY, NULL};
static const char *const chat_ids[] = {"987654321",    "987654322", "987654323",
                                       "555666777888", "123123123", NULL};

static rt_fix *fx;
static ftg *F;
static fa *A;
static fotlp *C;

static int setup(void **state) {
    (void)state;
    fx = rt_fix_new(TOKEN);
    F = fx ? fx->tg : NULL;
    C = fx ? rt_fix_otlp(fx) : NULL;
    A = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    return F && A && C ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    rt_fix_free(fx);
    fa_stop(A);
    return 0;
}

/* No secret and no raw chat id in text (where names the text). */
static void assert_clean(const char *where, const char *text) {
    for (int i = 0; secrets[i]; i++)
        if (strstr(text, secrets[i])) fail_msg("%s contains the secret %s", where, secrets[i]);
    for (int i = 0; chat_ids[i]; i++)
        if (sk_has_number(text, chat_ids[i]))
            fail_msg("%s contains the raw chat id %s", where, chat_ids[i]);
}

static void test_logs_spans_metrics_clean(void **state) {
    (void)state;
    rt_fix_manifest(fx,
                    "rate_limit_per_minute = 6\nchat_hash_key = ${HASH_KEY}\nlog_level = debug\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "throttle = off\ntimeout = 2\ntyping = false\nretry_base_ms = 50\n"
                    "retry_max_ms = 200\n"
                    "allowlist = 987654321, 987654322, 987654323, 555666777888\n"
                    "[backend.agent]\nplugin = a2a\nurl = %s\ntoken = ${A2A_TOKEN}\n"
                    "[sink.metrics]\nplugin = prometheus\n"
                    "[sink.traces]\nplugin = otlp\nendpoint = %s\nsample_ratio = 1\n"
                    "headers = authorization=Bearer ${OTLP_TOKEN}\n"
                    "[sink.logs]\nplugin = jsonlog\npath = %s/routerd.log\nlevel = debug\n"
                    "[persona.helper]\nbackend = agent\nchats = *\n",
                    ftg_base(F), fa_base(A), fotlp_base(C), fx->dir);
    const char *const env[] = {"TG_TOKEN=" TOKEN, "A2A_TOKEN=" A2A_TOKEN, "OTLP_TOKEN=" OTLP_TOKEN,
                               "HASH_KEY=" HASH_KEY, NULL};

    /* Plain messages, one the agent fails, one reply Telegram refuses,
     * a chat over its rate limit, a chat outside the allowlist, and text
     * carrying the secrets themselves. */
    for (int i = 0; i < 5; i++)
        ftg_add_text(F, 987654321, i ? "hello" : "my token is " TOKEN " and id 987654321");
    ftg_add_text(F, 987654322, "hi");
    ftg_add_text(F, 987654322, "fail");
    ftg_add_text(F, 987654322, "again " A2A_TOKEN);
    ftg_chat_error(F, 987654323, 403, "Forbidden: bot was blocked by the user", 0);
    ftg_add_text(F, 987654323, "one");
    ftg_add_text(F, 987654323, "two");
    for (int i = 0; i < 8; i++)
        ftg_add_text(F, 555666777888, "burst");
    ftg_add_text(F, 123123123, "stranger");
    const int finals = 19; /* replied + rejected events expected */

    rt_proc *p = rt_fix_start(fx, env, 0);
    char path[1024];
    snprintf(path, sizeof path, "%s/routerd.log", fx->dir);
    long long end = rt_now_ms() + 30000;
    char *log = NULL;
    int got = 0;
    while (rt_now_ms() < end) {
        free(log);
        log = sk_slurp(path);
        got = rt_count(log, "\"event\":\"replied\"") + rt_count(log, "\"event\":\"rejected\"");
        if (got >= finals) break;
        rt_sleep_ms(100);
    }
    if (got != finals)
        fail_msg("%d of %d messages finished; stderr: %.2000s", got, finals, rt_stderr(p));
    char *metrics = NULL;
    const char *url = rt_fix_url(fx, "/metrics");
    assert_int_equal(rt_http("GET", url, NULL, NULL, &metrics), 200);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 30000), 0);
    free(log);
    log = sk_slurp(path);

    /* Every line is a JSON object with the mandatory fields. */
    int lines = 0, seen[5] = {0};
    const char *events[] = {"log", "received", "replied", "rejected", "send_failed"};
    char *copy = strdup(log);
    for (char *l = strtok(copy, "\n"); l; l = strtok(NULL, "\n")) {
        char why[512];
        cJSON *o = sk_log_line(l, "test", why, sizeof why);
        if (!o) fail_msg("log line %d: %s", lines + 1, why);
        const char *ev = cJSON_GetObjectItem(o, "event")->valuestring;
        for (int i = 0; i < 5; i++)
            seen[i] += !strcmp(ev, events[i]);
        const char *sha = cJSON_GetObjectItem(o, "build_sha")->valuestring;
        assert_true(strlen(sha) >= 7);
        cJSON_Delete(o);
        lines++;
    }
    free(copy);
    assert_int_equal(rt_count(log, "\n"), lines); /* no blank or partial lines */
    for (int i = 0; i < 5; i++)
        if (!seen[i]) fail_msg("no '%s' event in the log", events[i]);
    assert_int_equal(seen[2] + seen[3], finals);
    assert_non_null(strstr(log, "\"failure_class\":\"fatal\""));
    assert_non_null(strstr(log, "\"status\":\"send_failed\""));
    assert_non_null(strstr(log, "\"status\":\"rejected:allowlist\""));

    /* Secrets and raw chat ids: nowhere. */
    assert_clean("the JSON log", log);
    assert_clean("standard error", rt_stderr(p));
    assert_clean("/metrics", metrics);
    char pdir[1024];
    snprintf(pdir, sizeof pdir, "%s/payloads", fx->dir);
    mkdir(pdir, 0755);
    int np = fotlp_write_bodies(C, pdir);
    assert_true(np >= 1);
    for (int i = 0; i < fotlp_count(C); i++) {
        char *b = fotlp_body(C, i), where[64];
        snprintf(where, sizeof where, "OTLP payload %d", i);
        assert_clean(where, b);
        free(b);
        char *h = fotlp_header(C, i, "authorization");
        assert_string_equal(h, "Bearer " OTLP_TOKEN); /* the secret did its job */
        free(h);
    }
    /* The metrics the sinks and plugins register are there. */
    assert_true(sk_metric(metrics, "routerd_a2a_failures_total", NULL) >= 1);
    assert_true(sk_metric(metrics, "routerd_rate_limit_hits_total", NULL) >= 1);
    assert_true(sk_metric(metrics, "routerd_messages_rejected_total",
                          (const char *const[]){"reason=\"allowlist\"", NULL}) == 1);
    assert_true(sk_metric(metrics, "routerd_jsonlog_lines_total", NULL) > 0);
    /* The full plugin set's exposition passes promtool's parser and lint. */
    if (sk_have("promtool")) {
        char *mf = rt_write_file(fx->dir, "metrics.txt", metrics), cmd2[1200], *lint = NULL;
        snprintf(cmd2, sizeof cmd2, "promtool check metrics < %s 2>&1", mf);
        int prc = sk_run(cmd2, &lint);
        if (prc != 0 || *lint) fail_msg("promtool check metrics: exit %d: %s", prc, lint);
        free(lint);
        free(mf);
    }

    /* Spans valid; the agent's traceparent names the exported backend span. */
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "node %s --env test %s", sk_src("tests/otlp/validate.js"), pdir);
    int rc = sk_run(cmd, &out);
    cJSON *sum = cJSON_Parse(out);
    if (rc != 0 || !sum) fail_msg("validator exit %d: %.3000s", rc, out ? out : "");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(sum, "traces")), finals);
    int matched = 0, rpc = 0;
    for (int i = 0; i < fa_count(A); i++) {
        fa_req r;
        if (fa_get(A, i, &r) || !r.method[0]) continue;
        rpc++;
        assert_string_equal(r.authorization, "Bearer " A2A_TOKEN);
        char trace[33] = "", span[17] = "";
        if (sscanf(r.traceparent, "00-%32[0-9a-f]-%16[0-9a-f]-", trace, span) != 2)
            fail_msg("request %d without traceparent: '%s'", i, r.traceparent);
        cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(sum, "traces")) {
            cJSON *bs = cJSON_GetObjectItem(t, "backend_span_id");
            if (!strcmp(cJSON_GetObjectItem(t, "id")->valuestring, trace) && cJSON_IsString(bs) &&
                !strcmp(bs->valuestring, span))
                matched++;
        }
    }
    assert_true(rpc >= 10);
    assert_int_equal(matched, rpc);
    print_message("%d log lines, %d OTLP payloads, %d agent calls matched to backend spans\n",
                  lines, np, matched);
    cJSON_Delete(sum);
    free(out);
    free(metrics);
    free(log);
}

/* ---- secrets in their wire spellings -------------------------------------- */

#define MOCK_TOKEN "mock-k3y-9f8e7d6c5b4a-secret"

static const char *const plain_secrets[] = {BOT_SECRET, MOCK_TOKEN, OTLP_TOKEN, HASH_KEY, NULL};

static int hexv(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* text with %XX decoded (twice, for %25XX) and + as a space. */
static char *url_decoded(const char *text) {
    char *a = strdup(text);
    for (int round = 0; round < 2; round++) {
        char *o = a;
        for (const char *p = a; *p; p++) {
            if (*p == '%' && hexv(p[1]) >= 0 && hexv(p[2]) >= 0) {
                *o++ = (char)(hexv(p[1]) * 16 + hexv(p[2]));
                p += 2;
            } else {
                *o++ = *p == '+' ? ' ' : *p;
            }
        }
        *o = 0;
    }
    return a;
}

static bool b64c(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '-' || c == '_';
}

/* No secret in text as it is, URL-decoded, JSON-unescaped (\/ and
 * \u00XX) or inside any base64 word. */
static void assert_no_spelling(const char *where, const char *text) {
    char *dec = url_decoded(text);
    for (char *o = dec, *p = dec;; p++) { /* JSON escapes */
        if (p[0] == '\\' && p[1] == '/')
            *o++ = '/', p++;
        else if (p[0] == '\\' && p[1] == 'u' && p[2] == '0' && p[3] == '0' && hexv(p[4]) >= 0 &&
                 hexv(p[5]) >= 0)
            *o++ = (char)(hexv(p[4]) * 16 + hexv(p[5])), p += 5;
        else
            *o++ = *p;
        if (!*p) break;
    }
    for (int i = 0; plain_secrets[i]; i++) {
        if (strstr(text, plain_secrets[i])) fail_msg("%s contains %s", where, plain_secrets[i]);
        if (strstr(dec, plain_secrets[i]))
            fail_msg("%s contains %s URL-encoded or JSON-escaped", where, plain_secrets[i]);
    }
    free(dec);
    for (const char *p = text; *p;) {
        size_t n = 0;
        while (b64c(p[n]))
            n++;
        if (n >= 12) {
            char *w = strndup(p, n);
            for (char *c = w; *c; c++)
                *c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
            /* Decode at each start offset, so any alignment shows. */
            for (size_t off = 0; off < 4 && n - off >= 8; off++) {
                size_t m = (n - off) / 4 * 4;
                unsigned char out[4096];
                if (m > 4 * (sizeof out / 3 - 1)) m = 4 * (sizeof out / 3 - 1);
                int k = EVP_DecodeBlock(out, (unsigned char *)w + off, (int)m);
                if (k < 0) continue;
                for (int i = 0; plain_secrets[i]; i++)
                    if (memmem(out, (size_t)k, plain_secrets[i], strlen(plain_secrets[i])))
                        fail_msg("%s contains %s in base64 (%s)", where, plain_secrets[i], w);
            }
            free(w);
        }
        p += n ? n : 1;
    }
}

/* Telegram error texts that echo the secrets the ways servers and
 * libraries spell them: URL-encoded (both hex cases), the token's secret
 * half alone, JSON-escaped, basic auth in base64, a header with + for a
 * blank. Not one of them may reach a log line, stderr, a span, a metric or
 * --print-config. */
static void test_wire_spellings_clean(void **state) {
    (void)state;
    unsigned char b64[128];
    EVP_EncodeBlock(b64, (const unsigned char *)"router:" MOCK_TOKEN,
                    (int)strlen("router:" MOCK_TOKEN));
    char basic[256];
    snprintf(basic, sizeof basic, "Forbidden: credentials Basic %s refused", (char *)b64);
    const char *descs[] = {
        "Unauthorized: /bot987650001%3aAAF-rtrd_s3cret-bot-Tok3n-x9q/sendMessage",
        "Unauthorized: t=987650001%3AAAF%2drtrd%5Fs3cret%2Dbot%2DTok3n%2dx9q",
        "Bad Request: token AAF-rtrd_s3cret-bot-Tok3n-x9q is not valid",
        "Bad Request: {\"u\":\"\\/bot987650001\\u003aAAF-rtrd_s3cret-bot-Tok3n-x9q\"}",
        basic,
        "Unauthorized: authorization=Bearer+otlp%2Db3arer%2D55aa66bb%2Dsecret",
        "Bad Request: key %6d%6F%63%6b-k3y-9f8e7d6c5b4a-secret",
        NULL};
    rt_fix_manifest(fx,
                    "chat_hash_key = ${HASH_KEY}\nlog_level = debug\n"
                    "failure_notice = ask the admin: 987650001%%3AAAF-rtrd_s3cret-bot-Tok3n-x9q\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "throttle = off\ntimeout = 2\ntyping = false\nretry_base_ms = 50\n"
                    "retry_max_ms = 200\n"
                    "[backend.agent]\nplugin = mock\ntoken = ${MOCK_TOKEN}\n"
                    "[sink.metrics]\nplugin = prometheus\n"
                    "[sink.traces]\nplugin = otlp\nendpoint = %s\nsample_ratio = 1\n"
                    "headers = authorization=Bearer ${OTLP_TOKEN}\n"
                    "[sink.logs]\nplugin = jsonlog\npath = %s/routerd.log\nlevel = debug\n"
                    "[persona.helper]\nbackend = agent\nchats = *\n",
                    ftg_base(F), fotlp_base(C), fx->dir);
    const char *const env[] = {"TG_TOKEN=" TOKEN, "MOCK_TOKEN=" MOCK_TOKEN,
                               "OTLP_TOKEN=" OTLP_TOKEN, "HASH_KEY=" HASH_KEY, NULL};
    int n = 0;
    for (; descs[n]; n++) {
        ftg_chat_error(F, 4100 + n, 400, descs[n], 0);
        ftg_add_text(F, 4100 + n, "hello");
    }

    rt_proc *p = rt_fix_start(fx, env, 0);
    char path[1024];
    snprintf(path, sizeof path, "%s/routerd.log", fx->dir);
    long long end = rt_now_ms() + 30000;
    char *log = NULL;
    int got = 0;
    while (rt_now_ms() < end) {
        free(log);
        log = sk_slurp(path);
        got = rt_count(log, "\"event\":\"replied\"");
        if (got >= n) break;
        rt_sleep_ms(100);
    }
    if (got != n) fail_msg("%d of %d messages finished; stderr: %.2000s", got, n, rt_stderr(p));
    char *metrics = NULL;
    const char *url = rt_fix_url(fx, "/metrics");
    assert_int_equal(rt_http("GET", url, NULL, NULL, &metrics), 200);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 30000), 0);
    free(log);
    log = sk_slurp(path);
    /* The error texts did reach the log, masked. */
    assert_true(rt_count(log, "\"level\":\"error\"") >= n);
    assert_non_null(strstr(log, "/bot***/sendMessage"));
    assert_non_null(strstr(log, "Basic *** refused"));
    assert_no_spelling("the JSON log", log);
    assert_no_spelling("standard error", rt_stderr(p));
    assert_no_spelling("/metrics", metrics);
    assert_true(fotlp_count(C) >= 1);
    for (int i = 0; i < fotlp_count(C); i++) {
        char *b = fotlp_body(C, i), where[64];
        snprintf(where, sizeof where, "OTLP payload %d", i);
        assert_no_spelling(where, b);
        free(b);
    }

    const char *const args[] = {"--print-config", NULL};
    p = rt_start(fx->manifest, args, env);
    assert_int_equal(rt_wait(p, 30000), 0);
    assert_non_null(strstr(rt_stdout(p), "failure_notice = ask the admin: ***"));
    assert_no_spelling("--print-config", rt_stdout(p));
    rt_free(p);
    free(metrics);
    free(log);
}

/* ---- a sink that cannot keep up ---------------------------------------------- */

static atomic_int fifo_paused = 1;
static atomic_bool fifo_quit;

static void *fifo_reader(void *arg) {
    int fd = *(int *)arg;
    char buf[65536];
    while (!atomic_load(&fifo_quit)) {
        if (atomic_load(&fifo_paused) || read(fd, buf, sizeof buf) <= 0) rt_sleep_ms(2);
    }
    return NULL;
}

static void feed(rt_proc *p, int from, int n) {
    char *text = malloc((size_t)n * 24), *o = text;
    for (int i = from; i < from + n; i++)
        o += sprintf(o, "@%d m%d\n", 1 + i % 50, i);
    rt_write(p, text);
    free(text);
}

static bool wait_count(rt_proc *p, const char *needle, int n, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    while (rt_count(rt_stderr(p), needle) < n && rt_now_ms() < end)
        rt_sleep_ms(50);
    return rt_count(rt_stderr(p), needle) >= n;
}

/* The log sink writes to a pipe nobody reads, twice: its event queue
 * overflows and each episode is reported once when it starts and once when
 * the sink keeps up again, on standard error (the log sink cannot take its
 * own note), never per dropped event. */
static void test_sink_overflow_episodes(void **state) {
    (void)state;
    char fifo[1024];
    snprintf(fifo, sizeof fifo, "%s/log.fifo", fx->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int fd = open(fifo, O_RDONLY | O_NONBLOCK);
    assert_true(fd >= 0);
    atomic_store(&fifo_paused, 1);
    atomic_store(&fifo_quit, false);
    pthread_t th;
    pthread_create(&th, NULL, fifo_reader, &fd);
    char *m = rt_manifest(fx->dir, "overflow", 0,
                          "rate_limit_per_minute = 0\n"
                          "[transport.console]\nplugin = console\n"
                          "[backend.mock]\nplugin = mock\n"
                          "[sink.logs]\nplugin = jsonlog\npath = %s\nlevel = debug\n"
                          "[persona.p]\nbackend = mock\nchats = *\n",
                          fifo);
    rt_proc *p = rt_start(m, NULL, NULL);
    for (int episode = 1; episode <= 2; episode++) {
        atomic_store(&fifo_paused, 1);
        rt_sleep_ms(300);
        feed(p, episode * 100000, 6000);
        if (!wait_count(p, "cannot keep up", episode, 60000))
            fail_msg("episode %d not reported: %s", episode, rt_stderr(p));
        atomic_store(&fifo_paused, 0);
        if (!wait_count(p, "keeps up again", episode, 60000))
            fail_msg("end of episode %d not reported: %s", episode, rt_stderr(p));
    }
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 60000), 0);
    assert_int_equal(rt_count(rt_stderr(p), "cannot keep up"), 2);
    assert_int_equal(rt_count(rt_stderr(p), "keeps up again"), 2);
    assert_non_null(strstr(rt_stderr(p), "[sink.logs] cannot keep up: its event queue (8192)"));
    atomic_store(&fifo_quit, true);
    pthread_join(th, NULL);
    close(fd);
    rt_free(p);
    free(m);
}

int main(void) {
    setenv("NODE_PATH", ROUTERD_BINARY_DIR "/otlp-validator/node_modules", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_logs_spans_metrics_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wire_spellings_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_overflow_episodes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
