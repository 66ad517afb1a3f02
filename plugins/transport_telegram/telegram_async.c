/*
 * Replies on an event loop (ABI 1.4, send_async): send() hands a reply
 * that is one plain sendMessage to the tg-send thread and returns
 * RD_PENDING, so no router worker waits for the Bot API. The loop takes
 * the reply's answered-mark slot (waiting for one if need be), paces it
 * (the chat's and the global slot), runs the request on curl's multi
 * interface, retries 429s and transient failures on timers within the
 * send budget, takes the fallbacks send_one() takes for Telegram's 400s,
 * and ends it with host->send_done(). Only what writes to the store or
 * must block (the outbox once the budget is spent or at a stop; the
 * blocking delivery when no curl handle is to be had) goes to
 * tg-send-slow. Typing indicators go out from the loop too. A chat's
 * replies go out one after the other, in the order send() took them
 * (RD_PF_ORDERED_SEND: the core starts the chat's next message as soon as
 * send() took a reply); what takes the blocking way waits for those.
 */
#include "telegram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telegram_format.h"

#define POOL_IDLE 64       /* easy handles kept for reuse */
#define LOOP_MAX_WAIT 1000 /* ms: with requests in flight (a stop aborts them) */
#define LOOP_IDLE_WAIT 3600000

#define ACTION_TIMEOUT_MS 5000 /* a chat action's one attempt */
#define SLOT_RETRY_MS 5        /* a reply waiting for an answered-mark slot looks again */

enum { AS_SLOT, AS_PACE_CHAT, AS_PACE_GLOBAL, AS_READY };
enum { SLOW_DELIVER, SLOW_OUTBOX };

typedef struct tg_aop {
    struct tg_aop *next;
    rd_send *done;          /* NULL: a chat action (typing), no reply behind it */
    int64_t chat, reply_to; /* as the core names them (answered marks, outbox) */
    int64_t to, thread;     /* as sent to: migrated, the topic */
    int64_t quote;          /* the message the reply quotes (0 = none) */
    int64_t seq;            /* tg_replied_reserve()'s slot */
    char *text;             /* sanitized, for the slow path */
    size_t len;
    int literal, pm, has_ents;
    int plain, no_ents, migrated, rounds; /* the fallbacks send_one() takes */
    char *cid;
    char *body; /* sendMessage JSON */
    int64_t deadline, due, queued_ms;
    int stage, attempt, slow, paced;
    int behind; /* waited behind an earlier reply of its chat */
    int waited; /* counted as waiting for a mark slot */
    CURL *c;
    tg_buf buf;
    tg_call call;
    rd_error err; /* why it goes to the outbox */
    int64_t t0;
} tg_aop;

/* Requests in order: first in, first out. */
typedef struct aop_fifo {
    tg_aop *head, *tail;
} aop_fifo;

static void fifo_add(aop_fifo *f, tg_aop *o) {
    o->next = NULL;
    if (f->tail)
        f->tail->next = o;
    else
        f->head = o;
    f->tail = o;
}

static tg_aop *fifo_take(aop_fifo *f) {
    tg_aop *o = f->head;
    if (o) {
        f->head = o->next;
        if (!f->head) f->tail = NULL;
        o->next = NULL;
    }
    return o;
}

/* A chat's replies handed to the loop and not yet done: the first goes
 * on, the others wait behind it in order (RD_PF_ORDERED_SEND). */
typedef struct aop_chat {
    int n;         /* handed over and not finished, the one going on included */
    aop_fifo held; /* the others */
} aop_chat;

struct tg_async {
    pthread_t th, slow_th;
    int running, slow_running;
    int usable; /* both threads started: set once at start */
    CURLM *m;
    easy_pool pool;
    pthread_mutex_t mu;
    pthread_cond_t slow_cv;
    int stop;               /* under mu */
    aop_fifo in;            /* handed over by send(), under mu */
    aop_fifo slow;          /* for tg-send-slow, under mu */
    tg_aop *wait;           /* loop thread: waiting for a time (due), in no order */
    int64_t next_due;       /* loop thread: no entry of wait is due before this */
    aop_fifo slot;          /* loop thread: waiting for a mark slot */
    aop_fifo ready;         /* loop thread: over send_concurrency */
    size_t active;          /* loop thread: requests in curl */
    tg_map *chats;          /* under mu: chat -> aop_chat */
    int loop_done;          /* under mu: the loop thread returned */
    pthread_cond_t chat_cv; /* with mu: a chat's replies are all done */
};

