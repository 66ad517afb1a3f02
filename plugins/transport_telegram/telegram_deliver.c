/*
 * Delivery to the Bot API: sendMessage (split by UTF-16 units),
 * editMessageText for progressive replies, outbound pacing, what the
 * transport remembers per chat, and the handling of Telegram's permanent
 * errors (migration, markup, threads). send(), the outbox and the media
 * notice deliver text through here.
 */
#include "telegram.h"
#include "telegram_format.h"
#include "hash_mix.h"
#include "sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What the transport remembers of a chat: at most chat_cache_max of them;
 * past that the idle ones are forgotten (the cost is one extra edit or one
 * refused chat action, never a lost reply). */
typedef struct chat_state {
    int is_channel;     /* no chat actions in channels */
    int64_t edit_msg;   /* message shown by progress() */
    int64_t edit_ms;    /* when it was last edited */
    uint64_t edit_hash; /* text it shows */
    int64_t used_ms;    /* last use, for eviction */
} chat_state;

/* Chats unused this long go first when the cache is full. */
#define CHAT_IDLE_MS 60000

static uint64_t text_hash(const char *s, size_t n) {
    return hash_fnv1a(HASH_FNV1A_SEED, s, n) ^ n;
}

typedef struct evict_arg {
    int64_t before;
    size_t n;
} evict_arg;

static int evict_idle(void *arg, int64_t key, void *val) {
    (void)key;
    evict_arg *a = arg;
    chat_state *s = val;
    if (s->used_ms >= a->before) return 0;
    free(s);
    a->n++;
    return 1;
}

/* Caller holds out_mu. Idle chats first; if the cache is still full, all
 * but those used in the last second. */
static void chats_evict(tg *t, int64_t now) {
    evict_arg a = {.before = now - CHAT_IDLE_MS, .n = 0};
    tg_map_sweep(t->chats, evict_idle, &a);
    if (tg_map_count(t->chats) >= (size_t)t->c.chat_cache_max) {
        a.before = now - 1000;
        tg_map_sweep(t->chats, evict_idle, &a);
    }
    if (now - t->chats_logged_ms >= 60000) {
        t->chats_logged_ms = now;
        t->h->log(t->ctx, RD_LOG_INFO,
                  "chat_cache_max (%lld) reached: %zu idle chats forgotten (their next reply may "
                  "edit or announce once more)",
                  (long long)t->c.chat_cache_max, a.n);
    }
    tg_gauge_l(t, t->m_tracked, "chats", (double)tg_map_count(t->chats));
}

/* Caller holds out_mu. */
static chat_state *state_of(tg *t, int64_t chat, int create) {
    chat_state *s = tg_map_get(t->chats, chat);
    int64_t now = tg_now(t);
    if (s) {
        s->used_ms = now;
        return s;
    }
    if (!create) return NULL;
    if (tg_map_count(t->chats) >= (size_t)t->c.chat_cache_max) chats_evict(t, now);
    if (tg_map_count(t->chats) >= (size_t)t->c.chat_cache_max) return NULL;
    if ((s = calloc(1, sizeof *s)) && tg_map_put(t->chats, chat, s) != 0) {
        free(s);
        s = NULL;
    }
    if (s) s->used_ms = now;
    tg_gauge_l(t, t->m_tracked, "chats", (double)tg_map_count(t->chats));
    return s;
}

void tg_note_chat(tg *t, int64_t chat_id, tg_chat_type type) {
    pthread_mutex_lock(&t->out_mu);
    chat_state *s = state_of(t, chat_id, 1);
    if (s) s->is_channel = type == TG_CHAT_CHANNEL;
    pthread_mutex_unlock(&t->out_mu);
}

int tg_chat_is_channel(tg *t, int64_t chat) {
    pthread_mutex_lock(&t->out_mu);
    chat_state *s = state_of(t, chat, 0);
    int channel = s && s->is_channel;
    pthread_mutex_unlock(&t->out_mu);
    return channel;
}

/* Waits for this chat's slot and then the global one. With may_skip it
 * returns 1 instead of waiting when the chat is busy (partial answers: the
 * next one carries newer text anyway). */
