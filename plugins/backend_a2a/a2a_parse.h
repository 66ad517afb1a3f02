/* Pure A2A protocol code: agent cards, JSON-RPC request bodies in both
 * dialects, response and stream-event parsing, task state, reply text and
 * failure classification. No I/O, no host: unit-tested and fuzzed alone. */
#ifndef A2A_PARSE_H
#define A2A_PARSE_H

#include <stddef.h>

typedef enum {
    A2A_D_UNKNOWN = 0,
    A2A_D_V10 = 1, /* A2A 1.0: SendMessage, ProtoJSON, A2A-Version: 1.0 */
    A2A_D_V03 = 2, /* A2A 0.2/0.3: message/send, kind discriminators */
} a2a_dialect;

const char *a2a_dialect_name(a2a_dialect d);

/* ---- task state --------------------------------------------------------- */

typedef enum {
    A2A_TS_NONE = 0, /* no state seen */
    A2A_TS_UNKNOWN,  /* "unknown" / TASK_STATE_UNSPECIFIED / unrecognised */
    A2A_TS_SUBMITTED,
    A2A_TS_WORKING,
    A2A_TS_INPUT_REQUIRED,
    A2A_TS_AUTH_REQUIRED,
    A2A_TS_COMPLETED,
    A2A_TS_FAILED,
    A2A_TS_CANCELED,
    A2A_TS_REJECTED,
} a2a_state;

/* Accepts "input-required", "TASK_STATE_INPUT_REQUIRED", "input_required",
 * any case. */
a2a_state a2a_state_parse(const char *s);
const char *a2a_state_name(a2a_state s); /* 0.3 spelling, "none" for NONE */
int a2a_state_terminal(a2a_state s);     /* completed, failed, canceled, rejected */
int a2a_state_interrupted(a2a_state s);  /* input-required, auth-required */

/* ---- failure classification -------------------------------------------- */

typedef enum {
    A2A_C_OK = 0,
    A2A_C_TRANSIENT,
    A2A_C_FATAL,
    A2A_C_TIMEOUT,
    A2A_C_PROTOCOL,
} a2a_class;

const char *a2a_class_name(a2a_class c); /* "transient", "fatal", ... */
/* historyLength sent with every poll (tasks/get, GetTask). */
#define A2A_POLL_HISTORY 4

/* Artifacts kept per task; more are ignored (and the reply marked cut). */
#define A2A_MAX_ARTIFACTS 256

/* JSON-RPC error code: -32603 and server-defined codes are transient;
 * client errors and A2A's -32001..-32009 are fatal. */
a2a_class a2a_classify_rpc(int code);
/* HTTP status of a failed exchange: 408, 425, 429 and 5xx are transient,
 * other 4xx fatal; 0 (no answer) is transient. */
a2a_class a2a_classify_http(long status);
/* A short user-safe name of a JSON-RPC error code ("method not found"). */
const char *a2a_rpc_code_name(int code);

enum {
    A2A_ERR_PARSE = -32700,
    A2A_ERR_INVALID_REQUEST = -32600,
    A2A_ERR_METHOD_NOT_FOUND = -32601,
    A2A_ERR_INVALID_PARAMS = -32602,
    A2A_ERR_INTERNAL = -32603,
    A2A_ERR_TASK_NOT_FOUND = -32001,
    A2A_ERR_TASK_NOT_CANCELABLE = -32002,
    A2A_ERR_PUSH_NOT_SUPPORTED = -32003,
    A2A_ERR_UNSUPPORTED_OPERATION = -32004,
    A2A_ERR_CONTENT_TYPE = -32005,
    A2A_ERR_INVALID_AGENT_RESPONSE = -32006,
    A2A_ERR_EXTENDED_CARD = -32007,
    A2A_ERR_EXTENSION_REQUIRED = -32008,
    A2A_ERR_VERSION_NOT_SUPPORTED = -32009,
};

/* ---- agent card --------------------------------------------------------- */

