/* a2a backend: relays chat messages to an A2A agent over JSON-RPC, in the
 * 1.0 or the 0.2/0.3 dialect, keeps one conversation (contextId) per chat
 * and persona in the state store, follows tasks by polling or streaming,
 * and classifies every failure (transient, fatal, timeout, protocol).
 *
 * Threads: handle() runs on host workers, concurrently for different chats,
 * and hands the common path of a call to an event loop (curl multi) and
 * two finisher threads, returning RD_PENDING (see "calls on the event
 * loop"); rarer paths run the blocking code on a thread of their own.
 * Per-instance state after start() is the discovered agent (behind a mutex,
 * copied out per call), two atomics learned from the agent, and the curl
 * handle pool. A background thread discovers the agent card until it
 * succeeds, and again when a call finds the agent moved or gone. */
#include <routerd/plugin.h>

#include <cjson/cJSON.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "a2a_http.h"
#include "a2a_parse.h"
#include "sbuf.h"
#include "curl_pool.h"
#include "backoff.h"
#include "hash_mix.h"
#include "url_check.h"

/* ---- configuration ------------------------------------------------------ */

static const char *const dialects[] = {"auto", "1.0", "0.3", NULL};
static const char *const bindings[] = {"auto", "jsonrpc", "rest", NULL};
static const char *const id_modes[] = {"auto", "update", "random", NULL};
static const char *const ext_policies[] = {"refuse", "warn", NULL};

/* The keys, written by cfg_bind(); members are named after them. */
typedef struct {
    const char *url, *card_url, *rpc_url, *ca_file;
    int binding, dialect; /* enum indexes */
    const char *token, *oauth_client_id, *oauth_client_secret, *oauth_token_url;
    const char *const *oauth_scopes;
    const char *oauth_audience;
    int64_t oauth_refresh_margin_s;
    const char *api_key_header, *api_key;
    int stream, blocking;
    int64_t timeout_s, connect_timeout_s, http_timeout_s, max_response_bytes, retries,
        retry_base_ms, retry_max_ms, poll_interval_ms, poll_max_interval_ms, cancel_timeout_ms,
        card_max_age_s, card_refresh_min_s, discovery_retry_max_s;
    int progress;
    int64_t progress_interval_ms;
    int message_ids; /* enum index */
    int resend_unknown;
    int64_t answer_retention_s, max_reply_bytes;
    const char *reply_cut_notice, *push_url;
    int64_t push_fallback_s, max_request_bytes;
    const char *const *credential_origins;
    int required_extensions; /* enum index */
    int64_t stream_retry_s;
    const char *const *accepted_output_modes;
    const char *new_command, *new_reply, *failure_notice, *timeout_notice, *task_failed_notice;
    int64_t auth_required_wait_s;
    const char *input_required_notice, *auth_required_notice, *empty_reply;
    int64_t max_calls, max_host_connections, max_idle_connections, max_connecting;
} a2a_conf;

static const rd_option opts[] = {
    {"url", RD_OPT_STRING, RD_OPT_REQUIRED, NULL,
     "agent base URL; the card is read from <url>/.well-known/agent-card.json", 0, 0, NULL,
     RD_BIND(a2a_conf, url)},
    {"card_url", RD_OPT_STRING, 0, NULL,
     "full agent card URL instead of the well-known paths; 'none' skips discovery and posts "
     "JSON-RPC to url",
     0, 0, NULL, RD_BIND(a2a_conf, card_url)},
    {"rpc_url", RD_OPT_STRING, 0, NULL,
     "JSON-RPC endpoint to use instead of the one the card names (agents behind proxies)", 0, 0,
     NULL, RD_BIND(a2a_conf, rpc_url)},
    {"ca_file", RD_OPT_STRING, 0, NULL,
     "PEM file of the certificate authorities trusted for the agent (and its token endpoint) "
     "instead of the system's: an agent behind a private CA",
     0, 0, NULL, RD_BIND(a2a_conf, ca_file)},
    {"binding", RD_OPT_ENUM, 0, "auto",
     "protocol binding: auto (JSON-RPC when the card offers it, else HTTP+JSON: 1.0 when offered, "
     "else 0.3), jsonrpc or rest (HTTP+JSON; dialect = 0.3 picks the 0.3 binding)",
     0, 0, bindings, RD_BIND(a2a_conf, binding)},
    {"dialect", RD_OPT_ENUM, 0, "auto",
     "protocol version: auto (from the card, falling back once on 'method not found'), 1.0 or "
     "0.3",
     0, 0, dialects, RD_BIND(a2a_conf, dialect)},
    {"token", RD_OPT_STRING, RD_OPT_SECRET, NULL, "bearer token: sent as Authorization: Bearer", 0,
     0, NULL, RD_BIND(a2a_conf, token)},
    {"oauth_client_id", RD_OPT_STRING, 0, NULL,
     "OAuth 2.0 client credentials grant: client id (the access token is sent as a bearer "
     "token, renewed before it expires and on HTTP 401)",
     0, 0, NULL, RD_BIND(a2a_conf, oauth_client_id)},
    {"oauth_client_secret", RD_OPT_STRING, RD_OPT_SECRET, NULL,
     "OAuth 2.0 client secret (sent to the token endpoint with HTTP Basic)", 0, 0, NULL,
     RD_BIND(a2a_conf, oauth_client_secret)},
    {"oauth_token_url", RD_OPT_STRING, 0, NULL,
     "OAuth 2.0 token endpoint (empty: the clientCredentials tokenUrl of the card's oauth2 "
     "scheme, when it is on an origin allowed to see credentials)",
     0, 0, NULL, RD_BIND(a2a_conf, oauth_token_url)},
    {"oauth_scopes", RD_OPT_LIST, 0, NULL, "scopes asked for (scope parameter)", 0, 0, NULL,
     RD_BIND(a2a_conf, oauth_scopes)},
    {"oauth_audience", RD_OPT_STRING, 0, NULL, "audience parameter, for servers that need one", 0,
     0, NULL, RD_BIND(a2a_conf, oauth_audience)},
    {"oauth_refresh_margin_s", RD_OPT_INT, 0, "60",
     "an access token is renewed this long before it expires", 0, 3600, NULL,
     RD_BIND(a2a_conf, oauth_refresh_margin_s)},
    {"api_key_header", RD_OPT_STRING, 0, NULL, "header that carries api_key (e.g. X-API-Key)", 0, 0,
     NULL, RD_BIND(a2a_conf, api_key_header)},
    {"api_key", RD_OPT_STRING, RD_OPT_SECRET, NULL, "API key sent in api_key_header", 0, 0, NULL,
     RD_BIND(a2a_conf, api_key)},
    {"stream", RD_OPT_BOOL, 0, "false",
     "use message/stream (SSE) when the card says the agent can stream", 0, 0, NULL,
     RD_BIND(a2a_conf, stream)},
    {"blocking", RD_OPT_BOOL, 0, "false",
     "ask the agent to answer only when the task is done; false sends non-blocking and polls "
     "the task, so a timeout never loses it",
     0, 0, NULL, RD_BIND(a2a_conf, blocking)},
    {"timeout_s", RD_OPT_INT, 0, "300",
     "time for one message from its first send, polling and restarts included; also bounded by "
     "the router's request_timeout_s; a task still running then is canceled",
     1, 86400, NULL, RD_BIND(a2a_conf, timeout_s)},
    {"connect_timeout_s", RD_OPT_INT, 0, "10", "TCP/TLS connect timeout", 1, 600, NULL,
     RD_BIND(a2a_conf, connect_timeout_s)},
    {"http_timeout_s", RD_OPT_INT, 0, "30",
     "limit of one card fetch, poll or cancel; a send waits up to timeout_s instead, since it may "
     "have reached the agent",
     1, 3600, NULL, RD_BIND(a2a_conf, http_timeout_s)},
    {"max_response_bytes", RD_OPT_INT, 0, "4194304",
     "larger bodies (or stream events) are a protocol failure", 1024, 1073741824, NULL,
     RD_BIND(a2a_conf, max_response_bytes)},
    {"retries", RD_OPT_INT, 0, "3",
     "retries of a send that provably did not reach the agent (connect/DNS/TLS failure) or "
     "that it asked to repeat (408, 429, 503), and of polls",
     0, 20, NULL, RD_BIND(a2a_conf, retries)},
    {"retry_base_ms", RD_OPT_INT, 0, "250", "first retry delay; doubles, with jitter", 1, 600000,
     NULL, RD_BIND(a2a_conf, retry_base_ms)},
    {"retry_max_ms", RD_OPT_INT, 0, "5000", "longest retry delay (Retry-After included)", 1,
     3600000, NULL, RD_BIND(a2a_conf, retry_max_ms)},
    {"poll_interval_ms", RD_OPT_INT, 0, "250", "first tasks/get delay; grows by half each time", 1,
     600000, NULL, RD_BIND(a2a_conf, poll_interval_ms)},
    {"poll_max_interval_ms", RD_OPT_INT, 0, "3000", "longest delay between tasks/get", 1, 3600000,
     NULL, RD_BIND(a2a_conf, poll_max_interval_ms)},
    {"cancel_timeout_ms", RD_OPT_INT, 0, "3000",
     "time given to tasks/cancel after the deadline passed", 100, 600000, NULL,
     RD_BIND(a2a_conf, cancel_timeout_ms)},
    {"card_max_age_s", RD_OPT_INT, 0, "3600",
     "longest time a card is used before it is read again (with If-None-Match); the card's "
     "Cache-Control max-age shortens it",
     60, 604800, NULL, RD_BIND(a2a_conf, card_max_age_s)},
    {"card_refresh_min_s", RD_OPT_INT, 0, "30",
     "shortest time between two reads of an unchanged card, whatever its max-age says", 1, 86400,
     NULL, RD_BIND(a2a_conf, card_refresh_min_s)},
    {"discovery_retry_max_s", RD_OPT_INT, 0, "30",
     "longest pause between agent card attempts while the agent is not reachable", 1, 3600, NULL,
     RD_BIND(a2a_conf, discovery_retry_max_s)},
    {"progress", RD_OPT_BOOL, 0, "false",
     "show the answer growing while a task streams or is polled (where the transport can)", 0, 0,
     NULL, RD_BIND(a2a_conf, progress)},
    {"progress_interval_ms", RD_OPT_INT, 0, "1500", "least time between two partial answers", 100,
     600000, NULL, RD_BIND(a2a_conf, progress_interval_ms)},
    {"message_ids", RD_OPT_ENUM, 0, "auto",
     "messageId source: update (derived from the update, the same after a restart), random, or "
     "auto (update when the transport re-delivers updates under the same id, as Telegram does)",
     0, 0, id_modes, RD_BIND(a2a_conf, message_ids)},
    {"resend_unknown", RD_OPT_BOOL, 0, "false",
     "the agent deduplicates messageIds: a send whose outcome is unknown (timeout, cut "
     "connection) may be sent again with the same messageId; otherwise it never is",
     0, 0, NULL, RD_BIND(a2a_conf, resend_unknown)},
    {"answer_retention_s", RD_OPT_INT, 0, "86400",
     "how long each message's task id and answer are kept, so a re-delivered update resumes or "
     "repeats them instead of running the agent again",
     60, 2592000, NULL, RD_BIND(a2a_conf, answer_retention_s)},
    {"max_reply_bytes", RD_OPT_INT, 0, "4194304",
     "largest answer assembled from streamed or polled artifacts; the rest is cut and "
     "reply_cut_notice added",
     1024, 1073741824, NULL, RD_BIND(a2a_conf, max_reply_bytes)},
    {"reply_cut_notice", RD_OPT_STRING, 0, "[The answer was too long and was cut here.]",
     "added to an answer cut at max_reply_bytes", 0, 0, NULL, RD_BIND(a2a_conf, reply_cut_notice)},
    {"push_url", RD_OPT_STRING, 0, NULL,
     "externally reachable base URL of the router's admin server (https://routerd.example/): "
     "tasks of agents whose card allows push notifications register a webhook under it instead "
     "of polling",
     0, 0, NULL, RD_BIND(a2a_conf, push_url)},
    {"push_fallback_s", RD_OPT_INT, 0, "10",
     "with a push registered, the task is still polled this often when no push comes", 1, 3600,
     NULL, RD_BIND(a2a_conf, push_fallback_s)},
    {"max_request_bytes", RD_OPT_INT, 0, "33554432",
     "largest message sent to the agent, files (base64) included; a file that would pass it is "
     "left out and the agent told so in the text",
     65536, 1073741824, NULL, RD_BIND(a2a_conf, max_request_bytes)},
    {"credential_origins", RD_OPT_LIST, 0, NULL,
     "other origins (scheme://host:port) that may receive token / api_key; by default only the "
     "origin of url (or card_url) and rpc_url do",
     0, 0, NULL, RD_BIND(a2a_conf, credential_origins)},
    {"required_extensions", RD_OPT_ENUM, 0, "refuse",
     "a card that marks an A2A extension required (none is supported): refuse it (the backend "
     "stays not ready, naming the extension) or warn and use the agent anyway",
     0, 0, ext_policies, RD_BIND(a2a_conf, required_extensions)},
    {"stream_retry_s", RD_OPT_INT, 0, "300",
     "after an endpoint refused streaming, it is used with send + poll for this long before "
     "streams are tried again",
     1, 86400, NULL, RD_BIND(a2a_conf, stream_retry_s)},
    {"accepted_output_modes", RD_OPT_LIST, 0, NULL,
     "media types sent as acceptedOutputModes (empty: anything)", 0, 0, NULL,
     RD_BIND(a2a_conf, accepted_output_modes)},
    {"new_command", RD_OPT_STRING, 0, "/new",
     "message that starts a fresh conversation (empty: none)", 0, 0, NULL,
     RD_BIND(a2a_conf, new_command)},
    {"new_reply", RD_OPT_STRING, 0, "Started a new conversation.", "answer to new_command", 0, 0,
     NULL, RD_BIND(a2a_conf, new_reply)},
    {"failure_notice", RD_OPT_STRING, 0, NULL,
     "what the user sees when the agent call fails (empty: the router's failure_notice)", 0, 0,
     NULL, RD_BIND(a2a_conf, failure_notice)},
    {"timeout_notice", RD_OPT_STRING, 0, NULL,
     "what the user sees when the deadline passes (empty: failure_notice)", 0, 0, NULL,
     RD_BIND(a2a_conf, timeout_notice)},
    {"task_failed_notice", RD_OPT_STRING, 0, "The agent could not complete this request.",
     "shown when the agent's task failed, was rejected or canceled (its reason follows)", 0, 0,
     NULL, RD_BIND(a2a_conf, task_failed_notice)},
    {"auth_required_wait_s", RD_OPT_INT, 0, "0",
     "when a task asks for authorization, show the request at once (as progress) and poll the "
     "task this long for it to continue after an out-of-band sign-in; 0 answers with the request "
     "at once",
     0, 86400, NULL, RD_BIND(a2a_conf, auth_required_wait_s)},
    {"input_required_notice", RD_OPT_STRING, 0, "The agent needs more information to continue.",
     "shown when the agent asks for input without saying what", 0, 0, NULL,
     RD_BIND(a2a_conf, input_required_notice)},
    {"auth_required_notice", RD_OPT_STRING, 0,
     "The agent needs authorization before it can continue.",
     "shown when the agent's task waits for authorization", 0, 0, NULL,
     RD_BIND(a2a_conf, auth_required_notice)},
    {"empty_reply", RD_OPT_STRING, 0, "The agent finished without a text answer.",
     "shown when the agent answered with no text", 0, 0, NULL, RD_BIND(a2a_conf, empty_reply)},
    {"max_calls", RD_OPT_INT, 0, "16384",
     "most messages waiting on the agent at once through the event loop (one socket each; at "
     "most half the open-file limit); a router worker with one more waits for a slot",
     1, 1000000, NULL, RD_BIND(a2a_conf, max_calls)},
    {"max_host_connections", RD_OPT_INT, 0, "0",
     "most connections open to one agent host at once (0 = no limit); requests beyond it wait "
     "for a free connection (or share one over HTTP/2)",
     0, 1000000, NULL, RD_BIND(a2a_conf, max_host_connections)},
    {"max_idle_connections", RD_OPT_INT, 0, "512",
     "most idle keep-alive connections the event loop keeps for reuse (split among its multi "
     "handles); more are closed as their calls end, so a burst of thousands of calls does not "
     "leave thousands of sockets open; 0 = curl's own bound (four times the calls started)",
     0, 1000000, NULL, RD_BIND(a2a_conf, max_idle_connections)},
    {"max_connecting", RD_OPT_INT, 0, "256",
     "most requests of the event loop connecting at once; the others wait their turn in order "
     "(their wait counts against their timeout), so a burst opens connections at the pace they "
     "come up and reuses those freed meanwhile; 0 = no limit",
     0, 1000000, NULL, RD_BIND(a2a_conf, max_connecting)},
    {0},
};

/* ---- instance ----------------------------------------------------------- */

/* Buckets of the tasks waiting for a push (chains stay short up to the
 * 16,384 calls max_calls allows). */
#define PUSH_BUCKETS 4096
/* Threads that show partial answers: a transport's progress() may wait
 * for its API, so a few chats are shown at once. */
#define PROG_THREADS 4

enum {
    OUT_MESSAGE,
    OUT_COMPLETED,
    OUT_INPUT,
    OUT_AUTH,
    OUT_FAILED,
    OUT_REJECTED,
    OUT_CANCELED,
    OUT_N
};
static const char *const outcome_names[OUT_N] = {
    "message", "completed", "input_required", "auth_required", "failed", "rejected", "canceled"};

typedef struct a2a {
    const rd_host *h;
    rd_ctx *ctx;
    a2a_conf cf;
    const char *inst;
    char *base; /* url without trailing '/' */
    const char *card_url;
    int no_card;
    const char *rpc_url;
    a2a_dialect forced;
    int binding; /* 0 auto, 1 JSON-RPC, 2 REST */
    int stream, progress;
    int64_t timeout_ms, connect_ms, http_ms, retry_base_ms, retry_max_ms, poll_ms, poll_max_ms,
        cancel_ms, disc_max_ms, progress_ms;
    int retries;
    size_t max_bytes, max_reply, max_request;
    int ext_warn;
    int64_t stream_retry_ms, auth_wait_ms;
    char **cred_origins; /* origins that get credentials, NULL-terminated */
    /* OAuth 2.0 client credentials: configuration, then the token (omu). */
    const char *oauth_id, *oauth_url;
    int64_t omargin_ms;
    pthread_mutex_t omu;
    pthread_cond_t ocv;
    char *otoken;
    int64_t oexp_ms, ofetched_ms;
    int ofetching;
    uint64_t boot; /* random per process: ids that are not stable */
    atomic_llong last_prune_ms;
    /* Records may still sit under the keys of earlier versions (msg:<id>):
     * until a prune has seen none, a lookup that misses looks there too. */
    atomic_int old_keys;
    const char *const *modes;
    char *auth_hdr, *key_hdr; /* "Authorization: Bearer ...", "X-API-Key: ..." */
    a2a_http *http;

    /* The discovered agent. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    a2a_card card;
    int have_card;
    int busy;          /* a discovery is running */
    uint64_t attempts; /* discoveries finished */
    int64_t last_fail_ms;
    int kick, stopping;
    a2a_class disc_class;
    char disc_err[320];
    pthread_t th;
    int th_started;

    atomic_int learned; /* dialect learned from a -32601 fallback, 0 = none */
    /* Card freshness (under mu): its ETag, where it came from, and when
     * it is read again. */
    char card_etag[128];
    char *card_from;
    int64_t card_expires_ms, card_max_age_ms, card_min_ms;
    /* An endpoint that refused streams (-32004), until when (under mu). */
    char *nostream_url;
    int64_t nostream_until_ms;
    atomic_ulong rpc_seq;
    atomic_int stop_flag;

    /* Push notifications: the webhook URL given to agents (NULL = off),
     * the bearer secret of its route (random per run), and the tasks
     * waiting for a push (under pmu). */
    char *push_url;
    char push_bearer[65];
    char push_auth[80]; /* "Bearer <push_bearer>" */
    int64_t push_fallback_ms;
    atomic_int push_refused; /* the agent refused a registration: poll */
    pthread_mutex_t pmu;
    struct push_wait *waits[PUSH_BUCKETS]; /* by task id */
    rd_series *push_s[3];                  /* pushes: woke, refused, ignored */

    rd_series *fail[5]; /* by a2a_class */
    rd_series *retries_s, *fallback_s, *outcome_s[OUT_N];

    /* The event-loop path (see "calls on the event loop"): the loop, the
     * finisher threads and their queue, calls in flight (bounded by
     * max_calls) and calls gone on to a thread of their own. */
    a2a_loop *loop;
    pthread_mutex_t fmu;
    pthread_cond_t fcv, slot_cv;
    struct acall *fq_head, *fq_tail;
    struct acall *sq_head, *sq_tail; /* streams' task records (side_offer) */
    struct acall *pq_head, *pq_tail; /* partial answers, for a2a-progress */
    pthread_cond_t pcv;
    int fstop, pstop;
    /* Finishers at work, and since when the first of them (monotonic ms):
     * one takes all that is queued, the other helps only once it is held
     * up (FIN_HELP_MS), so batches stay large and wake-ups few. */
    int fin_busy, fin_watch; /* fin_watch: finishers in a timed wait */
    int64_t fin_since;
    pthread_t fin[2], prog[PROG_THREADS];
    int nfin, prog_on; /* prog_on: progress threads running */
    size_t ncalls, max_calls, nthreads_out;
    /* Ended calls' structs for the next ones (under fmu): a call's 2.6 KiB
     * from malloc() made glibc sort its small free chunks every time. */
    struct acall *spare;
    size_t nspare;
} a2a;

/* None under AddressSanitizer: a reused struct would hide a use after free. */
#if defined(__SANITIZE_ADDRESS__)
#define ACALL_SPARE_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ACALL_SPARE_MAX 0
#endif
#endif
#ifndef ACALL_SPARE_MAX
#define ACALL_SPARE_MAX 64
#endif
static const size_t acall_spare_max = ACALL_SPARE_MAX; /* no "< 0" to warn of */

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(a2a *a) {
    return a->h->now_ms();
}

static void count(a2a *a, rd_series *s) {
    if (s) a->h->add(s, 1);
}

static char *xstrdup0(const char *s) {
    return s ? strdup(s) : NULL;
}

static int empty(const char *s) {
    return !s || !*s;
}

/* Sleeps up to ms in slices, returning early on a hard stop. */
static void nap(a2a *a, rd_reply *rp, int64_t ms) {
    while (ms > 0) {
        if (rp && a->h->cancelled(rp)) return;
        if (atomic_load(&a->stop_flag) && !rp) return;
        int64_t s = ms < 100 ? ms : 100;
        struct timespec ts = {0, (long)s * 1000000L};
        nanosleep(&ts, NULL);
        ms -= s;
    }
}

/* ---- credentials and origins ------------------------------------------- */

/* "scheme://host:port" of an http(s) URL, lower case, default port filled
 * in, userinfo dropped; "" when it is not one. */
