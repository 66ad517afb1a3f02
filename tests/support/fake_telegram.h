/*
 * A fake Telegram Bot API server for tests: http_stub.h on 127.0.0.1,
 * in-process. It keeps an update queue with getUpdates offset semantics
 * (an offset confirms and deletes every update below it; unconfirmed ones
 * are served again; at most `limit` per call; long polls are held until an
 * update arrives or the timeout passes; a newer poll ends an older one with
 * 409), answers sendMessage / editMessageText / sendChatAction / getMe /
 * setWebhook / deleteWebhook like the real server (UTF-16 length limit,
 * getFile and /file/bot<token>/ downloads, sendPhoto / sendDocument /
 * sendVoice / sendAudio / sendVideo / sendAnimation / sendMediaGroup with
 * multipart/form-data uploads,
 * "message is not modified", reply and thread fields, explicit entities
 * checked by tg_entity_check.h), accepts numbers as
 * strings, fails on demand, and records every request.
 */
#ifndef FAKE_TELEGRAM_H
#define FAKE_TELEGRAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct ftg ftg;

typedef enum {
    FTG_FAULT_429 = 1,   /* 429 + parameters.retry_after = arg s + Retry-After header */
    FTG_FAULT_500,       /* 500 Internal Server Error (JSON) */
    FTG_FAULT_502_HTML,  /* 502 with an HTML proxy page */
    FTG_FAULT_409,       /* 409 Conflict: terminated by other getUpdates request */
    FTG_FAULT_401,       /* 401 Unauthorized */
    FTG_FAULT_403,       /* 403 Forbidden: bot was blocked by the user */
    FTG_FAULT_SLOW,      /* wait arg ms, then answer normally */
    FTG_FAULT_MALFORMED, /* HTTP 200, body is not JSON */
    FTG_FAULT_TRUNCATED, /* HTTP 200, the real JSON answer cut in half */
    FTG_FAULT_CUT,       /* the connection closes before Content-Length bytes */
    FTG_FAULT_DROP,      /* the connection closes without any answer */
    FTG_FAULT_ENTITIES,  /* 400 Bad Request: can't parse entities */
} ftg_fault;

/* Starts on 127.0.0.1 (ephemeral port). token is what /bot<token>/ must
 * carry; others get 401. Bot identity defaults to id = token prefix,
 * username "routerd_test_bot". */
ftg *ftg_start(const char *token);
void ftg_stop(ftg *f);
const char *ftg_base(ftg *f); /* "http://127.0.0.1:PORT" */
/* Connections accepted so far. */
int ftg_connections(ftg *f);
void ftg_set_bot(ftg *f, int64_t id, const char *username);
/* Answers getUpdates with timeout > 0 by holding at most this long (ms;
 * default: the requested timeout). */
void ftg_set_max_hold(ftg *f, int ms);

/* The next `count` requests of method (NULL = any method) fail with fault.
 * Entries apply in the order added. */
void ftg_fail(ftg *f, const char *method, ftg_fault fault, int arg, int count);
/* The next `count` requests of method answer HTTP status with exactly this
 * body (hostile numbers, odd error codes). */
void ftg_fail_body(ftg *f, const char *method, int status, const char *body, int count);
/* Flood control: until ms from now, every sendMessage / editMessageText to
 * chat_id (0 = any chat) answers 429 with retry_after = the seconds left. */
void ftg_flood(ftg *f, int64_t chat_id, int ms);
/* When the flood ends (monotonic ms, as ftg_rec.t_ms). */
long long ftg_flood_end(ftg *f);
/* Forgets faults not yet used. */
void ftg_clear_faults(ftg *f);
/* Every sendMessage / editMessageText to chat_id fails with code and
 * description (migrate_to != 0 adds parameters.migrate_to_chat_id). */
void ftg_chat_error(ftg *f, int64_t chat_id, int code, const char *description, int64_t migrate_to);

