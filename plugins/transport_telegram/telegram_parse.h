/*
 * Pure helpers of the telegram transport: Bot API JSON, updates, addressing
 * in groups, UTF-16 aware splitting, markup escaping. No host, no I/O, no
 * globals, so unit tests and fuzzers call them directly.
 */
#ifndef TELEGRAM_PARSE_H
#define TELEGRAM_PARSE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Integers from the network                                                 */
/*
 * Every integer the Bot API sends fits in 53 bits (it promises ids that a
 * double holds exactly), so anything beyond is refused: +1 on an update id
 * and seconds-to-milliseconds on a delay then never overflow.
 */

#define TG_ID_MAX INT64_C(9007199254740991) /* 2^53 - 1 */
/* Ids given to the core stay below this, with room for the +1s. */
#define TG_SEQ_MAX (INT64_MAX / 4)
/* Longest retry_after the parser keeps, seconds (a week); the manifest's
 * retry_after_max_s clamps further. */
#define TG_RETRY_AFTER_MAX_S INT64_C(604800)

/* Checked arithmetic: 1 and the result in *out, or 0 on overflow. */
static inline int tg_add_ok(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline int tg_mul_ok(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline int64_t tg_clamp(int64_t v, int64_t lo, int64_t hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* update_id: 0 .. TG_ID_MAX. */
int tg_valid_update_id(int64_t v);
/* chat ids: nonzero, |v| <= TG_ID_MAX (groups and channels are negative). */
int tg_valid_chat_id(int64_t v);
/* message, thread and user ids: 1 .. TG_ID_MAX. */
int tg_valid_pos_id(int64_t v);
/* Seconds to milliseconds, clamped to [0, max_s]; *clamped set when the
 * input was out of range. */
int64_t tg_secs_to_ms(int64_t s, int64_t max_s, int *clamped);
/* A store key "<tag>/" and v (below 0: 0) in 19 zero-padded digits, so the
 * keys sort as the numbers do: what "%c/%019lld" prints, written by hand
 * (a few per message). Cut to n-1 bytes like snprintf. */
void tg_key19(char *buf, size_t n, char tag, int64_t v);
/* Metric label for a Bot API error code or HTTP status: one of a fixed set
 * ("400", "429", "5xx"...), "other" for anything else. */
const char *tg_code_label(int64_t code);

/* ------------------------------------------------------------------------ */
/* JSON with exact 64-bit integers                                           */

/* Parses JSON like cJSON_ParseWithLength, but integer literals too long to
 * be exact as a double (more than 15 digits) are turned into strings first,
 * so tg_json_i64() reads them exactly. NULL on a syntax error. */
cJSON *tg_json_parse(const char *text, size_t len);

/* Reads an integer from a number (integral, |v| <= 2^53) or a string of
 * decimal digits (any int64). Returns 1 and sets *out, or 0. */
int tg_json_i64_value(const cJSON *item, int64_t *out);
int tg_json_i64(const cJSON *obj, const char *key, int64_t *out);

/* Where the objects of the top-level object's "result" array lie in text
 * (valid JSON, as tg_json_parse() took it): element i is text[off[i]] to
 * text[off[i] + len[i]]. Returns the count (at most max), or -1 when
 * there are more, an element is not an object, or the text is not laid
 * out so (no such array, broken text). Keeps each update of a batch as
 * sent, without printing the parsed tree again. */
int tg_json_result_spans(const char *text, size_t n, size_t *off, size_t *len, int max);

/* ------------------------------------------------------------------------ */
/* Bot API response envelope                                                 */

typedef struct tg_resp {
    int ok;             /* "ok": true */
    int64_t error_code; /* 0 when absent */
    char description[256];
    int64_t retry_after;     /* parameters.retry_after, seconds, clamped to
                              * [0, TG_RETRY_AFTER_MAX_S]; 0 = none */
    int64_t retry_after_raw; /* as sent (for the log when clamped) */
    int64_t migrate_to;      /* parameters.migrate_to_chat_id (a valid
                              * supergroup id); 0 = none */
    cJSON *root;             /* owned */
    const cJSON *result;     /* borrowed from root; NULL when absent */
} tg_resp;

/* 0 when body is a Bot API envelope (an object with a boolean "ok"),
 * -1 otherwise (r is then empty and needs no free). */
int tg_resp_parse(const char *body, size_t len, tg_resp *r);
void tg_resp_free(tg_resp *r);

/* ------------------------------------------------------------------------ */
/* Updates                                                                   */

typedef enum {
    TG_UPD_MESSAGE = 0,
    TG_UPD_EDITED_MESSAGE,
    TG_UPD_CHANNEL_POST,
    TG_UPD_EDITED_CHANNEL_POST,
    TG_UPD_CALLBACK_QUERY, /* a button press: chat and message of the button's message */
    TG_UPD_OTHER,          /* any other payload: acknowledged and counted */
    TG_UPD__COUNT
} tg_kind;

typedef enum {
    TG_CHAT_UNKNOWN = 0,
    TG_CHAT_PRIVATE,
    TG_CHAT_GROUP,
    TG_CHAT_SUPERGROUP,
    TG_CHAT_CHANNEL,
} tg_chat_type;

typedef struct tg_update {
    int64_t update_id;
    tg_kind kind;
    int invalid;      /* message-like payload without a usable chat */
    char payload[32]; /* payload key, e.g. "callback_query" */
    int64_t chat_id;  /* message-like kinds only */
    tg_chat_type chat_type;
    int64_t user_id; /* from.id, else sender_chat.id, else 0 */
    int from_is_bot;
    int64_t message_id;
    int64_t thread_id;        /* only for topic messages (is_topic_message) */
    int64_t reply_to_user_id; /* from.id of the message replied to; 0 = none */
    /* The message this one answers: reply_to_message.message_id, or for a
     * button press the message carrying the button; 0 = none. */
    int64_t reply_to_id;
    int64_t migrate_to;   /* service message: this group became that supergroup */
    int64_t migrate_from; /* service message: this supergroup was that group */
    char *text;           /* malloc()ed text or caption; NULL = none */
    size_t text_len;
    int is_caption;
    char username[40];   /* from.username (may be empty) */
    char first_name[72]; /* from.first_name, cut at a character boundary */
    char language[16];   /* from.language_code */
    /* The file it carries (telegram_attach.h); NULL = none. */
    struct tg_media *media;
    /* callback_query: its id (for answerCallbackQuery) and data; empty
     * when absent or longer than Telegram allows (64 bytes). */
    char cb_id[72];
    char cb_data[72];
} tg_update;

/* Reads one update object. Returns 0 (kind may be TG_UPD_OTHER or invalid
 * set) or -1 when it is not an update at all (no integer update_id, or one
 * outside 0 .. TG_ID_MAX). Ids out of range read as 0 (none); a chat id out
 * of range makes the update invalid. */
int tg_update_parse(const cJSON *u, tg_update *out);
void tg_update_free(tg_update *u);
const char *tg_kind_name(tg_kind k);
const char *tg_chat_type_name(tg_chat_type t);

/* ------------------------------------------------------------------------ */
/* Addressing: which updates go to the router, with what text                */

typedef struct tg_route_cfg {
    const char *bot_username; /* without '@'; may be NULL before getMe */
    int64_t bot_id;
    int group_all;       /* group_mode = all */
    int channel_posts;   /* forward channel posts */
    int edited_messages; /* forward edits */
    /* Commands registered for this bot (names without '/', NULL-terminated);
     * in groups a plain /cmd of another name is not addressed. NULL = any. */
    const char *const *commands;
} tg_route_cfg;

typedef struct tg_routed {
    char *text; /* malloc()ed, mention / @botname suffix stripped */
    size_t len;
    uint32_t flags; /* RD_MSG_* */
} tg_routed;

/* NULL when the update should be submitted (out filled, caller frees
 * out->text), otherwise a static reason for host->skip(). */
const char *tg_route(const tg_update *u, const tg_route_cfg *c, tg_routed *out);

/* The meta JSON handed to the core with an update (malloc). */
char *tg_inbound_meta(const tg_update *u, int64_t update_id);

/* Whether text mentions @username as a whole word (case-insensitive). */
int tg_mentions(const char *text, size_t len, const char *username);

/* ------------------------------------------------------------------------ */
/* Text: UTF-8 repair, UTF-16 lengths, splitting, escaping                   */

/* A copy with invalid UTF-8 and NUL bytes replaced by U+FFFD. */
char *tg_utf8_sanitize(const char *s, size_t len, size_t *out_len);
/* UTF-16 code units of UTF-8 text (invalid bytes count one each). */
size_t tg_utf16_len(const char *s, size_t len);
/* Whether the text is empty or only whitespace (Telegram rejects it). */
int tg_is_blank(const char *s, size_t len);

typedef struct tg_chunk {
    size_t off, len; /* byte range in the input */
} tg_chunk;

/* Cuts text into chunks of at most max_units UTF-16 code units each,
 * preferring paragraph, line, sentence and word boundaries and never cutting
 * a UTF-8 sequence or a surrogate pair (nor, where avoidable, a grapheme
 * cluster). The chunks cover the input exactly, in order. Returns the count
 * and a malloc()ed array in *out (NULL and 0 for empty text). */
size_t tg_split(const char *text, size_t len, size_t max_units, tg_chunk **out);

/* Escapes plain text for parse_mode MarkdownV2 / HTML. malloc()ed. */
char *tg_escape_markdown_v2(const char *s, size_t len, size_t *out_len);
char *tg_escape_html(const char *s, size_t len, size_t *out_len);

/* Constant-time comparison of two NUL-free strings of any length. */
int tg_secret_equal(const char *a, const char *b);

#endif