static void aop_free(tg_aop *o) {
    if (!o) return;
    free(o->text);
    free(o->cid);
    free(o->body);
    free(o->buf.p);
    free(o);
}

/* The sendMessage body for o as it stands (fallbacks taken so far); 0, or
 * -1 when the text is not one message or is blank once rendered. */
static int build(tg *t, tg_aop *o) {
    tg_part *ch = NULL;
    size_t n = tg_format(o->text, o->len, t->c.format_markdown && t->c.parse_mode == TG_PM_NONE,
                         (size_t)t->c.max_units, &ch);
    if (n != 1 || tg_is_blank(ch[0].text, ch[0].len)) {
        tg_parts_free(ch, n);
        return -1;
    }
    char *ents = o->no_ents ? NULL : tg_entities_json(&ch[0]);
    int pm;
    char *shown = tg_format_text(t, ch[0].text, ch[0].len, o->plain ? 0 : o->literal, &pm);
    if (o->plain) pm = TG_PM_NONE;
    char *body =
        shown ? tg_message_body(t, o->to, 0, o->thread, o->quote, shown, pm, ents, NULL) : NULL;
    o->pm = pm;
    o->has_ents = ents != NULL;
    free(shown);
    free(ents);
    tg_parts_free(ch, n);
    if (!body) return -1;
    free(o->body);
    o->body = body;
    return 0;
}

/* Under mu: o goes on, on the loop, or once the loop has returned at a
 * stop on tg-send-slow (behind the outbox when the chat has replies
 * there). 1 when the loop needs waking. */
static int go_on_locked(struct tg_async *a, tg_aop *o, int outbox) {
    if (a->loop_done) {
        o->slow = outbox ? SLOW_OUTBOX : SLOW_DELIVER;
        fifo_add(&a->slow, o);
        pthread_cond_signal(&a->slow_cv);
        return 0;
    }
    int first = !a->in.head;
    fifo_add(&a->in, o);
    return first;
}

/* A reply of chat is done: the next one behind it goes on, on the loop
 * (or, once the loop has returned at a stop, on tg-send-slow). */
static void chat_next(tg *t, int64_t chat) {
    struct tg_async *a = t->as;
    int wake = 0, outbox = tg_outbox_has(t, chat);
    pthread_mutex_lock(&a->mu);
    aop_chat *ch = tg_map_get(a->chats, chat);
    if (ch) {
        tg_aop *next = fifo_take(&ch->held);
        if (next) wake = go_on_locked(a, next, outbox);
        if (--ch->n == 0) {
            free(tg_map_del(a->chats, chat));
            pthread_cond_broadcast(&a->chat_cv);
        }
    }
    pthread_mutex_unlock(&a->mu);
    if (wake) curl_multi_wakeup(a->m);
}

/* The end of a send: marks and slot as tg_send() does, the chat's next
 * reply, then the core. */
static void finish(tg *t, tg_aop *o, rd_status st, int64_t sent_id, const rd_error *err) {
    if (st == RD_OK || st == RD_E_FATAL) tg_replied_mark(t, o->chat, o->reply_to);
    tg_replied_release(t, o->chat, o->reply_to, o->seq);
    tg_deliver_end(t, o->to);
    rd_send *d = o->done;
    int64_t chat = o->chat;
    aop_free(o);
    chat_next(t, chat);
    t->h->send_done(d, st, st == RD_OK ? sent_id : 0, err);
}

static void to_slow(tg *t, tg_aop *o, int how) {
    struct tg_async *a = t->as;
    o->slow = how;
    pthread_mutex_lock(&a->mu);
    fifo_add(&a->slow, o);
    pthread_cond_signal(&a->slow_cv);
    pthread_mutex_unlock(&a->mu);
}

/* The slow path: the blocking delivery with all of Telegram's fallbacks,
 * or straight to the outbox when the budget is spent. */