/* ------------------------------------------------------------------------ */
/* Updates                                                                   */

typedef struct ftg_msg {
    int64_t chat_id;       /* > 0 private, < 0 group */
    const char *chat_type; /* default: "private" or "supergroup" by sign */
    int64_t user_id;       /* default: chat_id when private, else 1000 */
    const char *username;
    const char *text;
    const char *caption;      /* instead of text */
    int64_t thread_id;        /* topic message when nonzero */
    int64_t reply_to_user_id; /* adds reply_to_message from this user */
    const char *kind;         /* "message" (default), "edited_message", "channel_post" */
    int64_t message_id;       /* default: per-chat counter */
    /* Files: raw JSON members added to the message, e.g.
     * "\"voice\":{\"file_id\":\"v1\",\"mime_type\":\"audio/ogg\"}". */
    const char *media;
    const char *media_group_id;
    /* A quote reply: reply_to_message is the bot's message with this id
     * (its text as sent, when the fake knows it); 0 = none. */
    int64_t reply_to_message_id;
} ftg_msg;

/* Queues an update; returns its update_id. */
int64_t ftg_add_message(ftg *f, const ftg_msg *m);
int64_t ftg_add_text(ftg *f, int64_t chat_id, const char *text);
/* Queues n texts under one lock (a held poll answers with all of them);
 * returns the last update_id. */
int64_t ftg_add_texts(ftg *f, int64_t chat_id, const char *const *texts, size_t n);
/* Queues {"update_id":N, <payload>}; payload like "\"callback_query\":{...}". */
int64_t ftg_add_raw(ftg *f, const char *payload);
/* Queues a button press: a callback_query from user_id on message_id of
 * chat_id carrying data; returns its update_id. The query id is
 * "cq<update_id>". answerCallbackQuery, editMessageReplyMarkup and
 * setMyCommands (commands checked like the server does) are answered and
 * recorded. */
int64_t ftg_add_callback(ftg *f, int64_t chat_id, int64_t user_id, int64_t message_id,
                         const char *data);
/* A person answering a question the bot asked: a message in chat_id
 * quoting (reply_to_message) the bot's message quoted_id; returns its
 * update_id. */
int64_t ftg_add_reply(ftg *f, int64_t chat_id, int64_t quoted_id, const char *text);
/* Presses the button labelled `label` on the bot's message message_id in
 * chat_id (as sent by sendMessage, inline keyboard), from user_id: a
 * callback_query with that button's callback_data. Returns its update_id,
 * or -1 when the message or the button is unknown. */
int64_t ftg_press_button(ftg *f, int64_t chat_id, int64_t user_id, int64_t message_id,
                         const char *label);
/* Queues {"update_id":<id_text>, <payload>} verbatim (any number, even out
 * of range), without touching the id counter. */
void ftg_add_with_id(ftg *f, const char *id_text, const char *payload);
/* Builds an update JSON (malloc) with a fresh update_id without queueing
 * it, for posting to a webhook. */
char *ftg_build_update(ftg *f, const ftg_msg *m, int64_t *update_id);
/* Ids of later updates start here (an id-space reset). */
void ftg_set_next_update_id(ftg *f, int64_t id);
size_t ftg_unconfirmed(ftg *f);
/* When a getUpdates answer last carried updates (CLOCK_MONOTONIC, µs;
 * 0 = never). */
long long ftg_last_handout_us(ftg *f);
/* The highest offset a getUpdates call carried (0 = none yet). */
int64_t ftg_confirmed_offset(ftg *f);
int ftg_polls_active(ftg *f);
/* Long polls (timeout > 0) that arrived while another client was still
 * waiting in one: two pollers of one bot at once. Should stay 0. */
int ftg_poll_overlaps(ftg *f);

/* ------------------------------------------------------------------------ */
/* What the bot sent                                                         */

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

