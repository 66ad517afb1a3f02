/* Internal declarations of the telegram transport plugin. */
#ifndef TELEGRAM_H
#define TELEGRAM_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <routerd/plugin.h>

#include "curl_pool.h"
#include "telegram_parse.h"
#include "telegram_throttle.h"

enum { TG_MODE_LONGPOLL = 0, TG_MODE_WEBHOOK = 1 };
enum { TG_PM_NONE = 0, TG_PM_HTML, TG_PM_MDV2 };

typedef struct tg_media_cfg {
    int on;                /* media = on */
    int64_t max_bytes;     /* max_media_bytes */
    int64_t album_wait_ms; /* album_wait_ms */
    char *notice;          /* unsupported_notice */
} tg_media_cfg;

/* The manifest keys as cfg_bind() writes them (members named after the
 * keys; strings and lists belong to the host). read_config() derives tg_cfg
 * from it. Durations are milliseconds, enums indexes into their choices. */
typedef struct tg_keys {
    const char *token, *api_base, *ca_file;
    int mode;
    int64_t timeout, limit;
    const char *const *allowed_updates;
    int group_mode, channel_posts, edited_messages, edits;
    const char *edits_notice;
    const char *const *commands;
    int64_t buttons_max, button_label_max, buttons_expiry_s;
    int parse_mode, format, link_preview, escape_replies, reply_to_message;
    int64_t max_message_length;
    int throttle;
    int64_t throttle_chat_interval_ms, throttle_group_per_minute, throttle_global_per_s,
        edit_interval_ms;
    int typing;
    int64_t typing_interval_ms, request_timeout_s, retry_base_ms, retry_max_ms, send_retry_budget_s,
        retry_after_max_s, outbox_expiry_s, outbox_max, chat_cache_max, migrations_max,
        start_timeout_s;
    int confirm_on_stop, delete_webhook;
    const char *webhook_path, *webhook_url, *secret_token;
    int64_t max_connections;
    int drop_pending_updates, delete_webhook_on_stop, media;
    int64_t max_media_bytes;
    const char *unsupported_notice;
    int64_t album_wait_ms;
    int64_t max_unrecorded_replies;
    int send_async;
    int64_t send_concurrency;
} tg_keys;

typedef struct tg_cfg {
    tg_keys k; /* as bound; the members below are what the code uses */
    char *token;
    char *api_base; /* without trailing '/' */
    char *ca_file;  /* NULL: the system's certificate authorities */
    int mode;
    int64_t poll_timeout_s, limit;
    char *allowed_updates_json; /* JSON array text */
    int group_all, channel_posts, edited_messages;
    int parse_mode, escape_replies, reply_to_message;
    int64_t max_units;
    int throttle;
    tg_throttle_cfg throttle_cfg;
    int64_t edit_interval_ms;
    int typing;
    int64_t typing_interval_ms;
    int64_t request_timeout_ms, retry_base_ms, retry_max_ms, send_budget_ms, start_timeout_ms;
    int64_t retry_after_max_s;
    int64_t outbox_expiry_ms, outbox_max;
    int64_t chat_cache_max, migrations_max;
    int confirm_on_stop, delete_webhook;
    char *webhook_path, *webhook_url, *secret_token;
    int64_t max_connections;
    int drop_pending_updates, delete_webhook_on_stop;
    int format_markdown, link_preview; /* format = markdown; link_preview = on */
    /* Files in (telegram_media.c). */
    tg_media_cfg media;
    int edits; /* TG_EDITS_* */
    char *edits_notice;
    int64_t buttons_max, button_label_max, buttons_expiry_s;
    int64_t max_unrecorded; /* max_unrecorded_replies */
    int send_async;
    int64_t send_concurrency;
} tg_cfg;

enum { TG_EDITS_IGNORE = 0, TG_EDITS_ANSWER, TG_EDITS_NOTE };