static void origin_of(const char *url, char *out, size_t sz) {
    out[0] = 0;
    if (!url) return;
    const char *sep = strstr(url, "://");
    if (!sep || sep - url > 5) return;
    size_t sl = (size_t)(sep - url);
    const char *auth = sep + 3;
    size_t al = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', al);
    if (at) {
        al -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    int https = sl == 5 && !strncasecmp(url, "https", 5);
    if (!https && !(sl == 4 && !strncasecmp(url, "http", 4))) return;
    /* a port after the last ':' (outside an IPv6 literal) */
    const char *colon = NULL;
    for (const char *p = auth; p < auth + al; p++) {
        if (*p == ']') colon = NULL;
        if (*p == ':') colon = p;
    }
    size_t hl = colon ? (size_t)(colon - auth) : al;
    const char *port = colon ? colon + 1 : (https ? "443" : "80");
    size_t pl = colon ? al - hl - 1 : strlen(port);
    if (pl == 0) port = https ? "443" : "80", pl = strlen(port);
    int n =
        snprintf(out, sz, "%s://%.*s:%.*s", https ? "https" : "http", (int)hl, auth, (int)pl, port);
    if (n < 0 || (size_t)n >= sz) {
        out[0] = 0;
        return;
    }
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

/* True when url may receive the configured credentials. */
static int creds_allowed(a2a *a, const char *url) {
    char o[300];
    origin_of(url, o, sizeof o);
    if (!o[0]) return 0;
    for (char **p = a->cred_origins; p && *p; p++)
        if (!strcmp(*p, o)) return 1;
    return 0;
}

static int abort_on_stop(void *arg);

/* ---- OAuth 2.0 client credentials --------------------------------------- */

static void b64(const unsigned char *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* application/x-www-form-urlencoded value, malloc()ed. */
static char *form_esc(const char *s) {
    char *e = curl_easy_escape(NULL, s ? s : "", 0);
    char *r = e ? strdup(e) : NULL;
    curl_free(e);
    return r;
}

/* The token endpoint: the manifest's, else the card's when its origin may
 * see the credentials. NULL when none. malloc()ed. */
static char *token_url(a2a *a) {
    if (!empty(a->oauth_url)) return strdup(a->oauth_url);
    pthread_mutex_lock(&a->mu);
    char *u = xstrdup0(a->card.oauth_token_url);
    pthread_mutex_unlock(&a->mu);
    if (u && !creds_allowed(a, u)) {
        free(u);
        u = NULL;
    }
    return u;
}

/* One client credentials grant (RFC 6749 4.4) with HTTP Basic client
 * authentication. 0 and a token, or -1 and why (never a secret); *fatal
 * when retrying cannot help. */
static int oauth_fetch(a2a *a, int64_t deadline, char **tok, int64_t *exp_ms, int *fatal, char *why,
                       size_t wsz) {
    *tok = NULL;
    *fatal = 0;
    char *url = token_url(a);
    if (!url) {
        *fatal = 1;
        snprintf(why, wsz,
                 "no token endpoint (oauth_token_url, or a clientCredentials tokenUrl "
                 "on the card's origin)");
        return -1;
    }
    char *id = form_esc(a->oauth_id), *sec = form_esc(a->cf.oauth_client_secret);
    size_t n = (id ? strlen(id) : 0) + (sec ? strlen(sec) : 0) + 2;
    char *pair = malloc(n), *enc = malloc(n * 4 / 3 + 8), *hdr = NULL;
    char *body = NULL;
    int rc = -1;
    if (!id || !sec || !pair || !enc) goto out;
    snprintf(pair, n, "%s:%s", id, sec);
    b64((const unsigned char *)pair, strlen(pair), enc);
    if (asprintf(&hdr, "Authorization: Basic %s", enc) < 0) hdr = NULL;
    /* the body: grant, scopes (space separated), audience */
    size_t cap = 64, len = 0;
    body = malloc(cap);
    if (!hdr || !body) goto out;
    len = (size_t)snprintf(body, cap, "grant_type=client_credentials");
    for (int part = 0; part < 2; part++) {
        char *joined = NULL;
        if (part == 0 && a->cf.oauth_scopes && a->cf.oauth_scopes[0]) {
            size_t jl = 1;
            for (const char *const *s = a->cf.oauth_scopes; *s; s++)
                jl += strlen(*s) + 1;
            joined = calloc(1, jl);
            for (const char *const *s = a->cf.oauth_scopes; joined && *s; s++) {
                if (s != a->cf.oauth_scopes) strcat(joined, " ");
                strcat(joined, *s);
            }
        } else if (part == 1 && !empty(a->cf.oauth_audience)) {
            joined = strdup(a->cf.oauth_audience);
        }
        if (!joined) continue;
        char *e = form_esc(joined);
        free(joined);
        if (!e) goto out;
        size_t need = len + strlen(e) + 16;
        if (need > cap) {
            char *nb = realloc(body, need);
            if (!nb) {
                free(e);
                goto out;
            }
            body = nb;
            cap = need;
        }
        len += (size_t)snprintf(body + len, cap - len, "&%s=%s", part ? "audience" : "scope", e);
        free(e);
    }
    int64_t left = deadline - now_ms(a);
    if (left < 1000) left = 1000;
    struct curl_slist *hd = NULL;
    hd = curl_slist_append(hd, "Expect:");
    hd = curl_slist_append(hd, "Content-Type: application/x-www-form-urlencoded");
    hd = curl_slist_append(hd, "Accept: application/json");
    hd = curl_slist_append(hd, hdr);
    a2a_http_req rq = {.url = url,
                       .body = body,
                       .headers = hd,
                       .connect_timeout_ms = (long)a->connect_ms,
                       .timeout_ms = (long)(left < a->http_ms ? left : a->http_ms),
                       .max_bytes = 65536,
                       .abort_fn = abort_on_stop,
                       .abort_arg = a};
    a2a_http_resp rs;
    int hr = a2a_http_do(a->http, &rq, &rs);
    curl_slist_free_all(hd);
    cJSON *j = hr == 0 ? cJSON_ParseWithLength(rs.body, rs.len) : NULL;
    const char *at = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "access_token"));
    const char *tt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "token_type"));
    const char *oe = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error"));
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    int usable = at && *at && strlen(at) <= 8192 && !strpbrk(at, "\r\n") &&
                 (!tt || !strcasecmp(tt, "bearer"));
    for (const char *p = at; usable && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) usable = 0;
    if (hr != 0) {
        snprintf(why, wsz, "token endpoint %s: %s", url,
                 rs.errbuf[0] ? rs.errbuf : curl_easy_strerror(rs.cc));
    } else if (rs.status != 200 || !usable) {
        char e[64] = "";
        for (size_t i = 0; oe && oe[i] && i < sizeof e - 1; i++)
            e[i] = isalnum((unsigned char)oe[i]) || oe[i] == '_' ? oe[i] : '?';
        snprintf(why, wsz, "token endpoint %s: HTTP %ld%s%s%s", url, rs.status, e[0] ? " (" : "", e,
                 e[0]               ? ")"
                 : rs.status == 200 ? ", no usable bearer access_token"
                                    : "");
        *fatal = rs.status >= 400 && rs.status < 500 && rs.status != 408 && rs.status != 429;
    } else {
        /* expires_in is hostile: 1 s .. 1 year; absent means an hour */
        double s = cJSON_IsNumber(ei) ? ei->valuedouble : 3600;
        if (!(s >= 1)) s = 1;
        if (s > 31536000) s = 31536000;
        *exp_ms = now_ms(a) + (int64_t)s * 1000;
        *tok = strdup(at);
        rc = *tok ? 0 : -1;
    }
    cJSON_Delete(j);
    a2a_http_resp_free(&rs);
out:
    if (rc && !why[0]) snprintf(why, wsz, "token request: out of memory");
    free(url);
    free(id);
    free(sec);
    free(pair);
    free(enc);
    free(hdr);
    free(body);
    return rc;
}

/* "Authorization: Bearer <token>", renewed oauth_refresh_margin_s before
 * expiry, or at once when the agent refused `stale` (401) and no other
 * call renewed it since. One fetch at a time. NULL with why on failure. */
static char *oauth_header(a2a *a, int64_t deadline, const char *stale, int *fatal, char *why,
                          size_t wsz) {
    why[0] = 0;
    *fatal = 0;
    pthread_mutex_lock(&a->omu);
    while (a->ofetching)
        pthread_cond_wait(&a->ocv, &a->omu);
    int64_t now = now_ms(a);
    int fresh = a->otoken && now < a->oexp_ms - a->omargin_ms;
    int renew = stale && a->otoken && !strncmp(stale, "Authorization: Bearer ", 22) &&
                !strcmp(stale + 22, a->otoken);
    if (fresh && !renew) {
        char *h = NULL;
        if (asprintf(&h, "Authorization: Bearer %s", a->otoken) < 0) h = NULL;
        pthread_mutex_unlock(&a->omu);
        return h;
    }
    a->ofetching = 1;
    pthread_mutex_unlock(&a->omu);
    char *tok = NULL;
    int64_t exp = 0;
    int rc = oauth_fetch(a, deadline, &tok, &exp, fatal, why, wsz);
    pthread_mutex_lock(&a->omu);
    a->ofetching = 0;
    char *h = NULL;
    if (rc == 0) {
        free(a->otoken);
        a->otoken = tok;
        a->oexp_ms = exp;
        a->ofetched_ms = now_ms(a);
        if (asprintf(&h, "Authorization: Bearer %s", tok) < 0) h = NULL;
    }
    pthread_cond_broadcast(&a->ocv);
    pthread_mutex_unlock(&a->omu);
    if (rc == 0)
        a->h->log(a->ctx, RD_LOG_INFO, "OAuth access token %s; valid for %" PRId64 " s",
                  renew ? "renewed" : "obtained", (exp - now_ms(a)) / 1000);
    return h;
}

/* ---- discovery ---------------------------------------------------------- */

static struct curl_slist *common_headers(a2a *a, int v10, const char *url) {
    struct curl_slist *l = NULL;
    l = curl_slist_append(l, "Expect:");
    if (v10) l = curl_slist_append(l, "A2A-Version: 1.0");
    if ((a->auth_hdr || a->key_hdr) && creds_allowed(a, url)) {
        if (a->auth_hdr) l = curl_slist_append(l, a->auth_hdr);
        if (a->key_hdr) l = curl_slist_append(l, a->key_hdr);
    }
    return l;
}

static int abort_on_stop(void *arg) {
    a2a *a = arg;
    return atomic_load(&a->stop_flag);
}

/* Fetches and parses the card. 0 on success; else cls and err say why,
 * naming the URL. */
/* Validators of a fetched card: ETag and max-age (-1 unknown); a 304 to
 * If-None-Match sets unchanged and leaves card empty. */
typedef struct {
    const char *if_none_match, *if_url; /* what we have and where it came from */
    int unchanged;
    char etag[128];
    long max_age;
} card_cache;

static int fetch_card(a2a *a, int64_t deadline, a2a_card *card, a2a_class *cls, char *err,
                      size_t errsz, card_cache *cc) {
    char *urls[2] = {NULL, NULL};
    int n = 0;
    if (a->card_url) {
        urls[n++] = strdup(a->card_url);
    } else {
        if (asprintf(&urls[0], "%s/.well-known/agent-card.json", a->base) < 0) urls[0] = NULL;
        if (asprintf(&urls[1], "%s/.well-known/agent.json", a->base) < 0) urls[1] = NULL;
        n = 2;
    }
    int rc = -1;
    char first[200] = "";
    char *final = NULL; /* where the card was found, after redirects */
    for (int i = 0; i < n; i++) {
        if (!urls[i]) continue;
        int64_t left = deadline - now_ms(a);
        if (left <= 0) {
            *cls = A2A_C_TIMEOUT;
            snprintf(err, errsz, "agent card %s: no time left", urls[i]);
            break;
        }
        /* Redirects are followed by hand: within the card's origin (or to
         * one listed in credential_origins), five at most, and each hop
         * gets credentials only if its origin may see them. */
        free(final);
        final = strdup(urls[i]);
        char redir[300] = "", o1[300];
        origin_of(urls[i], o1, sizeof o1);
        a2a_http_resp rs;
        int hr;
        for (int hops = 0;; hops++) {
            struct curl_slist *hd = common_headers(a, a->forced != A2A_D_V03, final);
            hd = curl_slist_append(hd, "Accept: application/json");
            if (cc->if_none_match && cc->if_none_match[0] && cc->if_url &&
                !strcmp(cc->if_url, final)) {
                char inm[160];
                snprintf(inm, sizeof inm, "If-None-Match: %s", cc->if_none_match);
                hd = curl_slist_append(hd, inm);
            }
            a2a_http_req rq = {.url = final,
                               .headers = hd,
                               .connect_timeout_ms = (long)a->connect_ms,
                               .timeout_ms = (long)(left < a->http_ms ? left : a->http_ms),
                               .max_bytes = a->max_bytes,
                               .abort_fn = abort_on_stop,
                               .abort_arg = a};
            hr = a2a_http_do(a->http, &rq, &rs);
            curl_slist_free_all(hd);
            long st = rs.status;
            if (hr != 0 || !rs.location ||
                !(st == 301 || st == 302 || st == 303 || st == 307 || st == 308))
                break;
            char *next = a2a_url_resolve(final, rs.location);
            char o2[300];
            origin_of(next, o2, sizeof o2);
            if (!next || !o2[0] || (strcmp(o1, o2) && !creds_allowed(a, next)) || hops >= 5) {
                if (hops >= 5)
                    snprintf(redir, sizeof redir, "more than 5 redirects");
                else
                    snprintf(redir, sizeof redir,
                             "redirected to another origin (%.150s); list it in "
                             "credential_origins to follow",
                             next ? next : rs.location);
                free(next);
                break;
            }
            a2a_http_resp_free(&rs);
            free(final);
            final = next;
        }
        if (redir[0]) {
            *cls = A2A_C_FATAL;
            snprintf(err, errsz, "agent card %s: %s", urls[i], redir);
            a2a_http_resp_free(&rs);
            break;
        }
        if (hr != 0) {
            if (rs.too_big) {
                *cls = A2A_C_PROTOCOL;
                snprintf(err, errsz, "agent card %s: larger than max_response_bytes", urls[i]);
            } else {
                *cls = rs.cc == CURLE_OPERATION_TIMEDOUT ? A2A_C_TIMEOUT : A2A_C_TRANSIENT;
                /* curl's short text: stable, so repeats are recognised */
                snprintf(err, errsz, "agent card %s: %s", urls[i], curl_easy_strerror(rs.cc));
            }
            a2a_http_resp_free(&rs);
            break;
        }
        if (rs.status == 304 && cc->if_none_match && cc->if_none_match[0]) {
            cc->unchanged = 1;
            cc->max_age = rs.max_age;
            a2a_http_resp_free(&rs);
            rc = 0;
            snprintf(err, errsz, "%s", final);
            break;
        }
        if (rs.status == 404 || rs.status == 410 || rs.status == 405) {
            /* try the older well-known path next */
            if (i + 1 < n) {
                snprintf(first, sizeof first, "%s (HTTP %ld) or ", urls[i], rs.status);
                a2a_http_resp_free(&rs);
                continue;
            }
            *cls = A2A_C_FATAL;
            snprintf(err, errsz, "no agent card at %s%s (HTTP %ld)", first, urls[i], rs.status);
            a2a_http_resp_free(&rs);
            break;
        }
        if (rs.status != 200) {
            *cls = a2a_classify_http(rs.status);
            snprintf(err, errsz, "agent card %s: HTTP %ld%s%s", urls[i], rs.status,
                     rs.status == 401 || rs.status == 403 ? " (check token / api_key)" : "",
                     rs.www_auth ? ", WWW-Authenticate: " : "");
            if (rs.www_auth) strncat(err, rs.www_auth, errsz - strlen(err) - 1);
            a2a_http_resp_free(&rs);
            break;
        }
        char why[200];
        if (a2a_card_parse(rs.body, rs.len, final, card, why, sizeof why)) {
            *cls = !strcmp(why, "not JSON") ? A2A_C_PROTOCOL : A2A_C_FATAL;
            snprintf(err, errsz, "invalid agent card at %s: %s", urls[i], why);
            a2a_card_free(card);
            a2a_http_resp_free(&rs);
            break;
        }
        snprintf(cc->etag, sizeof cc->etag, "%s", rs.etag ? rs.etag : "");
        cc->max_age = rs.max_age;
        a2a_http_resp_free(&rs);
        if (card->required_ext && !a->ext_warn) {
            *cls = A2A_C_FATAL;
            snprintf(err, errsz,
                     "the agent card at %s requires the extension %.150s, which routerd does not "
                     "support (required_extensions = warn uses the agent anyway)",
                     urls[i], card->required_ext);
            a2a_card_free(card);
            break;
        }
        rc = 0;
        snprintf(err, errsz, "%s", final); /* where it came from, for the log */
        break;
    }
    free(urls[0]);
    free(urls[1]);
    free(final);
    return rc;
}

/* Says clearly when the card's security does not match the configuration. */
static void check_card(a2a *a, const a2a_card *c) {
    const rd_host *h = a->h;
    int have_key = a->key_hdr != NULL, have_token = a->auth_hdr != NULL || a->oauth_id;
    if (c->auth_required && !have_key && !have_token)
        h->log(a->ctx, RD_LOG_WARN,
               "the agent card requires authentication (%s) but neither token nor api_key is "
               "configured; calls will likely fail with HTTP 401",
               c->auth_bearer   ? "bearer"
               : c->apikey_name ? "API key"
               : c->auth_oauth  ? "OAuth2"
                                : "a scheme");
    if (c->apikey_name && c->apikey_in && strcasecmp(c->apikey_in, "header"))
        h->log(a->ctx, RD_LOG_WARN,
               "the agent card wants its API key in the %s parameter '%s'; only headers are "
               "supported (api_key_header)",
               c->apikey_in, c->apikey_name);
    else if (c->apikey_name && have_key &&
             (strncasecmp(a->key_hdr, c->apikey_name, strlen(c->apikey_name)) ||
              a->key_hdr[strlen(c->apikey_name)] != ':'))
        h->log(a->ctx, RD_LOG_WARN,
               "the agent card names the API key header '%s' but api_key_header differs",
               c->apikey_name);
    if (have_token && !c->auth_bearer && !c->auth_oauth && (c->apikey_name || c->auth_basic))
        h->log(a->ctx, RD_LOG_WARN,
               "a bearer token is configured but the agent card declares no bearer scheme");
    if (have_key && !c->apikey_name && (c->auth_bearer || c->auth_oauth) && !have_token)
        h->log(a->ctx, RD_LOG_WARN,
               "an API key is configured but the agent card asks for a bearer token (token)");
    if (c->auth_mtls && !c->auth_bearer && !c->apikey_name && !c->auth_oauth)
        h->log(a->ctx, RD_LOG_WARN, "the agent card asks for mutual TLS, which is not supported");
    const char *eps[] = {a->rpc_url ? NULL : c->url_v10, a->rpc_url ? NULL : c->url_v03,
                         a->rpc_url ? NULL : c->url_rest, a->rpc_url ? NULL : c->url_rest03};
    for (int i = 0; i < 4 && (have_key || have_token); i++)
        if (eps[i] && !creds_allowed(a, eps[i]))
            h->log(a->ctx, RD_LOG_WARN,
                   "the agent card names the endpoint %s on another origin; credentials are not "
                   "sent there unless credential_origins lists it",
                   eps[i]);
    if (a->binding == 1 && !c->url_v10 && !c->url_v03 && !a->rpc_url)
        h->log(a->ctx, RD_LOG_ERROR,
               "binding = jsonrpc but the agent card offers only HTTP+JSON (%s); requests go "
               "to url",
               c->url_rest     ? c->url_rest
               : c->url_rest03 ? c->url_rest03
                               : "?");
    if (c->required_ext)
        h->log(a->ctx, RD_LOG_ERROR,
               "the agent card requires the extension %s, which routerd does not support; "
               "requests may fail (-32008)",
               c->required_ext);
    if (!c->text_input)
        h->log(a->ctx, RD_LOG_WARN,
               "the agent card's defaultInputModes accept no text; messages are sent as text");
}

/* Runs one discovery unless another is running (then waits for it).
 * Returns 1 when a card is available afterwards. Never holds the mutex
 * across I/O. */
static int discover(a2a *a, int64_t deadline, int force, int throttle) {
    pthread_mutex_lock(&a->mu);
    uint64_t seen = a->attempts;
    while (a->busy && !a->stopping) {
        int64_t left = deadline - now_ms(a);
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + (left % 1000) * 1000000;
        ts.tv_sec += left / 1000 + ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&a->cv, &a->mu, &ts);
    }
    /* Someone else just tried, or a failure is fresh: use their result. */
    if (a->busy || a->stopping || a->attempts != seen || (!force && a->have_card) ||
        (throttle && a->last_fail_ms && now_ms(a) - a->last_fail_ms < 1000)) {
        int ok = a->have_card;
        pthread_mutex_unlock(&a->mu);
        return ok;
    }
    a->busy = 1;
    pthread_mutex_unlock(&a->mu);

    a2a_card card;
    memset(&card, 0, sizeof card);
    a2a_class cls = A2A_C_TRANSIENT;
    char msg[320];
    pthread_mutex_lock(&a->mu);
    char have_etag[128], *from = xstrdup0(a->card_from);
    snprintf(have_etag, sizeof have_etag, "%s", a->have_card ? a->card_etag : "");
    pthread_mutex_unlock(&a->mu);
    card_cache cc = {.if_none_match = have_etag, .if_url = from, .max_age = -1};
    int rc = fetch_card(a, deadline, &card, &cls, msg, sizeof msg, &cc);
    free(from);

    pthread_mutex_lock(&a->mu);
    int was = a->have_card;
    int changed = 0, repeat = 0;
    if (rc == 0) {
        /* Used until max-age (bounded by card_refresh_min_s and
         * card_max_age_s), then read again with If-None-Match. */
        int64_t age = a->card_max_age_ms;
        if (cc.max_age >= 0 && cc.max_age * 1000 < age) age = cc.max_age * 1000;
        if (age < a->card_min_ms) age = a->card_min_ms;
        a->card_expires_ms = now_ms(a) + age;
    }
    if (rc == 0 && cc.unchanged) {
        a->last_fail_ms = 0;
        a->disc_err[0] = 0;
    } else if (rc == 0) {
        snprintf(a->card_etag, sizeof a->card_etag, "%s", cc.etag);
        free(a->card_from);
        a->card_from = strdup(msg);
        changed = !was || !a->card.url_v10 != !card.url_v10 || !a->card.url_v03 != !card.url_v03 ||
                  (card.url_v10 && strcmp(card.url_v10, a->card.url_v10)) ||
                  (card.url_v03 && strcmp(card.url_v03, a->card.url_v03)) ||
                  !a->card.url_rest != !card.url_rest ||
                  (card.url_rest && strcmp(card.url_rest, a->card.url_rest)) ||
                  !a->card.url_rest03 != !card.url_rest03 ||
                  (card.url_rest03 && strcmp(card.url_rest03, a->card.url_rest03));
        a2a_card_free(&a->card);
        a->card = card;
        a->have_card = 1;
        a->last_fail_ms = 0;
        a->disc_err[0] = 0;
    } else {
        /* Keep a card we had: the agent may come back at the same place. */
        repeat = !strcmp(a->disc_err, msg);
        a->disc_class = cls;
        snprintf(a->disc_err, sizeof a->disc_err, "%s", msg);
        a->last_fail_ms = now_ms(a);
    }
    a->busy = 0;
    a->attempts++;
    int ok = a->have_card;
    a2a_card snap = {0};
    if (rc == 0 && changed) {
        snap.name = xstrdup0(a->card.name);
        snap.url_v10 = xstrdup0(a->card.url_v10);
        snap.url_v03 = xstrdup0(a->card.url_v03);
        snap.url_rest = xstrdup0(a->card.url_rest);
        snap.url_rest03 = xstrdup0(a->card.url_rest03);
        snap.preferred = a->card.preferred;
        snap.streaming = a->card.streaming;
        snap.auth_required = a->card.auth_required;
        snap.auth_bearer = a->card.auth_bearer;
        snap.auth_basic = a->card.auth_basic;
        snap.auth_oauth = a->card.auth_oauth;
        snap.auth_mtls = a->card.auth_mtls;
        snap.text_input = a->card.text_input;
        snap.apikey_name = xstrdup0(a->card.apikey_name);
        snap.apikey_in = xstrdup0(a->card.apikey_in);
        snap.oauth_token_url = xstrdup0(a->card.oauth_token_url);
        snap.required_ext = xstrdup0(a->card.required_ext);
    }
    /* Readiness under the lock, so two discoveries cannot report out of
     * order; ready() is a quick host call. */
    if (rc == 0)
        a->h->ready(a->ctx, 1, NULL);
    else
        a->h->ready(a->ctx, 0, msg);
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);

    if (rc == 0) {
        if (changed) {
            a->h->log(a->ctx, RD_LOG_INFO,
                      "agent card %s: '%s', JSON-RPC %s%s%s%s, HTTP+JSON %s, streaming %s", msg,
                      snap.name ? snap.name : "?", snap.url_v10 ? "1.0 at " : "",
                      snap.url_v10 ? snap.url_v10 : "",
                      snap.url_v03 ? (snap.url_v10 ? ", 0.3 at " : "0.3 at ") : "",
                      snap.url_v03 ? snap.url_v03 : "", snap.url_rest ? snap.url_rest : "none",
                      snap.streaming ? "yes" : "no");
            check_card(a, &snap);
            a2a_card_free(&snap);
        }
    } else {
        /* The same failure again (an agent down for long) is not news. */
        a->h->log(a->ctx, repeat ? RD_LOG_DEBUG : RD_LOG_WARN, "agent discovery failed (%s): %s",
                  a2a_class_name(cls), msg);
    }
    return ok;
}

