/*
 * Replies from the core: send() picks the way (files, buttons, the outbox
 * when the chat has replies waiting, or delivery at once), progress() shows
 * partial text, activity() keeps "typing" shown (sendChatAction).
 */
#include "telegram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TYPING_DELAY_MS 400
#define TYPING_SLACK_MS 100
#define TYPING_BATCH 256 /* indicators taken per hold of typ_mu */

/* A chat showing "typing", in the map and in one of two due queues: the
 * first indicator comes TYPING_DELAY_MS after activity starts, the next
 * ones every typing_interval_ms. Each queue is appended with now plus its
 * own constant, so it stays in due order and the loop only looks at its
 * heads: with thousands of chats waiting, a wake-up touches the chats
 * due, and activity() never waits behind a sweep of them all. */
struct typing_ent {
    typing_ent *prev, *next;
    int64_t chat, thread;
    int64_t next_ms;
    int refs;
    int q;
};

static void q_unlink(tg *t, typing_ent *e) {
    if (e->prev)
        e->prev->next = e->next;
    else
        t->typ_head[e->q] = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        t->typ_tail[e->q] = e->prev;
    e->prev = e->next = NULL;
}

static void q_append(tg *t, typing_ent *e, int q, int64_t next_ms) {
    e->q = q;
    e->next_ms = next_ms;
    e->next = NULL;
    e->prev = t->typ_tail[q];
    if (e->prev)
        e->prev->next = e;
    else
        t->typ_head[q] = e;
    t->typ_tail[q] = e;
}

/* A question without buttons asks the client to open a reply to it;
 * selective: only the person it quotes (in groups). */
static char *question_markup(const rd_outbound *out) {
    return strdup(out->reply_to ? "{\"force_reply\":true,\"selective\":true}"
                                : "{\"force_reply\":true}");
}

static rd_status send_reply(tg *t, const rd_outbound *out, rd_error *err) {
    int text_rest = 0;
    /* 0 unless the whole text went out now (files, the outbox: unknown). */
    int64_t *sent_id = RD_HAS(out, sent_id) ? out->sent_id : NULL;
    if (sent_id) *sent_id = 0;
    if (RD_HAS(out, nattachments) && out->nattachments) {
        rd_status mst = tg_media_send(t, out, &text_rest, err);
        if (!text_rest) return mst;
    }
    size_t len = 0;
    char *text = tg_utf8_sanitize(out->text ? out->text : "", out->text ? out->text_len : 0, &len);
    if (!text) {
        t->h->error(err, RD_E_INTERNAL, "fatal", "out of memory");
        return RD_E_INTERNAL;
    }
    if (tg_is_blank(text, len)) {
        free(text);
        t->h->error(err, RD_E_FATAL, "fatal", "telegram: empty reply text (Telegram rejects it)");
        return RD_E_FATAL;
    }
    tg_reply r = {.chat = out->chat_id,
                  .thread = out->thread_id,
                  .reply_to = out->reply_to,
                  .edit_of = out->edit_of,
                  .text = text,
                  .len = len,
                  .literal = (out->flags & RD_OUT_NOTICE) || t->c.escape_replies,
                  .cid = out->correlation_id,
                  .deadline = tg_now(t) + t->c.send_budget_ms};
    char ref[48];
    char *markup = RD_HAS(out, choices) && out->choices
                       ? tg_buttons_markup(t, tg_mig_forward(t, out->chat_id), out->choices, ref)
                       : NULL;
    r.btn_ref = markup ? ref : NULL;
    if (!markup && (out->flags & RD_OUT_QUESTION)) markup = question_markup(out);
    r.markup = markup;
    int64_t last = 0;
    int deferred = 0;
    r.last_id = &last;
    rd_status st;
    size_t done = 0;
    /* Earlier replies to this chat wait in the outbox: this one queues
     * behind them, so the chat keeps its order. */
    if (tg_outbox_has(t, out->chat_id)) {
        st = tg_outbox_put(t, &r, 0, err);
        deferred = 1;
    } else {
        st = tg_deliver(t, &r, &done, err);
        /* Telegram refused for longer than the budget (a long 429, an
         * outage) or we are stopping: the rest waits in the store. */
        if (st == RD_E_RETRY && tg_outbox_rest(t, &r, done, err) == RD_OK) {
            st = RD_OK;
            deferred = 1;
        }
    }
    /* Delivered, queued durably, or never deliverable: a crash now must not
     * send it again. (The watermark covers it too, but only once everything
     * before it is done.) */
    if (st == RD_OK || st == RD_E_FATAL) tg_replied_mark(t, out->chat_id, out->reply_to);
    if (sent_id && st == RD_OK && !deferred) *sent_id = last;
    free(markup);
    free(text);
    return st;
}

rd_status tg_send(void *self, const rd_outbound *out, rd_error *err) {
    tg *t = self;
    /* One plain message: the send loop takes it from here. */
    if (tg_async_take(t, out)) return RD_PENDING;
    /* The rest may wait (files, retries, the outbox): not on this thread. */
    if (out->flags & RD_OUT_NOWAIT) return RD_E_WOULDBLOCK;
    /* Behind the chat's replies still going out on the send loop. */
    tg_async_wait_chat(t, out->chat_id);
    /* A reply to a journaled update holds a slot until its mark is stored
     * (telegram_answered.c): what a kill -9 sends again stays bounded. */
    int64_t slot = tg_replied_reserve(t, out->chat_id, out->reply_to);
    if (slot == -2) {
        /* Not sent: the update is not acknowledged either, so it is
         * answered after the restart. */
        t->h->error(err, RD_E_RETRY, "transient",
                    "telegram: stopped while the state store had not recorded earlier replies");
        return RD_E_RETRY;
    }
    rd_status st = send_reply(t, out, err);
    tg_replied_release(t, out->chat_id, out->reply_to, slot);
    return st;
}

