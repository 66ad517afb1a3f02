/*
 * A fake A2A agent for tests: libmicrohttpd on 127.0.0.1, in-process, one
 * thread per connection. It serves an agent card and answers JSON-RPC in
 * A2A 1.0 (SendMessage, GetTask, ..., ProtoJSON) and/or 0.3 (message/send,
 * tasks/get, ..., `kind`), answering a method of the other dialect with
 * -32601 as real servers do. What it answers is scripted by the first word
 * of the user's message:
 *
 *   (anything else)  a Message "echo: <text>"
 *   ctx              a Message "ctx=<contextId received|none> task=<taskId|none>"
 *   task [ms]        a Task that is working for ms (default 300), then
 *                    completed with the artifact "done: <text>"
 *   files            a Message "here are files" with a file part (bytes
 *                    "hello file", hello.txt, text/plain), a file part
 *                    with a URL (report.pdf) and a data part {"total": 3}
 *   filetask [ms]    a task like "task" whose artifact carries those parts
 *   bigfile          a Message "a big one" with a 3000-byte file (big.bin,
 *                    1.0 raw)
 *   choose           like "ask", asking "Proceed?" with a data part
 *                    {"choices": ["yes", "no"]}
 *   chooseonly       the same with the data part alone (no text)
 *   ask              a Task in input-required asking "What is your name?";
 *                    the next message on that task completes it with
 *                    "Hello, <text>!" (its first answer still shows the
 *                    old input-required state, as the JS SDK does)
 *   authreq          the same in auth-required ("Please sign in at ...")
 *   fail / reject    a Task failed ("the tool crashed") / rejected
 *                    ("I will not do that")
 *   hang             a Task working until canceled
 *   rpcerr <code>    a JSON-RPC error with that code (HTTP 200)
 *   http <status>    that HTTP status with an HTML body (429 adds
 *                    Retry-After: 1)
 *   flaky <n>        HTTP 503 for the first n attempts of one messageId,
 *                    then a Message "recovered after <n>"
 *   slow <ms>        waits ms, then answers a Message
 *   partialtask [ms] the same as task [ms], its working snapshots carrying
 *                    an artifact "working on it" (a partial answer)
 *   slowtask <ms>    a Task working for ms; even a non-blocking send is
 *                    answered only when it is done (agents that ignore
 *                    returnImmediately / blocking:false)
 *   big              a Message of 2 MiB of text
 *   malformed        HTTP 200 with a body that is not JSON
 *   badid            a Message under another JSON-RPC id
 *   bigevent         (streams) one SSE event of 2 MiB
 *   flood <n>        (streams) a task streaming n appended 1 KiB chunks
 *   drop             (streams) the stream breaks after "working"; the task
 *                    completes with "after drop" shortly after
 *   streamerr        (streams) an `event: error` frame (-32603) after
 *                    "working"; the task completes with "after error"
 *
 * Streams (message/stream, SendStreamingMessage) send the task, a working
 * status, artifact chunks "Hel" "lo, " "world" (append, lastChunk) and the
 * final status, split at awkward byte boundaries: byte by byte, CR|LF
 * across writes, CRLF line endings, comment lines, multi-line data.
 * A plain message over a stream is one event.
 *
 * 1.0 ListTasks lists the tasks (of a contextId) with the user message
 * that created each in its history. Every execution of a message's work
 * (a task created, an answer produced, a handler error) is counted per
 * messageId; refusals (dialect, validation, 503/429, unknown context) are
 * not executions.
 */
#ifndef FAKE_A2A_H
#define FAKE_A2A_H

#include <stddef.h>

typedef struct fa2a fa2a;

typedef enum {
    FA_V10 = 1,  /* 1.0 methods only (requires A2A-Version: 1.0) */
    FA_V03 = 2,  /* 0.2/0.3 methods only */
    FA_BOTH = 3, /* both, like the JS SDK with legacy compat on */
} fa_dialect;

typedef enum {
    FA_CARD_NEW = 0,    /* /.well-known/agent-card.json */
    FA_CARD_OLD,        /* only /.well-known/agent.json (0.2 agents) */
    FA_CARD_NONE,       /* 404 on both */
    FA_CARD_INVALID,    /* agent-card.json is not JSON */
    FA_CARD_NO_JSONRPC, /* the card offers gRPC only */
} fa_card;

