/* mock backend: answers without an agent, for staging smoke tests and
 * development. Modes: echo, fixed, script. Latency and failures can be
 * injected; decisions derive from (seed, chat, update), so the same input
 * and seed give the same failures whatever the thread timing. */
#include <routerd/plugin.h>

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    regex_t re;
    char *reply;
    char **choices; /* from a trailing {choices: a|b}; NULL = the choices key */
} rule;

#define CHOICES_TAG "{choices:"

/* Splits "a|b|c" into a NULL-terminated array (NULL when empty). */
static char **split_choices(const char *s) {
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == '|';
    char **out = calloc(n + 1, sizeof *out);
    size_t k = 0;
    while (*s == ' ')
        s++;
    for (const char *p = s; out && *p;) {
        size_t len = strcspn(p, "|");
        while (len && p[len - 1] == ' ')
            len--;
        if (len) out[k++] = strndup(p, len);
        p += strcspn(p, "|");
        if (*p) p++;
        while (*p == ' ')
            p++;
    }
    if (out && !k) {
        free(out);
        out = NULL;
    }
    return out;
}

/* A reply held back until its latency has passed (async mode). */
typedef struct {
    int64_t due_ms;
    rd_reply *rp;
    rd_status st;
    rd_error err;
} delayed;

/* The mock's own keys, written by cfg_bind(). */
typedef struct {
    int mode; /* 0 echo, 1 fixed, 2 script */
    const char *prefix, *reply, *script;
    int64_t lat_min, lat_max;
    double fail_transient, fail_fatal, fail_timeout, fail_protocol;
    int64_t seed;
    int async;
    int attachments; /* 0 off, 1 echo */
    const char *const *choices;
} mock_conf;

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    mock_conf cf;
    pthread_t timer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    delayed *heap; /* min-heap on due_ms */
    size_t nheap, capheap;
    int stopping, timer_started;
    char *reply; /* cf.reply with its \n escapes turned into line breaks */
    rule *rules;
    size_t nrules;
    int64_t lat_min, lat_max;
    double p[4]; /* transient, fatal, timeout, protocol */
    uint64_t seed;
    rd_series *injected[4];
} mock;

static const char *const modes[] = {"echo", "fixed", "script", NULL};
static const char *const att_modes[] = {"off", "echo", NULL};
static const char *const klass[] = {"transient", "fatal", "timeout", "protocol"};

#define A2A_KEY_HELP "a2a key, ignored here (swap plugin = a2a for mock in one line)"