rd_status tg_progress(void *self, const rd_outbound *out, int64_t *msg_id, rd_error *err) {
    tg *t = self;
    *msg_id = out->edit_of;
    /* Partial text would overtake the replies waiting in the outbox or
     * still going out on the send loop. */
    if (!out->text || tg_outbox_has(t, out->chat_id) || tg_async_busy(t, out->chat_id))
        return RD_OK;
    return tg_deliver_progress(t, out, msg_id, err);
}

/* ------------------------------------------------------------------------ */
/* Typing indicators                                                         */

void tg_activity(void *self, const rd_outbound *where, int active) {
    tg *t = self;
    if (!t->c.typing || !where) return;
    int64_t chat = tg_mig_forward(t, where->chat_id);
    if (tg_chat_is_channel(t, chat)) return;
    pthread_mutex_lock(&t->typ_mu);
    typing_ent *e = tg_map_get(t->typing, chat);
    if (active) {
        if (!e && (e = calloc(1, sizeof *e)) && tg_map_put(t->typing, chat, e) != 0) {
            free(e);
            e = NULL;
        }
        if (e) {
            e->chat = chat;
            e->thread = where->thread_id;
            /* Fast answers need no indicator, and one sent just after the
             * reply would show "typing" for 5 s after the answer. */
            if (e->refs++ == 0) {
                q_append(t, e, 0, tg_now(t) + TYPING_DELAY_MS);
                /* A loop already due to wake before this one is due (up to
                 * TYPING_SLACK_MS late) will find it: no wake-up now. */
                if (!t->typ_wake_at || e->next_ms + TYPING_SLACK_MS < t->typ_wake_at) {
                    t->typ_gen++;
                    pthread_cond_broadcast(&t->typ_cv);
                }
            }
        }
    } else if (e && --e->refs <= 0) {
        q_unlink(t, e);
        free(tg_map_del(t->typing, chat));
    }
    pthread_mutex_unlock(&t->typ_mu);
}

/* Under typ_mu: up to TYPING_BATCH chats due at now into batch, each
 * moved to the back of the interval queue; *next is when the next one is
 * due (now when more are due already). Returns how many. */
static size_t take_due(tg *t, int64_t now, typing_ent *batch, int64_t *next) {
    size_t n = 0;
    for (;;) {
        typing_ent *e = t->typ_head[0], *f = t->typ_head[1];
        if (!e || (f && f->next_ms < e->next_ms)) e = f;
        if (!e) {
            *next = now + 1000;
            return n;
        }
        if (e->next_ms > now || n == TYPING_BATCH) {
            *next = e->next_ms;
            return n;
        }
        batch[n++] = *e;
        q_unlink(t, e);
        q_append(t, e, 1, now + t->c.typing_interval_ms);
    }
}

void *tg_typing_loop(void *arg) {
    tg *t = arg;
    typing_ent *batch = malloc(TYPING_BATCH * sizeof *batch);
    while (batch && !atomic_load(&t->closing)) {
        int64_t now = tg_now(t), next;
        pthread_mutex_lock(&t->typ_mu);
        size_t n = take_due(t, now, batch, &next);
        bool idle = !t->typ_head[0] && !t->typ_head[1];
        unsigned gen = t->typ_gen;
        pthread_mutex_unlock(&t->typ_mu);
        for (size_t i = 0; i < n && !atomic_load(&t->closing); i++) {
            pthread_mutex_lock(&t->typ_mu);
            int still = tg_map_get(t->typing, batch[i].chat) != NULL;
            pthread_mutex_unlock(&t->typ_mu);
            if (!still) continue;
            /* Best effort: one attempt, short timeout, never blocks a reply. */
            char body[160];
            if (batch[i].thread)
                snprintf(body, sizeof body,
                         "{\"chat_id\":%lld,\"action\":\"typing\",\"message_thread_id\":%lld}",
                         (long long)batch[i].chat, (long long)batch[i].thread);
            else
                snprintf(body, sizeof body, "{\"chat_id\":%lld,\"action\":\"typing\"}",
                         (long long)batch[i].chat);
            /* On the send loop, so a slow Bot API does not hold the
             * indicators of all other chats behind this one. */
            if (tg_async_action(t, batch[i].chat, body)) continue;
            CURL *c = tg_easy_get(t);
            if (!c) continue;
            tg_call call;
            tg_api_once(t, c, "sendChatAction", body, 5000, &call);
            tg_call_free(&call);
            tg_easy_put(t, c);
        }
        int64_t wait = next - tg_now(t);
        if (wait <= 0 && !idle) continue;
        /* An indicator may go out TYPING_SLACK_MS late: with thousands of
         * chats due one after the other, a wake-up for each would cost
         * more than the indicators. */
        if (!idle && wait < TYPING_SLACK_MS) wait = TYPING_SLACK_MS;
        struct timespec dl = tg_deadline(wait > 0 ? wait : 1);
        pthread_mutex_lock(&t->typ_mu);
        if (!atomic_load(&t->closing) && gen == t->typ_gen) {
            /* No chat waiting: sleep until activity() or stop wakes it. */
            t->typ_wake_at = idle ? INT64_MAX : tg_now(t) + wait;
            if (idle)
                pthread_cond_wait(&t->typ_cv, &t->typ_mu);
            else
                pthread_cond_timedwait(&t->typ_cv, &t->typ_mu, &dl);
        }
        t->typ_wake_at = 0;
        pthread_mutex_unlock(&t->typ_mu);
    }
    free(batch);
    return NULL;
}

void tg_send_free(tg *t) {
    (void)t;
}