static int pace(tg *t, int64_t chat, int may_skip) {
    int64_t now = tg_now(t), t0 = now;
    pthread_mutex_lock(&t->out_mu);
    int64_t at = tg_throttle_chat_peek(t->thr, chat, now);
    if (may_skip && at > now + 20) {
        pthread_mutex_unlock(&t->out_mu);
        return 1;
    }
    at = tg_throttle_chat(t->thr, chat, now);
    pthread_mutex_unlock(&t->out_mu);
    if (at > now && tg_sleep(t, at - now, &t->closing)) return 1;
    now = tg_now(t);
    pthread_mutex_lock(&t->out_mu);
    at = tg_throttle_global(t->thr, now);
    pthread_mutex_unlock(&t->out_mu);
    if (at > now && tg_sleep(t, at - now, &t->closing)) return 1;
    if (t->c.throttle) tg_observe(t, t->m_throttle_wait, NULL, (double)(tg_now(t) - t0) / 1000.0);
    return 0;
}

static const char *pm_name(int pm) {
    return pm == TG_PM_HTML ? "HTML" : pm == TG_PM_MDV2 ? "MarkdownV2" : NULL;
}

/* ents: the text's entities as a JSON array (telegram_format.c), or NULL.
 * One per message sent: written as text, without a JSON tree. */
char *tg_message_body(tg *t, int64_t chat, int64_t edit_id, int64_t thread, int64_t reply_to,
                      const char *text, int pm, const char *ents, const char *markup) {
    sbuf b = {0};
    sbuf_puts(&b, "{\"chat_id\":");
    sbuf_i64(&b, chat);
    if (edit_id) {
        sbuf_puts(&b, ",\"message_id\":");
        sbuf_i64(&b, edit_id);
    }
    sbuf_json_field(&b, ",\"text\":", text);
    if (pm_name(pm)) sbuf_json_field(&b, ",\"parse_mode\":", pm_name(pm));
    if (ents && pm == TG_PM_NONE) {
        sbuf_puts(&b, ",\"entities\":");
        sbuf_puts(&b, ents);
    }
    if (!t->c.link_preview) sbuf_puts(&b, ",\"link_preview_options\":{\"is_disabled\":true}");
    if (!edit_id && thread) {
        sbuf_puts(&b, ",\"message_thread_id\":");
        sbuf_i64(&b, thread);
    }
    /* The user may have deleted the message replied to meanwhile. */
    if (!edit_id && reply_to)
        sbuf_printf(&b,
                    ",\"reply_parameters\":{\"message_id\":%lld,"
                    "\"allow_sending_without_reply\":true}",
                    (long long)reply_to);
    if (markup) {
        sbuf_puts(&b, ",\"reply_markup\":");
        sbuf_puts(&b, markup);
    }
    sbuf_putc(&b, '}');
    return sbuf_take(&b, NULL);
}

/* The text as sent: escaped for parse_mode when it must show literally. */
char *tg_format_text(tg *t, const char *s, size_t n, int literal, int *pm) {
    *pm = t->c.parse_mode;
    if (*pm == TG_PM_NONE || !literal) {
        char *c = malloc(n + 1);
        if (c) {
            memcpy(c, s, n);
            c[n] = 0;
        }
        return c;
    }
    return *pm == TG_PM_HTML ? tg_escape_html(s, n, NULL) : tg_escape_markdown_v2(s, n, NULL);
}

rd_status tg_send_fail(tg *t, rd_error *err, const char *method, tg_call *call, const char *cid) {
    rd_status st;
    const char *reason;
    if (call->cls == TG_C_PERMANENT) {
        st = RD_E_FATAL;
        reason = call->code;
    } else if (call->cls == TG_C_ABORTED) {
        st = RD_E_RETRY;
        reason = "aborted";
    } else {
        st = RD_E_RETRY;
        reason = "retries_exhausted";
    }
    tg_count(t, t->m_send_fail, reason, NULL, 1);
    t->h->log(t->ctx, st == RD_E_FATAL ? RD_LOG_ERROR : RD_LOG_WARN, "%s failed%s%s: %s%s", method,
              cid ? " for " : "", cid ? cid : "", call->detail,
              st == RD_E_FATAL ? " (permanent, not retried)" : "");
    t->h->error(err, st, st == RD_E_FATAL ? "fatal" : "transient", "telegram %s: %s", method,
                call->detail);
    return st;
}

typedef struct send_args {
    int64_t chat, thread, reply_to;
    const char *text; /* raw chunk */
    size_t len;
    int literal;        /* escape for parse_mode */
    int plain;          /* never use parse_mode (partial progress text) */
    const char *ents;   /* entities JSON for the text, or NULL */
    const char *markup; /* reply_markup JSON, or NULL */
    int64_t deadline;
    const char *cid;
    int may_skip; /* a partial answer: not sent (RD_OK, no id) if the chat is busy */
} send_args;