typedef struct a2a_card {
    char *name;
    char *url_v10; /* JSON-RPC endpoint speaking 1.0, or NULL */
    char *tenant;  /* tenant of that interface, or NULL */
    char *url_v03; /* JSON-RPC endpoint speaking 0.2/0.3, or NULL */
    a2a_dialect preferred;
    int streaming;      /* capabilities.streaming */
    int push;           /* capabilities.pushNotifications */
    int text_input;     /* defaultInputModes accepts text (or is absent) */
    int other_bindings; /* interfaces offered that are not JSON-RPC */
    char *url_rest;     /* first HTTP+JSON (REST) endpoint speaking 1.x, or NULL */
    char *tenant_rest;  /* tenant of that interface, or NULL */
    char *url_rest03;   /* first HTTP+JSON (REST) endpoint speaking 0.x, or NULL */
    /* Security, both card shapes. */
    int auth_required; /* requirements listed (or schemes without requirements) */
    int auth_bearer;   /* an HTTP bearer scheme */
    int auth_basic;    /* an HTTP basic scheme */
    int auth_oauth;    /* oauth2 / openIdConnect */
    int auth_mtls;
    char *apikey_name;     /* first apiKey scheme: header/query/cookie name */
    char *apikey_in;       /* "header", "query", "cookie" */
    char *oauth_token_url; /* oauth2 clientCredentials flow tokenUrl, or NULL */
    char *required_ext;    /* URI of the first extension marked required, or NULL */
} a2a_card;

/* Parses a card fetched from card_url (relative interface URLs resolve
 * against it). Lenient: unknown fields are ignored, both 0.3 and 1.0 shapes
 * (and hybrids) are read. Returns 0, or -1 with a reason in err (and out
 * empty, nothing to free). */
int a2a_card_parse(const char *json, size_t len, const char *card_url, a2a_card *out, char *err,
                   size_t errsz);
void a2a_card_free(a2a_card *c);

/* Resolves ref against base (absolute, scheme-relative, absolute-path or
 * relative reference). malloc()ed. */
char *a2a_url_resolve(const char *base, const char *ref);

/* ---- requests ----------------------------------------------------------- */

typedef enum {
    A2A_OP_SEND = 0,
    A2A_OP_STREAM,
    A2A_OP_GET,
    A2A_OP_CANCEL,
    A2A_OP_SUBSCRIBE,
} a2a_op;

const char *a2a_method(a2a_dialect d, a2a_op op);

/* A file sent with a message: inline bytes (sent base64) or a URL. */
typedef struct a2a_out_file {
    const char *mime, *name; /* NULL = none */
    const void *data;        /* NULL: url only */
    size_t len;
    const char *url;
} a2a_out_file;

typedef struct a2a_send {
    const char *text;
    const a2a_out_file *files; /* file parts after the text part */
    size_t nfiles;
    const char *message_id;
    const char *context_id; /* NULL or "" = none */
    const char *task_id;    /* NULL or "" = none */
    const char *tenant;     /* 1.0 only */
    int return_immediately; /* non-blocking send: the agent answers with the Task at once */
    const char *const *accepted_output_modes; /* NULL-terminated or NULL */
} a2a_send;

/* JSON-RPC request texts (malloc()ed). */
/* 1.0 ListTasks of a context (NULL = all), newest first, with a short
 * history so the task that carries a messageId can be found. */
char *a2a_build_list_tasks(const char *rpc_id, const char *context_id, const char *tenant,
                           int history_length);
/* Finds in a ListTasks response the task whose history holds a message
 * with message_id. 0 found (*task_id malloc()ed), 1 not found, -1 not a
 * usable response (err says why; JSON-RPC errors give *code). */
int a2a_list_find(const char *json, size_t len, const char *expect_id, const char *message_id,
                  char **task_id, int *code, char *err, size_t errsz);
char *a2a_build_send(a2a_dialect d, int stream, const char *rpc_id, const a2a_send *s);
char *a2a_build_task_op(a2a_dialect d, a2a_op op, const char *rpc_id, const char *task_id,
                        const char *tenant);

