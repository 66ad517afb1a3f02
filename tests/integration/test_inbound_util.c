/* The calling agent and the person for the inbound A2A tests: see
 * test_inbound_util.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "test_inbound_util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

char ie_base[64];
ftg *ie_tg;
rt_proc *ie_routerd;
void (*ie_on_fail)(void);

static char node_bin[PATH_MAX];
static char cli_path[PATH_MAX];

/* ------------------------------------------------------------------------ */
/* The calling agent (node inbound_client.mjs)                               */

/* Starts the client: args[0] is the command, the rest its options;
 * token NULL = none sent. */
rt_proc *cli_start(const char *token, const char *const *args) {
    const char *argv[48];
    size_t n = 0;
    argv[n++] = node_bin;
    argv[n++] = cli_path;
    argv[n++] = args[0];
    argv[n++] = "--url";
    argv[n++] = ie_base;
    for (size_t i = 1; args[i] && n < 44; i++)
        argv[n++] = args[i];
    if (!token) {
        argv[n++] = "--auth";
        argv[n++] = "none";
    }
    argv[n] = NULL;
    char tok[256];
    snprintf(tok, sizeof tok, "A2A_TOKEN=%s", token ? token : "");
    const char *const e[] = {tok, NULL};
    rt_proc *p = rt_spawn(argv, e);
    assert_non_null(p);
    return p;
}

/* The JSON lines the client printed so far, as an array. */
cJSON *cli_lines(rt_proc *p) {
    cJSON *a = cJSON_CreateArray();
    char *s = strdup(rt_stdout(p)), *save = NULL;
    for (char *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(l);
        if (o) cJSON_AddItemToArray(a, o);
    }
    free(s);
    return a;
}

/* Waits for the client to exit with want_rc; its lines. */
cJSON *cli_done(rt_proc *p, int want_rc) {
    int rc = rt_wait(p, 40000);
    if (rc != want_rc) {
        fprintf(stderr, "client exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\n", rc, want_rc,
                rt_stdout(p), rt_stderr(p));
        if (ie_routerd) fprintf(stderr, "routerd stderr:\n%s\n", rt_stderr(ie_routerd));
    }
    assert_int_equal(rc, want_rc);
    cJSON *l = cli_lines(p);
    rt_free(p);
    return l;
}

cJSON *cli(const char *token, const char *const *args, int want_rc) {
    return cli_done(cli_start(token, args), want_rc);
}

/* The nth line (from 0; -1 = the last) whose "event" is ev, or NULL. */
const cJSON *ev(const cJSON *lines, const char *event, int nth) {
    const cJSON *it, *found = NULL;
    int k = 0;
    cJSON_ArrayForEach(it, lines) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(it, "event");
        if (!cJSON_IsString(e) || strcmp(e->valuestring, event)) continue;
        if (nth < 0 || k++ == nth) found = it;
        if (nth >= 0 && found) break;
    }
    return found;
}

/* A member by dotted path ("task.state"). */
const cJSON *jget(const cJSON *o, const char *path) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
        o = cJSON_GetObjectItemCaseSensitive(o, k);
    return o;
}

const char *jstr(const cJSON *o, const char *path) {
    const cJSON *v = jget(o, path);
    return cJSON_IsString(v) ? v->valuestring : "";
}

double jnum(const cJSON *o, const char *path) {
    const cJSON *v = jget(o, path);
    return cJSON_IsNumber(v) ? v->valuedouble : -999999;
}

/* The event's field, failing with the lines when the event is missing. */
const char *evs(const cJSON *lines, const char *event, int nth, const char *path) {
    const cJSON *e = ev(lines, event, nth);
    if (!e) {
        char *s = cJSON_Print(lines);
        fprintf(stderr, "no '%s' event in:\n%s\n", event, s);
        free(s);
        fail_msg("missing event %s", event);
    }
    return jstr(e, path);
}

/* The wire call of method (first one), or NULL. */
const cJSON *wire(const cJSON *lines, const char *method) {
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(ev(lines, "wire", -1), "calls")) {
        if (!strcmp(jstr(c, "method"), method)) return c;
    }
    return NULL;
}