static void *discovery_main(void *arg) {
    pthread_setname_np(pthread_self(), "a2a-discovery");
    a2a *a = arg;
    int64_t pause = 500;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        int need = !a->have_card || a->kick || a->disc_err[0] ||
                   (a->card_expires_ms && now_ms(a) >= a->card_expires_ms);
        a->kick = 0;
        int stop = a->stopping;
        pthread_mutex_unlock(&a->mu);
        if (stop) break;
        int ok = 1;
        if (need) {
            ok = discover(a, now_ms(a) + a->http_ms * 2, 1, 0);
            pthread_mutex_lock(&a->mu);
            ok = ok && !a->disc_err[0];
            pthread_mutex_unlock(&a->mu);
        }
        pthread_mutex_lock(&a->mu);
        if (ok) {
            pause = 500;
            /* until kicked, or until the card is due to be read again */
            while (!a->kick && !a->stopping) {
                int64_t left = a->card_expires_ms - now_ms(a);
                if (!a->card_expires_ms) {
                    pthread_cond_wait(&a->cv, &a->mu);
                    continue;
                }
                if (left <= 0) break;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                int64_t ns = ts.tv_nsec + (left % 1000) * 1000000;
                ts.tv_sec += left / 1000 + ns / 1000000000;
                ts.tv_nsec = ns % 1000000000;
                pthread_cond_timedwait(&a->cv, &a->mu, &ts);
            }
        } else if (!a->stopping && !a->kick) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (pause % 1000) * 1000000;
            ts.tv_sec += pause / 1000 + ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
            pause = pause * 2 > a->disc_max_ms ? a->disc_max_ms : pause * 2;
        }
        pthread_mutex_unlock(&a->mu);
    }
    return NULL;
}

/* Asks the discovery thread to look at the agent again. */
static void kick_discovery(a2a *a) {
    pthread_mutex_lock(&a->mu);
    a->kick = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* ---- per-call view of the agent ----------------------------------------- */

typedef struct {
    char *url;
    char *tenant;
    a2a_dialect d;
    int streaming;
    int rest; /* HTTP+JSON binding (1.0) instead of JSON-RPC */
    int push; /* the card allows push notifications */
} agent_view;

static a2a_dialect other(a2a_dialect d) {
    return d == A2A_D_V10 ? A2A_D_V03 : A2A_D_V10;
}

/* Under mu: url refused streams a short while ago. */
static int stream_refused_locked(a2a *a, const char *url) {
    if (!a->nostream_url || !url || strcmp(a->nostream_url, url)) return 0;
    return now_ms(a) < a->nostream_until_ms;
}

/* Streams at url are not tried again for stream_retry_s. */
static void refuse_stream(a2a *a, const char *url) {
    pthread_mutex_lock(&a->mu);
    free(a->nostream_url);
    a->nostream_url = xstrdup0(url);
    a->nostream_until_ms = now_ms(a) + a->stream_retry_ms;
    pthread_mutex_unlock(&a->mu);
    a->h->log(a->ctx, RD_LOG_INFO,
              "the agent refused streaming at %s; using send + poll there for %" PRId64 " s",
              url ? url : "?", a->stream_retry_ms / 1000);
}

/* trial: a dialect this call tries after 'method not found' (0 = none). */
static int view_get(a2a *a, agent_view *v, a2a_dialect trial) {
    memset(v, 0, sizeof *v);
    pthread_mutex_lock(&a->mu);
    if (!a->have_card) {
        pthread_mutex_unlock(&a->mu);
        return -1;
    }
    a2a_dialect d = a->forced;
    if (!d) d = trial;
    if (!d) d = (a2a_dialect)atomic_load(&a->learned);
    if (!d) d = a->card.preferred ? a->card.preferred : A2A_D_V10;
    const char *u10 = a->card.url_v10, *u03 = a->card.url_v03;
    const char *url = d == A2A_D_V10 ? (u10 ? u10 : u03) : (u03 ? u03 : u10);
    /* REST when asked for, or when the card offers nothing else: 1.0
     * unless only 0.3 is offered (or forced) */
    const char *r10 = a->card.url_rest, *r03 = a->card.url_rest03;
    v->rest = a->binding == 2 || (a->binding == 0 && !url && (r10 || r03));
    if (v->rest) {
        d = a->forced == A2A_D_V03 || (!r10 && r03 && a->forced != A2A_D_V10) ? A2A_D_V03
                                                                              : A2A_D_V10;
        url = d == A2A_D_V03 ? r03 : r10;
    }
    if (a->rpc_url) url = a->rpc_url;
    v->url = xstrdup0(url ? url : a->base);
    v->tenant = v->rest                 ? xstrdup0(a->card.tenant_rest)
                : d == A2A_D_V10 && u10 ? xstrdup0(a->card.tenant)
                                        : NULL;
    v->d = d;
    v->streaming = a->card.streaming && !stream_refused_locked(a, v->url);
    v->push = a->have_card && a->card.push;
    pthread_mutex_unlock(&a->mu);
    return v->url ? 0 : -1;
}

/* The view of an endpoint named by a stored task record. */
static void view_for(a2a *a, agent_view *v, a2a_dialect d, const char *url) {
    memset(v, 0, sizeof *v);
    pthread_mutex_lock(&a->mu);
    v->d = d ? d : a->card.preferred ? a->card.preferred : A2A_D_V10;
    v->url = xstrdup0(url ? url : a->card.url_v10 ? a->card.url_v10 : a->base);
    int same_url = a->card.url_v10 && v->url && !strcmp(a->card.url_v10, v->url);
    v->tenant = v->d == A2A_D_V10 && same_url ? xstrdup0(a->card.tenant) : NULL;
    int r03 = a->card.url_rest03 && v->url && !strcmp(a->card.url_rest03, v->url);
    v->rest = a->binding == 2 ||
              (a->binding == 0 &&
               ((a->card.url_rest && v->url && !strcmp(a->card.url_rest, v->url)) || r03));
    if (v->rest) {
        v->d = r03 || (d == A2A_D_V03 && a->binding == 2) ? A2A_D_V03 : A2A_D_V10;
        free(v->tenant);
        v->tenant = v->d == A2A_D_V10 ? xstrdup0(a->card.tenant_rest) : NULL;
    }
    v->streaming = a->have_card && a->card.streaming && !stream_refused_locked(a, v->url);
    v->push = a->have_card && a->card.push;
    pthread_mutex_unlock(&a->mu);
}

static void view_free(agent_view *v) {
    free(v->url);
    free(v->tenant);
    memset(v, 0, sizeof *v);
}

/* ---- one call ----------------------------------------------------------- */

typedef struct {
    a2a_class cls;
    int has_rpc, rpc_code;
    long http;
    int conn_fail;   /* no HTTP answer at all */
    int not_sent;    /* provably never reached the agent (connect, DNS, TLS) */
    int asked_retry; /* the agent said it did not take it: 408, 429, 503 */
    int abandoned;   /* the router is stopping: leave the task running */
    int dropped;     /* a stream ended before the task settled */
    long retry_after_s;
    char rpc_text[160]; /* the agent's error message and reason (logs, heuristics) */
    char msg[300];
} outcome;

enum { REC_NONE, REC_SENT, REC_TASK, REC_DONE };

typedef struct {
    a2a *a;
    const rd_request *rq;
    rd_reply *rp;
    int64_t deadline;
    char msg_id[64];
    char key[128]; /* state store key of the conversation */
    char *ctx_id;  /* conversation */
    char *task_id; /* interrupted task to continue */
    char *saved_ctx, *saved_task;
    uint64_t rnd;
    int continuing; /* the message continues an interrupted task */
    int64_t last_progress_ms;
    size_t last_progress_len;
    /* Exactly-once record of this message (key msg:<update>:<messageId>),
     * kept when the messageId is stable across restarts. */
    int stable;
    char rkey[96];
    int rec;        /* REC_* as stored */
    char *rec_task; /* task id stored */
    a2a_dialect rec_d;
    char *rec_url;
    int64_t rec_t; /* wall-clock seconds of the first send */
    char *out;     /* the reply as appended, for the record */
    size_t outlen, outcap;
    const agent_view *view; /* the endpoint of the exchange in progress */
    struct kv_batch *batch; /* set: store writes are collected, not made */
} call;

struct acall;

typedef struct {
    call *c;
    a2a_track *t;
    struct acall *ac; /* set: the loop's thread reads the stream */
    const char *rpc_id;
    outcome *o;
    int error_seen;
    int settled; /* a status update settled the task */
    int rest;    /* events are bare REST results */
    int rest03;  /* ... of the 0.3 binding (proto-named shapes) */
} sse_ctx;

static void progress(call *c, const a2a_track *t, int force);
static void note_task(call *c, const a2a_track *t);
static void side_offer(struct acall *ac, int with_task);

/* A REST route under an interface URL (its trailing slashes dropped);
 * malloc()ed, NULL when path is NULL or out of memory. */
static char *route_url(const char *base, const char *path) {
    if (!path) return NULL;
    size_t ul = strlen(base);
    while (ul && base[ul - 1] == '/')
        ul--;
    char *u = malloc(ul + strlen(path) + 1);
    if (u) {
        memcpy(u, base, ul);
        strcpy(u + ul, path);
    }
    return u;
}

/* A REST answer as a JSON-RPC response (0.3 shapes normalized first). */
static char *rest_wrap(int v03, const char *body, size_t len) {
    if (!v03) return a2a_rest_wrap(body, len);
    char *n = a2a_rest03_normalize(body, len);
    char *w = n ? a2a_rest_wrap(n, strlen(n)) : NULL;
    free(n);
    return w;
}

static int on_event(void *arg, const char *event, const char *data, size_t len) {
    sse_ctx *s = arg;
    a2a_rpc r;
    char why[160];
    if (s->rest) {
        int code;
        char *m;
        if (!a2a_rest_error(data, len, &code, &m) || !strcmp(event, "error")) {
            if (!code) code = A2A_ERR_INTERNAL;
            s->o->has_rpc = 1;
            s->o->rpc_code = code;
            s->o->cls = a2a_classify_rpc(code);
            snprintf(s->o->msg, sizeof s->o->msg, "stream error %d (%s): %.160s", code,
                     a2a_rpc_code_name(code), m ? m : "");
            s->error_seen = 1;
            free(m);
            return 1;
        }
        char *w = rest_wrap(s->rest03, data, len);
        int bad = !w || a2a_rpc_parse(w, strlen(w), NULL, &r, why, sizeof why);
        if (!w) snprintf(why, sizeof why, "out of memory");
        free(w);
        if (bad) {
            s->o->cls = A2A_C_PROTOCOL;
            snprintf(s->o->msg, sizeof s->o->msg, "stream event: %s", why);
            s->error_seen = 1;
            return 1;
        }
    } else if (a2a_rpc_parse(data, len, s->rpc_id, &r, why, sizeof why)) {
        s->o->cls = A2A_C_PROTOCOL;
        snprintf(s->o->msg, sizeof s->o->msg, "stream event: %s", why);
        s->error_seen = 1;
        return 1;
    }
    if (r.is_error || !strcmp(event, "error")) {
        s->o->has_rpc = 1;
        s->o->rpc_code = r.is_error ? r.code : A2A_ERR_INTERNAL;
        s->o->cls = a2a_classify_rpc(s->o->rpc_code);
        snprintf(s->o->msg, sizeof s->o->msg, "stream error %d (%s): %.160s", s->o->rpc_code,
                 a2a_rpc_code_name(s->o->rpc_code), r.message ? r.message : "");
        s->error_seen = 1;
        a2a_rpc_free(&r);
        return 1;
    }
    a2a_kind kind = r.res.kind;
    a2a_track_apply(s->t, &r.res);
    a2a_rpc_free(&r);
    if (s->ac) {
        side_offer(s->ac, 1); /* the store and the transport may be slow: not here */
    } else {
        note_task(s->c, s->t);
        progress(s->c, s->t, 0);
    }
    /* Stop reading once the stream said all: a message, the 0.3 final
     * flag, or a status update to a settled state. A Task snapshot does not
     * end it: on a continued task it still shows the old input-required. */
    int settled = kind == A2A_R_STATUS &&
                  (a2a_state_terminal(s->t->state) || a2a_state_interrupted(s->t->state));
    if (settled) s->settled = 1;
    return s->t->got_message || s->t->ended || settled;
}

static int call_aborted(void *arg) {
    call *c = arg;
    return c->a->h->cancelled(c->rp);
}

static void rec_write(call *c, int state, const char *task, const agent_view *v, rd_status st,
                      const char *klass);

/* A send is recorded as the last thing before its request is written:
 * after a crash the re-delivered update knows it may have reached the
 * agent, and a send that failed to connect was never "sent". */
static void record_sent(void *arg) {
    call *c = arg;
    if (c->rec != REC_SENT) rec_write(c, REC_SENT, NULL, c->view, RD_OK, NULL);
}

/* One exchange in two halves around the HTTP request: rpc_begin() builds
 * it, rpc_end() classifies the answer into the outcome and frees it. The
 * blocking rpc() runs both around a2a_http_do(); the event loop runs the
 * request in between without a thread. */
typedef struct {
    a2a_op op;
    char rpc_id[32];
    a2a_track *t;
    outcome *o;
    sse_ctx sc;
    char *rest_url, *rest_body;
    const char *body, *url;
    struct curl_slist *hd;
    char *used; /* the Authorization header sent */
    int oauth, renewed;
    size_t before;
    a2a_http_req hrq;
    a2a_http_resp rs;
    int hr;
} rpc_x;

static void rpc_x_free(rpc_x *x) {
    curl_slist_free_all(x->hd);
    x->hd = NULL;
    free(x->used);
    x->used = NULL;
    free(x->rest_url);
    x->rest_url = NULL;
    free(x->rest_body);
    x->rest_body = NULL;
}

/* The request's headers (a fresh OAuth token when stale is the one a 401
 * refused); -1 with o filled when no token could be had. */
static int rpc_headers(call *c, const agent_view *v, rpc_x *x) {
    a2a *a = c->a;
    int stream = x->op == A2A_OP_STREAM || x->op == A2A_OP_SUBSCRIBE;
    curl_slist_free_all(x->hd);
    struct curl_slist *hd = common_headers(a, v->d == A2A_D_V10, v->url);
    if (x->body) hd = curl_slist_append(hd, "Content-Type: application/json");
    hd = curl_slist_append(hd, stream ? "Accept: text/event-stream" : "Accept: application/json");
    if (c->rq->traceparent && *c->rq->traceparent) {
        char tp[128];
        snprintf(tp, sizeof tp, "traceparent: %s", c->rq->traceparent);
        hd = curl_slist_append(hd, tp);
    }
    x->hd = hd;
    if (x->oauth) {
        char why[300];
        int fatal;
        char *ah = oauth_header(a, c->deadline, x->used, &fatal, why, sizeof why);
        free(x->used);
        x->used = ah;
        if (!ah) {
            /* nothing reached the agent */
            x->o->cls = fatal ? A2A_C_FATAL : A2A_C_TRANSIENT;
            x->o->not_sent = 1;
            snprintf(x->o->msg, sizeof x->o->msg, "OAuth: %.280s", why);
            return -1;
        }
        x->hd = curl_slist_append(x->hd, ah);
    }
    x->hrq.headers = x->hd;
    return 0;
}

/* -1 with o filled (and nothing to free) when the request cannot be made. */
static int rpc_begin(call *c, const agent_view *v, a2a_op op, const char *body, const char *rpc_id,
                     a2a_track *t, outcome *o, rpc_x *x) {
    a2a *a = c->a;
    memset(o, 0, sizeof *o);
    memset(x, 0, sizeof *x);
    x->op = op;
    x->t = t;
    x->o = o;
    snprintf(x->rpc_id, sizeof x->rpc_id, "%s", rpc_id ? rpc_id : "");
    int64_t left = c->deadline - now_ms(a);
    if (op == A2A_OP_CANCEL) left = a->cancel_ms;
    if (left <= 0) {
        o->cls = A2A_C_TIMEOUT;
        snprintf(o->msg, sizeof o->msg, "deadline passed before %s", a2a_method(v->d, op));
        return -1;
    }
    int stream = op == A2A_OP_STREAM || op == A2A_OP_SUBSCRIBE;
    int64_t limit = left;
    /* A send may have reached the agent: it gets the whole deadline, since
     * cutting it short would leave the outcome unknown (some agents answer
     * a non-blocking send only when done). */
    if (!stream && op != A2A_OP_SEND && a->http_ms < limit) limit = a->http_ms;

    x->oauth = a->oauth_id && creds_allowed(a, v->url);
    x->before = t->updates;
    x->sc = (sse_ctx){.c = c,
                      .t = t,
                      .rpc_id = rpc_id ? x->rpc_id : NULL,
                      .o = o,
                      .rest = v->rest,
                      .rest03 = v->rest && v->d == A2A_D_V03};
    /* HTTP+JSON: the same call as a REST route under the interface URL */
    if (v->rest) {
        char *path;
        if ((v->d == A2A_D_V03 ? a2a_rest03_request : a2a_rest_request)(op, body, &path,
                                                                        &x->rest_body)) {
            o->cls = A2A_C_PROTOCOL;
            o->not_sent = 1;
            snprintf(o->msg, sizeof o->msg, "%s: no REST form of this request",
                     a2a_method(v->d, op));
            return -1;
        }
        x->rest_url = route_url(v->url, path);
        free(path);
        body = x->rest_body;
        if (!x->rest_url) {
            o->cls = A2A_C_TRANSIENT;
            o->not_sent = 1;
            snprintf(o->msg, sizeof o->msg, "%s: out of memory", a2a_method(v->d, op));
            rpc_x_free(x);
            return -1;
        }
    }
    x->body = body;
    x->url = x->rest_url ? x->rest_url : v->url;
    x->hrq = (a2a_http_req){.url = x->url,
                            .body = body,
                            .connect_timeout_ms = (long)a->connect_ms,
                            .timeout_ms = (long)limit,
                            .max_bytes = a->max_bytes,
                            .sse_fn = stream ? on_event : NULL,
                            .sse_arg = &x->sc,
                            .abort_fn = call_aborted,
                            .abort_arg = c,
                            .before_send_fn =
                                op == A2A_OP_SEND || op == A2A_OP_STREAM ? record_sent : NULL,
                            .before_send_arg = c,
                            .no_repeat = op == A2A_OP_SEND || op == A2A_OP_STREAM};
    if (rpc_headers(c, v, x)) {
        rpc_x_free(x);
        return -1;
    }
    return 0;
}

/* A 401 refused the request: true when the token is renewed (once) and the
 * request is to be repeated. */
static int rpc_renew(call *c, const agent_view *v, rpc_x *x) {
    if (!x->oauth || x->renewed || x->hr != 0 || x->rs.status != 401 || x->sc.error_seen) return 0;
    x->renewed = 1;
    c->a->h->log(c->a->ctx, RD_LOG_INFO, "the agent answered 401; renewing the OAuth token");
    a2a_http_resp_free(&x->rs);
    if (rpc_headers(c, v, x)) {
        /* o says why: the exchange ends as not sent */
        x->hr = -2;
        return 0;
    }
    return 1;
}

static void rpc_end(call *c, const agent_view *v, rpc_x *x);

/* One JSON-RPC exchange; results are folded into t. */
static void rpc(call *c, const agent_view *v, a2a_op op, const char *body, const char *rpc_id,
                a2a_track *t, outcome *o) {
    rpc_x x;
    if (rpc_begin(c, v, op, body, rpc_id, t, o, &x)) return;
    do
        x.hr = a2a_http_do(c->a->http, &x.hrq, &x.rs);
    while (rpc_renew(c, v, &x));
    rpc_end(c, v, &x);
}

static void rpc_end(call *c, const agent_view *v, rpc_x *x) {
    a2a *a = c->a;
    if (x->hr == -2) { /* the token renewal failed: o says why */
        a2a_http_resp_free(&x->rs);
        rpc_x_free(x);
        return;
    }
    a2a_op op = x->op;
    const char *rpc_id = x->rpc_id[0] ? x->rpc_id : NULL;
    a2a_track *t = x->t;
    outcome *o = x->o;
    sse_ctx sc = x->sc;
    size_t before = x->before;
    int hr = x->hr;
    a2a_http_resp rs = x->rs;
    const char *m = a2a_method(v->d, op);

    if (sc.error_seen) {
        /* An error event ended the stream; a task it left behind is polled. */
        if (t->task_id && o->cls == A2A_C_TRANSIENT) o->dropped = 1;
        if (o->has_rpc) snprintf(o->rpc_text, sizeof o->rpc_text, "%.150s", o->msg);
    } else if (rs.too_big) {
        o->cls = A2A_C_PROTOCOL;
        snprintf(o->msg, sizeof o->msg, "%s: response larger than max_response_bytes (%zu)", m,
                 a->max_bytes);
    } else if (rs.aborted) {
        o->cls = A2A_C_TRANSIENT;
        o->abandoned = 1;
        /* cut before any byte of the request was written: never sent */
        o->not_sent = !rs.req_sent;
        snprintf(o->msg, sizeof o->msg, "%s: abandoned (router stopping)%s", m,
                 o->not_sent ? " before the request left" : "");
    } else if (rs.repeat_refused) {
        /* The outcome is unknown: recovered like a timed-out send. */
        o->cls = A2A_C_TRANSIENT;
        snprintf(o->msg, sizeof o->msg,
                 "%s %.150s: the connection closed after the request was written; not repeating "
                 "it (the agent may have acted on it)",
                 m, v->url);
    } else if (hr != 0) {
        if (rs.cc == CURLE_OPERATION_TIMEDOUT)
            o->cls = now_ms(a) >= c->deadline - 20 ? A2A_C_TIMEOUT : A2A_C_TRANSIENT;
        else
            o->cls = A2A_C_TRANSIENT;
        o->conn_fail = rs.status == 0 && rs.cc != CURLE_OPERATION_TIMEDOUT;
        /* Nothing of the request left: connect refused, DNS, TLS handshake. */
        o->not_sent = !rs.req_sent;
        if (rs.is_sse && t->updates > before) o->dropped = 1;
        snprintf(o->msg, sizeof o->msg, "%s %.150s: %.120s", m, v->url,
                 rs.errbuf[0] ? rs.errbuf : curl_easy_strerror(rs.cc));
    } else if (rs.status < 200 || rs.status > 299) {
        o->http = rs.status;
        o->retry_after_s = rs.retry_after_s;
        o->asked_retry = rs.status == 408 || rs.status == 429 || rs.status == 503;
        a2a_rpc r;
        int rcode;
        char *rmsg;
        if (v->rest && rs.body && !a2a_rest_error(rs.body, rs.len, &rcode, &rmsg)) {
            /* an A2A error, carried as an HTTP status with its reason */
            o->has_rpc = 1;
            o->rpc_code = rcode;
            o->cls = a2a_classify_rpc(rcode);
            snprintf(o->rpc_text, sizeof o->rpc_text, "%.100s", rmsg ? rmsg : "");
            snprintf(o->msg, sizeof o->msg, "%s: HTTP %ld, error %d (%s): %.120s", m, rs.status,
                     rcode, a2a_rpc_code_name(rcode), rmsg ? rmsg : "");
            free(rmsg);
        } else if (!v->rest && rs.status != 401 && rs.status != 403 && rs.body &&
                   !a2a_rpc_parse(rs.body, rs.len, NULL, &r, NULL, 0) && r.is_error) {
            /* a JSON-RPC error carried with an HTTP error status */
            o->has_rpc = 1;
            o->rpc_code = r.code;
            o->cls = a2a_classify_rpc(r.code);
            snprintf(o->rpc_text, sizeof o->rpc_text, "%.100s %.50s", r.message ? r.message : "",
                     r.reason ? r.reason : "");
            snprintf(o->msg, sizeof o->msg, "%s: HTTP %ld, error %d (%s): %.120s", m, rs.status,
                     r.code, a2a_rpc_code_name(r.code), r.message ? r.message : "");
            a2a_rpc_free(&r);
        } else {
            o->cls = a2a_classify_http(rs.status);
            snprintf(o->msg, sizeof o->msg, "%s %.150s: HTTP %ld%s%s%.80s", m, v->url, rs.status,
                     rs.status == 401 || rs.status == 403 ? " (check token / api_key)" : "",
                     rs.www_auth ? ", WWW-Authenticate: " : "", rs.www_auth ? rs.www_auth : "");
        }
    } else if (rs.is_sse) {
        /* A continued task's stream must show its new state, not only the
         * snapshot it starts with. */
        int stale =
            op == A2A_OP_STREAM && c->continuing && !sc.settled && !t->got_message && !t->ended;
        if (!a2a_track_done(t) || stale) {
            o->cls = A2A_C_TRANSIENT;
            o->dropped = 1;
            snprintf(o->msg, sizeof o->msg, "%s: stream ended before the task settled (%s)", m,
                     a2a_state_name(t->state));
        }
    } else {
        a2a_rpc r;
        char why[160];
        char *w = v->rest ? rest_wrap(v->d == A2A_D_V03, rs.body ? rs.body : "", rs.len) : NULL;
        int bad = v->rest ? !w || a2a_rpc_parse(w, strlen(w), NULL, &r, why, sizeof why)
                          : a2a_rpc_parse(rs.body, rs.len, rpc_id, &r, why, sizeof why);
        if (v->rest && !w) snprintf(why, sizeof why, "out of memory");
        free(w);
        if (bad) {
            o->cls = A2A_C_PROTOCOL;
            snprintf(o->msg, sizeof o->msg, "%s: %.120s (Content-Type %.60s, %zu bytes)", m, why,
                     rs.ctype[0] ? rs.ctype : "none", rs.len);
        } else if (r.is_error) {
            o->has_rpc = 1;
            o->rpc_code = r.code;
            o->cls = a2a_classify_rpc(r.code);
            snprintf(o->rpc_text, sizeof o->rpc_text, "%.100s %.50s", r.message ? r.message : "",
                     r.reason ? r.reason : "");
            snprintf(o->msg, sizeof o->msg, "%s: error %d (%s): %.160s", m, r.code,
                     a2a_rpc_code_name(r.code), r.message ? r.message : "");
            a2a_rpc_free(&r);
        } else {
            a2a_track_apply(t, &r.res);
            a2a_rpc_free(&r);
        }
    }
    a2a_http_resp_free(&rs);
    memset(&x->rs, 0, sizeof x->rs);
    rpc_x_free(x);
}

/* ---- store writes -------------------------------------------------------
 * A call on the event-loop path collects its writes in a batch that its
 * finisher thread commits in one transaction with the writes of the other
 * calls it finished at the same time; a blocking call writes at once. */

typedef struct kv_batch {
    rd_kv_op *ops;
    size_t n, cap;
} kv_batch;

static rd_status kv_write(call *c, const char *key, const char *val, int del) {
    a2a *a = c->a;
    kv_batch *b = c->batch;
    if (!b) return del ? a->h->kv_del(a->ctx, key) : a->h->kv_put(a->ctx, key, val, strlen(val));
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        rd_kv_op *o = realloc(b->ops, nc * sizeof *o);
        if (!o) return RD_E_INTERNAL;
        b->ops = o;
        b->cap = nc;
    }
    char *k = strdup(key), *v = del ? NULL : strdup(val);
    if (!k || (!del && !v)) {
        free(k);
        free(v);
        return RD_E_INTERNAL;
    }
    b->ops[b->n++] = (rd_kv_op){
        .op = del ? RD_KV_DEL : RD_KV_PUT, .key = k, .val = v, .val_len = v ? strlen(v) : 0};
    return RD_OK;
}