/* An update between fetch and submit, in seq order. */
/* ABSORBED: an album part submitted with the album's first part; it is
 * skipped when it reaches the head (telegram_media.c). */
enum { TG_ITEM_RESERVED = 0, TG_ITEM_READY, TG_ITEM_DEAD, TG_ITEM_ABSORBED };
/* A message's file as fetched (or refused), kept until it is submitted:
 * back-pressure from the core does not fetch it again. */
enum { TG_F_NONE = 0, TG_F_BUSY, TG_F_DONE };
typedef struct tg_file {
    int state; /* TG_F_*: BUSY while the fetcher downloads it */
    unsigned char *data;
    size_t len;
    const char *refused; /* reason, or NULL */
    int attempts;
    int64_t first_ms, retry_at; /* monotonic ms */
    int wanted;                 /* an album's first part waits for it */
} tg_file;
typedef struct tg_item {
    int64_t seq;   /* id given to the core */
    int64_t tg_id; /* Telegram update_id */
    int state;
    tg_update u;
    tg_file file;
    int64_t seen_ms; /* when the intake first tried it (album window) */
    int orphan;      /* left the queue while BUSY: the fetcher frees it */
    int replayed;    /* from the journal at start: a backend may know its seq */
    struct tg_item *next;
} tg_item;

/* An update replayed from the journal, to recognise it if fetched again. */
typedef struct tg_replay_key {
    int64_t tg_id, chat_id, message_id;
    int kind;
} tg_replay_key;

typedef struct tg_buf {
    char *p;
    size_t len, cap;
} tg_buf;

/* Outcome of one HTTP exchange with the Bot API. */
typedef enum {
    TG_C_OK = 0,
    TG_C_RETRY_AFTER, /* 429: wait wait_ms */
    TG_C_TRANSIENT,   /* network, 5xx, non-JSON proxy page: back off */
    TG_C_CONFLICT,    /* 409 */
    TG_C_PERMANENT,   /* other 4xx */
    TG_C_UNPARSED,    /* HTTP 200 with a body that is no Bot API envelope */
    TG_C_ABORTED,     /* stopped by us */
} tg_class;

typedef struct tg_call {
    tg_class cls;
    long http;
    CURLcode cc;
    tg_resp resp; /* valid when parsed */
    int parsed;
    int64_t wait_ms;           /* RETRY_AFTER, clamped to retry_after_max_s */
    int64_t retry_after_max_s; /* the clamp, for the header callback */
    char code[16];             /* metric label: "429", "500", "network", "malformed" */
    char detail[320];
} tg_call;

typedef struct tg_series_cache tg_series_cache;
typedef struct tg_mig tg_mig;
typedef struct tg_ob tg_ob;

/* One reply to deliver (send() or the outbox). */
typedef struct tg_reply {
    int64_t chat; /* as the core names it (before migration) */
    int64_t thread, reply_to, edit_of;
    const char *text; /* sanitized UTF-8 */
    size_t len;
    int literal; /* escape for parse_mode */
    const char *cid;
    int64_t deadline;    /* monotonic ms */
    size_t skip;         /* parts of the rendered text already delivered */
    const char *markup;  /* reply_markup JSON for the last part (buttons), or NULL */
    const char *btn_ref; /* the buttons' record, told the id of the message showing them */
    int64_t *last_id;    /* when not NULL: gets the id of the last message sent or edited */
} tg_reply;

typedef struct tg_btn tg_btn;
typedef struct tg_cmds tg_cmds;

/* Webhook scale-out (telegram_shared.c). */
typedef struct tg_sh_chat {
    int64_t chat, token, renewed_ms;
    size_t inflight;
    int seen;
} tg_sh_chat;

typedef struct tg_sh_item {
    int64_t seq, chat, tg_id; /* seq -1: already handled */
} tg_sh_item;

typedef struct typing_ent typing_ent;

