/* inbound_a2a: options, configuration (humans, callers, allow), metrics,
 * lifecycle and the descriptor. See inbound.h for the files. */
#include "inbound.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url_check.h"

static const rd_option opts[] = {
    {"listen", RD_OPT_STRING, RD_OPT_REQUIRED, NULL,
     "HOST:PORT of the A2A listener (its own, apart from the admin server)", 0, 0, NULL,
     RD_BIND(ib_conf, listen)},
    {"public_url", RD_OPT_URL, 0, NULL,
     "URL written in the agent card (behind a proxy); default http://<listen>/", 0, 0, NULL,
     RD_BIND(ib_conf, public_url)},
    {"name", RD_OPT_STRING, 0, "routerd", "agent card name", 0, 0, NULL, RD_BIND(ib_conf, name)},
    {"description", RD_OPT_STRING, 0, "People reachable through routerd", "agent card description",
     0, 0, NULL, RD_BIND(ib_conf, description)},
    {"humans", RD_OPT_LIST, RD_OPT_REQUIRED, NULL,
     "the people callers can ask, as NAME=TRANSPORT:CHAT_ID (the skill id is NAME; the chat is "
     "never shown)",
     0, 0, NULL, RD_BIND(ib_conf, humans)},
    {"callers", RD_OPT_LIST, RD_OPT_REQUIRED | RD_OPT_SECRET, NULL,
     "the calling agents, as NAME=TOKEN; the token comes as Authorization: Bearer or X-API-Key", 0,
     0, NULL, RD_BIND(ib_conf, callers)},
    {"allow", RD_OPT_LIST, 0, NULL,
     "who may ask whom, as CALLER:HUMAN+HUMAN or CALLER:* (all); a caller not listed reaches "
     "no one",
     0, 0, NULL, RD_BIND(ib_conf, allow)},
    {"rate_limit_per_minute", RD_OPT_INT, 0, "30",
     "new tasks per caller per minute (a burst of as many); more answer HTTP 429; 0 = no limit", 0,
     100000, NULL, RD_BIND(ib_conf, rate_limit_per_minute)},
    {"answer_timeout", RD_OPT_DURATION, 0, "24h",
     "a question unanswered by then fails ('no answer within ...')", 1, 31536000, NULL,
     RD_BIND(ib_conf, answer_timeout)},
    {"max_pending", RD_OPT_INT, 0, "1000",
     "open tasks (not yet answered) in all; more answer HTTP 503", 1, 1000000, NULL,
     RD_BIND(ib_conf, max_pending)},
    {"max_pending_per_chat", RD_OPT_INT, 0, "10",
     "open tasks per human's chat; more answer HTTP 503", 1, 10000, NULL,
     RD_BIND(ib_conf, max_pending_per_chat)},
    {"max_text_bytes", RD_OPT_INT, 0, "4096",
     "longest question (the message's text parts joined), without the 'Question from' line", 1,
     1048576, NULL, RD_BIND(ib_conf, max_text_bytes)},
    {"max_answer_bytes", RD_OPT_INT, 0, "16384",
     "longest answer kept; a longer reply is cut (on a UTF-8 boundary)", 1, 1048576, NULL,
     RD_BIND(ib_conf, max_answer_bytes)},
    {"max_id_bytes", RD_OPT_INT, 0, "128",
     "longest messageId, contextId, taskId and JSON-RPC id a caller may send; a longer "
     "messageId or contextId is refused (-32602), a taskId is no task (-32001), a JSON-RPC id "
     "is answered as null",
     1, 4096, NULL, RD_BIND(ib_conf, max_id_bytes)},
    {"max_parts", RD_OPT_INT, 0, "64", "most parts in one message; more are refused (-32602)", 1,
     10000, NULL, RD_BIND(ib_conf, max_parts)},
    {"max_header_bytes", RD_OPT_INT, 0, "32768",
     "room for one request's line and headers (the connection's buffer); a larger request is "
     "refused by the HTTP server (431)",
     4096, 1048576, NULL, RD_BIND(ib_conf, max_header_bytes)},
    {"max_body_bytes", RD_OPT_INT, 0, "65536", "largest JSON-RPC request body; larger get HTTP 413",
     1024, 16777216, NULL, RD_BIND(ib_conf, max_body_bytes)},
    {"max_streams", RD_OPT_INT, 0, "64",
     "SSE streams open at once (streaming sends and re-subscriptions); more answer HTTP 503", 0,
     100000, NULL, RD_BIND(ib_conf, max_streams)},
    {"max_connections", RD_OPT_INT, 0, "256",
     "connections to the listener at once (streams included); more are refused", 1, 100000, NULL,
     RD_BIND(ib_conf, max_connections)},
    {"http_timeout", RD_OPT_DURATION, 0, "30s",
     "a connection idle this long is closed; streams send a keep-alive comment at half of it "
     "(at most every 15 s)",
     1, 3600, NULL, RD_BIND(ib_conf, http_timeout)},
    {"send_wait", RD_OPT_DURATION, 0, "5s",
     "how long a blocking send waits for the question to be delivered before it returns the "
     "task as it is",
     0, 60, NULL, RD_BIND(ib_conf, send_wait)},
    {"deliver_timeout", RD_OPT_DURATION, 0, "30s",
     "how long one delivery waits for the transport; past it the question counts as asked", 1, 600,
     NULL, RD_BIND(ib_conf, deliver_timeout)},
    {"retry_delay", RD_OPT_DURATION, 0, "5s",
     "pause before a delivery the transport could not take (unknown, draining, busy) is tried "
     "again",
     0.1, 3600, NULL, RD_BIND(ib_conf, retry_delay)},
    {"task_retention", RD_OPT_DURATION, 0, "7d",
     "finished tasks (and their messageIds) are kept this long for GetTask and retries, then "
     "forgotten",
     60, 31536000, NULL, RD_BIND(ib_conf, task_retention)},
    {"rescan_interval", RD_OPT_DURATION, 0, "30s",
     "with the postgresql store: how often the store is read for tasks other replicas left "
     "(questions past their deadline fail, stored questions are delivered by one replica); "
     "unused with sqlite",
     0.1, 3600, NULL, RD_BIND(ib_conf, rescan_interval)},
    {"min_token_bytes", RD_OPT_INT, 0, "16", "shortest caller token accepted at start", 1, 4096,
     NULL, RD_BIND(ib_conf, min_token_bytes)},
    {0},
};