/* Commits what b holds; the warning names how many writes were lost. */
static void kv_flush(a2a *a, kv_batch *b) {
    if (!b->n) return;
    rd_status st = RD_OK;
    if (a->h->kv_txn) {
        st = a->h->kv_txn(a->ctx, b->ops, b->n);
    } else {
        for (size_t i = 0; i < b->n; i++) {
            const rd_kv_op *o = &b->ops[i];
            rd_status w = o->op == RD_KV_DEL ? a->h->kv_del(a->ctx, o->key)
                                             : a->h->kv_put(a->ctx, o->key, o->val, o->val_len);
            if (w != RD_OK && w != RD_E_FATAL) st = w;
        }
    }
    if (st != RD_OK)
        a->h->log(a->ctx, RD_LOG_WARN,
                  "cannot save %zu conversation or message record(s); a re-delivery may run "
                  "their messages again",
                  b->n);
    for (size_t i = 0; i < b->n; i++) {
        free((char *)b->ops[i].key);
        free((void *)b->ops[i].val);
    }
    b->n = 0;
}

/* ---- conversation state ------------------------------------------------- */

static void conv_load(call *c) {
    a2a *a = c->a;
    char *val = NULL;
    size_t len = 0;
    if (a->h->kv_get(a->ctx, c->key, &val, &len) != RD_OK || !val) return;
    cJSON *j = cJSON_ParseWithLength(val, len);
    free(val);
    if (!j) return;
    const cJSON *cx = cJSON_GetObjectItemCaseSensitive(j, "context");
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(j, "task");
    if (cJSON_IsString(cx) && *cx->valuestring) c->ctx_id = strdup(cx->valuestring);
    if (cJSON_IsString(tk) && *tk->valuestring) c->task_id = strdup(tk->valuestring);
    cJSON_Delete(j);
    c->saved_ctx = xstrdup0(c->ctx_id);
    c->saved_task = xstrdup0(c->task_id);
}

static int same(const char *x, const char *y) {
    return (empty(x) && empty(y)) || (x && y && !strcmp(x, y));
}

/* Writes the conversation when it changed. */
static void conv_save(call *c) {
    a2a *a = c->a;
    if (same(c->ctx_id, c->saved_ctx) && same(c->task_id, c->saved_task)) return;
    rd_status st;
    if (empty(c->ctx_id) && empty(c->task_id)) {
        st = kv_write(c, c->key, NULL, 1);
    } else {
        cJSON *j = cJSON_CreateObject();
        if (!empty(c->ctx_id)) cJSON_AddStringToObject(j, "context", c->ctx_id);
        if (!empty(c->task_id)) cJSON_AddStringToObject(j, "task", c->task_id);
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        st = s ? kv_write(c, c->key, s, 0) : RD_E_INTERNAL;
        free(s);
    }
    if (st != RD_OK && st != RD_E_FATAL)
        a->h->log(a->ctx, RD_LOG_WARN, "correlation %s: cannot save the conversation state",
                  c->rq->correlation_id ? c->rq->correlation_id : "-");
    free(c->saved_ctx);
    free(c->saved_task);
    c->saved_ctx = xstrdup0(c->ctx_id);
    c->saved_task = xstrdup0(c->task_id);
}

/* Ids longer than this are not kept: a broken agent cannot bloat the store. */
#define MAX_ID 512

static void set_id(char **dst, const char *src) {
    if (src && strlen(src) > MAX_ID) src = NULL;
    if (same(*dst, src)) return;
    free(*dst);
    *dst = empty(src) ? NULL : strdup(src);
}

/* Adopts the context the agent assigned, saving it at once so that even a
 * later timeout keeps the conversation. */
static void note_context(call *c, const a2a_track *t) {
    if (!empty(t->context_id) && strlen(t->context_id) <= MAX_ID &&
        !same(t->context_id, c->ctx_id)) {
        set_id(&c->ctx_id, t->context_id);
        conv_save(c);
    }
}

/* ---- the exactly-once record -------------------------------------------- */

static int64_t wall_s(a2a *a) {
    return a->h->wall_ns() / 1000000000LL;
}

static const char *const rec_names[] = {"none", "sent", "task", "done"};

static void rec_load(call *c) {
    a2a *a = c->a;
    char *val = NULL;
    size_t len = 0;
    if (!c->stable) return;
    if (a->h->kv_get(a->ctx, c->rkey, &val, &len) != RD_OK || !val) {
        free(val);
        val = NULL;
        char okey[96];
        snprintf(okey, sizeof okey, "msg:%s", c->msg_id);
        if (!atomic_load(&a->old_keys) || a->h->kv_get(a->ctx, okey, &val, &len) != RD_OK || !val) {
            free(val);
            return;
        }
        snprintf(c->rkey, sizeof c->rkey, "%s", okey); /* this record stays where it is */
    }
    cJSON *j = cJSON_ParseWithLength(val, len);
    free(val);
    if (!j) return;
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "s"));
    for (int i = REC_SENT; st && i <= REC_DONE; i++)
        if (!strcmp(st, rec_names[i])) c->rec = i;
    const char *tk = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "task"));
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "url"));
    const char *d = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "d"));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "t");
    if (tk && *tk) c->rec_task = strdup(tk);
    if (url && *url) c->rec_url = strdup(url);
    c->rec_d = d && !strcmp(d, "0.3") ? A2A_D_V03 : d && !strcmp(d, "1.0") ? A2A_D_V10 : 0;
    if (cJSON_IsNumber(t) && t->valuedouble > 0 && t->valuedouble < 1e12)
        c->rec_t = (int64_t)t->valuedouble;
    if (c->rec == REC_TASK && !c->rec_task) c->rec = REC_SENT;
    cJSON_Delete(j);
}

/* Writes the record; REC_DONE carries the reply and the status. */
static void rec_write(call *c, int state, const char *task, const agent_view *v, rd_status st,
                      const char *klass) {
    a2a *a = c->a;
    if (!c->stable) return;
    rd_status ws;
    if (state == REC_NONE) {
        ws = c->rec == REC_NONE ? RD_OK : kv_write(c, c->rkey, NULL, 1);
    } else {
        if (!c->rec_t) c->rec_t = wall_s(a);
        /* Two of these per message: written as text, no JSON tree. */
        sbuf b = {0};
        sbuf_json_field(&b, "{\"s\":", rec_names[state]);
        if (task) sbuf_json_field(&b, ",\"task\":", task);
        if (v) sbuf_json_field(&b, ",\"d\":", a2a_dialect_name(v->d));
        if (v && v->url) sbuf_json_field(&b, ",\"url\":", v->url);
        sbuf_puts(&b, ",\"t\":");
        sbuf_i64(&b, c->rec_t);
        if (state == REC_DONE) {
            sbuf_puts(&b, ",\"st\":");
            sbuf_i64(&b, st);
            if (klass) sbuf_json_field(&b, ",\"k\":", klass);
            sbuf_json_field(&b, ",\"reply\":", c->out ? c->out : "");
        }
        sbuf_putc(&b, '}');
        char *txt = sbuf_take(&b, NULL);
        ws = txt ? kv_write(c, c->rkey, txt, 0) : RD_E_INTERNAL;
        free(txt);
    }
    if (ws != RD_OK && ws != RD_E_FATAL)
        a->h->log(a->ctx, RD_LOG_WARN,
                  "correlation %s: cannot record message %s as %s; a re-delivery may run it again",
                  c->rq->correlation_id ? c->rq->correlation_id : "-", c->msg_id, rec_names[state]);
    c->rec = state;
    if (task != c->rec_task) {
        free(c->rec_task);
        c->rec_task = xstrdup0(task);
    }
}

static void note_task_id(call *c, const char *task) {
    if (c->rec == REC_TASK && c->rec_task && !strcmp(c->rec_task, task)) return;
    if (c->rec == REC_DONE) return;
    rec_write(c, REC_TASK, task, c->view, RD_OK, NULL);
}

/* The task id a record keeps, or NULL (none, or the answer came). */
static const char *task_to_note(const call *c, const a2a_track *t) {
    if (!c->stable || !t->task_id || t->got_message || strlen(t->task_id) > 512) return NULL;
    return t->task_id;
}

/* Stores the task id the moment the agent names it. */
static void note_task(call *c, const a2a_track *t) {
    const char *task = task_to_note(c, t);
    if (task) note_task_id(c, task);
}

typedef struct {
    int64_t cutoff;
    char **keys;
    size_t n, cap;
    size_t old_kept; /* records under an earlier version's key, kept */
    int stopped;     /* the scan ended early: it proves nothing */
} prune_acc;

/* msg:<messageId>, as versions before msg:<update>:<messageId> wrote it. */
static int old_key(const char *key) {
    return strlen(key) == 40 && key[12] == '-';
}

static int prune_visit(void *arg, const char *key, const void *val, size_t len) {
    prune_acc *p = arg;
    cJSON *j = cJSON_ParseWithLength(val, len);
    const cJSON *t = j ? cJSON_GetObjectItemCaseSensitive(j, "t") : NULL;
    int old = !cJSON_IsNumber(t) || t->valuedouble < (double)p->cutoff;
    cJSON_Delete(j);
    if (!old) {
        p->old_kept += old_key(key);
        return 0;
    }
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        char **k = realloc(p->keys, nc * sizeof *k);
        if (!k) return p->stopped = 1;
        p->keys = k;
        p->cap = nc;
    }
    if ((p->keys[p->n] = strdup(key))) p->n++;
    return p->stopped = p->n >= 100000; /* the rest next time */
}

/* Forgets records older than answer_retention_s, at most once an hour. */
static void prune_records(a2a *a) {
    int64_t now = now_ms(a);
    long long last = atomic_load(&a->last_prune_ms);
    if ((last && now - last < 3600000) || !a->h->kv_scan || !a->h->kv_txn) return;
    if (!atomic_compare_exchange_strong(&a->last_prune_ms, &last, now ? now : 1)) return;
    prune_acc p = {.cutoff = wall_s(a) - a->cf.answer_retention_s};
    rd_status sst = a->h->kv_scan(a->ctx, "msg:", prune_visit, &p);
    if (sst == RD_OK && !p.stopped && !p.old_kept) atomic_store(&a->old_keys, 0);
    for (size_t i = 0; i < p.n; i += 256) {
        rd_kv_op ops[256];
        size_t k = 0;
        for (; k < 256 && i + k < p.n; k++)
            ops[k] = (rd_kv_op){.op = RD_KV_DEL, .key = p.keys[i + k]};
        a->h->kv_txn(a->ctx, ops, k);
    }
    if (p.n)
        a->h->log(a->ctx, RD_LOG_DEBUG, "forgot %zu message record(s) older than %" PRId64 " s",
                  p.n, a->cf.answer_retention_s);
    for (size_t i = 0; i < p.n; i++)
        free(p.keys[i]);
    free(p.keys);
}

/* ---- replies and failures ----------------------------------------------- */

/* The partial answer to show now (malloc()ed), counted as shown; NULL
 * when it has not grown or progress_interval_ms has not passed (force:
 * whatever the time). */
static char *progress_due(call *c, const a2a_track *t, int force) {
    a2a *a = c->a;
    if (!a->progress || t->narts == 0) return NULL;
    int64_t now = now_ms(a);
    if (!force && now - c->last_progress_ms < a->progress_ms) return NULL;
    char *txt = a2a_track_artifact_text(t);
    size_t len = txt ? strlen(txt) : 0;
    if (len <= c->last_progress_len) {
        free(txt);
        return NULL;
    }
    c->last_progress_len = len;
    c->last_progress_ms = now;
    return txt;
}

static void progress(call *c, const a2a_track *t, int force) {
    char *txt = progress_due(c, t, force);
    if (txt) c->a->h->reply_progress(c->rp, txt, strlen(txt));
    free(txt);
}

/* Adds text to the copy of the reply the record keeps. */
static void record_n(call *c, const char *s, size_t n) {
    if (!s || !n) return;
    if (c->outlen + n + 1 > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 256;
        while (cap < c->outlen + n + 1)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) return;
        c->out = p;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, s, n);
    c->outlen += n;
    c->out[c->outlen] = 0;
}

/* Adds text to the reply (and to the copy the record keeps). */
static void append_n(call *c, const char *s, size_t n) {
    if (!s || !n) return;
    c->a->h->reply_append(c->rp, s, n);
    record_n(c, s, n);
}

static void append(call *c, const char *s) {
    if (!empty(s)) append_n(c, s, strlen(s));
}

/* The text line standing for a file where it cannot be attached (and
 * in the record, which keeps text only). */
static void file_line(const a2a_file *f, char *line, size_t sz) {
    const char *nm = f->name ? f->name : "";
    if (f->url)
        snprintf(line, sz, "%.200s%s%.2000s", nm, *nm ? ": " : "", f->url);
    else
        snprintf(line, sz, "[file%s%.120s (%.60s, %zu bytes)]", *nm ? ": " : "", nm,
                 f->mime ? f->mime : "application/octet-stream", f->len);
}

/* Files go to the transport as attachments where the host takes them
 * (ABI 1.2), else as lines of text; choices as buttons, else as a list. */
static void emit_media(call *c, const a2a_media *m) {
    const rd_host *h = c->a->h;
    int can_attach = RD_HAS(h, reply_attach) && h->reply_attach;
    for (size_t i = 0; m && i < m->nfiles; i++) {
        const a2a_file *f = &m->files[i];
        char line[2400];
        file_line(f, line, sizeof line);
        int attached = 0;
        if (can_attach && (f->data || url_is_http(f->url))) {
            rd_attachment at = {.size = sizeof at,
                                .mime = f->mime,
                                .name = f->name,
                                .data = f->data,
                                .len = f->data ? f->len : 0,
                                .url = f->data ? NULL : f->url};
            attached = h->reply_attach(c->rp, &at) == RD_OK;
            if (!attached)
                h->log(c->a->ctx, RD_LOG_WARN,
                       "correlation %s: the router did not take the agent's file (%zu bytes); "
                       "shown as text",
                       c->rq->correlation_id ? c->rq->correlation_id : "-", f->len);
        }
        if (f->dropped)
            h->log(c->a->ctx, RD_LOG_WARN,
                   "correlation %s: the agent's file (%zu bytes) was invalid base64 or over "
                   "max_reply_bytes; shown as text",
                   c->rq->correlation_id ? c->rq->correlation_id : "-", f->len);
        if (attached) {
            if (c->outlen) record_n(c, "\n", 1);
            record_n(c, line, strlen(line));
        } else {
            if (c->outlen) append(c, "\n");
            append(c, line);
        }
    }
    if (m && m->choices) {
        if (RD_HAS(h, reply_choices) && h->reply_choices) {
            h->reply_choices(c->rp, (const char *const *)m->choices);
        } else {
            for (size_t i = 0; m->choices[i]; i++) {
                if (c->outlen) append(c, "\n");
                append(c, "- ");
                append(c, m->choices[i]);
            }
        }
    }
}

/* The artifacts' text, then the files and choices of each. */
static void emit_arts(call *c, const a2a_track *t, const char *text, const char *notice) {
    int files = 0;
    for (size_t i = 0; i < t->narts; i++)
        files |= t->arts[i].media.nfiles > 0;
    if (!empty(text))
        append(c, text);
    else if (!files)
        append(c, notice);
    for (size_t i = 0; i < t->narts; i++)
        emit_media(c, &t->arts[i].media);
}

/* Text with its files and choices; the notice when there is neither
 * text nor a file (buttons need a text to hang on). */
static void emit(call *c, const char *text, const a2a_media *m, const char *notice) {
    if (!empty(text))
        append(c, text);
    else if (!m || !m->nfiles)
        append(c, notice);
    emit_media(c, m);
}

static rd_status fail(call *c, const outcome *o, rd_error *err) {
    a2a *a = c->a;
    a2a_class cls = o->cls == A2A_C_OK ? A2A_C_FATAL : o->cls;
    count(a, a->fail[cls]);
    /* The detail may quote the agent: keep it on one line. */
    char msg[sizeof o->msg];
    snprintf(msg, sizeof msg, "%s", o->msg);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    a->h->log(a->ctx, RD_LOG_WARN, "correlation %s: a2a failure, classification=%s: %s",
              c->rq->correlation_id ? c->rq->correlation_id : "-", a2a_class_name(cls), msg);
    /* Nothing appended: the router sends its own failure_notice, the same
     * text every backend's failures get. */
    const char *notice = cls == A2A_C_TIMEOUT && !empty(a->cf.timeout_notice)
                             ? a->cf.timeout_notice
                             : a->cf.failure_notice;
    append(c, notice);
    rd_status st = cls == A2A_C_TRANSIENT ? RD_E_RETRY
                   : cls == A2A_C_TIMEOUT ? RD_E_TIMEOUT
                                          : RD_E_FATAL;
    a->h->error(err, st, a2a_class_name(cls), "%s", msg);
    /* Abandoned at a hard stop: the task keeps running and the re-delivered
     * update resumes it. Otherwise the user has this answer for good. */
    if (!o->abandoned && !a->h->cancelled(c->rp))
        rec_write(c, REC_DONE, c->rec_task, c->view, st, a2a_class_name(cls));
    return st;
}

/* The user-visible answer for a settled exchange; updates the
 * conversation (a task id is kept only while the task is interrupted). */