typedef struct tg {
    const rd_host *h;
    rd_ctx *ctx;
    tg_cfg c;
    char instance[64];
    char *url_prefix; /* <api_base>/bot<token>/ */
    int64_t token_bot_id;

    /* Identity from getMe. */
    atomic_int have_me;
    int64_t bot_id;
    char bot_username[64];

    /* Lifecycle. */
    atomic_int quiescing, closing, started;
    atomic_int final_call;   /* the last requests at stop() must not be aborted */
    atomic_int hooks_active; /* webhook requests being handled */
    pthread_t main_th, typing_th, fetch_th;
    int main_running, typing_running, fetch_running;
    pthread_mutex_t wake_mu;
    pthread_cond_t wake_cv;
    /* tg_kick() counts up; a tg_nap() that began at an older count ends.
     * napping: a nap may be waiting, so a kick must signal. */
    atomic_uint_fast64_t wake_gen;
    atomic_int napping;
    int64_t nap_ms; /* intake thread: the current back-pressure nap */

    /* HTTP. */
    struct curl_slist *json_hdr;
    easy_pool pool;
    CURLM *multi;
    CURL *poll_easy;
    /* DNS cache and TLS sessions shared by every handle: a connection
     * opened by one handle resumes the session another one made. */
    curl_share_locked share;

    /* Intake (poll thread and webhook handlers). */
    pthread_mutex_t in_mu;
    pthread_cond_t in_cv; /* an item left the RESERVED state */
    tg_item *head, *tail;
    size_t npending;
    int64_t last_seq;
    int64_t tg_offset;   /* next getUpdates offset; 0 = unknown */
    int64_t offset_sent; /* offset of the last poll that surely reached the server */
    /* The last journal commit made without a sync (kv_txn_lazy), until a
     * sync covers it: no offset confirms its updates before. 0 = none. */
    uint64_t jseq;
    char lead_key[48]; /* replicas: the lease this instance works under ("" = none) */
    atomic_llong term; /* the lease term the state was loaded in (0 = none yet) */
    int lead_paused;   /* intake thread: the lead is not current, logged */
    int full;          /* the core said RD_E_FULL */
    tg_map *recent;    /* webhook dedupe: tg update_id -> state */
    int64_t *recent_ring;
    size_t recent_pos;
    tg_replay_key *replay; /* replayed while the offset was unknown */
    size_t nreplay;
    int webhook_set;
    atomic_llong acked;       /* watermark from ack() */
    atomic_llong refused_ids; /* update ids out of range seen */
    int64_t persisted;        /* watermark written to the store */
    int64_t persisted_ms;     /* when it was last written */
    char stored_api_base[512];
    int64_t stored_bot_id;

    /* Webhook scale-out: every replica takes webhooks (telegram_shared.c). */
    int shared;
    tg_sh_chat *sh_chats; /* claimed chats */
    size_t nsh_chats;
    tg_sh_item *sh_items; /* submitted, not yet recorded as handled */
    size_t nsh_items, capsh_items;
    int64_t sh_seq;
    int sh_rescan; /* the last round claimed a chat: read again, claim none */

    /* Answered updates above the watermark (telegram_answered.c). */
    pthread_mutex_t rep_mu;
    tg_map *rep_keys; /* mix(chat, message) -> tg_rep_node list, oldest first */
    size_t nrep_nodes;
    int64_t rep_swept_ms;
    int64_t *rep_done; /* answered seqs not yet stored */
    size_t nrep_done, caprep_done;
    struct tg_rep_album *rep_albums; /* recent albums, a ring */
    size_t rep_album_pos;
    /* Replies that a kill -9 would send again, at most max_unrecorded:
     * held by sends in progress, marked but not taken, taken by the
     * persist in progress. Senders over the bound wait on rep_cv. */
    pthread_cond_t rep_cv;
    size_t rep_held, rep_unrec, rep_taking, rep_waiters;
    bool rep_kicked;    /* the intake was asked to write the marks early */
    int persist_failed; /* intake: the last watermark write failed */

    /* Sending. */
    pthread_mutex_t out_mu; /* throttle, per-chat edit state, migrations, channels */
    tg_throttle *thr;
    tg_map *chats; /* chat -> chat_state, at most chat_cache_max */
    int64_t chats_logged_ms;

    /* Group migrations (telegram_migrate.c). */
    pthread_mutex_t mig_mu;
    tg_map *mig_to, *mig_from; /* old -> tg_mig, new -> tg_mig */
    tg_mig *mig_head, *mig_tail;
    size_t nmig;
    int64_t mig_order;

    /* Outbox (telegram_outbox.c). */
    pthread_mutex_t ob_mu;
    pthread_cond_t ob_cv;
    tg_ob *ob_head, *ob_tail;
    size_t nob;
    int64_t ob_next;
    tg_map *ob_chats; /* chat -> entries waiting (intptr_t) */
    pthread_t ob_th;
    int ob_running;

    /* Typing indicators. */
    pthread_mutex_t typ_mu;
    pthread_cond_t typ_cv;
    tg_map *typing;
    typing_ent *typ_head[2], *typ_tail[2]; /* due queues, see telegram_send.c */
    unsigned typ_gen;                      /* bumped when a chat starts typing */
    int64_t typ_wake_at; /* when the waiting typing loop wakes; 0 = it is not waiting,
                           INT64_MAX = idle until woken */

    /* Metrics. */
    rd_metric *m_api_err, *m_updates, *m_ignored, *m_sent, *m_send_fail, *m_retries,
        *m_throttle_wait, *m_pending, *m_webhook, *m_resets, *m_api_seconds, *m_tracked, *m_outbox,
        *m_outbox_expired, *m_claims, *m_unrecorded, *m_record_waits;
    tg_series_cache *series;
    pthread_mutex_t series_mu;

    /* Files (telegram_media.c). */
    struct tg_media_state *media;
    int album_hold; /* intake: an update waits for its files or the rest of its album */
    rd_metric *m_media_refused, *m_media_in;
    tg_btn *btn;         /* buttons and side calls (telegram_buttons.c) */
    struct tg_async *as; /* replies on an event loop (telegram_async.c), or NULL */
    tg_cmds *cmds;       /* bot commands (telegram_commands.c) */
} tg;