/* ---- configuration ------------------------------------------------------------- */

static int cfg_err(ib *b, rd_error *err, const char *fmt, const char *what) {
    b->h->error(err, RD_E_CONFIG, "fatal", fmt, what);
    return -1;
}

static int valid_name(const char *s, size_t n) {
    if (!n || n > IB_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i])) return 0;
    return 1;
}

static char *trimmed(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return strndup(s, n);
}

static long human_index(ib *b, const char *name) {
    for (size_t i = 0; i < b->nhumans; i++)
        if (!strcmp(b->humans[i].name, name)) return (long)i;
    return -1;
}

/* Whether the router has a transport instance of that name; yes when the
 * host does not say (older than 1.3). */
static int transport_known(ib *b, const char *name, const char **all) {
    const char *list = b->h->info(b->ctx, "transports");
    *all = list;
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !memcmp(p, name, n)) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

/* NAME=TRANSPORT:CHAT_ID */
static int parse_human(ib *b, const char *item, ib_human *hu, rd_error *err) {
    const char *eq = strchr(item, '='), *colon = eq ? strrchr(eq, ':') : NULL;
    if (!eq || !colon) return cfg_err(b, err, "humans: '%s' is not NAME=TRANSPORT:CHAT_ID", item);
    hu->name = trimmed(item, (size_t)(eq - item));
    hu->transport = trimmed(eq + 1, (size_t)(colon - eq - 1));
    char *end = NULL;
    errno = 0;
    long long chat = strtoll(colon + 1, &end, 10);
    if (errno == ERANGE) end = (char *)colon + 1; /* out of range: refused below */
    while (end && isspace((unsigned char)*end))
        end++;
    if (!hu->name || !hu->transport || !valid_name(hu->name, strlen(hu->name)) ||
        !valid_name(hu->transport, strlen(hu->transport)) || end == colon + 1 || *end || !chat)
        return cfg_err(b, err,
                       "humans: '%s' is not NAME=TRANSPORT:CHAT_ID (names of letters, digits, "
                       "'_', '.', '-')",
                       hu->name ? hu->name : "?");
    hu->chat = chat;
    const char *all = NULL;
    if (!transport_known(b, hu->transport, &all)) {
        b->h->error(err, RD_E_CONFIG, "fatal",
                    "humans: '%s' names transport '%s', but the transports are: %s", hu->name,
                    hu->transport, all);
        return -1;
    }
    if (human_index(b, hu->name) >= 0)
        return cfg_err(b, err, "humans: '%s' is named twice", hu->name);
    return 0;
}