static void slow_run(tg *t, tg_aop *o) {
    int64_t last = 0;
    tg_reply r = {.chat = o->chat,
                  .thread = o->thread,
                  .reply_to = o->reply_to,
                  .text = o->text,
                  .len = o->len,
                  .literal = o->literal,
                  .cid = o->cid,
                  .deadline = o->deadline,
                  .last_id = &last};
    rd_error err = o->err;
    rd_status st = RD_E_RETRY;
    size_t done = 0;
    if (o->slow == SLOW_DELIVER) st = tg_deliver(t, &r, &done, &err);
    int deferred = 0;
    if (st == RD_E_RETRY && tg_outbox_rest(t, &r, done, &err) == RD_OK) {
        st = RD_OK;
        deferred = 1;
    }
    finish(t, o, st, deferred ? 0 : last, st == RD_OK ? NULL : &err);
}

static void *slow_main(void *arg) {
    tg *t = arg;
    struct tg_async *a = t->as;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        tg_aop *o = fifo_take(&a->slow);
        if (!o) {
            if (a->stop && !a->running) break;
            pthread_cond_wait(&a->slow_cv, &a->mu);
            continue;
        }
        pthread_mutex_unlock(&a->mu);
        slow_run(t, o);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static void wait_until(struct tg_async *a, tg_aop *o, int64_t due, int stage) {
    o->due = due;
    o->stage = stage;
    o->next = a->wait;
    a->wait = o;
    if (due < a->next_due) a->next_due = due;
}

static void start(tg *t, tg_aop *o) {
    struct tg_async *a = t->as;
    if (t->c.throttle && !o->paced)
        tg_observe(t, t->m_throttle_wait, NULL, (double)(tg_now(t) - o->queued_ms) / 1000.0);
    o->paced = 1;
    if (!o->done) {
        /* An indicator after the reply would show "typing" under it for
         * 5 s: drop it once the chat's answer is on its way. */
        pthread_mutex_lock(&t->typ_mu);
        int still = tg_map_get(t->typing, o->to) != NULL;
        pthread_mutex_unlock(&t->typ_mu);
        if (!still) {
            aop_free(o);
            return;
        }
    }
    if (a->active >= (size_t)t->c.send_concurrency) {
        fifo_add(&a->ready, o);
        return;
    }
    CURL *c = easy_pool_get(&a->pool);
    if (!c) {
        to_slow(t, o, SLOW_DELIVER);
        return;
    }
    int64_t left = o->deadline - tg_now(t);
    int64_t timeout = t->c.request_timeout_ms < left ? t->c.request_timeout_ms : left;
    if (timeout < 1000) timeout = 1000;
    free(o->buf.p);
    o->buf = (tg_buf){0};
    memset(&o->call, 0, sizeof o->call);
    tg_easy_setup(t, c, o->done ? "sendMessage" : "sendChatAction", o->body, timeout, &o->buf,
                  &o->call);
    /* The answers are one Message: a 4 KiB receive buffer instead of
     * curl's 16 KiB for each of up to send_concurrency requests. */
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(c, CURLOPT_PRIVATE, o);
    o->c = c;
    o->t0 = tg_now(t);
    if (curl_multi_add_handle(a->m, c) != CURLM_OK) {
        o->c = NULL;
        easy_pool_put(&a->pool, c);
        to_slow(t, o, SLOW_DELIVER);
        return;
    }
    a->active++;
}

/* Takes the chat's sending slot, then the global one, as pace() does;
 * then starts. */
static void advance(tg *t, tg_aop *o) {
    if (!o->done) o->stage = AS_READY; /* chat actions are not paced */
    if (o->stage == AS_PACE_CHAT) {
        int64_t now = tg_now(t);
        pthread_mutex_lock(&t->out_mu);
        int64_t at = tg_throttle_chat(t->thr, o->to, now);
        pthread_mutex_unlock(&t->out_mu);
        o->stage = AS_PACE_GLOBAL;
        if (at > now) {
            wait_until(t->as, o, at, AS_PACE_GLOBAL);
            return;
        }
    }
    if (o->stage == AS_PACE_GLOBAL) {
        int64_t now = tg_now(t);
        pthread_mutex_lock(&t->out_mu);
        int64_t at = tg_throttle_global(t->thr, now);
        pthread_mutex_unlock(&t->out_mu);
        if (at > now) {
            wait_until(t->as, o, at, AS_READY);
            return;
        }
    }
    start(t, o);
}

/* A 400 that send_one() gets around: the same change here, each at most
 * once; 1 when o is to be sent again. */
static int fix_up(tg *t, tg_aop *o, const tg_call *call) {
    if (call->cls != TG_C_PERMANENT || !call->parsed || ++o->rounds >= 5) return 0;
    if (call->resp.migrate_to && !o->migrated) {
        tg_mig_record(t, o->to, call->resp.migrate_to, "sendMessage answered");
        o->to = call->resp.migrate_to;
        o->migrated = 1;
    } else if (o->pm != TG_PM_NONE && !o->plain && tg_desc_has(call, "can't parse entities")) {
        t->h->log(t->ctx, RD_LOG_WARN, "sendMessage: %s; sending this part as plain text instead",
                  call->detail);
        o->plain = 1;
    } else if (o->has_ents && (tg_desc_has(call, "entit") || tg_desc_has(call, "url"))) {
        t->h->log(t->ctx, RD_LOG_WARN, "sendMessage: %s; sending this part without formatting",
                  call->detail);
        o->no_ents = 1;
    } else if (o->thread && tg_desc_has(call, "thread not found")) {
        o->thread = 0;
    } else if (o->quote && tg_desc_has(call, "replied not found")) {
        o->quote = 0;
    } else {
        return 0;
    }
    return build(t, o) == 0;
}

static void on_done(tg *t, tg_aop *o, CURLcode cc) {
    struct tg_async *a = t->as;
    tg_call *call = &o->call;
    call->cc = cc;
    curl_easy_getinfo(o->c, CURLINFO_RESPONSE_CODE, &call->http);
    curl_multi_remove_handle(a->m, o->c);
    easy_pool_put(&a->pool, o->c);
    o->c = NULL;
    a->active--;
    const char *method = o->done ? "sendMessage" : "sendChatAction";
    tg_observe(t, t->m_api_seconds, method, (double)(tg_now(t) - o->t0) / 1000.0);
    tg_classify(t, method, &o->buf, call);
    free(o->buf.p);
    o->buf = (tg_buf){0};
    if (!o->done) { /* a chat action: best effort, one attempt */
        tg_call_free(call);
        aop_free(o);
        return;
    }
    if (call->cls == TG_C_OK || call->cls == TG_C_UNPARSED) {
        /* HTTP 200 with an unreadable body: Telegram took it. */
        if (call->cls == TG_C_UNPARSED)
            t->h->log(t->ctx, RD_LOG_WARN, "sendMessage: %s; counted as delivered", call->detail);
        int64_t id = 0;
        if (call->parsed &&
            !(tg_json_i64(call->resp.result, "message_id", &id) && tg_valid_pos_id(id)))
            id = 0;
        tg_count(t, t->m_sent, "sendMessage", NULL, 1);
        tg_call_free(call);
        finish(t, o, RD_OK, id, NULL);
        return;
    }
    if (call->cls == TG_C_RETRY_AFTER || call->cls == TG_C_TRANSIENT) {
        int64_t wait = call->cls == TG_C_RETRY_AFTER ? call->wait_ms : tg_backoff(t, o->attempt);
        int64_t now = tg_now(t);
        if (call->cls == TG_C_RETRY_AFTER) {
            pthread_mutex_lock(&t->out_mu);
            tg_throttle_hold(t->thr, o->to, now + wait);
            pthread_mutex_unlock(&t->out_mu);
        }
        if (now + wait <= o->deadline && !atomic_load(&t->closing)) {
            t->h->log(t->ctx, call->cls == TG_C_RETRY_AFTER ? RD_LOG_INFO : RD_LOG_WARN,
                      "sendMessage: %s; retrying in %.1f s", call->detail, (double)wait / 1000.0);
            tg_count(t, t->m_retries,
                     call->cls == TG_C_RETRY_AFTER ? "429"
                     : call->cc != CURLE_OK        ? "network"
                                                   : "5xx",
                     NULL, 1);
            tg_call_free(call);
            o->attempt++;
            wait_until(a, o, now + wait, AS_PACE_GLOBAL);
            return;
        }
        size_t dl = strlen(call->detail);
        if (dl + 48 < sizeof call->detail)
            snprintf(call->detail + dl, sizeof call->detail - dl,
                     " (retry budget spent after %d attempt%s)", o->attempt + 1,
                     o->attempt ? "s" : "");
    }
    if (fix_up(t, o, call)) {
        tg_call_free(call);
        wait_until(a, o, 0, AS_PACE_CHAT);
        return;
    }
    rd_error err = {0};
    rd_status st = tg_send_fail(t, &err, "sendMessage", call, o->cid);
    tg_call_free(call);
    /* Refused past the budget, or cut by a stop: the outbox keeps it, as
     * the blocking path does. */
    if (st == RD_E_RETRY) {
        o->err = err;
        to_slow(t, o, SLOW_OUTBOX);
        return;
    }
    finish(t, o, st, 0, &err);
}

/* What waits for a time when the transport closes goes to the outbox. */
static void abort_waiting(tg *t) {
    struct tg_async *a = t->as;
    /* Not sent and not acknowledged: answered after the restart. */
    for (tg_aop *o; (o = fifo_take(&a->slot));) {
        rd_error err = {0};
        t->h->error(&err, RD_E_RETRY, "transient",
                    "telegram: stopped while the state store had not recorded earlier replies");
        finish(t, o, RD_E_RETRY, 0, &err);
    }
    tg_aop *lists[2] = {a->wait, a->ready.head};
    a->wait = NULL;
    a->ready = (aop_fifo){0};
    for (int i = 0; i < 2; i++)
        for (tg_aop *o = lists[i], *n; o; o = n) {
            n = o->next;
            if (!o->done) { /* a chat action: dropped */
                aop_free(o);
                continue;
            }
            tg_call c = {.cls = TG_C_ABORTED};
            snprintf(c.detail, sizeof c.detail, "aborted at shutdown");
            tg_send_fail(t, &o->err, "sendMessage", &c, o->cid);
            to_slow(t, o, SLOW_OUTBOX);
        }
}

static void *loop_main(void *arg) {
    tg *t = arg;
    struct tg_async *a = t->as;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        aop_fifo in = a->in;
        a->in = (aop_fifo){0};
        int stop = a->stop;
        pthread_mutex_unlock(&a->mu);
        for (tg_aop *o; (o = fifo_take(&in));) {
            /* one that waited may find its chat's earlier replies in the
             * outbox now: it goes behind them */
            if (o->behind && tg_outbox_has(t, o->chat))
                to_slow(t, o, SLOW_OUTBOX);
            else if (o->stage == AS_SLOT)
                fifo_add(&a->slot, o);
            else
                wait_until(a, o, 0, AS_PACE_CHAT);
        }
        int closing = atomic_load(&t->closing);
        if (closing) abort_waiting(t);
        /* replies waiting for a mark slot, first come first served */
        while (a->slot.head) {
            tg_aop *h = a->slot.head;
            int64_t seq = tg_replied_try_reserve(t, h->chat, h->reply_to);
            if (seq == -3 && !h->waited) {
                h->waited = 1;
                tg_count(t, t->m_record_waits, NULL, NULL, 1);
            }
            if (seq == -3) break;
            tg_aop *o = fifo_take(&a->slot);
            o->seq = seq;
            wait_until(a, o, 0, AS_PACE_CHAT);
        }
        /* timers due now; the earliest of the others (and of those set
         * below) is the loop's next wake-up */
        int64_t now = tg_now(t);
        aop_fifo due = {0};
        a->next_due = INT64_MAX;
        for (tg_aop **pp = &a->wait; *pp;) {
            tg_aop *o = *pp;
            if (o->due <= now) {
                *pp = o->next;
                fifo_add(&due, o);
            } else {
                if (o->due < a->next_due) a->next_due = o->due;
                pp = &o->next;
            }
        }
        for (tg_aop *o; (o = fifo_take(&due));)
            advance(t, o);
        while (a->ready.head && a->active < (size_t)t->c.send_concurrency)
            start(t, fifo_take(&a->ready));
        int running = 0;
        curl_multi_perform(a->m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(a->m, &left)))
            if (msg->msg == CURLMSG_DONE) {
                tg_aop *o = NULL;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&o);
                if (o) on_done(t, o, msg->data.result);
            }
        int idle = !a->active && !a->wait && !a->ready.head && !a->slot.head;
        if (stop && idle) {
            pthread_mutex_lock(&a->mu);
            int empty = !a->in.head;
            if (empty) a->loop_done = 1;
            pthread_mutex_unlock(&a->mu);
            if (empty) break;
            continue;
        }
        now = tg_now(t);
        int64_t ms = a->next_due - now < LOOP_MAX_WAIT ? a->next_due - now : LOOP_MAX_WAIT;
        /* nothing in flight: sleep until send() or stop() wakes the loop
         * (curl's own timers still end the wait when they are due) */
        if (idle) ms = LOOP_IDLE_WAIT;
        if (a->slot.head && ms > SLOT_RETRY_MS) ms = SLOT_RETRY_MS;
        if (ms < 0) ms = 0;
        /* a done transfer or a timer may have made room for ready ones */
        if (a->ready.head && a->active < (size_t)t->c.send_concurrency) ms = 0;
        curl_multi_poll(a->m, NULL, 0, (int)ms, NULL);
    }
    return NULL;
}