static rd_status settle(call *c, const a2a_track *t, rd_error *err) {
    a2a *a = c->a;
    note_context(c, t);
    int out;
    rd_status st = RD_OK;
    if (t->got_message) {
        out = OUT_MESSAGE;
        set_id(&c->task_id, NULL);
        emit(c, t->message_text, &t->message_media, a->cf.empty_reply);
    } else {
        char *arts = a2a_track_artifact_text(t);
        int arts_media = 0;
        for (size_t i = 0; i < t->narts; i++)
            arts_media |= !a2a_media_empty(&t->arts[i].media);
        int has_status = !empty(t->status_text) || !a2a_media_empty(&t->status_media);
        switch (t->state) {
        case A2A_TS_INPUT_REQUIRED:
        case A2A_TS_AUTH_REQUIRED: {
            int input = t->state == A2A_TS_INPUT_REQUIRED;
            out = input ? OUT_INPUT : OUT_AUTH;
            set_id(&c->task_id, t->task_id);
            const char *notice = input ? a->cf.input_required_notice : a->cf.auth_required_notice;
            if (has_status)
                emit(c, t->status_text, &t->status_media, notice);
            else if (!empty(arts) || arts_media)
                emit_arts(c, t, arts, notice);
            else
                emit(c, t->history_text, &t->history_media, notice);
            break;
        }
        case A2A_TS_FAILED:
        case A2A_TS_REJECTED:
        case A2A_TS_CANCELED:
            out = t->state == A2A_TS_FAILED     ? OUT_FAILED
                  : t->state == A2A_TS_REJECTED ? OUT_REJECTED
                                                : OUT_CANCELED;
            set_id(&c->task_id, NULL);
            append(c, a->cf.task_failed_notice);
            if (!empty(t->status_text)) {
                if (!empty(a->cf.task_failed_notice)) append(c, "\n");
                append(c, t->status_text);
            }
            /* The agent answered, but the request failed: a fatal failure
             * (not retried), with the agent's reason as the notice. */
            st = RD_E_FATAL;
            count(a, a->fail[A2A_C_FATAL]);
            a->h->log(a->ctx, RD_LOG_WARN,
                      "correlation %s: a2a failure, classification=fatal: task %.100s %s",
                      c->rq->correlation_id ? c->rq->correlation_id : "-",
                      t->task_id ? t->task_id : "?", a2a_state_name(t->state));
            a->h->error(err, RD_E_FATAL, "fatal", "the agent's task %.100s ended %s",
                        t->task_id ? t->task_id : "?", a2a_state_name(t->state));
            break;
        default: /* completed */
            out = OUT_COMPLETED;
            set_id(&c->task_id, NULL);
            if (!empty(arts) || arts_media)
                emit_arts(c, t, arts, a->cf.empty_reply);
            else if (has_status)
                emit(c, t->status_text, &t->status_media, a->cf.empty_reply);
            else
                emit(c, t->history_text, &t->history_media, a->cf.empty_reply);
            break;
        }
        free(arts);
    }
    if (t->cut) {
        a->h->log(a->ctx, RD_LOG_WARN,
                  "correlation %s: the agent's answer exceeded max_reply_bytes (%zu); cut",
                  c->rq->correlation_id ? c->rq->correlation_id : "-", a->max_reply);
        if (!empty(a->cf.reply_cut_notice)) {
            append(c, "\n");
            append(c, a->cf.reply_cut_notice);
        }
    }
    conv_save(c);
    count(a, a->outcome_s[out]);
    rec_write(c, REC_DONE, t->task_id ? t->task_id : c->rec_task, c->view, st,
              st == RD_OK ? NULL : "fatal");
    return st;
}

/* ---- following a task --------------------------------------------------- */

static void next_rpc_id(call *c, char *buf, size_t sz) {
    unsigned long n = atomic_fetch_add(&c->a->rpc_seq, 1) + 1;
    snprintf(buf, sz, "rd-%lu", n);
}

static void cancel_task(call *c, const agent_view *v, const char *task_id) {
    char id[32];
    next_rpc_id(c, id, sizeof id);
    char *body = a2a_build_task_op(v->d, A2A_OP_CANCEL, id, task_id, v->tenant);
    a2a_track t = {0};
    outcome o;
    rpc(c, v, A2A_OP_CANCEL, body, id, &t, &o);
    free(body);
    c->a->h->log(c->a->ctx, RD_LOG_INFO, "correlation %s: canceled task %s at the deadline%s%s",
                 c->rq->correlation_id ? c->rq->correlation_id : "-", task_id, o.cls ? ": " : "",
                 o.cls ? o.msg : "");
    a2a_track_free(&t);
}

/* Waits for a task to settle: re-attaches to its stream when streaming,
 * otherwise polls tasks/get with growing pauses. On the deadline the task
 * is canceled. Transient poll failures are retried until the deadline. A
 * hard stop leaves the task running (its id is in the record). */
/* ---- push notifications ------------------------------------------------ */

typedef struct push_wait {
    char task[520];
    char token[33]; /* this task's X-A2A-Notification-Token, 32 hex */
    atomic_int woken;
    struct acall *ac; /* a call on the event loop; NULL: a thread waits on cv */
    pthread_cond_t cv;
    struct push_wait *next; /* in its bucket of a->waits */
} push_wait;

/* A push config registration: the request and its answer. */
typedef struct push_x {
    a2a_http_req rq;
    a2a_http_resp rs;
    struct curl_slist *hd;
    char *body, *url, *ah;
    int ran, hr;
} push_x;

/* Writes v as n lowercase hex digits (zero-padded, as "%0*llx" would)
 * and returns the end: the per-message keys, without a snprintf() each. */
static char *put_hex(char *p, uint64_t v, int n) {
    static const char digit[] = "0123456789abcdef";
    for (int i = n - 1; i >= 0; i--, v >>= 4)
        p[i] = digit[v & 0xf];
    return p + n;
}

/* nbytes (at most 32) random bytes as hex into out; -1 without entropy. */
static int hex_random(char *out, size_t nbytes) {
    unsigned char b[32];
    if (nbytes > sizeof b || RAND_bytes(b, (int)nbytes) != 1) return -1;
    for (size_t i = 0; i < nbytes; i++)
        put_hex(out + 2 * i, b[i], 2);
    out[2 * nbytes] = 0;
    OPENSSL_cleanse(b, sizeof b);
    return 0;
}

static size_t push_bucket(const char *task) {
    return (size_t)(hash_fnv1a(HASH_FNV1A_SEED, task, strlen(task)) % PUSH_BUCKETS);
}

/* The webhook: the route already checked the run's bearer secret. A push
 * only wakes the poller of the task it names (which then asks GetTask:
 * the pushed body is never the answer); a token, when sent, must be that
 * task's. */
static void on_push(void *arg, const rd_http_req *req, rd_http_resp *resp) {
    a2a *a = arg;
    resp->content_type = "text/plain";
    char *task = a2a_push_task_id(req->body, req->body_len);
    if (!task) {
        resp->status = 400;
        count(a, a->push_s[2]);
        return;
    }
    const char *tok = req->header ? req->header(req, "X-A2A-Notification-Token") : NULL;
    int status = 200, outcome = 2;
    pthread_mutex_lock(&a->pmu);
    for (push_wait *w = a->waits[push_bucket(task)]; w; w = w->next) {
        if (strcmp(w->task, task)) continue;
        if (tok && (strlen(tok) != 32 || CRYPTO_memcmp(tok, w->token, 32))) {
            status = 401;
            outcome = 1;
            break;
        }
        atomic_store(&w->woken, 1);
        /* a call on the loop: its timer's abort_fn sees the flag (poked
         * under pmu, the call and so the loop cannot be gone) */
        if (w->ac)
            a2a_loop_poke(a->loop);
        else
            pthread_cond_signal(&w->cv);
        outcome = 0;
    }
    pthread_mutex_unlock(&a->pmu);
    if (status == 401)
        a->h->log(a->ctx, RD_LOG_WARN,
                  "push notification for task %.100s refused: wrong X-A2A-Notification-Token",
                  task);
    count(a, a->push_s[outcome]);
    free(task);
    resp->status = status;
}

static void push_end(a2a *a, push_wait *pw) {
    pthread_mutex_lock(&a->pmu);
    for (push_wait **p = &a->waits[push_bucket(pw->task)]; *p; p = &(*p)->next)
        if (*p == pw) {
            *p = pw->next;
            break;
        }
    pthread_mutex_unlock(&a->pmu);
    if (!pw->ac) pthread_cond_destroy(&pw->cv);
}

/* Lists pw for t's task with a fresh token, when its pushes are to be
 * asked for; 1 when listed (to be ended with push_end). Listed before the
 * agent knows the webhook, so no push is missed. */
static int push_list(call *c, const agent_view *v, const a2a_track *t, push_wait *pw,
                     struct acall *ac) {
    a2a *a = c->a;
    if (!a->push_url || !v->push || !t->task_id || atomic_load(&a->push_refused)) return 0;
    if (strlen(t->task_id) >= sizeof pw->task || c->deadline <= now_ms(a)) return 0;
    memset(pw, 0, sizeof *pw);
    snprintf(pw->task, sizeof pw->task, "%s", t->task_id);
    if (hex_random(pw->token, 16)) return 0;
    pw->ac = ac;
    if (!ac) pthread_cond_init(&pw->cv, NULL);
    pthread_mutex_lock(&a->pmu);
    size_t b = push_bucket(pw->task);
    pw->next = a->waits[b];
    a->waits[b] = pw;
    pthread_mutex_unlock(&a->pmu);
    return 1;
}

static void push_x_free(push_x *px) {
    if (px->ran) a2a_http_resp_free(&px->rs);
    curl_slist_free_all(px->hd);
    free(px->ah);
    free(px->body);
    free(px->url);
    memset(px, 0, sizeof *px);
}

/* Builds the registration of pw's webhook; 0 when px->rq can be sent. */
static int push_build(call *c, const agent_view *v, const push_wait *pw, push_x *px) {
    a2a *a = c->a;
    memset(px, 0, sizeof *px);
    char id[32];
    next_rpc_id(c, id, sizeof id);
    px->body =
        a2a_build_push_set(v->d, id, pw->task, v->tenant, a->push_url, pw->token, a->push_bearer);
    if (!px->body) return -1;
    if (v->rest) { /* REST: the config goes to the task's route */
        char *path = NULL, *rb = NULL;
        if (a2a_rest_push_request(v->d == A2A_D_V03, px->body, &path, &rb) == 0)
            px->url = route_url(v->url, path);
        free(path);
        free(px->body);
        px->body = rb;
        if (!px->url || !px->body) {
            push_x_free(px);
            return -1;
        }
    }
    px->hd = common_headers(a, v->d == A2A_D_V10, v->url);
    px->hd = curl_slist_append(px->hd, "Content-Type: application/json");
    px->hd = curl_slist_append(px->hd, "Accept: application/json");
    if (a->oauth_id && creds_allowed(a, v->url)) {
        char why[300];
        int fatal;
        px->ah = oauth_header(a, c->deadline, NULL, &fatal, why, sizeof why);
        if (px->ah) px->hd = curl_slist_append(px->hd, px->ah);
    }
    int64_t left = c->deadline - now_ms(a);
    px->rq = (a2a_http_req){.url = px->url ? px->url : v->url,
                            .body = px->body,
                            .headers = px->hd,
                            .connect_timeout_ms = (long)a->connect_ms,
                            .timeout_ms = (long)(left < a->http_ms ? left : a->http_ms),
                            .max_bytes = 65536,
                            .abort_fn = call_aborted,
                            .abort_arg = c};
    if (px->rq.timeout_ms > 0) return 0;
    push_x_free(px);
    return -1;
}

/* Lists pw and builds its registration in px; 1 when both are done (pw
 * then to be ended with push_end, px freed), 0 when the task's pushes
 * are not to be asked for. */
static int push_prepare(call *c, const agent_view *v, const a2a_track *t, push_wait *pw,
                        struct acall *ac, push_x *px) {
    if (!push_list(c, v, t, pw, ac)) return 0;
    if (push_build(c, v, pw, px) == 0) return 1;
    push_end(c->a, pw);
    return 0;
}

/* The registration's answer: 1 when the agent took it. A refusal means
 * this agent's tasks are polled from now on. */
static int push_judge(call *c, const push_wait *pw, push_x *px) {
    a2a *a = c->a;
    int ok = 0, refused = 0;
    if (px->ran && px->hr == 0) {
        const a2a_http_resp *rs = &px->rs;
        cJSON *j =
            rs->status >= 200 && rs->status < 300 ? cJSON_ParseWithLength(rs->body, rs->len) : NULL;
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        /* JSON-RPC: a result; REST: the config itself */
        ok = (px->url ? cJSON_IsObject(j)
                      : cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "result"))) &&
             !cJSON_IsObject(e);
        refused = cJSON_IsObject(e) || (rs->status >= 400 && rs->status < 500);
        cJSON_Delete(j);
    }
    if (ok) {
        a->h->log(a->ctx, RD_LOG_DEBUG, "correlation %s: task %s: push notifications registered",
                  c->rq->correlation_id ? c->rq->correlation_id : "-", pw->task);
        return 1;
    }
    if (refused && !atomic_exchange(&a->push_refused, 1))
        a->h->log(a->ctx, RD_LOG_WARN,
                  "the agent refused a push notification config; its tasks are polled from now "
                  "on");
    return 0;
}

/* Registers a push config for t's task, blocking; 1 when the agent took
 * it (pw is then listed and must be ended with push_end). */
static int push_start(call *c, const agent_view *v, const a2a_track *t, push_wait *pw) {
    push_x px;
    if (!push_prepare(c, v, t, pw, NULL, &px)) return 0;
    px.ran = 1;
    px.hr = a2a_http_do(c->a->http, &px.rq, &px.rs);
    int ok = push_judge(c, pw, &px);
    push_x_free(&px);
    if (!ok) push_end(c->a, pw);
    return ok;
}

/* Waits up to ms for a push to the task (or a hard stop). */
static void push_nap(call *c, push_wait *pw, int64_t ms) {
    a2a *a = c->a;
    int64_t until = now_ms(a) + ms;
    pthread_mutex_lock(&a->pmu);
    while (!atomic_load(&pw->woken) && !a->h->cancelled(c->rp)) {
        int64_t left = until - now_ms(a);
        if (left <= 0) break;
        if (left > 100) left = 100; /* to see a hard stop */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)left * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&pw->cv, &a->pmu, &ts);
    }
    atomic_store(&pw->woken, 0);
    pthread_mutex_unlock(&a->pmu);
}

static void follow_loop(call *c, const agent_view *v, a2a_track *t, int streamed, outcome *o,
                        push_wait *pw);

/* Follows a task until it settles: re-attaching to its stream, or
 * polling, woken by push notifications when they are registered. */
static void follow(call *c, const agent_view *v, a2a_track *t, int streamed, outcome *o) {
    push_wait pw;
    int resubscribe = streamed && v->streaming;
    int pushed = !resubscribe && !a2a_track_done(t) && push_start(c, v, t, &pw);
    follow_loop(c, v, t, streamed, o, pushed ? &pw : NULL);
    if (pushed) push_end(c->a, &pw);
}

static void follow_loop(call *c, const agent_view *v, a2a_track *t, int streamed, outcome *o,
                        push_wait *pw) {
    a2a *a = c->a;
    int resubscribe = streamed && v->streaming ? 2 : 0;
    int64_t pause = pw ? 0 : a->poll_ms; /* one look right after registering */
    int fails = 0;
    memset(o, 0, sizeof *o);
    while (!a2a_track_done(t)) {
        note_context(c, t);
        if (a->h->cancelled(c->rp)) {
            o->cls = A2A_C_TRANSIENT;
            o->abandoned = 1;
            snprintf(o->msg, sizeof o->msg, "abandoned (router stopping); task %s left running",
                     t->task_id);
            return;
        }
        int64_t left = c->deadline - now_ms(a);
        if (left <= 0) {
            cancel_task(c, v, t->task_id);
            set_id(&c->task_id, NULL);
            conv_save(c);
            o->cls = A2A_C_TIMEOUT;
            snprintf(o->msg, sizeof o->msg, "task %s still %s at the deadline", t->task_id,
                     a2a_state_name(t->state));
            return;
        }
        char id[32];
        next_rpc_id(c, id, sizeof id);
        if (resubscribe > 0) {
            resubscribe--;
            char *body = a2a_build_task_op(v->d, A2A_OP_SUBSCRIBE, id, t->task_id, v->tenant);
            rpc(c, v, A2A_OP_SUBSCRIBE, body, id, t, o);
            free(body);
            if (o->abandoned) return;
            if (o->cls == A2A_C_OK || o->cls == A2A_C_TIMEOUT) continue;
            a->h->log(a->ctx, RD_LOG_DEBUG, "correlation %s: re-attaching failed: %s",
                      c->rq->correlation_id ? c->rq->correlation_id : "-", o->msg);
            if (o->has_rpc && o->rpc_code == A2A_ERR_TASK_NOT_FOUND) return;
            if (o->has_rpc || o->http) resubscribe = 0; /* poll from now on */
            continue;
        }
        if (pw) {
            push_nap(c, pw, pause < left ? pause : left);
            pause = a->push_fallback_ms;
        } else {
            nap(a, c->rp, pause < left ? pause : left);
            pause = pause * 3 / 2 > a->poll_max_ms ? a->poll_max_ms : pause * 3 / 2;
        }
        if (now_ms(a) >= c->deadline) continue;
        char *body = a2a_build_task_op(v->d, A2A_OP_GET, id, t->task_id, v->tenant);
        rpc(c, v, A2A_OP_GET, body, id, t, o);
        free(body);
        if (o->abandoned) return;
        if (o->cls == A2A_C_OK) {
            fails = 0;
            progress(c, t, 0);
            continue;
        }
        if (o->cls == A2A_C_TIMEOUT) continue; /* the loop cancels */
        if (o->cls != A2A_C_TRANSIENT) return;
        fails++;
        count(a, a->retries_s);
        a->h->log(a->ctx, RD_LOG_DEBUG, "correlation %s: polling failed (%d): %s",
                  c->rq->correlation_id ? c->rq->correlation_id : "-", fails, o->msg);
    }
    memset(o, 0, sizeof *o);
}

/* Looks for the task a send may have created without our hearing of it:
 * 1.0 ListTasks of the conversation, the task whose history holds our
 * messageId. 1 found (t->task_id set), 0 not found or not possible. */
static int recover(call *c, const agent_view *v, a2a_track *t) {
    a2a *a = c->a;
    if (v->d != A2A_D_V10) return 0;
    int64_t left = c->deadline - now_ms(a);
    if (left <= 0) return 0;
    char id[32];
    next_rpc_id(c, id, sizeof id);
    /* REST: GET <url>/tasks?contextId=... */
    char *body = NULL, *url = NULL;
    if (v->rest) {
        char *path = a2a_rest_list_path(c->ctx_id, v->tenant, 20);
        url = route_url(v->url, path);
        free(path);
        if (!url) return 0;
    } else {
        body = a2a_build_list_tasks(id, c->ctx_id, v->tenant, 20);
        if (!body) return 0;
    }
    struct curl_slist *hd = common_headers(a, 1, v->url);
    if (body) hd = curl_slist_append(hd, "Content-Type: application/json");
    hd = curl_slist_append(hd, "Accept: application/json");
    if (a->oauth_id && creds_allowed(a, v->url)) {
        char why[300];
        int fatal;
        char *ah = oauth_header(a, c->deadline, NULL, &fatal, why, sizeof why);
        if (ah) hd = curl_slist_append(hd, ah);
        free(ah);
    }
    a2a_http_req rq = {.url = url ? url : v->url,
                       .body = body,
                       .headers = hd,
                       .connect_timeout_ms = (long)a->connect_ms,
                       .timeout_ms = (long)(left < a->http_ms ? left : a->http_ms),
                       .max_bytes = a->max_bytes,
                       .abort_fn = call_aborted,
                       .abort_arg = c};
    a2a_http_resp rs;
    int hr = a2a_http_do(a->http, &rq, &rs);
    curl_slist_free_all(hd);
    free(body);
    free(url);
    char *task = NULL;
    int code = 0, found = 0;
    char why[120] = "";
    char *w = v->rest && hr == 0 && rs.status == 200 ? a2a_rest_wrap(rs.body ? rs.body : "", rs.len)
                                                     : NULL;
    if (hr == 0 && rs.status == 200 &&
        a2a_list_find(w ? w : rs.body, w ? strlen(w) : rs.len, w ? NULL : id, c->msg_id, &task,
                      &code, why, sizeof why) == 0) {
        found = 1;
        free(t->task_id);
        t->task_id = task;
    }
    a->h->log(a->ctx, RD_LOG_INFO, "correlation %s: looking for the task of message %s: %s%s",
              c->rq->correlation_id ? c->rq->correlation_id : "-", c->msg_id,
              found ? "found " : "not found", found ? t->task_id : "");
    free(w);
    a2a_http_resp_free(&rs);
    return found;
}

/* ---- the exchange ------------------------------------------------------- */

static int64_t backoff(call *c, int attempt, long retry_after_s) {
    a2a *a = c->a;
    c->rnd = hash_mix64(c->rnd + 0x9e3779b97f4a7c15ULL);
    int64_t d = backoff_jitter_ms(a->retry_base_ms, a->retry_max_ms, attempt, c->rnd);
    if (retry_after_s > 0) {
        /* clamped before the multiplication: a hostile value cannot wrap */
        int64_t ra = (retry_after_s > 86400 ? 86400 : retry_after_s) * 1000;
        if (ra > d) d = ra < a->retry_max_ms ? ra : a->retry_max_ms;
    }
    return d;
}

/* A dialect that worked after a fallback is used for this agent from now
 * on; one that did not is never remembered. */
static void learn(a2a *a, a2a_dialect trial) {
    if (!trial || atomic_exchange(&a->learned, (int)trial) == (int)trial) return;
    count(a, a->fallback_s);
    a->h->log(a->ctx, RD_LOG_INFO, "the agent speaks A2A %s; using it from now on",
              a2a_dialect_name(trial));
}

/* The agent refused the conversation id (it lost its state). */
static int context_rejected(const call *c, const outcome *o) {
    if (!o->has_rpc || empty(c->ctx_id) || !empty(c->task_id)) return 0;
    if (o->rpc_code == A2A_ERR_METHOD_NOT_FOUND || o->rpc_code == A2A_ERR_VERSION_NOT_SUPPORTED ||
        o->rpc_code == A2A_ERR_INTERNAL)
        return 0;
    return strcasestr(o->rpc_text, "context") != NULL;
}

/* A task known from the send (or recovered): follow it to its answer. */
/* In-task authorization (spec 7.6.2): the user is shown the agent's
 * request at once (as progress), and the task is polled while it waits, so
 * an authorization done out of band continues it. Not canceled here: at
 * the end of the wait the request is the answer and the task id is kept. */