/* White space anywhere, tabs and the like too (the docs promise none). */
static int has_space(const char *s) {
    for (; *s; s++)
        if (isspace((unsigned char)*s)) return 1;
    return 0;
}

/* NAME=TOKEN; the token is never printed. */
static int parse_caller(ib *b, const char *item, ib_caller *c, rd_error *err) {
    const char *eq = strchr(item, '=');
    if (!eq) return cfg_err(b, err, "callers: an item is not NAME=TOKEN%s", "");
    c->name = trimmed(item, (size_t)(eq - item));
    if (!c->name || !valid_name(c->name, strlen(c->name)))
        return cfg_err(b, err, "callers: '%s' is not a caller name", c->name ? c->name : "?");
    c->token = eq + 1;
    while (*c->token == ' ' || *c->token == '\t')
        c->token++;
    c->token_len = strlen(c->token);
    while (c->token_len &&
           (c->token[c->token_len - 1] == ' ' || c->token[c->token_len - 1] == '\t'))
        c->token_len--;
    c->token = strndup(c->token, c->token_len);
    if (!c->token || c->token_len < (size_t)b->cf.min_token_bytes || has_space(c->token))
        return cfg_err(b, err,
                       "callers: the token of '%s' is shorter than min_token_bytes or holds "
                       "white space",
                       c->name);
    for (size_t i = 0; i < b->ncallers; i++) {
        if (!strcmp(b->callers[i].name, c->name))
            return cfg_err(b, err, "callers: '%s' is named twice", c->name);
        if (!strcmp(b->callers[i].token, c->token))
            return cfg_err(b, err, "callers: '%s' has the token of another caller", c->name);
    }
    ib_token_digest(c->token, c->token_sha);
    c->allow = calloc(b->nhumans + 1, 1);
    return c->allow ? 0 : cfg_err(b, err, "out of memory%s", "");
}

/* CALLER:HUMAN+HUMAN or CALLER:* */
static int parse_allow(ib *b, const char *item, rd_error *err) {
    const char *colon = strchr(item, ':');
    if (!colon) return cfg_err(b, err, "allow: '%s' is not CALLER:HUMAN+HUMAN or CALLER:*", item);
    char *name = trimmed(item, (size_t)(colon - item));
    ib_caller *c = NULL;
    for (size_t i = 0; name && i < b->ncallers; i++)
        if (!strcmp(b->callers[i].name, name)) c = &b->callers[i];
    int rc = c ? 0 : cfg_err(b, err, "allow: '%s' is not a caller", name ? name : "?");
    free(name);
    for (const char *p = colon + 1; !rc && *p;) {
        size_t n = strcspn(p, "+");
        char *h = trimmed(p, n);
        long hi = h ? human_index(b, h) : -1;
        if (h && !strcmp(h, "*"))
            memset(c->allow, 1, b->nhumans);
        else if (hi >= 0)
            c->allow[hi] = 1;
        else
            rc = cfg_err(b, err, "allow: '%s' is not one of the humans", h ? h : "?");
        free(h);
        p += n + (p[n] == '+');
    }
    if (c)
        for (size_t i = c->nallowed = 0; i < b->nhumans; i++)
            c->nallowed += c->allow[i];
    return rc;
}