void tg_async_start(tg *t) {
    if (!t->c.send_async || !RD_HAS(t->h, send_done)) return;
    struct tg_async *a = calloc(1, sizeof *a);
    if (!a) return;
    a->m = curl_multi_init();
    if (!a->m) {
        free(a);
        return;
    }
    /* curl's own bound on idle connections is four times the transfers
     * in curl at that moment: when a burst thins out, connections are
     * closed only to be opened again a moment later. */
    curl_multi_setopt(a->m, CURLMOPT_MAXCONNECTS, (long)t->c.send_concurrency);
    a->chats = tg_map_new();
    if (!a->chats) {
        curl_multi_cleanup(a->m);
        free(a);
        return;
    }
    easy_pool_init(&a->pool, POOL_IDLE);
    easy_pool_share(&a->pool, t->share.sh);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->slow_cv, NULL);
    pthread_cond_init(&a->chat_cv, NULL);
    t->as = a;
    if (pthread_create(&a->slow_th, NULL, slow_main, t) == 0) {
        a->slow_running = 1;
        pthread_setname_np(a->slow_th, "tg-send-slow");
        if (pthread_create(&a->th, NULL, loop_main, t) == 0) {
            a->running = a->usable = 1;
            pthread_setname_np(a->th, "tg-send");
        }
    }
    if (!a->usable)
        t->h->log(t->ctx, RD_LOG_WARN,
                  "cannot start the send loop; replies go out from the router's workers");
}