static void await_auth(call *c, const agent_view *v, a2a_track *t, outcome *o) {
    a2a *a = c->a;
    const char *note = !empty(t->status_text) ? t->status_text : a->cf.auth_required_notice;
    if (!empty(note)) a->h->reply_progress(c->rp, note, strlen(note));
    int64_t until = now_ms(a) + a->auth_wait_ms;
    if (until > c->deadline) until = c->deadline;
    int64_t pause = a->poll_ms;
    a->h->log(a->ctx, RD_LOG_INFO, "correlation %s: task %s waits for authorization; polling it",
              c->rq->correlation_id ? c->rq->correlation_id : "-", t->task_id);
    while (t->state == A2A_TS_AUTH_REQUIRED && !t->got_message) {
        int64_t left = until - now_ms(a);
        if (left <= 0 || a->h->cancelled(c->rp)) break;
        nap(a, c->rp, pause < left ? pause : left);
        pause = pause * 3 / 2 > a->poll_max_ms ? a->poll_max_ms : pause * 3 / 2;
        char id[32];
        next_rpc_id(c, id, sizeof id);
        char *body = a2a_build_task_op(v->d, A2A_OP_GET, id, t->task_id, v->tenant);
        t->ended = 0; /* a 0.3 final flag on auth-required does not end it */
        rpc(c, v, A2A_OP_GET, body, id, t, o);
        free(body);
        if (o->abandoned || (o->cls != A2A_C_OK && o->cls != A2A_C_TRANSIENT)) return;
    }
    memset(o, 0, sizeof *o);
    if (t->state != A2A_TS_AUTH_REQUIRED) t->ended = 0;
}

static rd_status finish_task(call *c, const agent_view *v, a2a_track *t, int streamed,
                             a2a_dialect trial, rd_error *err) {
    outcome o;
    memset(&o, 0, sizeof o);
    if (!a2a_track_done(t)) follow(c, v, t, streamed, &o);
    if (o.cls == A2A_C_OK && t->state == A2A_TS_AUTH_REQUIRED && c->a->auth_wait_ms > 0) {
        await_auth(c, v, t, &o);
        if (o.cls == A2A_C_OK && !a2a_track_done(t)) follow(c, v, t, 0, &o);
    }
    if (o.cls == A2A_C_OK) {
        learn(c->a, trial);
        return settle(c, t, err);
    }
    note_context(c, t);
    return fail(c, &o, err);
}

/* The request's attachments as file parts (ABI 1.2), under
 * max_request_bytes with the text: a file that does not fit is left out
 * and named in *note (malloc()ed text for the agent), never cut. */
static a2a_out_file *out_files(call *c, size_t *n, char **note) {
    const rd_request *rq = c->rq;
    *n = 0;
    *note = NULL;
    if (!RD_HAS(rq, nattachments) || !rq->attachments || !rq->nattachments) return NULL;
    size_t max = rq->nattachments < A2A_MAX_FILES ? rq->nattachments : A2A_MAX_FILES;
    a2a_out_file *v = calloc(max, sizeof *v);
    if (!v) return NULL;
    /* room for the envelope, ids and the text (escaped: up to 6 bytes each) */
    size_t used = 4096 + (rq->text_len < c->a->max_request ? rq->text_len * 6 : c->a->max_request);
    char buf[1024] = "";
    size_t bl = 0;
    for (size_t i = 0; i < rq->nattachments; i++) {
        const rd_attachment *at = rq->attachments[i];
        if (!at || !RD_HAS(at, url) || (!at->data && !at->url)) continue;
        size_t cost = at->data ? (at->len / 3 + 1) * 4 : strlen(at->url);
        cost += 512; /* names, media type, keys */
        if (*n >= max || cost > c->a->max_request || used + cost > c->a->max_request) {
            c->a->h->log(c->a->ctx, RD_LOG_WARN,
                         "correlation %s: file %zu (%zu bytes) left out: over max_request_bytes "
                         "(%zu) or more than %d files",
                         rq->correlation_id ? rq->correlation_id : "-", i + 1, at->len,
                         c->a->max_request, A2A_MAX_FILES);
            if (bl < sizeof buf - 1)
                bl += (size_t)snprintf(buf + bl, sizeof buf - bl,
                                       "%s[file %.80s (%.60s, %zu bytes) not sent: too large]",
                                       bl ? "\n" : "", at->name ? at->name : "unnamed",
                                       at->mime ? at->mime : "application/octet-stream", at->len);
            continue;
        }
        used += cost;
        v[*n] = (a2a_out_file){.mime = at->mime,
                               .name = at->name,
                               .data = at->data,
                               .len = at->data ? at->len : 0,
                               .url = at->data ? NULL : at->url};
        (*n)++;
    }
    if (buf[0]) {
        size_t tl = rq->text ? strlen(rq->text) : 0;
        *note = malloc(tl + strlen(buf) + 2);
        if (*note)
            snprintf(*note, tl + strlen(buf) + 2, "%s%s%s", tl ? rq->text : "", tl ? "\n" : "",
                     buf);
    }
    if (!*n) {
        free(v);
        return NULL;
    }
    return v;
}

/* The first send's result, when the event loop made it: the exchange goes
 * on from there (retries, recovery, fallbacks) on a thread. */
typedef struct {
    agent_view v;
    a2a_track t;
    outcome o;
    int use_stream, attempt; /* retries the loop made already */
} resume_at;

static rd_status exchange_loop(call *c, rd_error *err, const a2a_out_file *files, size_t nfiles,
                               const char *note, resume_at *res);

static rd_status exchange(call *c, rd_error *err) {
    size_t nfiles = 0;
    char *note = NULL;
    a2a_out_file *files = out_files(c, &nfiles, &note);
    rd_status st = exchange_loop(c, err, files, nfiles, note, NULL);
    free(files);
    free(note);
    return st;
}

static rd_status exchange_loop(call *c, rd_error *err, const a2a_out_file *files, size_t nfiles,
                               const char *note, resume_at *res) {
    a2a *a = c->a;
    int switched = 0, dropped_task = 0, rediscovered = 0, attempt = 0, no_stream = 0, healed = 0;
    /* An earlier send of this message (before a restart, or a retry of an
     * unknown outcome) may have reached the agent: its record stays. */
    int maybe_sent = !res && c->rec != REC_NONE;
    if (res) attempt = res->attempt;
    a2a_dialect trial = A2A_D_UNKNOWN;
    outcome o;
    for (;;) {
        agent_view v;
        a2a_track t = {.max_text = a->max_reply};
        int use_stream;
        if (res) {
            v = res->v;
            t = res->t;
            o = res->o;
            use_stream = res->use_stream;
            c->view = &v;
            res = NULL;
            goto sent;
        }
        if (view_get(a, &v, trial)) {
            memset(&o, 0, sizeof o);
            pthread_mutex_lock(&a->mu);
            o.cls = a->disc_class ? a->disc_class : A2A_C_TRANSIENT;
            snprintf(o.msg, sizeof o.msg, "agent not discovered: %.270s",
                     a->disc_err[0] ? a->disc_err : "no card yet");
            pthread_mutex_unlock(&a->mu);
            return fail(c, &o, err);
        }
        use_stream = a->stream && v.streaming && !no_stream;
        char id[32];
        next_rpc_id(c, id, sizeof id);
        /* A continuation is sent blocking: its task id is known already,
         * and a non-blocking answer would show the task's old state. */
        c->continuing = c->task_id != NULL;
        a2a_send s = {.text = note ? note : c->rq->text,
                      .files = files,
                      .nfiles = nfiles,
                      .message_id = c->msg_id,
                      .context_id = c->ctx_id,
                      .task_id = c->task_id,
                      .tenant = v.tenant,
                      .return_immediately = !a->cf.blocking && !c->continuing,
                      .accepted_output_modes = a->modes};
        char *body = a2a_build_send(v.d, use_stream, id, &s);
        c->view = &v;
        if (a->h->cancelled(c->rp)) {
            /* A hard stop: nothing leaves, the update comes back after the
             * restart and is sent then. */
            free(body);
            memset(&o, 0, sizeof o);
            o.cls = A2A_C_TRANSIENT;
            o.abandoned = 1;
            snprintf(o.msg, sizeof o.msg, "abandoned before sending (router stopping)");
            c->view = NULL;
            view_free(&v);
            return fail(c, &o, err);
        }
        /* rpc() records the send just before its request leaves */
        rpc(c, &v, use_stream ? A2A_OP_STREAM : A2A_OP_SEND, body, id, &t, &o);
        free(body);
        note_task(c, &t);
    sent:
        if (o.abandoned && !t.task_id) {
            /* Cut by a hard stop before the agent named a task. A request
             * that provably never left is not "sent": the re-delivered
             * update sends it instead of giving up on an unknown outcome. */
            if (o.not_sent && !maybe_sent) rec_write(c, REC_NONE, NULL, NULL, RD_OK, NULL);
            a2a_track_free(&t);
            c->view = NULL;
            view_free(&v);
            return fail(c, &o, err);
        }
        /* A task that exists is followed, even if its stream broke. */
        if (t.task_id && !t.got_message && (o.cls == A2A_C_OK || o.dropped)) {
            rd_status st =
                o.abandoned ? fail(c, &o, err) : finish_task(c, &v, &t, use_stream, trial, err);
            a2a_track_free(&t);
            c->view = NULL;
            view_free(&v);
            return st;
        }
        if (o.cls == A2A_C_OK) {
            if (!t.got_message && !a2a_track_done(&t)) {
                o.cls = A2A_C_PROTOCOL;
                snprintf(o.msg, sizeof o.msg, "%s: a task without an id",
                         a2a_method(v.d, use_stream ? A2A_OP_STREAM : A2A_OP_SEND));
            } else {
                learn(a, trial);
                rd_status st = settle(c, &t, err);
                a2a_track_free(&t);
                c->view = NULL;
                view_free(&v);
                return st;
            }
        }
        a2a_dialect vd = v.d;
        note_context(c, &t);
        a2a_track_free(&t);

        /* The agent refused the message (a JSON-RPC error before any task):
         * it did not run, so the recoverable cases may send it again. */
        int resend = 0;
        if (o.has_rpc) {
            int code = o.rpc_code;
            if ((code == A2A_ERR_METHOD_NOT_FOUND || code == A2A_ERR_VERSION_NOT_SUPPORTED) &&
                !a->forced && !switched && !v.rest) {
                switched = 1;
                trial = other(vd);
                a->h->log(a->ctx, RD_LOG_INFO, "the agent answered %d to A2A %s; trying %s", code,
                          a2a_dialect_name(vd), a2a_dialect_name(trial));
                resend = 1;
            } else if ((code == A2A_ERR_TASK_NOT_FOUND || code == A2A_ERR_UNSUPPORTED_OPERATION ||
                        code == A2A_ERR_INVALID_PARAMS) &&
                       c->task_id && !dropped_task) {
                /* The task we meant to continue is gone or finished: start a
                 * new one in the same conversation. */
                dropped_task = 1;
                a->h->log(a->ctx, RD_LOG_INFO,
                          "correlation %s: task %s cannot continue (%d); resending as a new task",
                          c->rq->correlation_id ? c->rq->correlation_id : "-", c->task_id, code);
                set_id(&c->task_id, NULL);
                conv_save(c);
                resend = 1;
            } else if (context_rejected(c, &o) && !healed) {
                /* The agent lost the conversation: start a new one rather
                 * than failing every later message until /new. */
                healed = 1;
                a->h->log(a->ctx, RD_LOG_WARN,
                          "correlation %s: the agent rejected contextId %s (%d: %.100s); "
                          "starting a new conversation",
                          c->rq->correlation_id ? c->rq->correlation_id : "-", c->ctx_id,
                          o.rpc_code, o.rpc_text);
                set_id(&c->ctx_id, NULL);
                conv_save(c);
                resend = 1;
            } else if (code == A2A_ERR_UNSUPPORTED_OPERATION && use_stream && !no_stream) {
                no_stream = 1;
                refuse_stream(a, v.url);
                resend = 1;
            }
        }
        if (!resend && o.http == 404 && !rediscovered && !a->no_card) resend = 1;
        if (!resend && (o.not_sent || o.asked_retry) && o.cls == A2A_C_TRANSIENT) resend = 2;

        if ((o.http == 404 || (o.conn_fail && o.not_sent)) && !rediscovered && !a->no_card) {
            rediscovered = 1;
            int64_t dl = now_ms(a) + a->http_ms;
            discover(a, dl < c->deadline ? dl : c->deadline, 1, 1);
            /* Still no fresh card: the discovery thread keeps trying. */
            pthread_mutex_lock(&a->mu);
            int failed = a->disc_err[0] != 0;
            pthread_mutex_unlock(&a->mu);
            if (failed) kick_discovery(a);
        }

        /* Anything else may have reached the agent: a timeout, a cut
         * connection, a 5xx from a gateway, an unreadable answer. */
        int unknown = !resend && !o.has_rpc && !o.abandoned && !(o.http >= 400 && o.http < 500) &&
                      o.cls != A2A_C_FATAL;
        if (unknown) {
            a2a_track rt = {.max_text = a->max_reply};
            if (recover(c, &v, &rt)) {
                note_task(c, &rt);
                rd_status st = finish_task(c, &v, &rt, 0, trial, err);
                a2a_track_free(&rt);
                c->view = NULL;
                view_free(&v);
                return st;
            }
            a2a_track_free(&rt);
            if (a->cf.resend_unknown && o.cls == A2A_C_TRANSIENT) {
                resend = 2;
                maybe_sent = 1;
            } else {
                a->h->log(a->ctx, RD_LOG_WARN,
                          "correlation %s: message %s may have reached the agent (%s); not sent "
                          "again",
                          c->rq->correlation_id ? c->rq->correlation_id : "-", c->msg_id, o.msg);
            }
        }
        c->view = NULL;
        view_free(&v);
        if (resend == 1) {
            rec_write(c, REC_NONE, NULL, NULL, RD_OK, NULL);
            maybe_sent = 0;
            continue;
        }
        if (resend == 2 && attempt < a->retries) {
            int64_t d = backoff(c, attempt, o.retry_after_s);
            if (now_ms(a) + d < c->deadline) {
                attempt++;
                count(a, a->retries_s);
                a->h->log(a->ctx, RD_LOG_INFO, "correlation %s: retry %d in %" PRId64 " ms: %s",
                          c->rq->correlation_id ? c->rq->correlation_id : "-", attempt, d, o.msg);
                if (!unknown) {
                    rec_write(c, REC_NONE, NULL, NULL, RD_OK, NULL);
                    maybe_sent = 0;
                }
                nap(a, c->rp, d);
                if (!a->h->cancelled(c->rp)) continue;
            }
        }
        return fail(c, &o, err);
    }
}

/* A re-delivered update whose message has a record: answer from it,
 * resume its task, or look for the task; never run it blindly again. */
static rd_status redelivered(call *c, rd_error *err) {
    a2a *a = c->a;
    const char *corr = c->rq->correlation_id ? c->rq->correlation_id : "-";
    if (c->rec == REC_DONE) {
        char *val = NULL;
        size_t len = 0;
        rd_status st = RD_OK;
        char klass[24] = "";
        if (a->h->kv_get(a->ctx, c->rkey, &val, &len) == RD_OK && val) {
            cJSON *j = cJSON_ParseWithLength(val, len);
            const char *reply = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "reply"));
            const cJSON *sj = cJSON_GetObjectItemCaseSensitive(j, "st");
            const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "k"));
            if (cJSON_IsNumber(sj) && sj->valuedouble <= 0 && sj->valuedouble >= RD_E_INTERNAL)
                st = (rd_status)(int)sj->valuedouble;
            if (k) snprintf(klass, sizeof klass, "%s", k);
            if (reply) a->h->reply_append(c->rp, reply, strlen(reply));
            cJSON_Delete(j);
            free(val);
        }
        a->h->log(a->ctx, RD_LOG_INFO,
                  "correlation %s: message %s was answered before; sending that answer again "
                  "without running it",
                  corr, c->msg_id);
        if (st != RD_OK)
            a->h->error(err, st, klass[0] ? klass : "fatal", "the earlier answer was a failure");
        return st;
    }
    agent_view v;
    view_for(a, &v, c->rec_d, c->rec_url);
    c->view = &v;
    /* The deadline runs from the first send, with one last look. */
    int64_t now = now_ms(a);
    int64_t dl = now + a->timeout_ms - (wall_s(a) - c->rec_t) * 1000;
    if (!c->rec_t || dl > now + a->timeout_ms) dl = now + a->timeout_ms;
    if (dl < now + 1000) dl = now + 1000;
    if (c->rq->deadline_ms > 0 && c->rq->deadline_ms < dl) dl = c->rq->deadline_ms;
    c->deadline = dl;
    a2a_track t = {.max_text = a->max_reply};
    rd_status st;
    if (c->rec == REC_TASK) {
        t.task_id = strdup(c->rec_task);
        a->h->log(a->ctx, RD_LOG_INFO,
                  "correlation %s: message %s is task %s already; resuming it instead of sending "
                  "again",
                  corr, c->msg_id, c->rec_task);
        st = finish_task(c, &v, &t, a->stream, 0, err);
    } else if (recover(c, &v, &t)) {
        note_task(c, &t);
        st = finish_task(c, &v, &t, a->stream, 0, err);
    } else if (a->cf.resend_unknown) {
        c->view = NULL;
        view_free(&v);
        a2a_track_free(&t);
        return exchange(c, err);
    } else {
        outcome o;
        memset(&o, 0, sizeof o);
        o.cls = A2A_C_FATAL;
        snprintf(o.msg, sizeof o.msg,
                 "message %s may have reached the agent before a restart and its task is not "
                 "known; not sent again (resend_unknown = false)",
                 c->msg_id);
        st = fail(c, &o, err);
    }
    a2a_track_free(&t);
    c->view = NULL;
    view_free(&v);
    return st;
}

/* ---- calls on the event loop ---------------------------------------------
 * The common path of a message runs without a thread of its own: handle()
 * builds the send on the router's worker and returns RD_PENDING; a
 * finisher thread records the send (one transaction with the records of
 * the other calls it has at hand), the event loop makes the request, and
 * a finisher classifies the answer, saves the conversation and the record
 * (batched again) and calls complete(). A working task is polled the same
 * way, its pauses timers of the loop (brought forward by a push when its
 * webhook is registered), and so is a send the agent did not take, after
 * its back-off. What is rarer (a rediscovery, recovery of an unknown
 * outcome, dialect and stream fallbacks, re-attaching a stream, cancelling
 * a task at its deadline, waiting for authorization) goes on with the
 * blocking code on a thread of its own. */

enum { AC_START, AC_SENT, AC_POLL_DUE, AC_POLLED, AC_RESEND_DUE, AC_PUSH_SET };

/* A call's push notifications: its waiter, the registration, the wake. */
struct ac_push {
    push_wait pw;
    push_x px;
    a2a_http_req wake_req; /* the pauses' abort_of: a push or a hard stop */
};
enum { ACT_NONE, ACT_SUBMIT, ACT_TIMER, ACT_DONE, ACT_THREAD, ACT_AGAIN };
enum { FB_RESUME = 1, FB_FINISH };

typedef struct acall {
    struct acall *next;
    call c;
    rd_request rq; /* what it points to lives in the router's job until complete() */
    rd_error err;
    rd_status st;
    agent_view v;
    int have_v;
    a2a_track t;
    outcome o;
    rpc_x x;
    a2a_http_req abort_req; /* lets a hard stop cut the poll pauses */
    struct ac_push *push;   /* while the task's pushes are asked for */
    int stage, act, fb, use_stream, begun;
    char *body;
    a2a_out_file *files;
    size_t nfiles;
    char *note;
    int64_t pause, delay;
    int fails, attempt;
    /* Side work (side_offer): under fmu but side_noted. */
    struct acall *side_next, *prog_next;
    char *side_task, *side_text; /* to record, to show */
    char *side_noted;            /* loop thread: the last task id offered */
    int side_queued, side_running, prog_queued, prog_running;
    int side_held; /* back to the finishers once its task record is written */
    int post_held; /* ends (ac_post) once its partial answer is shown */
} acall;

/* Under fmu: a call for the finishers, and a stream's side work. */
static void fq_add(a2a *a, acall *ac) {
    ac->next = NULL;
    if (a->fq_tail)
        a->fq_tail->next = ac;
    else
        a->fq_head = ac;
    a->fq_tail = ac;
}

static void sq_add(a2a *a, acall *ac) {
    ac->side_queued = 1;
    ac->side_next = NULL;
    if (a->sq_tail)
        a->sq_tail->side_next = ac;
    else
        a->sq_head = ac;
    a->sq_tail = ac;
}

static void pq_add(a2a *a, acall *ac) {
    ac->prog_queued = 1;
    ac->prog_next = NULL;
    if (a->pq_tail)
        a->pq_tail->prog_next = ac;
    else
        a->pq_head = ac;
    a->pq_tail = ac;
    pthread_cond_signal(&a->pcv);
}

/* Under fmu: work was queued. A finisher at work takes it when it comes
 * back for more; the other is woken only to start watching it. */
static void fin_wake(a2a *a) {
    if (!a->fin_busy || !a->fin_watch) pthread_cond_signal(&a->fcv);
}

/* Under fmu: a call held for its task record goes on once it is written. */
static void side_release(a2a *a, acall *ac) {
    if (!ac->side_held || ac->side_queued || ac->side_running) return;
    ac->side_held = 0;
    fq_add(a, ac);
    fin_wake(a);
}

/* A call about to end (its answer, or a thread of its own): a partial
 * answer not shown yet is dropped; 1 when one is being shown, the end then
 * comes after it (progress_main). */
static int prog_settle(a2a *a, acall *ac) {
    pthread_mutex_lock(&a->fmu);
    if (ac->prog_queued) {
        acall **p = &a->pq_head, *prev = NULL;
        while (*p != ac) {
            prev = *p;
            p = &(*p)->prog_next;
        }
        *p = ac->prog_next;
        if (a->pq_tail == ac) a->pq_tail = prev;
        ac->prog_queued = 0;
    }
    free(ac->side_text);
    ac->side_text = NULL;
    int held = ac->post_held = ac->prog_running;
    pthread_mutex_unlock(&a->fmu);
    return held;
}

static void fin_push(a2a *a, acall *ac) {
    pthread_mutex_lock(&a->fmu);
    fq_add(a, ac);
    fin_wake(a);
    pthread_mutex_unlock(&a->fmu);
}

/* A stream event on the loop thread, or a poll's answer on the finisher
 * that has the call: the task record (it waits for a commit) goes to the
 * finishers, a partial answer (it waits for the transport) to the
 * a2a-progress threads, so no exchange on the loop and no other call waits
 * behind them. The call goes on; it comes back to the finishers only
 * once its task record is written (side_release), and ends only once no
 * partial answer of its is being shown (prog_settle). */
static void side_offer(acall *ac, int with_task) {
    call *c = &ac->c;
    a2a *a = c->a;
    const a2a_track *t = &ac->t;
    const char *id = with_task ? task_to_note(c, t) : NULL;
    char *task = NULL, *text = a->prog_on ? progress_due(c, t, 0) : NULL;
    if (id && (!ac->side_noted || strcmp(ac->side_noted, id))) {
        free(ac->side_noted);
        ac->side_noted = xstrdup0(id);
        task = xstrdup0(id);
    }
    if (!task && !text) return;
    pthread_mutex_lock(&a->fmu);
    if (task) {
        free(ac->side_task);
        ac->side_task = task;
    }
    if (task && !ac->side_queued && !ac->side_running) {
        sq_add(a, ac);
        fin_wake(a);
    }
    if (text) { /* the newest supersedes one not shown yet */
        free(ac->side_text);
        ac->side_text = text;
        if (!ac->prog_queued && !ac->prog_running) pq_add(a, ac);
    }
    pthread_mutex_unlock(&a->fmu);
}

/* Loop thread: an exchange ended or a pause is over. */
static void on_loop(void *arg, int rc) {
    acall *ac = arg;
    if (ac->stage == AC_PUSH_SET)
        ac->push->px.hr = rc;
    else if (ac->stage != AC_POLL_DUE && ac->stage != AC_RESEND_DUE)
        ac->x.hr = rc;
    fin_push(ac->c.a, ac);
}