static size_t count_list(const char *const *l) {
    size_t n = 0;
    while (l && l[n])
        n++;
    return n;
}

int ib_parse_lists(ib *b, rd_error *err) {
    size_t nh = count_list(b->cf.humans), nc = count_list(b->cf.callers);
    if (!nh || !nc) return cfg_err(b, err, "humans and callers must each name one at least%s", "");
    b->humans = calloc(nh, sizeof *b->humans);
    b->callers = calloc(nc, sizeof *b->callers);
    if (!b->humans || !b->callers) return cfg_err(b, err, "out of memory%s", "");
    /* Counted before the check: destroy() frees a half-parsed item too. */
    for (size_t i = 0; i < nh; i++) {
        int rc = parse_human(b, b->cf.humans[i], &b->humans[i], err);
        b->nhumans++;
        if (rc) return -1;
    }
    for (size_t i = 0; i < nc; i++) {
        int rc = parse_caller(b, b->cf.callers[i], &b->callers[i], err);
        b->ncallers++;
        if (rc) return -1;
    }
    for (size_t i = 0; b->cf.allow && b->cf.allow[i]; i++)
        if (parse_allow(b, b->cf.allow[i], err)) return -1;
    return 0;
}

static int parse_listen(ib *b, rd_error *err) {
    const char *l = b->cf.listen, *colon = strrchr(l, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || end == colon + 1 || *end || port < 0 || port > 65535)
        return cfg_err(b, err, "listen '%s': expected HOST:PORT", l);
    char host[64];
    size_t hn = (size_t)(colon - l);
    if (hn && l[0] == '[' && l[hn - 1] == ']') l++, hn -= 2;
    if (!hn || hn >= sizeof host)
        return cfg_err(b, err, "listen '%s': name the host", b->cf.listen);
    memcpy(host, l, hn);
    host[hn] = 0;
    if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    memset(&b->addr, 0, sizeof b->addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&b->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&b->addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
    } else {
        return cfg_err(b, err, "listen '%s': the host must be an IP address", b->cf.listen);
    }
    return 0;
}

/* public_url without a trailing '/', and its path for the JSON-RPC route. */
static int parse_public(ib *b, rd_error *err) {
    const char *u = b->cf.public_url;
    char def[128];
    if (!u || !*u) {
        snprintf(def, sizeof def, "http://%s/", b->cf.listen);
        u = def;
    } else if (!url_is_http(u) || strpbrk(u, "?# ")) {
        return cfg_err(b, err, "public_url '%s' must be an http(s) URL without query", u);
    }
    size_t n = strlen(u);
    while (n > 8 && u[n - 1] == '/')
        n--;
    b->public_url = strndup(u, n);
    const char *host = strstr(b->public_url, "://");
    const char *path = host ? strchr(host + 3, '/') : NULL;
    b->rpc_path = strdup(path ? path : "");
    return b->public_url && b->rpc_path ? 0 : cfg_err(b, err, "out of memory%s", "");
}

/* ---- metrics --------------------------------------------------------------------- */

static void metrics(ib *b) {
    const rd_host *h = b->h;
    static const char *const rl[] = {"instance", "caller", "method", "outcome", NULL};
    b->m_req =
        h->metric(b->ctx, RD_METRIC_COUNTER, "routerd_inbound_requests_total",
                  "A2A requests to inbound instances, by caller, method and outcome", rl, NULL, 0);
    static const char *const il[] = {"instance", NULL};
    const char *lv[] = {b->inst};
    rd_metric *mp = h->metric(b->ctx, RD_METRIC_GAUGE, "routerd_inbound_pending",
                              "open inbound tasks (questions not yet answered)", il, NULL, 0);
    b->pending_s = mp ? h->series(mp, lv) : NULL;
    static const double le[] = {5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400};
    rd_metric *ma = h->metric(b->ctx, RD_METRIC_HISTOGRAM, "routerd_inbound_answer_seconds",
                              "time from a question's delivery to the person's answer", il, le,
                              sizeof le / sizeof le[0]);
    b->answer_s = ma ? h->series(ma, lv) : NULL;
    static const char *const el[] = {"instance", "caller", NULL};
    rd_metric *me =
        h->metric(b->ctx, RD_METRIC_COUNTER, "routerd_inbound_expired_total",
                  "questions failed unanswered at answer_timeout, by caller", el, NULL, 0);
    b->expired_s = calloc(b->ncallers + 1, sizeof *b->expired_s);
    for (size_t i = 0; me && b->expired_s && i < b->ncallers; i++) {
        const char *ev[] = {b->inst, b->callers[i].name};
        b->expired_s[i] = h->series(me, ev);
    }
}