/*
 * Functions by file, in the order the files build on each other: a file
 * calls only the files listed before it (test_source_no_circles checks
 * that no two files call each other). Replies: send -> deliver -> api;
 * updates: poll or webhook -> journal -> queue -> the core.
 */

/* telegram_util.c */
void tg_count(tg *t, rd_metric *m, const char *a, const char *b, double v);
void tg_gauge(tg *t, rd_metric *m, double v);
void tg_gauge_l(tg *t, rd_metric *m, const char *a, double v);
void tg_observe(tg *t, rd_metric *m, const char *a, double v);
int64_t tg_now(tg *t);
/* The CLOCK_MONOTONIC time ms from now, for pthread_cond_timedwait (the
 * plugin's condition variables run on that clock). */
struct timespec tg_deadline(int64_t ms);
/* Sleeps up to ms; returns early (nonzero) once the flag is set. */
int tg_sleep(tg *t, int64_t ms, atomic_int *flag);
/* The same, and ends early too at a tg_kick() made after wake_gen read
 * `since` (so one made while the caller was busy is not lost). */
int tg_nap(tg *t, int64_t ms, atomic_int *flag, uint64_t since);
/* Ends the intake thread's nap: the core took work or acknowledged some,
 * or marks wait to be written. */
void tg_kick(tg *t);
void tg_wake(tg *t);
int64_t tg_backoff(tg *t, int attempt);
void tg_metrics_free(tg *t);