typedef struct fa2a_opts {
    fa_dialect speaks; /* methods accepted; default FA_BOTH */
    fa_dialect card;   /* card shape: V10 supportedInterfaces, V03 url/preferredTransport,
                          BOTH a hybrid listing both; default = speaks */
    fa_card card_mode;
    int streaming;                        /* capabilities.streaming */
    const char *token;                    /* required bearer token; NULL = none */
    const char *api_key_header, *api_key; /* required API key header; NULL = none */
    int port;                             /* 0 = ephemeral */
    int chunk_delay_ms;                   /* pause between stream writes; default 5 */
    int linger_ms;                        /* keep a stream open this long after its last event */
    int dedup;          /* a task-creating send with a known messageId returns that task again */
    int refuse_streams; /* the card says streaming, stream requests get -32004 */
    /* OAuth 2.0 client credentials: POST /oauth/token (HTTP Basic client
     * auth) issues tok-N valid token_ttl_s (default 3600); JSON-RPC then
     * needs the latest valid token, else 401. The card declares the flow. */
    const char *oauth_client_id, *oauth_client_secret;
    int token_ttl_s;
    const char *required_ext; /* the card lists this extension as required */
    /* agent-card.json answers 301 to this Location; /cards/agent.json
     * serves the card */
    const char *card_redirect;
    int card_max_age; /* > 0: Cache-Control: max-age on the card (which always has an ETag) */
    /* The card offers only the 1.0 HTTP+JSON binding at <url>/rest:
     * POST /rest/message:send, /rest/message:stream, GET /rest/tasks/{id},
     * POST /rest/tasks/{id}:cancel and :subscribe, answered with the bare
     * ProtoJSON results (no JSON-RPC envelope) and errors as HTTP statuses
     * with a google.rpc.Status body carrying the ErrorInfo reason. The
     * scripts and records are those of the JSON-RPC methods. */
    int rest;
    /* The card allows push notifications; CreateTaskPushNotificationConfig
     * (1.0) and tasks/pushNotificationConfig/set (0.3) are accepted, and
     * once the task settles it is POSTed to the webhook (1.0 {"task":…},
     * 0.3 the bare Task) with Authorization "<scheme> <credentials>" and
     * X-A2A-Notification-Token: the token (a wrong one with push_bad_token). */
    int push, push_bad_token;
    int push_refuse; /* the card says push, registrations get -32003 */
} fa2a_opts;

/* One request as received. */
typedef struct fa_req {
    char method[48];
    char rpc_id[48];
    char message_id[96];
    char context_id[96];
    char task_id[96];
    char text[256];
    char a2a_version[16];
    char traceparent[96];
    char authorization[160];
    char api_key[160];
    char accept[64];
    int blocking;   /* 1 blocking, 0 non-blocking, -1 not said */
    char path[160]; /* REST: "GET /rest/tasks/..."; "" for JSON-RPC */
    /* File parts of the message (either dialect); the first one's fields */
    int nfiles;
    char file_name[64], file_mime[64], file_url[160];
    char file_data[256]; /* decoded bytes (file_len of them) */
    int file_len;        /* -1: not base64 or too long to record */
    int history_length;  /* params.historyLength (REST: the query); -1 absent */
} fa_req;

fa2a *fa2a_start(const fa2a_opts *o);
void fa2a_stop(fa2a *f);
const char *fa2a_url(fa2a *f); /* "http://127.0.0.1:PORT" */
int fa2a_port(fa2a *f);

/* Number of JSON-RPC requests so far (all methods, or method only). */
int fa2a_count(fa2a *f, const char *method);
/* Copies request i (0-based, arrival order); 0 on success. */
int fa2a_req(fa2a *f, int i, fa_req *out);
/* The last request of method (NULL = any); 0 on success. */
int fa2a_last(fa2a *f, const char *method, fa_req *out);
int fa2a_card_fetches(fa2a *f);
/* Connections the agent accepted so far. */
int fa2a_connections(fa2a *f);
/* Card requests answered 304 (If-None-Match matched the ETag). */
int fa2a_card_not_modified(fa2a *f);
/* Moves the JSON-RPC endpoint (default "/rpc"): the card names the new
 * path (and gets a new ETag), the old one answers 404. */
void fa2a_move(fa2a *f, const char *path);
/* Forgets recorded requests. */
void fa2a_clear(fa2a *f);
/* Executions of message_id's work; with NULL the highest count of any
 * messageId (1 when every message ran exactly once). */
int fa2a_executions(fa2a *f, const char *message_id);
/* Distinct messageIds whose work ran. */
int fa2a_executed_messages(fa2a *f);
/* The agent loses every conversation so far: later sends naming one of
 * those contextIds get -32602 "unknown contextId". */
void fa2a_forget_contexts(fa2a *f);
/* Out-of-band sign-in: every auth-required task completes ("done: ..."). */
void fa2a_authorize(fa2a *f);
/* Token requests so far; the last scope and audience asked for. */
int fa2a_token_requests(fa2a *f, char *scope, size_t ssz, char *audience, size_t asz);
/* The current access token stops working (the next call gets 401). */
void fa2a_revoke_token(fa2a *f);

/* Pushes sent so far; *delivered those answered 2xx, *last_status the
 * HTTP status of the last one (0: no answer). */
int fa2a_pushes(fa2a *f, int *delivered, int *last_status);

/* ---- the API of the earlier fake, kept for other areas' tests ---------- */

typedef struct fa2a fa;
enum {
    FA_CARD_V10 = 101, /* agent-card.json with supportedInterfaces (1.0) */
    FA_CARD_V03,       /* agent-card.json, 0.3 url + preferredTransport */
    FA_CARD_LEGACY,    /* only /.well-known/agent.json, 0.3 shape */
    FA_CARD_HYBRID,    /* 0.3 top level plus supportedInterfaces */
    FA_CARD_NO_RPC,    /* only a gRPC interface */
};                     /* and FA_CARD_INVALID */
#define FA_SPEAK_V10 FA_V10
#define FA_SPEAK_V03 FA_V03

/* card: FA_CARD_*; speak: FA_SPEAK_* (or both OR-ed). */
fa *fa_start(int card, int speak, int streaming);
void fa_stop(fa *f);
const char *fa_base(fa *f);
/* Recorded JSON-RPC requests, in order (card fetches are not recorded). */
int fa_count(fa *f);
int fa_get(fa *f, int i, fa_req *out);
int fa_count_method(fa *f, const char *method);

#endif