/* The call stops waiting for pushes (it settled, or goes on elsewhere). */
static void ac_push_end(acall *ac) {
    if (!ac->push) return;
    push_end(ac->c.a, &ac->push->pw);
    push_x_free(&ac->push->px);
    free(ac->push);
    ac->push = NULL;
}

/* A pushed call's pause ends early once a push woke it. */
static int push_woke(void *arg) {
    acall *ac = arg;
    return atomic_load(&ac->push->pw.woken) || call_aborted(&ac->c);
}

static void acall_free(acall *ac) {
    a2a *a = ac->c.a;
    call *c = &ac->c;
    ac_push_end(ac);
    if (ac->begun) {
        a2a_http_resp_free(&ac->x.rs);
        rpc_x_free(&ac->x);
    }
    free(c->ctx_id);
    free(c->task_id);
    free(c->saved_ctx);
    free(c->saved_task);
    free(c->rec_task);
    free(c->rec_url);
    free(c->out);
    free(ac->body);
    free(ac->files);
    free(ac->note);
    free(ac->side_task);
    free(ac->side_text);
    free(ac->side_noted);
    if (ac->have_v) view_free(&ac->v);
    a2a_track_free(&ac->t);
    pthread_mutex_lock(&a->fmu);
    if (a->nspare < acall_spare_max) {
        ac->next = a->spare;
        a->spare = ac;
        a->nspare++;
        ac = NULL;
    }
    a->ncalls--;
    pthread_cond_broadcast(&a->slot_cv);
    pthread_mutex_unlock(&a->fmu);
    free(ac);
}

static void ac_done(acall *ac, rd_status st) {
    ac->st = st;
    ac->act = ACT_DONE;
}

static void ac_thread(acall *ac, int fb) {
    ac->fb = fb;
    ac->act = ACT_THREAD;
}

/* The next poll after the pause (growing as follow_loop's does; with
 * pushes registered, push_fallback_s unless a push came meanwhile). */
static void ac_poll_wait(acall *ac) {
    a2a *a = ac->c.a;
    int64_t left = ac->c.deadline - now_ms(a);
    int64_t p = ac->push && atomic_load(&ac->push->pw.woken) ? 0 : ac->pause;
    ac->delay = p < left ? p : left > 0 ? left : 0;
    if (ac->push)
        ac->pause = a->push_fallback_ms;
    else
        ac->pause = ac->pause * 3 / 2 > a->poll_max_ms ? a->poll_max_ms : ac->pause * 3 / 2;
    ac->stage = AC_POLL_DUE;
    ac->act = ACT_TIMER;
}

/* A settled task: its answer, unless it waits for an authorization that
 * is worth waiting for (await_auth, on a thread). */
static void ac_settle(acall *ac) {
    if (ac->t.state == A2A_TS_AUTH_REQUIRED && !ac->t.got_message && ac->c.a->auth_wait_ms > 0)
        ac_thread(ac, FB_FINISH);
    else
        ac_done(ac, settle(&ac->c, &ac->t, &ac->err));
}

static int ac_retry(acall *ac);

/* A working task of an agent that takes push notifications: its webhook
 * is registered on the loop (stage AC_PUSH_SET). 0 when it is not to be
 * (the task is then polled). */
static int ac_push_begin(acall *ac) {
    struct ac_push *ps = calloc(1, sizeof *ps);
    if (!ps) return 0;
    if (!push_prepare(&ac->c, &ac->v, &ac->t, &ps->pw, ac, &ps->px)) {
        free(ps);
        return 0;
    }
    ps->px.ran = 1;
    ps->wake_req = (a2a_http_req){.abort_fn = push_woke, .abort_arg = ac};
    ac->push = ps;
    ac->fails = 0;
    ac->stage = AC_PUSH_SET;
    ac->act = ACT_SUBMIT;
    return 1;
}

/* The registration's answer: one look at the task right away (it may have
 * settled before the webhook existed), then pushes and fallback polls;
 * without it, polling. */
static void ac_push_set(acall *ac) {
    a2a *a = ac->c.a;
    if (!push_judge(&ac->c, &ac->push->pw, &ac->push->px)) {
        ac_push_end(ac);
        ac->pause = a->poll_ms;
    } else {
        push_x_free(&ac->push->px);
        ac->pause = 0;
    }
    ac_poll_wait(ac);
}

/* What the send's answer leads to; as exchange_loop() decides. */
static void ac_sent(acall *ac) {
    a2a *a = ac->c.a;
    call *c = &ac->c;
    outcome *o = &ac->o;
    a2a_track *t = &ac->t;
    if (o->abandoned && !t->task_id) {
        if (o->not_sent) rec_write(c, REC_NONE, NULL, NULL, RD_OK, NULL);
        ac_done(ac, fail(c, o, &ac->err));
        return;
    }
    if (t->task_id && !t->got_message && (o->cls == A2A_C_OK || o->dropped)) {
        if (o->abandoned) {
            ac_done(ac, fail(c, o, &ac->err));
        } else if (a2a_track_done(t)) {
            ac_settle(ac);
        } else if (ac->use_stream || o->cls != A2A_C_OK) {
            ac_thread(ac, FB_FINISH); /* re-attach to the stream */
        } else if (!ac_push_begin(ac)) {
            ac->pause = a->poll_ms;
            ac->fails = 0;
            ac_poll_wait(ac);
        }
        return;
    }
    if (o->cls == A2A_C_OK && (t->got_message || a2a_track_done(t))) {
        ac_settle(ac);
        return;
    }
    if (!ac_retry(ac)) ac_thread(ac, FB_RESUME);
}

/* A pause is over: the head of follow_loop(), then tasks/get. */
static void ac_poll(acall *ac) {
    a2a *a = ac->c.a;
    call *c = &ac->c;
    note_context(c, &ac->t);
    if (a->h->cancelled(c->rp)) {
        memset(&ac->o, 0, sizeof ac->o);
        ac->o.cls = A2A_C_TRANSIENT;
        ac->o.abandoned = 1;
        snprintf(ac->o.msg, sizeof ac->o.msg, "abandoned (router stopping); task %s left running",
                 ac->t.task_id);
        ac_done(ac, fail(c, &ac->o, &ac->err));
        return;
    }
    if (now_ms(a) >= c->deadline) {
        ac_thread(ac, FB_FINISH); /* follow_loop() cancels the task */
        return;
    }
    if (ac->push) atomic_store(&ac->push->pw.woken, 0); /* this poll answers it */
    char id[32];
    next_rpc_id(c, id, sizeof id);
    free(ac->body);
    ac->body = a2a_build_task_op(ac->v.d, A2A_OP_GET, id, ac->t.task_id, ac->v.tenant);
    ac->stage = AC_POLLED;
    if (rpc_begin(c, &ac->v, A2A_OP_GET, ac->body, id, &ac->t, &ac->o, &ac->x) == 0) {
        ac->begun = 1;
        ac->act = ACT_SUBMIT;
        return;
    }
    ac->act = ACT_AGAIN; /* o says why; handled as a failed poll */
}

/* A poll's answer; as follow_loop() and finish_task() decide. */
static void ac_polled(acall *ac) {
    a2a *a = ac->c.a;
    call *c = &ac->c;
    outcome *o = &ac->o;
    if (o->cls == A2A_C_OK && !o->abandoned) {
        ac->fails = 0;
        if (a2a_track_done(&ac->t)) { /* the answer itself follows */
            ac_settle(ac);
        } else {
            side_offer(ac, 0);
            ac_poll_wait(ac);
        }
        return;
    }
    if (o->cls == A2A_C_TIMEOUT && !o->abandoned) {
        ac_thread(ac, FB_FINISH);
        return;
    }
    if (o->abandoned || o->cls != A2A_C_TRANSIENT) {
        note_context(c, &ac->t);
        ac_done(ac, fail(c, o, &ac->err));
        return;
    }
    ac->fails++;
    count(a, a->retries_s);
    a->h->log(a->ctx, RD_LOG_DEBUG, "correlation %s: polling failed (%d): %s",
              c->rq->correlation_id ? c->rq->correlation_id : "-", ac->fails, o->msg);
    ac_poll_wait(ac);
}

/* Builds the send on ac->v (as exchange_loop() does): stage AC_START to
 * record and send it, or AC_SENT when it could not be made (o says why). */
static void ac_build(acall *ac) {
    a2a *a = ac->c.a;
    call *c = &ac->c;
    ac->use_stream = a->stream && ac->v.streaming;
    a2a_track_free(&ac->t);
    memset(&ac->t, 0, sizeof ac->t);
    ac->t.max_text = a->max_reply;
    char id[32];
    next_rpc_id(c, id, sizeof id);
    c->continuing = c->task_id != NULL;
    a2a_send s = {.text = ac->note ? ac->note : c->rq->text,
                  .files = ac->files,
                  .nfiles = ac->nfiles,
                  .message_id = c->msg_id,
                  .context_id = c->ctx_id,
                  .task_id = c->task_id,
                  .tenant = ac->v.tenant,
                  .return_immediately = !a->cf.blocking && !c->continuing,
                  .accepted_output_modes = a->modes};
    free(ac->body);
    ac->body = a2a_build_send(ac->v.d, ac->use_stream, id, &s);
    if (rpc_begin(c, &ac->v, ac->use_stream ? A2A_OP_STREAM : A2A_OP_SEND, ac->body, id, &ac->t,
                  &ac->o, &ac->x) == 0) {
        ac->x.sc.ac = ac;
        ac->begun = 1;
        ac->stage = AC_START;
    } else {
        ac->stage = AC_SENT; /* o says why nothing left */
    }
}

/* A send the agent did not take (408, 429, 503) or that never left is
 * sent again after a back-off, a timer of the loop, as exchange_loop()
 * would; what needs a rediscovery or another form of the request goes to
 * the blocking code. 1 when the retry is scheduled. */
static int ac_retry(acall *ac) {
    a2a *a = ac->c.a;
    call *c = &ac->c;
    const outcome *o = &ac->o;
    if (o->has_rpc || o->abandoned || o->cls != A2A_C_TRANSIENT || ac->t.task_id ||
        (!o->asked_retry && !o->not_sent) || (o->conn_fail && o->not_sent && !a->no_card) ||
        o->http == 404 || ac->attempt >= a->retries)
        return 0;
    int64_t d = backoff(c, ac->attempt, o->retry_after_s);
    if (now_ms(a) + d >= c->deadline) return 0;
    note_context(c, &ac->t);
    ac->attempt++;
    count(a, a->retries_s);
    a->h->log(a->ctx, RD_LOG_INFO, "correlation %s: retry %d in %" PRId64 " ms: %s",
              c->rq->correlation_id ? c->rq->correlation_id : "-", ac->attempt, d, o->msg);
    rec_write(c, REC_NONE, NULL, NULL, RD_OK, NULL);
    ac->delay = d;
    ac->stage = AC_RESEND_DUE;
    ac->act = ACT_TIMER;
    return 1;
}

/* The back-off is over: the send again, on a fresh view of the agent. */
static void ac_resend(acall *ac) {
    a2a *a = ac->c.a;
    call *c = &ac->c;
    if (a->h->cancelled(c->rp)) { /* as after nap() in exchange_loop() */
        ac_done(ac, fail(c, &ac->o, &ac->err));
        return;
    }
    if (ac->have_v) view_free(&ac->v);
    ac->have_v = 0;
    c->view = NULL;
    if (view_get(a, &ac->v, 0)) {
        memset(&ac->o, 0, sizeof ac->o);
        pthread_mutex_lock(&a->mu);
        ac->o.cls = a->disc_class ? a->disc_class : A2A_C_TRANSIENT;
        snprintf(ac->o.msg, sizeof ac->o.msg, "agent not discovered: %.270s",
                 a->disc_err[0] ? a->disc_err : "no card yet");
        pthread_mutex_unlock(&a->mu);
        ac_done(ac, fail(c, &ac->o, &ac->err));
        return;
    }
    ac->have_v = 1;
    c->view = &ac->v;
    ac_build(ac);
    if (ac->stage == AC_START) {
        rec_write(c, REC_SENT, NULL, &ac->v, RD_OK, NULL);
        ac->stage = AC_SENT;
        ac->act = ACT_SUBMIT;
    } else {
        ac->act = ACT_AGAIN;
    }
}

/* One step of a call on a finisher thread; store writes go to c->batch. */
static void ac_step(acall *ac) {
    call *c = &ac->c;
    ac->act = ACT_NONE;
    switch (ac->stage) {
    case AC_START:
        /* Recorded before the request is handed to the loop (so before it
         * leaves); the loop's PREREQ callback finds it written. */
        rec_write(c, REC_SENT, NULL, &ac->v, RD_OK, NULL);
        ac->stage = AC_SENT;
        ac->act = ACT_SUBMIT;
        return;
    case AC_SENT:
    case AC_POLLED:
        if (ac->begun && rpc_renew(c, &ac->v, &ac->x)) {
            ac->act = ACT_SUBMIT;
            return;
        }
        if (ac->begun) {
            ac->begun = 0;
            rpc_end(c, &ac->v, &ac->x);
        }
        free(ac->body);
        ac->body = NULL;
        if (ac->stage == AC_SENT) {
            note_task(c, &ac->t);
            ac_sent(ac);
        } else {
            ac_polled(ac);
        }
        return;
    case AC_POLL_DUE:
        ac_poll(ac);
        return;
    case AC_RESEND_DUE:
        ac_resend(ac);
        return;
    case AC_PUSH_SET:
        ac_push_set(ac);
        return;
    }
}

static void *fallback_main(void *arg) {
    pthread_setname_np(pthread_self(), "a2a-call");
    acall *ac = arg;
    a2a *a = ac->c.a;
    call *c = &ac->c;
    if (ac->fb == FB_FINISH) {
        ac->st = finish_task(c, &ac->v, &ac->t, ac->use_stream, 0, &ac->err);
    } else {
        resume_at r = {.v = ac->v,
                       .t = ac->t,
                       .o = ac->o,
                       .use_stream = ac->use_stream,
                       .attempt = ac->attempt};
        ac->have_v = 0; /* exchange_loop() owns and frees them */
        memset(&ac->t, 0, sizeof ac->t);
        ac->st = exchange_loop(c, &ac->err, ac->files, ac->nfiles, ac->note, &r);
    }
    c->view = NULL;
    a->h->complete(c->rp, ac->st, &ac->err);
    pthread_mutex_lock(&a->fmu);
    a->nthreads_out--;
    pthread_mutex_unlock(&a->fmu);
    acall_free(ac);
    return NULL;
}

/* After the batch of writes is committed: what each step asked for. */
static void ac_post(acall *ac) {
    a2a *a = ac->c.a;
    if ((ac->act == ACT_DONE || ac->act == ACT_THREAD) && a->prog_on && prog_settle(a, ac)) return;
    switch (ac->act) {
    case ACT_SUBMIT:
        if (ac->stage == AC_PUSH_SET) {
            if (a2a_loop_submit(a->loop, &ac->push->px.rq, &ac->push->px.rs, on_loop, ac)) {
                ac->push->px.ran = 0; /* never left: judged as not taken */
                fin_push(a, ac);
            }
        } else if (a2a_loop_submit(a->loop, &ac->x.hrq, &ac->x.rs, on_loop, ac)) {
            /* the loop is stopping: the request never left */
            ac->x.hr = -1;
            ac->x.rs.aborted = 1;
            fin_push(a, ac);
        }
        break;
    case ACT_TIMER:
        if (a2a_loop_after(a->loop, ac->delay, ac->push ? &ac->push->wake_req : &ac->abort_req,
                           on_loop, ac))
            fin_push(a, ac);
        break;
    case ACT_DONE:
        ac_push_end(ac);
        ac->c.view = NULL;
        a->h->complete(ac->c.rp, ac->st, &ac->err);
        acall_free(ac);
        break;
    case ACT_THREAD: {
        ac_push_end(ac); /* the thread registers its own */
        pthread_mutex_lock(&a->fmu);
        a->nthreads_out++;
        pthread_mutex_unlock(&a->fmu);
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 512 * 1024);
        pthread_t th;
        int bad = pthread_create(&th, &at, fallback_main, ac);
        pthread_attr_destroy(&at);
        if (bad) fallback_main(ac); /* no thread to be had: here, blocking */
        break;
    }
    case ACT_AGAIN:
        fin_push(a, ac);
        break;
    default:
        break;
    }
}

#define FIN_BATCH 256
/* How long a finisher may hold up what is queued (an OAuth token fetched
 * for a resend, a commit behind a stalled disk) before the other helps. */
#define FIN_HELP_MS 10

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Under fmu: waits until this finisher should take what is queued; 0 when
 * it should end (stopping, nothing left). */
static int fin_wait(a2a *a) {
    for (;;) {
        int work = a->fq_head || a->sq_head;
        if (!work && a->fstop) return 0;
        if (work && (!a->fin_busy || a->fstop)) return 1;
        if (!work) {
            pthread_cond_wait(&a->fcv, &a->fmu);
            continue;
        }
        /* The other is at work: help once it has been for long. */
        int64_t due = a->fin_since + FIN_HELP_MS;
        if (mono_ms() >= due) return 1;
        struct timespec ts = {(time_t)(due / 1000), (long)(due % 1000) * 1000000L};
        a->fin_watch++;
        pthread_cond_timedwait(&a->fcv, &a->fmu, &ts);
        a->fin_watch--;
    }
}

static void *finisher_main(void *arg) {
    pthread_setname_np(pthread_self(), "a2a-finish");
    a2a *a = arg;
    kv_batch b = {0};
    acall *v[FIN_BATCH], *sv[FIN_BATCH];
    char *stask[FIN_BATCH];
    pthread_mutex_lock(&a->fmu);
    while (fin_wait(a)) {
        if (a->fin_busy++ == 0) a->fin_since = mono_ms();
        size_t n = 0, ns = 0;
        while (a->sq_head && ns < FIN_BATCH) {
            acall *ac = a->sq_head;
            a->sq_head = ac->side_next;
            ac->side_queued = 0;
            ac->side_running = 1;
            stask[ns] = ac->side_task;
            ac->side_task = NULL;
            sv[ns++] = ac;
        }
        if (!a->sq_head) a->sq_tail = NULL;
        while (a->fq_head && n < FIN_BATCH) {
            acall *ac = a->fq_head;
            a->fq_head = ac->next;
            /* its task record first: it comes back after that */
            if (ac->side_queued || ac->side_running)
                ac->side_held = 1;
            else
                v[n++] = ac;
        }
        if (!a->fq_head) a->fq_tail = NULL;
        pthread_mutex_unlock(&a->fmu);
        for (size_t i = 0; i < ns; i++) {
            sv[i]->c.batch = &b;
            note_task_id(&sv[i]->c, stask[i]);
            sv[i]->c.batch = NULL;
            free(stask[i]);
        }
        for (size_t i = 0; i < n; i++) {
            v[i]->c.batch = &b;
            ac_step(v[i]);
            v[i]->c.batch = NULL;
        }
        kv_flush(a, &b);
        for (size_t i = 0; i < n; i++)
            ac_post(v[i]);
        pthread_mutex_lock(&a->fmu);
        for (size_t i = 0; i < ns; i++) {
            sv[i]->side_running = 0;
            if (sv[i]->side_task)
                sq_add(a, sv[i]);
            else
                side_release(a, sv[i]);
        }
        a->fin_busy--;
    }
    pthread_mutex_unlock(&a->fmu);
    free(b.ops);
    return NULL;
}

/* Partial answers, a call's one after the other (a transport's progress()
 * may wait for its API); a newer one replaces one not shown yet, and one
 * not shown when its call ends is dropped (prog_settle). */
static void *progress_main(void *arg) {
    pthread_setname_np(pthread_self(), "a2a-progress");
    a2a *a = arg;
    pthread_mutex_lock(&a->fmu);
    for (;;) {
        while (!a->pq_head && !a->pstop)
            pthread_cond_wait(&a->pcv, &a->fmu);
        acall *ac = a->pq_head;
        if (!ac) break;
        a->pq_head = ac->prog_next;
        if (!a->pq_head) a->pq_tail = NULL;
        ac->prog_queued = 0;
        char *text = ac->side_text;
        ac->side_text = NULL;
        ac->prog_running = 1; /* the call does not end meanwhile */
        pthread_mutex_unlock(&a->fmu);
        a->h->reply_progress(ac->c.rp, text, strlen(text));
        free(text);
        pthread_mutex_lock(&a->fmu);
        ac->prog_running = 0;
        if (ac->post_held) {
            ac->post_held = 0;
            pthread_mutex_unlock(&a->fmu);
            ac_post(ac); /* it ended while this was shown */
            pthread_mutex_lock(&a->fmu);
        } else if (ac->side_text) {
            pq_add(a, ac);
        }
    }
    pthread_mutex_unlock(&a->fmu);
    return NULL;
}

/* Hands a call on to the event-loop path; -1 leaves it to the blocking
 * path (no slot while stopping, no agent card, no memory). On 0, the call's
 * allocations belong to the loop path. */
static int ac_start(a2a *a, call *c) {
    pthread_mutex_lock(&a->fmu);
    while (a->ncalls >= a->max_calls && !a->fstop && !a->h->cancelled(c->rp)) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += 100000000L;
        if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&a->slot_cv, &a->fmu, &dl);
    }
    int ok = !a->fstop && a->ncalls < a->max_calls;
    acall *ac = NULL;
    if (ok) {
        a->ncalls++;
        if ((ac = a->spare)) {
            a->spare = ac->next;
            a->nspare--;
        }
    }
    pthread_mutex_unlock(&a->fmu);
    if (!ok) return -1;
    if (ac)
        memset(ac, 0, sizeof *ac);
    else
        ac = calloc(1, sizeof *ac);
    if (!ac || view_get(a, &ac->v, 0)) {
        free(ac);
        pthread_mutex_lock(&a->fmu);
        a->ncalls--;
        pthread_cond_broadcast(&a->slot_cv);
        pthread_mutex_unlock(&a->fmu);
        return -1;
    }
    ac->have_v = 1;
    ac->rq = *c->rq;
    ac->c = *c;
    c = &ac->c;
    c->rq = &ac->rq;
    c->view = &ac->v;
    ac->abort_req = (a2a_http_req){.abort_fn = call_aborted, .abort_arg = c};
    ac->files = out_files(c, &ac->nfiles, &ac->note);
    ac_build(ac);
    fin_push(a, ac);
    return 0;
}

/* Starts the loop and the finishers; 0 when they run. */
static int loop_start(a2a *a) {
    if (!a->loop || a2a_loop_start(a->loop)) return -1;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&a->fin[a->nfin], NULL, finisher_main, a) == 0) a->nfin++;
    /* without them partial answers are not shown */
    for (int i = 0; a->nfin && a->progress && i < PROG_THREADS; i++)
        if (pthread_create(&a->prog[a->prog_on], NULL, progress_main, a) == 0) a->prog_on++;
    return a->nfin ? 0 : -1;
}

/* Ends every exchange in flight (a hard stop passed, or nothing is left),
 * lets the finishers complete the calls and joins every thread. */