static const rd_option opts[] = {
    {"mode", RD_OPT_ENUM, 0, "echo", "echo the message, answer a fixed reply, or follow a script",
     0, 0, modes, RD_BIND(mock_conf, mode)},
    {"prefix", RD_OPT_STRING, 0, "echo: ", "put before the echoed text (echo mode)", 0, 0, NULL,
     RD_BIND(mock_conf, prefix)},
    {"reply", RD_OPT_STRING, 0, "OK", "the answer in fixed mode; \\n is a line break", 0, 0, NULL,
     RD_BIND(mock_conf, reply)},
    {"script", RD_OPT_STRING, 0, NULL,
     "file of 'REGEX => REPLY' lines, first match wins, {text} is the message (script mode)", 0, 0,
     NULL, RD_BIND(mock_conf, script)},
    {"latency_ms", RD_OPT_INT, 0, "0", "delay before answering", 0, 3600000, NULL,
     RD_BIND(mock_conf, lat_min)},
    {"latency_max_ms", RD_OPT_INT, 0, "0",
     "if above latency_ms, the delay is uniform in [latency_ms, latency_max_ms]", 0, 3600000, NULL,
     RD_BIND(mock_conf, lat_max)},
    {"fail_transient", RD_OPT_DOUBLE, 0, "0", "share of messages failing as transient", 0, 1, NULL,
     RD_BIND(mock_conf, fail_transient)},
    {"fail_fatal", RD_OPT_DOUBLE, 0, "0", "share of messages failing as fatal", 0, 1, NULL,
     RD_BIND(mock_conf, fail_fatal)},
    {"fail_timeout", RD_OPT_DOUBLE, 0, "0", "share of messages failing as timeout", 0, 1, NULL,
     RD_BIND(mock_conf, fail_timeout)},
    {"fail_protocol", RD_OPT_DOUBLE, 0, "0", "share of messages failing as protocol", 0, 1, NULL,
     RD_BIND(mock_conf, fail_protocol)},
    {"seed", RD_OPT_INT, 0, "0", "seed of the injected latency and failures (0 = random)", 0, 0,
     NULL, RD_BIND(mock_conf, seed)},
    {"attachments", RD_OPT_ENUM, 0, "off",
     "echo: send the message's attachments back with the reply", 0, 0, att_modes,
     RD_BIND(mock_conf, attachments)},
    {"choices", RD_OPT_LIST, 0, NULL,
     "answers offered with every reply (buttons); a pick comes back as a choice message", 0, 0,
     NULL, RD_BIND(mock_conf, choices)},
    /* The a2a backend's keys, accepted and ignored, so that staging turns
     * production's "plugin = a2a" into "plugin = mock" by changing that
     * one line. A test keeps this list equal to a2a's schema. */
    {"url", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"card_url", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"rpc_url", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"ca_file", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"binding", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"dialect", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"token", RD_OPT_STRING, RD_OPT_SECRET, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"api_key_header", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"api_key", RD_OPT_STRING, RD_OPT_SECRET, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"stream", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"blocking", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"timeout_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"connect_timeout_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"http_timeout_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"max_response_bytes", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"retries", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"retry_base_ms", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"retry_max_ms", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"poll_interval_ms", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"poll_max_interval_ms", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"cancel_timeout_ms", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"discovery_retry_max_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"progress", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"progress_interval_ms", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"accepted_output_modes", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"new_command", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"new_reply", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"failure_notice", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"timeout_notice", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"task_failed_notice", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"input_required_notice", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"auth_required_notice", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"empty_reply", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"credential_origins", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"oauth_client_id", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"oauth_token_url", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"oauth_scopes", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"oauth_audience", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"oauth_refresh_margin_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"max_reply_bytes", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"reply_cut_notice", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"max_request_bytes", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"push_url", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"push_fallback_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"message_ids", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"resend_unknown", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"answer_retention_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"stream_retry_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"auth_required_wait_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"required_extensions", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"card_max_age_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"card_refresh_min_s", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"oauth_client_secret", RD_OPT_STRING, RD_OPT_SECRET, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"max_calls", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"max_host_connections", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"max_idle_connections", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"max_connecting", RD_OPT_STRING, 0, NULL, A2A_KEY_HELP, 0, 0, NULL, 0, 0},
    {"async", RD_OPT_BOOL, 0, "false",
     "wait out the latency on one timer thread instead of a worker (RD_PENDING), so thousands "
     "of slow replies can be in flight",
     0, 0, NULL, RD_BIND(mock_conf, async)},
    {0},
};

static char *unescape(const char *s) {
    char *d = malloc(strlen(s) + 1), *o = d;
    if (!d) return NULL;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] == 'n') {
            *o++ = '\n';
            s++;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
    return d;
}