/* Registers a push notification config for a task: 1.0
 * CreateTaskPushNotificationConfig {taskId, url, token, authentication:
 * {scheme: "Bearer", credentials}}, 0.3 tasks/pushNotificationConfig/set
 * {taskId, pushNotificationConfig: {url, token, authentication: {schemes:
 * ["Bearer"], credentials}}}. malloc()ed. */
char *a2a_build_push_set(a2a_dialect d, const char *rpc_id, const char *task_id, const char *tenant,
                         const char *url, const char *token, const char *bearer);
/* The REST form of a2a_build_push_set's body: 1.0 POST
 * [/{tenant}]/tasks/{id}/pushNotificationConfigs with the config, 0.3
 * (v03) POST /v1/tasks/{id}/pushNotificationConfigs with {name,
 * pushNotificationConfig}. 0, or -1 on an unusable body. */
int a2a_rest_push_request(int v03, const char *rpc_body, char **path, char **body);
/* The task id a push notification body names: a 1.0 StreamResponse
 * ({"task":{"id"}}, {"statusUpdate":{"taskId"}}, ...), a 0.3 Task or
 * event, bare or as a JSON-RPC result. malloc()ed, or NULL. */
char *a2a_push_task_id(const char *json, size_t len);

/* The HTTP+JSON (REST) binding, 1.0: the request for op, derived from the
 * JSON-RPC body of the same call (a2a_build_send / a2a_build_task_op).
 * *path (malloc()ed) goes after the interface URL; *body (malloc()ed, NULL
 * for a GET) is the ProtoJSON request. 0, or -1 on an unusable body. */
int a2a_rest_request(a2a_op op, const char *rpc_body, char **path, char **body);
/* The HTTP+JSON binding of 0.3 (proto-named shapes under /v1): the
 * request for op from the 0.3 JSON-RPC body of the same call. A message
 * becomes {"request": {messageId, contextId, taskId, role: ROLE_USER,
 * content: [{text} | {file: {fileWithBytes | fileWithUri, mimeType}}]},
 * "configuration": {blocking, acceptedOutputModes}} (0.3 REST parts carry
 * no file name). 0, or -1 on an unusable body. */
int a2a_rest03_request(a2a_op op, const char *rpc_body, char **path, char **body);
/* A 0.3 REST answer (SendMessageResponse, Task or StreamResponse) in the
 * 1.0 shapes a2a_rest_wrap + a2a_rpc_parse read: "msg" -> "message",
 * "content" -> "parts", status "update" -> "message", file and data parts
 * unwrapped. malloc()ed, NULL when not JSON. */
char *a2a_rest03_normalize(const char *json, size_t len);

/* The REST form of ListTasks (GET, path after the interface URL).
 * malloc()ed; NULL for a tenant over 256 bytes. A contextId over 512
 * bytes is left out. Task ids over 512 bytes and tenants over 256 make
 * a2a_rest_request fail. */
char *a2a_rest_list_path(const char *context_id, const char *tenant, int history_length);
/* Wraps a REST answer (a bare result or stream event) as a JSON-RPC
 * response, so a2a_rpc_parse reads it. malloc()ed. */
char *a2a_rest_wrap(const char *json, size_t len);
/* A REST error body (google.rpc.Status with an A2A ErrorInfo reason, or
 * the 0.3 binding's {"code": <JSON-RPC code>, "message"}): the JSON-RPC
 * code it stands for. 0 with *code and *msg (malloc()ed,
 * may be NULL) set; -1 when the body names no known A2A error. */
int a2a_rest_error(const char *json, size_t len, int *code, char **msg);

/* ---- responses ---------------------------------------------------------- */

typedef enum {
    A2A_R_NONE = 0,
    A2A_R_MESSAGE,
    A2A_R_TASK,
    A2A_R_STATUS,   /* status update */
    A2A_R_ARTIFACT, /* artifact update */
} a2a_kind;

/* Structured data shown to users: pretty JSON cut at this many bytes. */
#define A2A_DATA_SHOWN 2000
/* Files kept per parts list (message, status, artifact); more are ignored. */
#define A2A_MAX_FILES 16
/* Choices taken from a data part {"choices": [...]}: at most this many,
 * each at most A2A_CHOICE_MAX bytes (longer or empty ones are skipped). */