/* A file getFile and the download route serve: file_path "files/<file_id>",
 * getFile's file_size = claimed_size (-1: the true size; -2: none, and the
 * download is chunked, without Content-Length). Downloads are recorded as
 * method "download" (without the URL); ftg_fail(f, "download", ...) takes
 * FTG_FAULT_500, FTG_FAULT_DROP and FTG_FAULT_SLOW (a slow file server). */
void ftg_add_file(ftg *f, const char *file_id, const void *data, size_t len,
                  long long claimed_size);
/* Bytes of downloads served so far (all files). */
size_t ftg_bytes_served(ftg *f);

/* One part of a multipart/form-data request with a file name (an upload). */
typedef struct ftg_part {
    char field[32]; /* form field: "photo", "file0", ... */
    char filename[128];
    char type[96]; /* Content-Type of the part */
    unsigned char *data;
    size_t len;
} ftg_part;

typedef struct ftg_rec {
    char method[32];
    int status; /* HTTP status answered */
    int64_t chat_id;
    int64_t message_id; /* sendMessage: assigned; editMessageText: edited */
    int64_t reply_to;   /* reply_parameters.message_id or reply_to_message_id */
    int allow_without_reply;
    int64_t thread_id;
    char *text;
    char *parse_mode;
    char *body;                /* the request body as received */
    long long t_ms;            /* monotonic ms at arrival */
    long long t_us;            /* the same in microseconds (latency benchmarks) */
    char *entities;            /* the "entities" array as JSON text; NULL = none */
    int link_preview_disabled; /* link_preview_options.is_disabled */
    /* sendPhoto & co: text is the caption, entities caption_entities. */
    ftg_part *parts; /* uploaded files, in order */
    size_t nparts;
    char *media;        /* sendMediaGroup: the "media" field */
    char *reply_markup; /* "reply_markup" as JSON text (inline keyboards); NULL = none */
} ftg_rec;

/* Copies of the records of method (NULL = all) in arrival order; only
 * those answered 200 when ok_only. Free with ftg_recs_free. */
size_t ftg_records(ftg *f, const char *method, int ok_only, ftg_rec **out);
void ftg_recs_free(ftg_rec *r, size_t n);
/* Waits for the nth message (from 0) delivered to chat by sendMessage;
 * returns a copy (free with ftg_recs_free(r, 1)) or NULL after timeout_ms. */
ftg_rec *ftg_wait_sent(ftg *f, int64_t chat, size_t nth, int timeout_ms);
/* Requests of method answered 200 (ok_only) or in total. */
size_t ftg_count(ftg *f, const char *method, int ok_only);
/* Requests of any method answered 200 that carried exactly this text. */
size_t ftg_count_text(ftg *f, const char *text);
/* Waits until ftg_count(method, 1) >= n; returns the count reached. */
size_t ftg_wait_count(ftg *f, const char *method, size_t n, int timeout_ms);
/* The bot's replies to a burst of "c<C>-m<K>" messages from chats base + C
 * (C < chats, K < per_chat) through an echoing backend: first replies
 * counted once, repeats and other texts apart, and whether each chat's
 * first replies came in K order. */
typedef struct ftg_tally {
    int answered, duplicates, foreign, order_ok;
    int partials; /* ftg_tally_answers: the partial answer's text seen */
} ftg_tally;
void ftg_tally_echoes(ftg *f, int64_t base, int chats, int per_chat, ftg_tally *t);
/* The same with partial answers shown: texts equal to partial (sent or
 * edited in) are counted apart, and a reply may be the edit of one. */
void ftg_tally_answers(ftg *f, int64_t base, int chats, int per_chat, const char *partial,
                       ftg_tally *t);
/* Waits until n messages are answered; returns the count reached. */
int ftg_wait_echoes(ftg *f, int64_t base, int chats, int per_chat, int n, int timeout_ms);
/* The webhook URL / secret set by setWebhook ("" when none). */
void ftg_webhook_info(ftg *f, char *url, size_t un, char *secret, size_t sn);

#endif