/* sendMessage with the fallbacks Telegram's 400s call for. */
static rd_status send_one(tg *t, send_args *a, int64_t *msg_id, rd_error *err) {
    int pm;
    char *text = tg_format_text(t, a->text, a->len, a->literal, &pm);
    if (a->plain && pm != TG_PM_NONE) {
        free(text);
        text = tg_format_text(t, a->text, a->len, 0, &pm);
        pm = TG_PM_NONE;
    }
    int64_t chat = a->chat, thread = a->thread, reply_to = a->reply_to;
    const char *ents = a->plain ? NULL : a->ents;
    const char *markup = a->markup;
    int migrated = 0;
    rd_status st = RD_E_INTERNAL;
    for (int round = 0; round < 5 && text; round++) {
        char *body = tg_message_body(t, chat, 0, thread, reply_to, text, pm, ents, markup);
        if (!body || pace(t, chat, a->may_skip)) {
            int skipped = body && a->may_skip && !atomic_load(&t->closing);
            free(body);
            if (skipped) { /* the next partial answer tries again */
                st = RD_OK;
                break;
            }
            tg_call c = {.cls = TG_C_ABORTED};
            snprintf(c.detail, sizeof c.detail, "aborted at shutdown");
            st = tg_send_fail(t, err, "sendMessage", &c, a->cid);
            break;
        }
        tg_call call;
        tg_api_call(t, "sendMessage", body, chat, a->deadline, &call);
        free(body);
        if (call.cls == TG_C_OK || call.cls == TG_C_UNPARSED) {
            /* HTTP 200 with an unreadable body: Telegram took it; sending
             * again would duplicate the message. */
            if (call.cls == TG_C_UNPARSED)
                t->h->log(t->ctx, RD_LOG_WARN, "sendMessage: %s; counted as delivered",
                          call.detail);
            int64_t id = 0;
            if (call.parsed &&
                !(tg_json_i64(call.resp.result, "message_id", &id) && tg_valid_pos_id(id)))
                id = 0; /* no progress edits to an id out of range */
            if (msg_id) *msg_id = id;
            tg_count(t, t->m_sent, "sendMessage", NULL, 1);
            tg_call_free(&call);
            st = RD_OK;
            break;
        }
        if (call.cls == TG_C_PERMANENT) {
            if (call.parsed && call.resp.migrate_to && !migrated) {
                tg_mig_record(t, chat, call.resp.migrate_to, "sendMessage answered");
                chat = call.resp.migrate_to;
                migrated = 1;
                tg_call_free(&call);
                continue;
            }
            if (pm != TG_PM_NONE && tg_desc_has(&call, "can't parse entities")) {
                t->h->log(t->ctx, RD_LOG_WARN,
                          "sendMessage: %s; sending this part as plain text instead", call.detail);
                free(text);
                text = tg_format_text(t, a->text, a->len, 0, &pm);
                pm = TG_PM_NONE;
                tg_call_free(&call);
                continue;
            }
            if (ents && (tg_desc_has(&call, "entit") || tg_desc_has(&call, "url"))) {
                t->h->log(t->ctx, RD_LOG_WARN,
                          "sendMessage: %s; sending this part without formatting", call.detail);
                ents = NULL;
                tg_call_free(&call);
                continue;
            }
            if (markup && (tg_desc_has(&call, "button") || tg_desc_has(&call, "markup") ||
                           tg_desc_has(&call, "keyboard"))) {
                t->h->log(t->ctx, RD_LOG_WARN,
                          "sendMessage: %s; sending this reply without its buttons", call.detail);
                markup = NULL;
                tg_call_free(&call);
                continue;
            }
            if (thread && tg_desc_has(&call, "thread not found")) {
                thread = 0;
                tg_call_free(&call);
                continue;
            }
            if (reply_to && tg_desc_has(&call, "replied not found")) {
                reply_to = 0;
                tg_call_free(&call);
                continue;
            }
        }
        st = tg_send_fail(t, err, "sendMessage", &call, a->cid);
        tg_call_free(&call);
        break;
    }
    free(text);
    return st;
}

enum { EDIT_FINAL = 0, EDIT_PROGRESS = 1 };

/* editMessageText. FINAL waits for pacing and retries; PROGRESS is best
 * effort and may skip (RD_OK then too: *applied, when given, says whether
 * the message now shows the text). "message is not modified" counts as
 * success. */