void tg_async_stop(tg *t) {
    struct tg_async *a = t->as;
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    pthread_mutex_unlock(&a->mu);
    if (a->running) {
        curl_multi_wakeup(a->m);
        pthread_join(a->th, NULL);
    }
    pthread_mutex_lock(&a->mu);
    a->running = 0;
    pthread_cond_signal(&a->slow_cv);
    pthread_mutex_unlock(&a->mu);
    if (a->slow_running) pthread_join(a->slow_th, NULL);
    a->slow_running = 0;
}

void tg_async_free(tg *t) {
    struct tg_async *a = t->as;
    if (!a) return;
    easy_pool_destroy(&a->pool);
    curl_multi_cleanup(a->m);
    tg_map_free(a->chats, free);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->slow_cv);
    pthread_cond_destroy(&a->chat_cv);
    free(a);
    t->as = NULL;
}

/* Hands the loop a request to run for the side (no reply waits for it). */
static int enqueue(tg *t, tg_aop *o) {
    struct tg_async *a = t->as;
    pthread_mutex_lock(&a->mu);
    int open = !a->stop;
    /* The loop takes the whole queue at once: only the first of a batch
     * needs to wake it. */
    int first = open && !a->in.head;
    if (open) fifo_add(&a->in, o);
    pthread_mutex_unlock(&a->mu);
    if (first) curl_multi_wakeup(a->m);
    return open;
}

