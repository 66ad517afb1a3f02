/*
 * The intake thread: the handshake (getMe, then setWebhook or
 * deleteWebhook), then the loop that stores the handled watermark, submits
 * the queue and, in long-poll mode, polls; with replicas, only while this
 * one leads (or, with a shared store, the pump of telegram_shared.c). At
 * stop it stores the watermark and confirms what is journaled.
 */
#include "telegram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Replicas: only the leader polls (or takes webhooks). While the lead is
 * not current (store unreachable, another replica leads) nothing is
 * fetched or confirmed; the same term coming back resumes as it was. A new
 * term starts from what the store holds: another replica may have moved
 * on, and what was fetched here but not submitted is in the journal. */
static int tg_leading(tg *t) {
    if (!t->lead_key[0]) return 1;
    int64_t term = t->h->lead(t->ctx, t->lead_key), mine = atomic_load(&t->term);
    if (term == mine && term) {
        if (t->lead_paused)
            t->h->log(t->ctx, RD_LOG_INFO, "active again (term %lld)", (long long)term);
        t->lead_paused = 0;
        return 1;
    }
    if (!term) {
        if (mine && !t->lead_paused)
            t->h->log(t->ctx, RD_LOG_WARN,
                      "not the leader any more (store unreachable or another replica leads): "
                      "fetching and confirming nothing");
        t->lead_paused = 1;
        return 0;
    }
    if (mine && t->c.mode == TG_MODE_WEBHOOK) {
        /* Webhook handlers may hold items of the old term: start afresh. */
        t->h->log(t->ctx, RD_LOG_ERROR,
                  "another replica led in between; restarting to rejoin as a standby");
        atomic_store(&t->term, 0);
        t->h->request_stop(t->ctx);
        return 0;
    }
    atomic_store(&t->term, 0);
    pthread_mutex_lock(&t->in_mu);
    tg_queue_clear(t);
    free(t->replay);
    t->replay = NULL;
    t->nreplay = 0;
    rd_error e = {0};
    t->offset_sent = -1;
    rd_status st = tg_journal_load(t, &e);
    pthread_mutex_unlock(&t->in_mu);
    if (st != RD_OK) return 0;
    atomic_store(&t->term, term);
    t->lead_paused = 0;
    t->h->log(t->ctx, RD_LOG_INFO, "active: %s this bot (term %lld)",
              t->c.mode == TG_MODE_WEBHOOK ? "taking webhooks for" : "polling", (long long)term);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The intake thread                                                         */

void *tg_main_loop(void *arg) {
    tg *t = arg;
    int attempt = 0;
    while (!atomic_load(&t->quiescing) && !atomic_load(&t->have_me)) {
        rd_error e = {0};
        rd_status st = tg_get_me(t, 60000, &e);
        if (st == RD_OK) break;
        if (atomic_load(&t->quiescing)) break; /* stopped, not failed: nothing to retry */
        int64_t wait = st == RD_E_CONFIG ? t->c.retry_max_ms : tg_backoff(t, attempt++);
        t->h->log(t->ctx, st == RD_E_CONFIG ? RD_LOG_ERROR : RD_LOG_WARN, "%s; retrying in %.1f s",
                  e.msg, (double)wait / 1000);
        tg_sleep(t, wait, &t->quiescing);
    }
    if (t->c.mode == TG_MODE_WEBHOOK && t->c.webhook_url) {
        attempt = 0;
        while (!atomic_load(&t->quiescing) && !t->webhook_set) {
            char detail[320];
            tg_class cls = tg_set_webhook(t, detail, sizeof detail);
            if (cls == TG_C_OK) {
                t->webhook_set = 1;
                t->h->log(t->ctx, RD_LOG_INFO, "webhook set to the configured webhook_url");
                break;
            }
            if (atomic_load(&t->quiescing)) break; /* stopped, not failed */
            t->h->log(t->ctx, cls == TG_C_PERMANENT ? RD_LOG_ERROR : RD_LOG_WARN,
                      "setWebhook: %s; retrying", detail);
            tg_sleep(t, cls == TG_C_PERMANENT ? t->c.retry_max_ms : tg_backoff(t, attempt++),
                     &t->quiescing);
        }
    } else if (t->c.mode == TG_MODE_LONGPOLL && t->c.delete_webhook &&
               !atomic_load(&t->quiescing)) {
        tg_delete_webhook(t, t->c.request_timeout_ms);
    }
    if (!atomic_load(&t->quiescing)) t->h->ready(t->ctx, 1, NULL);
    attempt = 0;
    while (t->shared && !atomic_load(&t->quiescing)) {
        /* Jitter, so that replicas take turns at claiming chats. */
        if (!tg_shared_pump(t)) tg_sleep(t, 30 + t->h->wall_ns() / 1000 % 40, &t->quiescing);
    }
    while (!atomic_load(&t->quiescing)) {
        if (!tg_leading(t)) {
            tg_sleep(t, 100, &t->quiescing);
            continue;
        }
        uint64_t since = atomic_load(&t->wake_gen); /* kicks from here on end the nap below */
        tg_persist_acks(t, 0);
        pthread_mutex_lock(&t->in_mu);
        size_t before = t->npending;
        tg_drain_locked(t);
        /* Files being fetched or an album waiting for its parts must not
         * stop the polling; the core pushing back does, and so does a
         * queue as long as the webhook's limit. */
        int blocked = t->full || t->npending >= 1024 || (t->head != NULL && !t->album_hold);
        size_t pending = t->npending;
        pthread_mutex_unlock(&t->in_mu);
        tg_gauge(t, t->m_pending, (double)pending);
        /* Back-pressure: leave new updates with Telegram until the core
         * takes the queued ones. In a burst the core takes queue_depth
         * messages in a few ms, so look again after 1 ms while it takes
         * some, and back off to the 100 ms tick while it takes none (slow
         * agents). Marks to write and stop end a nap at once (tg_kick). */
        if (t->c.mode == TG_MODE_WEBHOOK || blocked) {
            int64_t longer = t->nap_ms * 2;
            t->nap_ms = pending < before || longer < 1 ? 1 : longer > 100 ? 100 : longer;
            tg_nap(t, t->nap_ms, &t->quiescing, since);
            continue;
        }
        tg_poll_once(t, &attempt);
    }
    /* Draining: the core still finishes work and acks; keep the watermark
     * stored so a crash now re-sends as little as possible. */
    while (!atomic_load(&t->closing)) {
        if (t->shared)
            tg_shared_pump(t);
        else
            tg_persist_acks(t, 0);
        tg_sleep(t, 100, &t->closing);
    }
    return NULL;
}

void tg_intake_stop(tg *t) {
    if (t->shared) { /* the other replicas keep using the webhook */
        tg_shared_stop(t);
        return;
    }
    tg_persist_acks(t, 1);
    if (t->c.mode == TG_MODE_LONGPOLL && t->c.confirm_on_stop && atomic_load(&t->have_me) &&
        tg_term_current(t) && tg_journal_sync(t, 0) == 0) {
        pthread_mutex_lock(&t->in_mu);
        int64_t offset = t->tg_offset;
        pthread_mutex_unlock(&t->in_mu);
        if (offset > 0 && offset != t->offset_sent) {
            /* Confirms what is journaled. The update this may return is
             * not confirmed (an offset confirms only ids below it) and not
             * journaled: Telegram sends it again next time. */
            char body[128];
            snprintf(body, sizeof body, "{\"offset\":%lld,\"limit\":1,\"timeout\":0}",
                     (long long)offset);
            atomic_store(&t->final_call, 1);
            CURL *c = tg_easy_get(t);
            tg_call call;
            if (c) {
                tg_api_once(t, c, "getUpdates", body, 5000, &call);
                if (call.cls != TG_C_OK)
                    t->h->log(t->ctx, RD_LOG_WARN, "confirming getUpdates at stop: %s",
                              call.detail);
                tg_call_free(&call);
                tg_easy_put(t, c);
            }
            atomic_store(&t->final_call, 0);
        }
    }
    /* Replicas sharing a postgresql store keep using the webhook; the
     * sqlite store has one process, which leads, and may delete it. */
    const char *store = t->h->info(t->ctx, "store");
    if (t->c.mode == TG_MODE_WEBHOOK && t->c.delete_webhook_on_stop && atomic_load(&t->have_me) &&
        !(store && !strcmp(store, "postgresql"))) {
        atomic_store(&t->final_call, 1);
        tg_delete_webhook(t, 5000);
        atomic_store(&t->final_call, 0);
    }
}

void tg_intake_free(tg *t) {
    tg_shared_free(t);
    tg_queue_clear(t);
    free(t->replay);
    t->replay = NULL;
    tg_replied_free(t);
}