/* telegram_api.c */
int tg_api_init(tg *t);
void tg_api_cleanup(tg *t);
/* One request (no retry). body is JSON. timeout_ms bounds the exchange. */
void tg_api_once(tg *t, CURL *c, const char *method, const char *body, int64_t timeout_ms,
                 tg_call *out);
void tg_call_free(tg_call *call);
/* Whether the error description contains needle (case-insensitive). */
int tg_desc_has(const tg_call *call, const char *needle);
CURL *tg_easy_get(tg *t);
void tg_easy_put(tg *t, CURL *c);
/* Sets up c for method/body and returns the header list to free. */
void tg_easy_setup(tg *t, CURL *c, const char *method, const char *body, int64_t timeout_ms,
                   tg_buf *buf, tg_call *out);
void tg_classify(tg *t, const char *method, tg_buf *buf, tg_call *out);
/* Retries 429 (and waits), 5xx and network errors with capped jittered
 * back-off until deadline_ms (monotonic); returns with the last outcome. */
void tg_api_call(tg *t, const char *method, const char *body, int64_t chat_id, int64_t deadline_ms,
                 tg_call *out);
/* Builds a multipart body for one attempt (curl frees it after). */
typedef curl_mime *(*tg_form_fn)(void *arg, CURL *c);
/* tg_api_call with a multipart/form-data body from form (uploads). */
void tg_api_call_form(tg *t, const char *method, const char *body, tg_form_fn form, void *arg,
                      int64_t chat_id, int64_t deadline_ms, tg_call *out);

/* telegram_migrate.c */
void tg_mig_load(tg *t);
void tg_mig_free(tg *t);
/* The id to send to for a chat the core names (old -> new). */
int64_t tg_mig_forward(tg *t, int64_t chat);
/* The id the core knows for a chat Telegram names (new -> old). */
int64_t tg_mig_back(tg *t, int64_t chat);
/* Records (persists, logs once) that group `from` became `to`. */
void tg_mig_record(tg *t, int64_t from, int64_t to, const char *how);

/* telegram_commands.c */
rd_status tg_cmds_create(tg *t, rd_error *err);
void tg_cmds_free(tg *t);
/* NULL-terminated names (no '/') this bot registers. */
const char *const *tg_cmds_names(tg *t);
/* The setMyCommands body (malloc). */
char *tg_cmds_body(tg *t);

/* telegram_answered.c: updates answered above the watermark */
#define TG_ALBUM_MAX 10 /* Telegram's album size */
/* An update went to the core as seq; its reply quotes (chat, message). */
void tg_replied_register(tg *t, int64_t chat, int64_t message, int64_t seq);
/* The submit of seq failed: its registration goes. */
void tg_replied_unregister(tg *t, int64_t chat, int64_t message, int64_t seq);
/* Before a reply quoting (chat, message) goes out. When it answers a
 * registered update, waits while max_unrecorded replies are unrecorded,
 * then holds a slot: returns the update's seq (for tg_replied_release).
 * -1: nothing to record, no slot; -2: stop ended the wait. */
int64_t tg_replied_reserve(tg *t, int64_t chat, int64_t message);
/* The same without waiting: -3 when a slot must be waited for (the intake
 * is asked to write the marks); try again later. */
int64_t tg_replied_try_reserve(tg *t, int64_t chat, int64_t message);
/* Gives back the slot reserve() held for seq, unless mark() took it over. */
void tg_replied_release(tg *t, int64_t chat, int64_t message, int64_t seq);
/* The reply quoting (chat, message) went out (or failed for good): its
 * slots count as unrecorded until the persist carrying them commits. */
void tg_replied_mark(tg *t, int64_t chat, int64_t message);
/* The album parts submitted with head: answered when head is. */
void tg_replied_album(tg *t, int64_t head, const int64_t *parts, size_t n);
/* Answered seqs waiting to be stored. */
size_t tg_replied_pending(tg *t);
/* Senders wait for a write: the next one should not wait for its tick. */
int tg_replied_urgent(tg *t);
/* Takes the answered seqs to store (malloc, *n of them) and forgets
 * registrations at or below the watermark w now and then. One persist at
 * a time: the taken ones stay unrecorded until committed or put back. */