/* ---- lifecycle ------------------------------------------------------------------- */

void ib_free_lists(ib *b) {
    for (size_t i = 0; i < b->nhumans; i++) {
        free(b->humans[i].name);
        free(b->humans[i].transport);
    }
    for (size_t i = 0; i < b->ncallers; i++) {
        free(b->callers[i].name);
        free((char *)b->callers[i].token);
        free(b->callers[i].allow);
    }
    free(b->humans);
    free(b->callers);
    b->humans = NULL, b->callers = NULL;
    b->nhumans = b->ncallers = 0;
}

static void ib_destroy(void *self) {
    ib *b = self;
    if (!b) return;
    ib_free_lists(b);
    free(b->public_url);
    free(b->rpc_path);
    free(b->series);
    free(b->expired_s);
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->smu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

static rd_status ib_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    *self = NULL;
    if (!RD_HAS(h, deliver) || !h->deliver || !h->cfg_bind) {
        h->error(err, RD_E_CONFIG, "fatal", "needs a routerd speaking plugin ABI 1.3");
        return RD_E_CONFIG;
    }
    ib *b = calloc(1, sizeof *b);
    if (!b) return RD_E_INTERNAL;
    b->h = h;
    b->ctx = ctx;
    b->listen_fd = -1;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->smu, NULL);
    pthread_cond_init(&b->cv, NULL);
    const char *inst = h->info(ctx, "instance"), *store = h->info(ctx, "store");
    b->inst = inst ? inst : "a2a";
    b->shared_store = store && !strcmp(store, "postgresql");
    if (h->cfg_bind(ctx, &b->cf, sizeof b->cf, err) != RD_OK || parse_listen(b, err) ||
        parse_public(b, err) || ib_parse_lists(b, err)) {
        ib_destroy(b);
        return RD_E_CONFIG;
    }
    metrics(b);
    *self = b;
    return RD_OK;
}

/* The listener, then the threads: the timer fails what expired while
 * down, the sender delivers what was stored but not yet sent. */
static rd_status ib_start(void *self, rd_error *err) {
    ib *b = self;
    if (ib_http_start(b, err)) return RD_E_CONFIG;
    if (ib_threads_start(b, err)) return RD_E_INTERNAL;
    ib_count_pending(b);
    b->h->ready(b->ctx, 1, NULL);
    b->h->log(b->ctx, RD_LOG_INFO, "A2A server on %s (card %s/.well-known/agent-card.json)",
              b->cf.listen, b->public_url);
    return RD_OK;
}

/* Streams and blocked sends end; no new connections. */
static void ib_quiesce(void *self) {
    ib *b = self;
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    ib_http_quiesce(b);
}

static void ib_stop(void *self) {
    ib *b = self;
    ib_quiesce(b);
    ib_http_stop(b);
    ib_threads_stop(b);
}

static const rd_ops ops = {
    .size = sizeof(rd_ops),
    .create = ib_create,
    .start = ib_start,
    .quiesce = ib_quiesce,
    .stop = ib_stop,
    .destroy = ib_destroy,
    .intercept = ib_intercept,
};

RD_PLUGIN_DEFINE(.kind = RD_KIND_INBOUND, .name = "a2a", .version = "1.0.0",
                 .summary = "A2A server: agents ask the people behind routerd's chats (1.0 and "
                            "0.3, streaming)",
                 .options = opts, .ops = &ops);