#define A2A_MAX_CHOICES 16
#define A2A_CHOICE_MAX 128

/* A file part of the agent's answer: decoded bytes, or a URL. */
typedef struct a2a_file {
    char *name, *mime; /* NULL = not given */
    char *url;         /* the part's uri/url, or NULL */
    unsigned char *data;
    size_t len;  /* decoded length (also when data was dropped) */
    int dropped; /* inline bytes not kept: invalid base64 or over the cap */
} a2a_file;

/* What a parts list carries besides text. */
typedef struct a2a_media {
    a2a_file *files;
    size_t nfiles;
    char **choices; /* NULL-terminated, or NULL */
} a2a_media;

void a2a_media_free(a2a_media *m);
int a2a_media_empty(const a2a_media *m);

typedef struct a2a_artifact {
    char *id;
    char *text;      /* text of its parts, concatenated */
    size_t len, cap; /* in a track: length of text and its allocation */
    a2a_media media;
} a2a_artifact;

typedef struct a2a_result {
    a2a_kind kind;
    char *task_id, *context_id;
    a2a_state state;    /* TASK, STATUS */
    char *status_text;  /* TASK, STATUS: text of status.message */
    char *text;         /* MESSAGE: its text */
    int agent_role;     /* MESSAGE: role is agent (or absent) */
    int final;          /* STATUS (0.3): last event of the stream */
    a2a_artifact *arts; /* TASK: all artifacts; ARTIFACT: the one updated */
    size_t narts;
    int append, last_chunk; /* ARTIFACT */
    char *history_text;     /* TASK: text of the last agent message in history */
    /* Files and choices beside text, status_text and history_text. */
    a2a_media media, status_media, history_media;
} a2a_result;

typedef struct a2a_rpc {
    int is_error;
    int code;      /* error code */
    char *message; /* error message (agent text; log only, never to users) */
    char *reason;  /* 1.0 ErrorInfo reason, if any */
    a2a_result res;
} a2a_rpc;

/* Parses one JSON-RPC response (a body or one SSE event's data). When
 * expect_id is not NULL a present, non-null id must match it. Returns 0, or
 * -1 (protocol failure: not JSON, not a JSON-RPC response, id mismatch,
 * unknown result shape) with a reason in err. */
int a2a_rpc_parse(const char *json, size_t len, const char *expect_id, a2a_rpc *out, char *err,
                  size_t errsz);
void a2a_rpc_free(a2a_rpc *r);
void a2a_result_free(a2a_result *r);

/* ---- the state of one exchange, assembled from results ------------------ */

typedef struct a2a_track {
    char *task_id, *context_id;
    a2a_state state;
    char *status_text;
    a2a_artifact *arts;
    size_t narts;
    char *history_text;
    int got_message; /* the answer is a Message */
    char *message_text;
    int ended;      /* 0.3 final flag or a message: the stream is over */
    size_t updates; /* results applied */
    /* Reply cap: artifact and message text beyond max_text bytes in total
     * (0 = no cap) is dropped and `cut` set; appends stay linear. */
    size_t max_text, text_bytes;
    int cut;
    /* Files and choices beside message_text, status_text, history_text
     * (artifacts carry their own). Inline file bytes beyond max_text in
     * total are dropped (the file keeps its name and size). */
    a2a_media message_media, status_media, history_media;
    size_t file_bytes;
} a2a_track;

/* Folds a result into the track: a Task replaces the snapshot, status and
 * artifact updates change it (append adds parts to an artifact). */
void a2a_track_apply(a2a_track *t, const a2a_result *r);
void a2a_track_free(a2a_track *t);
/* The artifacts' text in order, joined by newlines; NULL if none. */
char *a2a_track_artifact_text(const a2a_track *t);
/* True once no more events are expected: a message, a terminal or
 * interrupted state, or the 0.3 final flag. */
int a2a_track_done(const a2a_track *t);

#endif