int64_t *tg_replied_take(tg *t, int64_t w, int64_t now, size_t *n);
/* Seqs that could not be stored go back, for the next write. */
void tg_replied_put_back(tg *t, const int64_t *seqs, size_t n);
/* The taken seqs are durable: their senders' slots are free. */
void tg_replied_committed(tg *t);
void tg_replied_free(tg *t);

/* telegram_buttons.c: inline keyboards for offered choices, button presses,
 * and the calls made beside the intake (answerCallbackQuery, notices). */
rd_status tg_buttons_create(tg *t, rd_error *err);
/* The key that signs the buttons' callback data: before any update can be
 * taken (the intake thread, the webhook). */
void tg_buttons_load_key(tg *t);
rd_status tg_buttons_start(tg *t);
void tg_buttons_stop(tg *t);
void tg_buttons_free(tg *t);
/* Stores the choices and returns the reply_markup JSON (malloc) and the
 * record's ref in ref (>= 48 bytes); NULL when there are none or on error
 * (the reply then goes without buttons, logged). chat: as sent to. */
char *tg_buttons_markup(tg *t, int64_t chat, const char *const *choices, char *ref);
/* The message showing the buttons of ref is msg_id. */
void tg_buttons_shown(tg *t, const char *ref, int64_t msg_id);
/* Handles a callback_query item (verify, answer, submit or skip). */
rd_status tg_buttons_press(tg *t, tg_item *it, int64_t chat);
/* Queues the edits notice in reply to an edited message (best effort). */
void tg_edit_notice(tg *t, int64_t chat, int64_t thread, int64_t reply_to);

/* telegram_deliver.c */
/* Renders r (telegram_format.h) and sends its parts from r->skip on;
 * *done = parts delivered so far, counting the skipped ones. */
rd_status tg_deliver(tg *t, const tg_reply *r, size_t *done, rd_error *err);
/* Shows the head of out's partial text: a new message, or an edit of
 * out->edit_of (*msg_id: the message showing it). */
rd_status tg_deliver_progress(tg *t, const rd_outbound *out, int64_t *msg_id, rd_error *err);
/* Waits for the chat's and the global sending slot; nonzero when stopping. */
int tg_pace(tg *t, int64_t chat);
/* sendMessage's JSON body; ents: the text's entities (JSON array) or NULL. */
char *tg_message_body(tg *t, int64_t chat, int64_t edit_id, int64_t thread, int64_t reply_to,
                      const char *text, int pm, const char *ents, const char *markup);
/* The text as sent (escaped for parse_mode when literal); *pm: the mode. */
char *tg_format_text(tg *t, const char *s, size_t n, int literal, int *pm);
/* A send that failed for good or ran out of retries: counted, logged, err
 * filled; RD_E_FATAL (permanent) or RD_E_RETRY. */
rd_status tg_send_fail(tg *t, rd_error *err, const char *method, tg_call *call, const char *cid);
/* A reply to chat (as sent to) is through: its progress message is done. */
void tg_deliver_end(tg *t, int64_t chat);
void tg_note_chat(tg *t, int64_t chat_id, tg_chat_type type);
/* Whether chat is known to be a channel (no chat actions there). */
int tg_chat_is_channel(tg *t, int64_t chat);

/* telegram_outbox.c */
void tg_outbox_load(tg *t);
void tg_outbox_free(tg *t);
int tg_outbox_has(tg *t, int64_t chat);
/* Stores r for later delivery. after_refusal: Telegram just refused (the
 * chat's hold says when to try again); else it only queues behind earlier
 * entries. RD_OK, or an error (outbox full or off, store failing). */