/* Hands the loop a reply. Behind the chat's earlier ones still going out
 * it waits without a mark slot, and takes one when its turn comes: replies
 * waiting behind others never hold the slots their chats' first replies
 * need. Otherwise it takes its slot now, or waits for one on the loop. 0
 * when stopping (the caller's blocking way waits for the chat's replies).
 * (The slot and outbox locks are taken inside mu, never the other way.) */
static int enqueue_reply(tg *t, tg_aop *o) {
    struct tg_async *a = t->as;
    pthread_mutex_lock(&a->mu);
    aop_chat *ch = a->stop ? NULL : tg_map_get(a->chats, o->chat);
    if (!a->stop && !ch && (ch = calloc(1, sizeof *ch)) && tg_map_put(a->chats, o->chat, ch)) {
        free(ch);
        ch = NULL;
    }
    int wake = 0;
    o->seq = -1;
    o->stage = AS_SLOT;
    if (ch && ch->n++ > 0) {
        o->behind = 1;
        fifo_add(&ch->held, o);
    } else if (ch) {
        o->seq = tg_replied_try_reserve(t, o->chat, o->reply_to);
        o->stage = AS_PACE_CHAT;
        if (o->seq == -3) {
            o->seq = -1;
            o->stage = AS_SLOT;
            o->waited = 1;
            tg_count(t, t->m_record_waits, NULL, NULL, 1);
        }
        wake = go_on_locked(a, o, 0);
    }
    pthread_mutex_unlock(&a->mu);
    if (wake) curl_multi_wakeup(a->m);
    return ch != NULL;
}