static int load_script(mock *m, const char *path, rd_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) {
        m->h->error(err, RD_E_CONFIG, "fatal", "script %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#') continue;
        char *arrow = strstr(p, " => ");
        if (!arrow) {
            m->h->error(err, RD_E_CONFIG, "fatal", "script %s:%d: expected 'REGEX => REPLY'", path,
                        lineno);
            break;
        }
        *arrow = 0;
        rule r;
        int rc = regcomp(&r.re, p, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (rc) {
            char msg[128];
            regerror(rc, &r.re, msg, sizeof msg);
            m->h->error(err, RD_E_CONFIG, "fatal", "script %s:%d: %s", path, lineno, msg);
            break;
        }
        r.reply = unescape(arrow + 4);
        r.choices = NULL;
        /* "REPLY {choices: a|b}": offer those choices with this reply. */
        char *tag = r.reply ? strstr(r.reply, CHOICES_TAG) : NULL;
        size_t rl = r.reply ? strlen(r.reply) : 0;
        if (tag && rl && r.reply[rl - 1] == '}') {
            r.reply[rl - 1] = 0;
            r.choices = split_choices(tag + strlen(CHOICES_TAG));
            while (tag > r.reply && tag[-1] == ' ')
                tag--;
            *tag = 0;
        }
        m->rules = realloc(m->rules, (m->nrules + 1) * sizeof *m->rules);
        m->rules[m->nrules++] = r;
    }
    free(line);
    fclose(f);
    return err->code ? -1 : 0;
}

static void m_destroy(void *self) {
    mock *m = self;
    free(m->heap);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    for (size_t i = 0; i < m->nrules; i++) {
        regfree(&m->rules[i].re);
        for (size_t k = 0; m->rules[i].choices && m->rules[i].choices[k]; k++)
            free(m->rules[i].choices[k]);
        free(m->rules[i].choices);
        free(m->rules[i].reply);
    }
    free(m->rules);
    free(m->reply);
    free(m);
}

static rd_status m_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    if (!RD_HAS(h, cfg_bind)) {
        h->error(err, RD_E_CONFIG, "fatal", "needs a routerd speaking plugin ABI 1.2");
        return RD_E_CONFIG;
    }
    mock *m = calloc(1, sizeof *m);
    if (!m) return RD_E_INTERNAL;
    m->h = h;
    m->ctx = ctx;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    if (h->cfg_bind(ctx, &m->cf, sizeof m->cf, err) != RD_OK) {
        m_destroy(m);
        return RD_E_CONFIG;
    }
    m->reply = unescape(m->cf.reply);
    m->lat_min = m->cf.lat_min;
    m->lat_max = m->cf.lat_max;
    if (m->lat_max < m->lat_min) m->lat_max = m->lat_min;
    m->p[0] = m->cf.fail_transient;
    m->p[1] = m->cf.fail_fatal;
    m->p[2] = m->cf.fail_timeout;
    m->p[3] = m->cf.fail_protocol;
    if (m->p[0] + m->p[1] + m->p[2] + m->p[3] > 1.0 + 1e-9) {
        h->error(err, RD_E_CONFIG, "fatal", "fail_* shares add up to more than 1");
        m_destroy(m);
        return RD_E_CONFIG;
    }
    m->seed = (uint64_t)m->cf.seed;
    if (!m->seed) m->seed = (uint64_t)h->wall_ns() | 1;
    if (m->cf.mode == 2) {
        const char *path = m->cf.script;
        if (!path) {
            h->error(err, RD_E_CONFIG, "fatal", "mode = script needs script = FILE");
            m_destroy(m);
            return RD_E_CONFIG;
        }
        if (load_script(m, path, err)) {
            m_destroy(m);
            return RD_E_CONFIG;
        }
    }
    rd_metric *inj = h->metric(ctx, RD_METRIC_COUNTER, "routerd_mock_injected_failures_total",
                               "Failures the mock backend injected, by classification.",
                               (const char *const[]){"backend", "classification", NULL}, NULL, 0);
    const char *inst = h->info(ctx, "instance");
    for (int i = 0; i < 4; i++)
        m->injected[i] = h->series(inj, (const char *const[]){inst, klass[i]});
    *self = m;
    return RD_OK;
}

static void heap_push(mock *m, delayed d) {
    if (m->nheap == m->capheap) {
        m->capheap = m->capheap ? m->capheap * 2 : 64;
        m->heap = realloc(m->heap, m->capheap * sizeof *m->heap);
    }
    size_t i = m->nheap++;
    while (i && m->heap[(i - 1) / 2].due_ms > d.due_ms) {
        m->heap[i] = m->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    m->heap[i] = d;
}

static delayed heap_pop(mock *m) {
    delayed top = m->heap[0], last = m->heap[--m->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m->nheap) break;
        if (c + 1 < m->nheap && m->heap[c + 1].due_ms < m->heap[c].due_ms) c++;
        if (m->heap[c].due_ms >= last.due_ms) break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (m->nheap) m->heap[i] = last;
    return top;
}

/* Completes held replies when they are due. */
static void *timer_main(void *arg) {
    pthread_setname_np(pthread_self(), "mock-timer");
    mock *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!(m->stopping && !m->nheap)) {
        int64_t now = m->h->now_ms();
        if (m->nheap && m->heap[0].due_ms <= now) {
            delayed d = heap_pop(m);
            pthread_mutex_unlock(&m->mu);
            m->h->complete(d.rp, d.st, &d.err);
            pthread_mutex_lock(&m->mu);
            continue;
        }
        int64_t wait = m->nheap ? m->heap[0].due_ms - now : 1000;
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += (long)(wait % 1000) * 1000000L;
        dl.tv_sec += wait / 1000 + dl.tv_nsec / 1000000000L;
        dl.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&m->cv, &m->mu, &dl);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static rd_status m_start(void *self, rd_error *err) {
    mock *m = self;
    if (m->cf.async) {
        if (pthread_create(&m->timer, NULL, timer_main, m)) {
            m->h->error(err, RD_E_INTERNAL, "fatal", "cannot start the timer thread");
            return RD_E_INTERNAL;
        }
        m->timer_started = 1;
    }
    m->h->ready(m->ctx, 1, NULL);
    return RD_OK;
}

/* Held replies are all delivered before the thread ends: the router only
 * stops backends once nothing is in flight. */
static void m_stop(void *self) {
    mock *m = self;
    if (!m->timer_started) return;
    pthread_mutex_lock(&m->mu);
    m->stopping = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->timer, NULL);
    m->timer_started = 0;
}