rd_status tg_outbox_put(tg *t, const tg_reply *r, int after_refusal, rd_error *err);
/* After Telegram refused r past its budget (or a stop cut it): stores the
 * parts from `done` on. RD_OK with err cleared, or the put's status (err
 * keeps the refusal, or gets why the put failed when it was empty). */
rd_status tg_outbox_rest(tg *t, const tg_reply *r, size_t done, rd_error *err);
void *tg_outbox_loop(void *arg);

/* telegram_async.c: replies on an event loop (ABI 1.4, send_async) */
/* Starts the loop when send_async and the host allow it; without it (or
 * when its threads cannot start, logged) replies go out the blocking way. */
void tg_async_start(tg *t);
/* Ends the sends in flight (RD_E_RETRY once closing is set) and joins. */
void tg_async_stop(tg *t);
void tg_async_free(tg *t);
/* Takes out (a reply send() may finish later: out->done) when it is one
 * plain sendMessage, with its answered-mark slot (tg_replied_reserve(),
 * waited for on the loop). 1 taken (send() returns RD_PENDING), 0 not. */
int tg_async_take(tg *t, const rd_outbound *out);
/* Runs a chat action (the sendChatAction JSON body) on the loop: one
 * attempt, nothing waits for it, dropped when chat no longer shows typing
 * by the time it would start. 1 queued, 0 not (send it yourself). */
int tg_async_action(tg *t, int64_t chat, const char *body);
/* 1 while replies of chat taken by tg_async_take() are still going out. */
int tg_async_busy(tg *t, int64_t chat);
/* Returns once no reply of chat taken by tg_async_take() is going out: a
 * send the blocking way goes behind them. */
void tg_async_wait_chat(tg *t, int64_t chat);

/* telegram_media_out.c: files out */
/* Sends out's files (and its text, unless *text_rest comes back set: then
 * the caller sends the text, as with choices to show as buttons). */
rd_status tg_media_send(tg *t, const rd_outbound *out, int *text_rest, rd_error *err);

/* telegram_send.c */
rd_status tg_send(void *self, const rd_outbound *out, rd_error *err);
rd_status tg_progress(void *self, const rd_outbound *out, int64_t *msg_id, rd_error *err);
void tg_activity(void *self, const rd_outbound *where, int active);
void *tg_typing_loop(void *arg);
void tg_send_free(tg *t);

/* telegram_media.c: files in */
rd_status tg_media_config(tg *t, rd_error *err);
void tg_media_metrics(tg *t);
void tg_media_free(tg *t);
/* Fetches the file of a queued item into f, without in_mu (the fetcher
 * thread); 0 done (bytes or a refusal), -1 try again later. */
int tg_media_take(tg *t, const tg_item *it, tg_file *f);
/* Whether the files of `it` and of its album parts are fetched and the
 * album is complete; in_mu held. Always 1 with a shared store (files are
 * fetched inline there). */
int tg_media_ready(tg *t, tg_item *it);
/* Submits `it` with its files (and the album parts queued after it) as one
 * message; in_mu held, from tg_submit_item() once it routed `it`.
 * RD_E_FULL: not now (a download to retry inline, back-pressure);
 * anything else: done (submitted or skipped). */
rd_status tg_media_submit(tg *t, tg_item *it, rd_inbound *in);

/* telegram_queue.c: the intake queue, under in_mu */
void tg_jkey(char *buf, size_t n, int64_t seq);
enum { TG_RECENT_PENDING = 1, TG_RECENT_SUBMITTED = 2 };
/* Webhook dedupe: TG_RECENT_* of a recent update id, 0 if unknown. */
int tg_recent_get(tg *t, int64_t id);
void tg_recent_set(tg *t, int64_t id, int state);
void tg_recent_forget(tg *t, int64_t id);
/* The newest update id remembered. */
int64_t tg_recent_newest(tg *t);
/* Appends it at the tail. */
void tg_queue_push(tg *t, tg_item *it);
/* A reserved item for update tg_id with the next seq, queued. */
tg_item *tg_item_new(tg *t, int64_t tg_id);
void tg_queue_clear(tg *t);
/* Routes one update: skip() it or submit() it; RD_E_RETRY: its files or
 * album parts are not there yet. */
