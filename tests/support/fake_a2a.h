/*
 * A fake A2A agent for tests: libmicrohttpd on 127.0.0.1 (ephemeral port),
 * in-process. Serves an agent card (1.0 supportedInterfaces, 0.3 url, only
 * /.well-known/agent.json, or an invalid one) and a JSON-RPC endpoint at
 * /rpc speaking both dialects strictly (1.0 method names need
 * A2A-Version: 1.0, 0.3 names must not carry it; wrong message shapes get
 * -32602). What it answers is scripted by the message text:
 *
 *   anything else     Message "echo: <text>"
 *   task:<text>       Task working; tasks/get completes it after 2 polls
 *   forever           Task working that never ends (until canceled)
 *   ask               Task input-required "What is your name?"; the next
 *                     message on that taskId completes "Hello, <text>"
 *   fail              Task failed "I cannot do that."
 *   rpcerr:<code>     JSON-RPC error <code>
 *   http:<status>     that HTTP status, plain-text body
 *   flaky:<n>:<st>    HTTP <st> for the first n tries of that messageId
 *                     (-32603 when st is 0; 429 and 503 carry
 *                     Retry-After: 1), then Message "recovered"
 *   slow:<ms>         waits, then Message "slow done"
 *   big               a 2 MiB Message
 *   garbage           HTTP 200 with an HTML body
 *   stream:<text>     (stream method) Task, then the words of <text> as
 *                     artifact chunks, then completed; written in pieces
 *                     that split lines, CRLF and events at odd offsets
 *   streamcut         (stream method) Task working, one chunk, then the
 *                     connection closes; tasks/get then has it completed
 *   streamerr         (stream method) `event: error` after the Task
 *   streamhold:<text> (stream method) like stream:, then keeps the
 *                     connection open for 3 s after the final event
 *   badid             a Message under the wrong JSON-RPC id
 *
 * Every request is recorded.
 */
#ifndef FAKE_A2A_H
#define FAKE_A2A_H

typedef struct fa fa;

typedef enum {
    FA_CARD_V10 = 1, /* agent-card.json with supportedInterfaces (1.0) */
    FA_CARD_V03,     /* agent-card.json, 0.3 url + preferredTransport */
    FA_CARD_LEGACY,  /* only /.well-known/agent.json, 0.3 shape */
    FA_CARD_HYBRID,  /* 0.3 top level plus supportedInterfaces 1.0 */
    FA_CARD_INVALID, /* not JSON */
    FA_CARD_NO_RPC,  /* only a GRPC interface */
} fa_card;

/* Dialects the RPC endpoint accepts (others get -32601). */
#define FA_SPEAK_V10 1
#define FA_SPEAK_V03 2

typedef struct {
    char path[64];
    char method[40]; /* JSON-RPC method, "" for GET */
    char a2a_version[16];
    char authorization[160];
    char api_key[80];
    char traceparent[96];
    char accept[64];
    char message_id[96];
    char context_id[64];
    char task_id[64];
    char text[256];
} fa_req;

fa *fa_start(fa_card card, int speak, int streaming);
void fa_stop(fa *f);
const char *fa_base(fa *f); /* "http://127.0.0.1:PORT" */
/* Answer card requests with this HTTP status (0 = normal). */
void fa_card_status(fa *f, int status);
/* The card names this JSON-RPC URL instead of <base>/rpc (NULL = back). */
void fa_set_endpoint(fa *f, const char *rpc_url);
/* Answer every POST with this HTTP status (0 = normal). */
void fa_rpc_status(fa *f, int status);
/* Requests recorded so far (copy). */
int fa_count(fa *f);
int fa_get(fa *f, int i, fa_req *out);
/* How many recorded requests used this JSON-RPC method. */
int fa_count_method(fa *f, const char *method);
#endif