/* Whether any wire call of method carried this state string. */
int wire_state(const cJSON *lines, const char *method, const char *state) {
    const cJSON *c, *s;
    cJSON_ArrayForEach(c, jget(ev(lines, "wire", -1), "calls")) {
        if (strcmp(jstr(c, "method"), method)) continue;
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(c, "states")) {
            if (cJSON_IsString(s) && !strcmp(s->valuestring, state)) return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The person (fake Bot API)                                                  */

/* Waits until the bot sent exactly `text` to chat; its message id (the
 * latest such) and a copy of its reply_markup (malloc, or NULL). */
int64_t question(int64_t chat, const char *text, int timeout_ms, char **markup) {
    long long end = rt_now_ms() + timeout_ms;
    do {
        ftg_rec *r;
        size_t n = ftg_records(ie_tg, "sendMessage", 1, &r);
        int64_t id = 0;
        for (size_t i = 0; i < n; i++)
            if (r[i].chat_id == chat && r[i].text && !strcmp(r[i].text, text)) {
                id = r[i].message_id;
                if (markup) {
                    free(*markup);
                    *markup = r[i].reply_markup ? strdup(r[i].reply_markup) : NULL;
                }
            }
        ftg_recs_free(r, n);
        if (id) return id;
        rt_sleep_ms(20);
    } while (rt_now_ms() < end);
    ftg_rec *r;
    size_t n = ftg_records(ie_tg, "sendMessage", 0, &r);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "sent to %lld: %s\n", (long long)r[i].chat_id,
                r[i].text ? r[i].text : "(none)");
    ftg_recs_free(r, n);
    if (ie_on_fail)
        ie_on_fail();
    else if (ie_routerd)
        fprintf(stderr, "routerd stderr:\n%s\n", rt_stderr(ie_routerd));
    fail_msg("no message '%s' in chat %lld", text, (long long)chat);
    return 0;
}

/* How many times the bot sent exactly `text` to chat. */
int sent_count(int64_t chat, const char *text) {
    ftg_rec *r;
    size_t n = ftg_records(ie_tg, "sendMessage", 1, &r);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += r[i].chat_id == chat && r[i].text && !strcmp(r[i].text, text);
    ftg_recs_free(r, n);
    return k;
}

/* How many messages to chat start with prefix. */
int sent_prefix(int64_t chat, const char *prefix) {
    ftg_rec *r;
    size_t n = ftg_records(ie_tg, "sendMessage", 1, &r);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += r[i].chat_id == chat && r[i].text && !strncmp(r[i].text, prefix, strlen(prefix));
    ftg_recs_free(r, n);
    return k;
}

/* The person writes text (quoting the bot's message quoted, or not when
 * 0) and the persona answers it: the message was not taken as an answer. */
void expect_echo(int64_t chat, int64_t quoted, const char *text) {
    char want[512];
    snprintf(want, sizeof want, "echo: %s", text);
    if (quoted)
        ftg_add_reply(ie_tg, chat, quoted, text);
    else
        ftg_add_text(ie_tg, chat, text);
    question(chat, want, 10000, NULL);
}

const char *qtext(const char *caller, const char *text) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "Question from %s:\n\n%s", caller, text);
    return b;
}

/* node on PATH, then the client and its packages in the build tree: 0, or
 * 77 with the reason when something is missing. */
int ie_setup_node(void) {
    const char *path = getenv("PATH");
    char *dirs = strdup(path ? path : "/usr/bin:/bin"), *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d && !node_bin[0]; d = strtok_r(NULL, ":", &save)) {
        snprintf(node_bin, sizeof node_bin, "%s/node", d);
        if (access(node_bin, X_OK)) node_bin[0] = 0;
    }
    free(dirs);
    if (!node_bin[0]) {
        fprintf(stderr, "SKIP: node not installed\n");
        return 77;
    }
    const char *work = ROUTERD_BINARY_DIR "/a2a-inbound";
    snprintf(cli_path, sizeof cli_path, "%s/inbound_client.mjs", work);
    /* Like tests/interop/run.sh: npm ci once into the build tree, again
     * only when the lock file changed. The suites that use it run in
     * parallel: one at a time here, or one would start the client while
     * another's npm ci rewrites node_modules under it. The stamp, written
     * last, says the packages are complete. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "command -v npm >/dev/null 2>&1 || { echo 'SKIP: npm not installed' >&2; exit 77; }; "
             "mkdir -p '%s' && cd '%s' && exec 9>.setup.lock && flock 9 || exit 1; "
             "cp -p '%s/tests/interop/package.json' '%s/tests/interop/package-lock.json' "
             "'%s/tests/interop/inbound_client.mjs' . || exit 1; "
             "if [ ! -f node_modules/.stamp ] || [ package-lock.json -nt node_modules/.stamp ]; "
             "then timeout 180 npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1 || "
             "{ echo \"SKIP: npm ci failed (offline?): $(tail -n 3 npm.log)\" >&2; exit 77; }; "
             "touch node_modules/.stamp; fi",
             work, work, ROUTERD_SOURCE_DIR, ROUTERD_SOURCE_DIR, ROUTERD_SOURCE_DIR);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc)) return 1;
    return WEXITSTATUS(rc);
}