rd_status tg_submit_item(tg *t, tg_item *it);
/* The fetcher thread: downloads the files of queued messages. */
void *tg_fetch_loop(void *arg);
/* Submits ready items in seq order until the core pushes back (t->full). */
void tg_drain_locked(tg *t);
/* Counts and logs (now and then) an update id that is out of range. */
void tg_refuse_update_id(tg *t, const char *where, const cJSON *item);

/* telegram_journal.c: intake state in the store */
#define TG_META_KEY "meta"
/* The watermark is written on its own at most this often (each write is
 * a synced transaction), unless senders wait for their marks; the
 * journal's writes carry it in between. Under the long poll's 100 ms tick,
 * so that a tick always finds it due. */
#define TG_PERSIST_GAP_MS 90
/* How long a poll waits for the backends' synced commits to cover the
 * journal before it syncs the journal itself. */
#define TG_SYNC_WAIT_MS 5
void tg_wkey(char *buf, size_t n, int64_t tg_id);
/* The meta row (malloc). */
char *tg_meta_json(tg *t);
/* Whether the lease term the state was loaded in is still current. */
int tg_term_current(tg *t);
/* Loads the meta row and queues the journaled updates not handled yet. */
rd_status tg_journal_load(tg *t, rd_error *err);
/* Stores the handled watermark and the answered marks; prunes the journal. */
void tg_persist_acks(tg *t, int force);
/* The writes that store the watermark and the answered marks, for a
 * transaction of the caller's (the journal's, which puts the meta row that
 * carries the watermark): tg_acks_take() returns 1 with ops to add (room is
 * left after them for one of the caller's), 0 when nothing is due, -1 out
 * of memory; tg_acks_end() after the commit. */
typedef struct tg_acks {
    rd_kv_op *ops;
    size_t n;
    int64_t prev, *done;
    size_t nd;
    char (*rk)[40];
    char end[40], rend[40], wend[40];
} tg_acks;
int tg_acks_take(tg *t, tg_acks *a);
void tg_acks_end(tg *t, tg_acks *a, int committed);

/* telegram_shared.c */
int tg_shared_enabled(const tg *t);
/* Journals a webhook update for the replicas; the HTTP status to answer
 * with, its text in *text. */
int tg_shared_webhook(tg *t, cJSON *root, int64_t id, const char **text);
/* Returns nonzero when it should run again at once (a chat was claimed). */
int tg_shared_pump(tg *t);
void tg_shared_stop(tg *t);
void tg_shared_free(tg *t);

/* telegram_handshake.c */
rd_status tg_get_me(tg *t, int64_t budget_ms, rd_error *err);
/* Called from start(): a refused setWebhook is a configuration error. */
rd_status tg_start_webhook(tg *t, rd_error *err);
tg_class tg_set_webhook(tg *t, char *detail, size_t n);
void tg_delete_webhook(tg *t, int64_t budget_ms);

/* telegram_poll.c */
/* One getUpdates exchange; *attempt counts failures for the back-off. */
void tg_poll_once(tg *t, int *attempt);
/* Makes the journal durable before an offset confirms it: waits up to
 * wait_ms for another durable commit, then syncs. 0, or -1 (logged). */
int tg_journal_sync(tg *t, int64_t wait_ms);

/* telegram_webhook.c */
void tg_webhook(void *arg, const rd_http_req *req, rd_http_resp *resp);
void tg_answer(tg *t, rd_http_resp *resp, int status, int retry_after, const char *text);

/* telegram_intake.c */
void *tg_main_loop(void *arg);
void tg_intake_stop(tg *t);
void tg_intake_free(tg *t);

#endif