int tg_async_busy(tg *t, int64_t chat) {
    struct tg_async *a = t->as;
    if (!a || !a->usable) return 0;
    pthread_mutex_lock(&a->mu);
    int busy = tg_map_get(a->chats, chat) != NULL;
    pthread_mutex_unlock(&a->mu);
    return busy;
}

void tg_async_wait_chat(tg *t, int64_t chat) {
    struct tg_async *a = t->as;
    if (!a || !a->usable) return;
    pthread_mutex_lock(&a->mu);
    while (tg_map_get(a->chats, chat))
        pthread_cond_wait(&a->chat_cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
}

int tg_async_action(tg *t, int64_t chat, const char *body) {
    struct tg_async *a = t->as;
    if (!a || !a->usable || atomic_load(&t->closing)) return 0;
    tg_aop *o = calloc(1, sizeof *o);
    if (!o || !(o->body = strdup(body))) {
        free(o);
        return 0;
    }
    o->to = chat;
    o->seq = -1;
    o->stage = AS_READY;
    o->queued_ms = tg_now(t);
    o->deadline = o->queued_ms + ACTION_TIMEOUT_MS;
    o->paced = 1;
    if (enqueue(t, o)) return 1;
    aop_free(o);
    return 0;
}

int tg_async_take(tg *t, const rd_outbound *out) {
    struct tg_async *a = t->as;
    if (!a || !a->usable || atomic_load(&t->closing) || !RD_HAS(out, done) || !out->done) return 0;
    /* files, buttons, questions and final edits take the blocking way */
    if ((out->nattachments && out->attachments) || out->choices || out->edit_of ||
        (out->flags & (RD_OUT_QUESTION | RD_OUT_FINAL_EDIT)))
        return 0;
    /* earlier replies of the chat wait in the outbox: it goes behind them */
    if (tg_outbox_has(t, out->chat_id)) return 0;
    size_t len = 0;
    char *text = tg_utf8_sanitize(out->text ? out->text : "", out->text ? out->text_len : 0, &len);
    if (!text || tg_is_blank(text, len)) {
        free(text);
        return 0;
    }
    tg_aop *o = calloc(1, sizeof *o);
    char *cid = out->correlation_id ? strdup(out->correlation_id) : NULL;
    if (!o || (out->correlation_id && !cid)) {
        free(o);
        free(cid);
        free(text);
        return 0;
    }
    *o = (tg_aop){.done = out->done,
                  .chat = out->chat_id,
                  .reply_to = out->reply_to,
                  .to = tg_mig_forward(t, out->chat_id),
                  .thread = out->thread_id,
                  .quote = t->c.reply_to_message ? out->reply_to : 0,
                  .seq = -1,
                  .text = text,
                  .len = len,
                  .literal = (out->flags & RD_OUT_NOTICE) || t->c.escape_replies,
                  .cid = cid,
                  .deadline = tg_now(t) + t->c.send_budget_ms};
    if (build(t, o) != 0) { /* more than one message, or blank once rendered */
        aop_free(o);
        return 0;
    }
    /* A reply to a journaled update holds a slot until its mark is stored
     * (telegram_answered.c); when none is free it waits on the loop, not
     * on the caller's thread (enqueue_reply). */
    o->queued_ms = tg_now(t);
    if (!enqueue_reply(t, o)) { /* stopping: the caller's blocking path */
        aop_free(o);
        return 0;
    }
    return 1;
}