static rd_status edit_one(tg *t, int64_t chat, int64_t msg, const char *s, size_t n, int literal,
                          const char *ents, const char *markup, int how, int64_t deadline,
                          const char *cid, int *applied, rd_error *err) {
    if (applied) *applied = 0;
    int pm;
    char *text = tg_format_text(t, s, n, literal, &pm);
    if (how == EDIT_PROGRESS && pm != TG_PM_NONE) {
        free(text);
        text = tg_format_text(t, s, n, 0, &pm);
        pm = TG_PM_NONE;
    }
    if (!text) {
        t->h->error(err, RD_E_INTERNAL, "fatal", "out of memory");
        return RD_E_INTERNAL;
    }
    rd_status st = RD_OK;
    for (int round = 0; round < 2; round++) {
        if (pace(t, chat, how == EDIT_PROGRESS)) {
            free(text);
            return how == EDIT_PROGRESS ? RD_OK : RD_E_RETRY;
        }
        char *body = tg_message_body(t, chat, msg, 0, 0, text, pm, ents, markup);
        tg_call call;
        if (how == EDIT_PROGRESS) {
            CURL *c = tg_easy_get(t);
            memset(&call, 0, sizeof call);
            call.cls = TG_C_TRANSIENT;
            if (c) tg_api_once(t, c, "editMessageText", body, t->c.request_timeout_ms, &call);
            tg_easy_put(t, c);
            if (call.cls == TG_C_RETRY_AFTER) {
                pthread_mutex_lock(&t->out_mu);
                tg_throttle_hold(t->thr, chat, tg_now(t) + call.wait_ms);
                pthread_mutex_unlock(&t->out_mu);
            }
        } else {
            tg_api_call(t, "editMessageText", body, chat, deadline, &call);
        }
        free(body);
        if (call.cls == TG_C_OK || call.cls == TG_C_UNPARSED ||
            tg_desc_has(&call, "message is not modified")) {
            if (applied) *applied = 1;
            tg_count(t, t->m_sent, "editMessageText", NULL, 1);
            tg_call_free(&call);
            st = RD_OK;
            break;
        }
        if (call.cls == TG_C_PERMANENT && ents &&
            (tg_desc_has(&call, "entit") || tg_desc_has(&call, "url"))) {
            ents = NULL;
            tg_call_free(&call);
            continue;
        }
        if (call.cls == TG_C_PERMANENT && pm != TG_PM_NONE &&
            tg_desc_has(&call, "can't parse entities")) {
            free(text);
            text = tg_format_text(t, s, n, 0, &pm);
            pm = TG_PM_NONE;
            tg_call_free(&call);
            if (!text) return RD_E_INTERNAL;
            continue;
        }
        if (how == EDIT_PROGRESS) {
            t->h->log(t->ctx, RD_LOG_DEBUG, "progress edit skipped: %s", call.detail);
            st = RD_OK;
        } else {
            t->h->log(t->ctx, RD_LOG_WARN, "editMessageText%s%s: %s; sending a new message",
                      cid ? " for " : "", cid ? cid : "", call.detail);
            st = call.cls == TG_C_PERMANENT ? RD_E_FATAL : RD_E_RETRY;
            t->h->error(err, st, "transient", "editMessageText: %s", call.detail);
        }
        tg_call_free(&call);
        break;
    }
    free(text);
    return st;
}

rd_status tg_deliver(tg *t, const tg_reply *r, size_t *done, rd_error *err) {
    int64_t chat = tg_mig_forward(t, r->chat);
    /* Replies and notices alike: Markdown to entities unless a parse_mode
     * or format = plain says otherwise. */
    tg_part *ch = NULL;
    size_t n = tg_format(r->text, r->len, t->c.format_markdown && t->c.parse_mode == TG_PM_NONE,
                         (size_t)t->c.max_units, &ch);
    *done = r->skip;
    int64_t edit = r->edit_of;
    uint64_t shown = 0;
    if (edit) {
        pthread_mutex_lock(&t->out_mu);
        chat_state *s = state_of(t, chat, 0);
        if (s && s->edit_msg == edit) shown = s->edit_hash;
        pthread_mutex_unlock(&t->out_mu);
    }
    rd_status st = RD_OK;
    int sent = 0;
    for (size_t i = r->skip; i < n && st == RD_OK; i++) {
        const char *p = ch[i].text;
        size_t l = ch[i].len;
        if (tg_is_blank(p, l)) {
            *done = i + 1;
            continue;
        }
        char *ents = tg_entities_json(&ch[i]);
        /* Buttons go with the last part. */
        const char *markup = i + 1 == n ? r->markup : NULL;
        if (edit) {
            int64_t m = edit;
            edit = 0;
            /* The progress message already shows exactly this. */
            if (t->c.parse_mode == TG_PM_NONE && !ents && !markup && shown &&
                shown == text_hash(p, l)) {
                if (r->last_id) *r->last_id = m;
                sent = 1;
                *done = i + 1;
                free(ents);
                continue;
            }
            rd_error e2 = {0};
            if (edit_one(t, chat, m, p, l, r->literal, ents, markup, EDIT_FINAL, r->deadline,
                         r->cid, NULL, &e2) == RD_OK) {
                if (markup) tg_buttons_shown(t, r->btn_ref, m);
                if (r->last_id) *r->last_id = m;
                sent = 1;
                *done = i + 1;
                free(ents);
                continue;
            }
        }
        send_args a = {.chat = chat,
                       .thread = r->thread,
                       .reply_to = !sent && t->c.reply_to_message ? r->reply_to : 0,
                       .text = p,
                       .len = l,
                       .literal = r->literal,
                       .ents = ents,
                       .markup = markup,
                       .deadline = r->deadline,
                       .cid = r->cid};
        int64_t id = 0;
        st = send_one(t, &a, &id, err);
        free(ents);
        if (st == RD_OK && markup) tg_buttons_shown(t, r->btn_ref, id);
        if (st == RD_OK) {
            if (r->last_id) *r->last_id = id;
            sent = 1;
            *done = i + 1;
        }
    }
    tg_deliver_end(t, chat);
    tg_parts_free(ch, n);
    return st;
}