static void loop_stop(a2a *a) {
    if (!a->loop) return;
    a2a_loop_stop(a->loop);
    pthread_mutex_lock(&a->fmu);
    while (a->ncalls > 0 && a->nfin > 0)
        pthread_cond_wait(&a->slot_cv, &a->fmu);
    a->fstop = 1;
    pthread_cond_broadcast(&a->fcv);
    pthread_cond_broadcast(&a->slot_cv);
    pthread_mutex_unlock(&a->fmu);
    for (int i = 0; i < a->nfin; i++)
        pthread_join(a->fin[i], NULL);
    a->nfin = 0;
    if (a->prog_on) {
        pthread_mutex_lock(&a->fmu);
        a->pstop = 1;
        pthread_cond_broadcast(&a->pcv);
        pthread_mutex_unlock(&a->fmu);
        for (int i = 0; i < a->prog_on; i++)
            pthread_join(a->prog[i], NULL);
        a->prog_on = 0;
    }
}

/* ---- the backend API ---------------------------------------------------- */

static int is_command(const char *text, const char *cmd) {
    if (empty(cmd) || !text) return 0;
    size_t n = strlen(cmd);
    while (*text == ' ')
        text++;
    if (strncmp(text, cmd, n)) return 0;
    char e = text[n];
    return e == 0 || e == ' ' || e == '@' || e == '\n' || e == '\t';
}

/* The update id the transport puts in its meta (e.g. telegram.update_id):
 * its updates are re-delivered under the same id. */
static int meta_update_id(const char *meta, char *out, size_t sz) {
    out[0] = 0;
    cJSON *j = meta ? cJSON_Parse(meta) : NULL;
    const cJSON *o;
    cJSON_ArrayForEach(o, j) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "update_id");
        const char *name = o->string ? o->string : "";
        double d = cJSON_IsNumber(u) ? u->valuedouble : 0;
        if (cJSON_IsNumber(u) && d > -1e15 && d < 1e15 && d == (double)(long long)d) {
            /* An integer below 10^15 is printed by cJSON as its digits: the
             * same text, without a cJSON_Print() and its sscanf() check. */
            snprintf(out, sz, "%s:%lld", name, (long long)d);
            break;
        }
        if (cJSON_IsNumber(u) || cJSON_IsString(u)) {
            char *txt = cJSON_IsString(u) ? strdup(u->valuestring) : cJSON_PrintUnformatted(u);
            if (txt) snprintf(out, sz, "%s:%s", name, txt);
            free(txt);
            break;
        }
    }
    cJSON_Delete(j);
    return out[0] != 0;
}

_Static_assert(sizeof(((call *)0)->rkey) >= 21 + sizeof(((call *)0)->msg_id),
               "a record key holds \"msg:\", 16 hex digits, ':' and the messageId");

/* messageId: derived from the update when it is stable across restarts
 * (the same update gets the same id, so agents can deduplicate and the
 * record finds it), else from the correlation id. UUID-shaped. */
static void message_id(a2a *a, call *c) {
    const rd_request *rq = c->rq;
    char uid[96];
    int has_uid = meta_update_id(rq->meta, uid, sizeof uid);
    c->stable = a->cf.message_ids == 1 || (a->cf.message_ids == 0 && has_uid);
    const char *corr = rq->correlation_id;
    size_t n = corr ? strlen(corr) : 0;
    int hex = n == 32;
    for (size_t i = 0; hex && i < n; i++)
        hex = isxdigit((unsigned char)corr[i]) != 0;
    uint64_t hi, lo;
    if (c->stable) {
        uint64_t h = hash_fnv1a(HASH_FNV1A_SEED, a->inst, strlen(a->inst));
        h = hash_fnv1a(h, uid, strlen(uid));
        hi = hash_mix64(h ^ hash_mix64((uint64_t)rq->chat_id));
        hi = hash_mix64(hi ^ (uint64_t)rq->update_id);
        lo = hash_mix64(hi ^ (uint64_t)rq->message_id ^ 0x9e3779b97f4a7c15ULL);
    } else if (hex) {
        snprintf(c->msg_id, sizeof c->msg_id, "%.8s-%.4s-%.4s-%.4s-%.12s", corr, corr + 8,
                 corr + 12, corr + 16, corr + 20);
        return;
    } else {
        hi = hash_mix64(a->boot ^ hash_fnv1a(HASH_FNV1A_SEED, corr, n) ^ (uint64_t)rq->update_id);
        lo = hash_mix64(hi ^ (uint64_t)rq->chat_id ^ a->boot);
    }
    /* version 8 (custom), RFC 4122 variant: 8-4-4-4-12 hex digits */
    char *p = c->msg_id;
    p = put_hex(p, hi >> 32, 8);
    *p++ = '-';
    p = put_hex(p, (hi >> 16) & 0xffff, 4);
    *p++ = '-';
    *p++ = '8';
    p = put_hex(p, hi & 0xfff, 3);
    *p++ = '-';
    p = put_hex(p, 0x8000 | ((lo >> 48) & 0x3fff), 4);
    *p++ = '-';
    p = put_hex(p, lo & 0xffffffffffffULL, 12);
    *p = 0;
}

static rd_status a_handle(void *self, const rd_request *rq, rd_reply *rp, rd_error *err) {
    a2a *a = self;
    if (a->h->cancelled(rp)) {
        /* A hard stop came first: nothing is recorded or sent; the update
         * stays unacknowledged and is handled after the restart. */
        a->h->error(err, RD_E_RETRY, "transient", "abandoned before it started (router stopping)");
        return RD_E_RETRY;
    }
    call c = {.a = a, .rq = rq, .rp = rp};
    int64_t now = now_ms(a);
    c.deadline = now + a->timeout_ms;
    if (rq->deadline_ms > 0 && rq->deadline_ms < c.deadline) c.deadline = rq->deadline_ms;
    message_id(a, &c);
    /* Led by the update id, which grows: a message's records are written
     * beside those of the messages before it, so a commit touches a page or
     * two at the end of the table instead of one at random per record. */
    char *k = c.rkey; /* "msg:%016llx:%s" */
    memcpy(k, "msg:", 4);
    k = put_hex(k + 4, (uint64_t)(rq->update_id > 0 ? rq->update_id : 0), 16);
    *k++ = ':';
    memcpy(k, c.msg_id, strlen(c.msg_id) + 1);
    c.rnd = hash_mix64((uint64_t)now ^ (uint64_t)rq->chat_id ^ ((uint64_t)rq->update_id << 20));
    snprintf(c.key, sizeof c.key, "conv:%" PRId64 ":%.80s", rq->chat_id,
             rq->persona ? rq->persona : "");
    conv_load(&c);
    if (c.stable) prune_records(a);

    rd_status st;
    if (is_command(rq->text, a->cf.new_command)) {
        if (c.task_id) {
            agent_view v;
            if (!view_get(a, &v, 0)) {
                cancel_task(&c, &v, c.task_id);
                view_free(&v);
            }
        }
        set_id(&c.ctx_id, NULL);
        set_id(&c.task_id, NULL);
        conv_save(&c);
        append(&c, a->cf.new_reply);
        st = RD_OK;
    } else {
        rec_load(&c);
        pthread_mutex_lock(&a->mu);
        int have = a->have_card;
        pthread_mutex_unlock(&a->mu);
        if (!have && c.rec != REC_DONE) {
            int64_t dl = now + a->http_ms;
            discover(a, dl < c.deadline ? dl : c.deadline, 0, 1);
        }
        if (c.rec == REC_NONE && a->nfin && ac_start(a, &c) == 0) return RD_PENDING;
        st = c.rec != REC_NONE ? redelivered(&c, err) : exchange(&c, err);
    }
    free(c.ctx_id);
    free(c.task_id);
    free(c.saved_ctx);
    free(c.saved_task);
    free(c.rec_task);
    free(c.rec_url);
    free(c.out);
    return st;
}

static void a_destroy(void *self) {
    a2a *a = self;
    if (!a) return;
    for (acall *ac = a->spare, *nx; ac; ac = nx) {
        nx = ac->next;
        free(ac);
    }
    a2a_loop_free(a->loop);
    a2a_http_free(a->http);
    a2a_card_free(&a->card);
    pthread_mutex_destroy(&a->fmu);
    pthread_cond_destroy(&a->fcv);
    pthread_cond_destroy(&a->pcv);
    pthread_cond_destroy(&a->slot_cv);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->omu);
    pthread_cond_destroy(&a->ocv);
    pthread_mutex_destroy(&a->pmu);
    OPENSSL_cleanse(a->push_bearer, sizeof a->push_bearer);
    OPENSSL_cleanse(a->push_auth, sizeof a->push_auth);
    free(a->push_url);
    free(a->otoken);
    free(a->base);
    free(a->auth_hdr);
    free(a->key_hdr);
    free(a->nostream_url);
    free(a->card_from);
    for (char **p = a->cred_origins; p && *p; p++)
        free(*p);
    free(a->cred_origins);
    free(a);
}

/* push_url: one webhook route per instance on the admin server, behind a
 * bearer secret drawn for this run. -1 on a bad configuration. */
static int push_setup(a2a *a, rd_error *err) {
    const rd_host *h = a->h;
    const char *pu = a->cf.push_url;
    a->push_fallback_ms = a->cf.push_fallback_s * 1000;
    if (empty(pu)) return 0;
    if (!url_is_http(pu) || strpbrk(pu, " \t\r\n?#")) {
        h->error(err, RD_E_CONFIG, "fatal",
                 "push_url must be an http(s) URL without query or fragment");
        return -1;
    }
    for (const char *p = a->inst; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') {
            h->error(err, RD_E_CONFIG, "fatal",
                     "push_url: the instance name '%s' cannot be a URL path segment", a->inst);
            return -1;
        }
    const char *admin = h->info(a->ctx, "admin_listen");
    if (!RD_HAS(h, http_route_auth) || !h->http_route_auth || empty(admin) ||
        !strcmp(admin, "off")) {
        h->error(err, RD_E_CONFIG, "fatal",
                 "push_url needs the admin server ([router] admin_listen) to take pushes");
        return -1;
    }
    char path[200];
    snprintf(path, sizeof path, "/a2a/%s/push", a->inst);
    size_t n = strlen(pu);
    while (n > 8 && pu[n - 1] == '/')
        n--;
    a->push_url = malloc(n + strlen(path) + 1);
    if (!a->push_url) return -1;
    memcpy(a->push_url, pu, n);
    strcpy(a->push_url + n, path);
    if (hex_random(a->push_bearer, 24)) {
        h->error(err, RD_E_INTERNAL, "fatal", "push_url: no random bytes for the webhook secret");
        return -1;
    }
    snprintf(a->push_auth, sizeof a->push_auth, "Bearer %s", a->push_bearer);
    if (h->http_route_auth(a->ctx, "POST", path, "Authorization", a->push_auth, on_push, a) !=
        RD_OK) {
        h->error(err, RD_E_CONFIG, "fatal", "push_url: cannot register the route %s", path);
        return -1;
    }
    return 0;
}

static rd_status a_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    if (!RD_HAS(h, cfg_bind)) {
        h->error(err, RD_E_CONFIG, "fatal", "needs a routerd speaking plugin ABI 1.2");
        return RD_E_CONFIG;
    }
    a2a *a = calloc(1, sizeof *a);
    if (!a) return RD_E_INTERNAL;
    a->h = h;
    a->ctx = ctx;
    atomic_init(&a->old_keys, 1);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    pthread_mutex_init(&a->omu, NULL);
    pthread_cond_init(&a->ocv, NULL);
    pthread_mutex_init(&a->pmu, NULL);
    pthread_mutex_init(&a->fmu, NULL);
    pthread_condattr_t ca; /* fin_wait() times its waits on this clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->fcv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&a->pcv, NULL);
    pthread_cond_init(&a->slot_cv, NULL);
    *self = a;
    const char *inst = h->info(ctx, "instance");
    a->inst = inst ? inst : "a2a";
    if (h->cfg_bind(ctx, &a->cf, sizeof a->cf, err) != RD_OK) goto bad;
    const a2a_conf *cf = &a->cf;

    const char *url = cf->url;
    if (!url_is_http(url)) {
        h->error(err, RD_E_CONFIG, "fatal", "url must be an http:// or https:// URL");
        goto bad;
    }
    const char *ca_file = empty(cf->ca_file) ? NULL : cf->ca_file;
    int cae = ca_file ? ca_file_check(ca_file) : 0;
    if (cae) {
        h->error(err, RD_E_CONFIG, "fatal", "ca_file: cannot read %s: %s", ca_file, strerror(cae));
        goto bad;
    }
    a->base = strdup(url);
    size_t n = strlen(a->base);
    while (n > 8 && a->base[n - 1] == '/')
        a->base[--n] = 0;
    const char *cu = cf->card_url;
    if (!empty(cu) && !strcasecmp(cu, "none")) {
        a->no_card = 1;
    } else if (!empty(cu)) {
        if (!url_is_http(cu)) {
            h->error(err, RD_E_CONFIG, "fatal", "card_url must be an http(s) URL or 'none'");
            goto bad;
        }
        a->card_url = cu;
    }
    const char *ru = cf->rpc_url;
    if (!empty(ru)) {
        if (!url_is_http(ru)) {
            h->error(err, RD_E_CONFIG, "fatal", "rpc_url must be an http(s) URL");
            goto bad;
        }
        a->rpc_url = ru;
    }
    int d = cf->dialect;
    a->forced = d == 1 ? A2A_D_V10 : d == 2 ? A2A_D_V03 : A2A_D_UNKNOWN;
    a->binding = cf->binding;
    const char *tok = cf->token;
    /* A header value with CR or LF would smuggle headers of its own. */
    const char *hk[] = {"token", "api_key", "api_key_header", "oauth_client_id"};
    const char *hv[] = {cf->token, cf->api_key, cf->api_key_header, cf->oauth_client_id};
    for (size_t i = 0; i < 4; i++) {
        if (hv[i] && strpbrk(hv[i], "\r\n")) {
            h->error(err, RD_E_CONFIG, "fatal", "%s contains a line break (CR or LF)", hk[i]);
            goto bad;
        }
    }
    if (!empty(tok) && asprintf(&a->auth_hdr, "Authorization: Bearer %s", tok) < 0)
        a->auth_hdr = NULL;
    const char *kh = cf->api_key_header, *kv = cf->api_key;
    if (empty(kh) != empty(kv)) {
        h->error(err, RD_E_CONFIG, "fatal", "api_key and api_key_header go together");
        goto bad;
    }
    if (!empty(kh)) {
        for (const char *p = kh; *p; p++)
            if (*p <= ' ' || *p == ':' || *p == 127) {
                h->error(err, RD_E_CONFIG, "fatal", "api_key_header is not a header name");
                goto bad;
            }
        if (asprintf(&a->key_hdr, "%s: %s", kh, kv) < 0) a->key_hdr = NULL;
    }
    a->stream = cf->stream;
    a->progress = cf->progress;
    a->timeout_ms = cf->timeout_s * 1000;
    a->connect_ms = cf->connect_timeout_s * 1000;
    a->http_ms = cf->http_timeout_s * 1000;
    a->max_bytes = (size_t)cf->max_response_bytes;
    a->retries = (int)cf->retries;
    a->retry_base_ms = cf->retry_base_ms;
    a->retry_max_ms = cf->retry_max_ms;
    a->poll_ms = cf->poll_interval_ms;
    a->poll_max_ms = cf->poll_max_interval_ms;
    if (a->poll_max_ms < a->poll_ms) a->poll_max_ms = a->poll_ms;
    if (a->retry_max_ms < a->retry_base_ms) a->retry_max_ms = a->retry_base_ms;
    a->cancel_ms = cf->cancel_timeout_ms;
    a->disc_max_ms = cf->discovery_retry_max_s * 1000;
    a->progress_ms = cf->progress_interval_ms;
    const char *const *modes = cf->accepted_output_modes;
    a->modes = modes && modes[0] ? modes : NULL;
    a->max_reply = (size_t)cf->max_reply_bytes;
    a->max_request = (size_t)cf->max_request_bytes;
    a->stream_retry_ms = cf->stream_retry_s * 1000;
    a->auth_wait_ms = cf->auth_required_wait_s * 1000;
    a->card_max_age_ms = cf->card_max_age_s * 1000;
    a->card_min_ms = cf->card_refresh_min_s * 1000;
    a->ext_warn = cf->required_extensions == 1;
    a->oauth_id = cf->oauth_client_id;
    a->oauth_url = cf->oauth_token_url;
    a->omargin_ms = cf->oauth_refresh_margin_s * 1000;
    if (empty(a->oauth_id)) a->oauth_id = NULL;
    if ((a->oauth_id == NULL) != empty(cf->oauth_client_secret)) {
        h->error(err, RD_E_CONFIG, "fatal", "oauth_client_id and oauth_client_secret go together");
        goto bad;
    }
    if (a->oauth_id && a->auth_hdr) {
        h->error(err, RD_E_CONFIG, "fatal", "token and oauth_client_id exclude each other");
        goto bad;
    }
    if (!empty(a->oauth_url) && !url_is_http(a->oauth_url)) {
        h->error(err, RD_E_CONFIG, "fatal", "oauth_token_url must be an http(s) URL");
        goto bad;
    }
    a->boot = hash_mix64((uint64_t)h->wall_ns() ^ ((uint64_t)(uintptr_t)a << 16));
    if (push_setup(a, err)) goto bad;

    /* Credentials go to the origin the operator named, nowhere else unless
     * listed: a card cannot send them to another host. */
    const char *const *co = cf->credential_origins;
    size_t nco = 0;
    while (co && co[nco])
        nco++;
    a->cred_origins = calloc(nco + 4, sizeof *a->cred_origins);
    if (!a->cred_origins) goto bad;
    size_t k = 0;
    const char *own[] = {a->base, a->card_url, a->rpc_url};
    for (size_t i = 0; i < 3 + nco; i++) {
        const char *u = i < 3 ? own[i] : co[i - 3];
        if (empty(u)) continue;
        char o[300];
        origin_of(u, o, sizeof o);
        if (!o[0]) {
            h->error(err, RD_E_CONFIG, "fatal",
                     "credential_origins: '%s' is not an http(s) origin (scheme://host[:port])", u);
            goto bad;
        }
        if (!(a->cred_origins[k] = strdup(o))) goto bad;
        k++;
    }

    a->http = a2a_http_new(512, ca_file);
    a->max_calls = (size_t)cf->max_calls;
    /* Each call holds a socket: stay within half the open-file limit, so
     * a burst waits for slots instead of failing to connect. */
    struct rlimit nf;
    if (getrlimit(RLIMIT_NOFILE, &nf) == 0 && nf.rlim_cur != RLIM_INFINITY) {
        size_t cap = nf.rlim_cur / 2 > 64 ? (size_t)(nf.rlim_cur / 2) : 64;
        if (a->max_calls > cap) {
            h->log(ctx, RD_LOG_INFO,
                   "max_calls %zu lowered to %zu: half the open-file limit (ulimit -n %llu)",
                   a->max_calls, cap, (unsigned long long)nf.rlim_cur);
            a->max_calls = cap;
        }
    }
    a->loop =
        a->http ? a2a_loop_new(a->http, (long)cf->max_host_connections,
                               (long)cf->max_idle_connections, (long)cf->max_connecting, h->now_ms)
                : NULL;
    if (!a->http) {
        h->error(err, RD_E_INTERNAL, "fatal", "cannot set up HTTP");
        goto bad;
    }

    /* The name and label of the design's a2a.failure_total{classification};
     * per instance, the router's routerd_backend_failures_total has it. */
    static const char *const fl[] = {"classification", NULL};
    rd_metric *mf = h->metric(ctx, RD_METRIC_COUNTER, "routerd_a2a_failures_total",
                              "A2A agent calls that failed, by classification", fl, NULL, 0);
    for (int i = A2A_C_TRANSIENT; i <= A2A_C_PROTOCOL; i++) {
        const char *lv[] = {a2a_class_name((a2a_class)i)};
        a->fail[i] = mf ? h->series(mf, lv) : NULL;
    }
    a->fail[A2A_C_OK] = a->fail[A2A_C_FATAL];
    static const char *const bl[] = {"backend", NULL};
    rd_metric *mr = h->metric(ctx, RD_METRIC_COUNTER, "routerd_a2a_retries_total",
                              "A2A calls repeated after a transient failure", bl, NULL, 0);
    const char *lv1[] = {a->inst};
    a->retries_s = mr ? h->series(mr, lv1) : NULL;
    static const char *const pl[] = {"backend", "outcome", NULL};
    rd_metric *mp = h->metric(ctx, RD_METRIC_COUNTER, "routerd_a2a_push_notifications_total",
                              "push notifications received: woke a task, refused (wrong token), "
                              "ignored (no task waits for it)",
                              pl, NULL, 0);
    static const char *const pn[] = {"woke", "refused", "ignored"};
    for (int i = 0; i < 3; i++) {
        const char *lv[] = {a->inst, pn[i]};
        a->push_s[i] = mp ? h->series(mp, lv) : NULL;
    }
    rd_metric *mfb =
        h->metric(ctx, RD_METRIC_COUNTER, "routerd_a2a_dialect_fallbacks_total",
                  "switches between A2A 1.0 and 0.3 after 'method not found'", bl, NULL, 0);
    a->fallback_s = mfb ? h->series(mfb, lv1) : NULL;
    static const char *const ol[] = {"backend", "outcome", NULL};
    rd_metric *mo = h->metric(ctx, RD_METRIC_COUNTER, "routerd_a2a_replies_total",
                              "A2A answers relayed, by what the agent answered", ol, NULL, 0);
    for (int i = 0; i < OUT_N; i++) {
        const char *lv[] = {a->inst, outcome_names[i]};
        a->outcome_s[i] = mo ? h->series(mo, lv) : NULL;
    }
    return RD_OK;
bad:
    a_destroy(a);
    *self = NULL;
    return RD_E_CONFIG;
}

static rd_status a_start(void *self, rd_error *err) {
    a2a *a = self;
    if (loop_start(a))
        a->h->log(a->ctx, RD_LOG_WARN,
                  "cannot start the event loop: every call parks a worker thread instead");
    if (a->no_card) {
        pthread_mutex_lock(&a->mu);
        a->card.url_v10 = strdup(a->rpc_url ? a->rpc_url : a->base);
        a->card.url_v03 = strdup(a->card.url_v10);
        a->card.preferred = a->forced ? a->forced : A2A_D_V10;
        a->card.streaming = 1; /* unknown: try, and fall back on -32004 */
        a->have_card = 1;
        pthread_mutex_unlock(&a->mu);
        a->h->log(a->ctx, RD_LOG_INFO, "no agent card (card_url = none): JSON-RPC at %s, %s",
                  a->card.url_v10, a->forced ? a2a_dialect_name(a->forced) : "1.0 first");
        a->h->ready(a->ctx, 1, NULL);
        return RD_OK;
    }
    a->h->ready(a->ctx, 0, "discovering the agent card");
    if (pthread_create(&a->th, NULL, discovery_main, a)) {
        a->h->error(err, RD_E_INTERNAL, "fatal", "cannot start the discovery thread");
        return RD_E_INTERNAL;
    }
    a->th_started = 1;
    return RD_OK;
}

static void a_stop(void *self) {
    a2a *a = self;
    loop_stop(a);
    atomic_store(&a->stop_flag, 1);
    pthread_mutex_lock(&a->mu);
    a->stopping = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (a->th_started) pthread_join(a->th, NULL);
    a->th_started = 0;
}

static const rd_ops ops = {
    .size = sizeof(rd_ops),
    .create = a_create,
    .start = a_start,
    .stop = a_stop,
    .destroy = a_destroy,
    .handle = a_handle,
};

RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "a2a", .version = "1.0.0",
                 .summary = "A2A agent over JSON-RPC (1.0 and 0.3): conversations, tasks, streams",
                 .options = opts, .ops = &ops);