/* splitmix64: a good 64-bit mix for deriving decisions from the seed. */
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static double unit(uint64_t x) {
    return (double)(x >> 11) / 9007199254740992.0;
}

/* Sleeps in slices so a hard shutdown or the deadline cuts it short. */
static void wait_ms(mock *m, rd_reply *rp, int64_t ms, int64_t deadline) {
    int64_t end = m->h->now_ms() + ms;
    for (;;) {
        int64_t now = m->h->now_ms();
        if (now >= end || m->h->cancelled(rp) || (deadline && now >= deadline)) return;
        int64_t step = end - now < 50 ? end - now : 50;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void append_subst(mock *m, rd_reply *rp, const char *tmpl, const rd_request *rq) {
    const char *p = tmpl, *hit;
    while ((hit = strstr(p, "{text}"))) {
        m->h->reply_append(rp, p, (size_t)(hit - p));
        m->h->reply_append(rp, rq->text, rq->text_len);
        p = hit + 6;
    }
    m->h->reply_append(rp, p, strlen(p));
}

/* Decides the outcome and writes the reply text; the delay is separate. */
static rd_status answer(mock *m, uint64_t r, const rd_request *rq, rd_reply *rp, rd_error *err) {
    double u = unit(r), acc = 0;
    for (int i = 0; i < 4; i++) {
        acc += m->p[i];
        if (m->p[i] > 0 && u < acc) {
            m->h->add(m->injected[i], 1);
            static const rd_status codes[] = {RD_E_RETRY, RD_E_FATAL, RD_E_TIMEOUT, RD_E_FATAL};
            m->h->error(err, codes[i], klass[i], "injected %s failure", klass[i]);
            return codes[i];
        }
    }
    if (m->cf.attachments && RD_HAS(rq, nattachments))
        for (size_t i = 0; i < rq->nattachments; i++)
            m->h->reply_attach(rp, rq->attachments[i]);
    if (m->cf.choices[0]) m->h->reply_choices(rp, m->cf.choices);
    switch (m->cf.mode) {
    case 1:
        m->h->reply_append(rp, m->reply, strlen(m->reply));
        break;
    case 2:
        for (size_t i = 0; i < m->nrules; i++)
            if (regexec(&m->rules[i].re, rq->text, 0, NULL, 0) == 0) {
                append_subst(m, rp, m->rules[i].reply, rq);
                if (m->rules[i].choices)
                    m->h->reply_choices(rp, (const char *const *)m->rules[i].choices);
                return RD_OK;
            }
        __attribute__((fallthrough)); /* no rule matched: echo */
    default:
        m->h->reply_append(rp, m->cf.prefix, strlen(m->cf.prefix));
        if (rq->flags & RD_MSG_CHOICE) m->h->reply_append(rp, "picked: ", 8);
        m->h->reply_append(rp, rq->text, rq->text_len);
    }
    return RD_OK;
}

static rd_status m_handle(void *self, const rd_request *rq, rd_reply *rp, rd_error *err) {
    mock *m = self;
    uint64_t r = mix(m->seed ^ mix((uint64_t)rq->chat_id) ^ mix((uint64_t)rq->update_id << 1));
    int64_t delay = 0;
    if (m->lat_max > 0) {
        int64_t span = m->lat_max - m->lat_min;
        delay = m->lat_min + (span ? (int64_t)(unit(mix(r)) * (double)(span + 1)) : 0);
    }
    if (m->cf.async && delay > 0) {
        delayed d = {.due_ms = m->h->now_ms() + delay, .rp = rp};
        d.st = answer(m, r, rq, rp, &d.err);
        pthread_mutex_lock(&m->mu);
        heap_push(m, d);
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        return RD_PENDING;
    }
    if (delay > 0) wait_ms(m, rp, delay, rq->deadline_ms);
    return answer(m, r, rq, rp, err);
}

static const rd_ops ops = {
    .size = sizeof(rd_ops),
    .create = m_create,
    .start = m_start,
    .stop = m_stop,
    .destroy = m_destroy,
    .handle = m_handle,
};

RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "mock", .version = "1.0.0",
                 .summary = "answers without an agent: echo, fixed or scripted replies, with "
                            "injectable latency and failures",
                 .options = opts, .ops = &ops);