void tg_deliver_end(tg *t, int64_t chat) {
    pthread_mutex_lock(&t->out_mu);
    chat_state *s = state_of(t, chat, 0);
    if (s) s->edit_msg = 0;
    pthread_mutex_unlock(&t->out_mu);
}

rd_status tg_deliver_progress(tg *t, const rd_outbound *out, int64_t *msg_id, rd_error *err) {
    int64_t chat = tg_mig_forward(t, out->chat_id);
    /* Only the head that fits one message is shown while streaming; a
     * message of max units has at most 3 bytes per unit. */
    size_t cap = (size_t)t->c.max_units * 3 + 3;
    size_t len = 0;
    char *text = tg_utf8_sanitize(out->text, out->text_len < cap ? out->text_len : cap, &len);
    if (!text) return RD_OK;
    tg_chunk *ch = NULL;
    size_t n = tg_split(text, len, (size_t)t->c.max_units, &ch);
    size_t hl = n ? ch[0].len : 0;
    free(ch);
    if (!hl || tg_is_blank(text, hl)) {
        free(text);
        return RD_OK;
    }
    uint64_t h = text_hash(text, hl);
    rd_status st = RD_OK;
    if (!out->edit_of) {
        send_args a = {.chat = chat,
                       .thread = out->thread_id,
                       .reply_to = t->c.reply_to_message ? out->reply_to : 0,
                       .text = text,
                       .len = hl,
                       .plain = 1,
                       .deadline = tg_now(t) + t->c.send_budget_ms,
                       .cid = out->correlation_id,
                       .may_skip = 1};
        int64_t id = 0;
        st = send_one(t, &a, &id, err);
        if (st == RD_OK && id) {
            *msg_id = id;
            pthread_mutex_lock(&t->out_mu);
            chat_state *s = state_of(t, chat, 1);
            if (s) {
                s->edit_msg = id;
                s->edit_hash = h;
                s->edit_ms = tg_now(t);
            }
            pthread_mutex_unlock(&t->out_mu);
        }
        free(text);
        return st;
    }
    int64_t now = tg_now(t);
    pthread_mutex_lock(&t->out_mu);
    chat_state *s = state_of(t, chat, 1);
    int skip = !s || (s->edit_msg == out->edit_of &&
                      (s->edit_hash == h || now - s->edit_ms < t->c.edit_interval_ms));
    pthread_mutex_unlock(&t->out_mu);
    if (!skip) {
        int applied = 0;
        edit_one(t, chat, out->edit_of, text, hl, 0, NULL, NULL, EDIT_PROGRESS, 0,
                 out->correlation_id, &applied, err);
        pthread_mutex_lock(&t->out_mu);
        s = state_of(t, chat, 1);
        if (s) {
            /* A skipped edit leaves the older text shown: the final reply
             * must not take it for this one. */
            if (applied || s->edit_msg != out->edit_of) s->edit_hash = applied ? h : 0;
            s->edit_msg = out->edit_of;
            s->edit_ms = tg_now(t);
        }
        pthread_mutex_unlock(&t->out_mu);
    }
    free(text);
    return RD_OK;
}

int tg_pace(tg *t, int64_t chat) {
    return pace(t, chat, 0);
}
