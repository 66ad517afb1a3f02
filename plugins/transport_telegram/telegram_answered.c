/*
 * Answered updates: which updates above the handled watermark already got
 * their reply.
 *
 * The core acknowledges a contiguous watermark: one slow chat holds it back
 * while others are answered. To keep a kill -9 from answering those again,
 * the transport notes which updates it delivered a reply for (send() quotes
 * the user's message, which maps back to the update) and stores them as
 * r/<seq> beside the watermark; the replay at start skips them. If the
 * mapping ever picks the wrong update of a message (an edit and its
 * original share the message id), it takes the oldest one, so the worst case
 * is a reply sent twice, never one lost.
 *
 * The intake thread stores the marks every 20 ms at most, and only as fast
 * as the store commits. So that what a kill -9 sends again is bounded by
 * count, not by time, a reply to a registered update holds a slot from
 * before it goes out until the write carrying its mark commits; with
 * max_unrecorded_replies slots taken a sender waits, and wakes the intake
 * to write at once. Stop ends the wait.
 */
#include "telegram.h"

#include <stdlib.h>
#include <string.h>

typedef struct tg_rep_node {
    int64_t chat, message, seq;
    size_t held; /* slots of the sends in progress answering it */
    struct tg_rep_node *next;
} tg_rep_node;

static int64_t rep_key(int64_t chat, int64_t message) {
    return (int64_t)((uint64_t)chat * 0x9E3779B97F4A7C15ULL ^ (uint64_t)message);
}

/* The node of (chat, message) for update seq, or the oldest when seq < 0;
 * *prev gets the one before it. rep_mu held. */
static tg_rep_node *rep_find(tg *t, int64_t chat, int64_t message, int64_t seq,
                             tg_rep_node **prev) {
    tg_rep_node *p = NULL, *n = tg_map_get(t->rep_keys, rep_key(chat, message));
    while (n && !(n->chat == chat && n->message == message && (seq < 0 || n->seq == seq))) {
        p = n;
        n = n->next;
    }
    if (prev) *prev = p;
    return n;
}

/* Unlinks n from its list (prev before it). rep_mu held. */
static void rep_unlink(tg *t, tg_rep_node *n, tg_rep_node *prev) {
    int64_t k = rep_key(n->chat, n->message);
    if (prev)
        prev->next = n->next;
    else if (n->next)
        tg_map_put(t->rep_keys, k, n->next);
    else
        tg_map_del(t->rep_keys, k);
    t->nrep_nodes--;
}

/* rep_mu held. */
static size_t unrecorded(const tg *t) {
    return t->rep_held + t->rep_unrec + t->rep_taking;
}

/* rep_mu held. */
static bool half_taken(const tg *t) {
    return unrecorded(t) * 2 >= (size_t)t->c.max_unrecorded;
}

/* Set under rep_mu, so the gauge never goes back to an older count. */
static void show(tg *t) {
    tg_gauge(t, t->m_unrecorded, (double)unrecorded(t));
}

/* Asks the intake thread to write now, as ack() does. */
static void wake_intake(tg *t) {
    tg_kick(t);
    if (t->multi && !atomic_load(&t->quiescing)) curl_multi_wakeup(t->multi);
}

void tg_replied_register(tg *t, int64_t chat, int64_t message, int64_t seq) {
    if (!message) return;
    tg_rep_node *n = calloc(1, sizeof *n);
    if (!n) return;
    n->chat = chat;
    n->message = message;
    n->seq = seq;
    int64_t k = rep_key(chat, message);
    pthread_mutex_lock(&t->rep_mu);
    tg_rep_node *head = tg_map_get(t->rep_keys, k);
    if (!head) {
        if (tg_map_put(t->rep_keys, k, n) != 0) {
            free(n);
            n = NULL;
        }
    } else {
        while (head->next)
            head = head->next;
        head->next = n;
    }
    if (n) t->nrep_nodes++;
    pthread_mutex_unlock(&t->rep_mu);
}

/* Queues seq to be stored as answered; rep_mu held. */
static void rep_done_push(tg *t, int64_t seq) {
    if (t->nrep_done == t->caprep_done) {
        size_t cap = t->caprep_done ? t->caprep_done * 2 : 256;
        int64_t *v = realloc(t->rep_done, cap * sizeof *v);
        if (!v) return;
        t->rep_done = v;
        t->caprep_done = cap;
    }
    t->rep_done[t->nrep_done++] = seq;
}

/* Recent albums: the parts submitted with a head update count as answered
 * when it is (older ones: a crash between their reply and the watermark may
 * answer a part again). */
#define ALBUM_RING 256

struct tg_rep_album {
    int64_t head, parts[TG_ALBUM_MAX - 1];
    size_t n;
};

void tg_replied_album(tg *t, int64_t head, const int64_t *parts, size_t n) {
    if (n > TG_ALBUM_MAX - 1) n = TG_ALBUM_MAX - 1;
    pthread_mutex_lock(&t->rep_mu);
    if (!t->rep_albums) t->rep_albums = calloc(ALBUM_RING, sizeof *t->rep_albums);
    if (t->rep_albums) {
        struct tg_rep_album *a = &t->rep_albums[t->rep_album_pos++ % ALBUM_RING];
        a->head = head;
        memcpy(a->parts, parts, n * sizeof *parts);
        a->n = n;
    }
    pthread_mutex_unlock(&t->rep_mu);
}

/* Queues the parts submitted with head as answered; rep_mu held. */
static void album_answered(tg *t, int64_t head) {
    for (size_t i = 0; t->rep_albums && i < ALBUM_RING; i++) {
        struct tg_rep_album *a = &t->rep_albums[i];
        if (a->head != head || !a->n) continue;
        for (size_t j = 0; j < a->n; j++)
            rep_done_push(t, a->parts[j]);
        a->n = 0;
        return;
    }
}

void tg_replied_unregister(tg *t, int64_t chat, int64_t message, int64_t seq) {
    if (!message) return;
    pthread_mutex_lock(&t->rep_mu);
    tg_rep_node *prev, *n = rep_find(t, chat, message, seq, &prev);
    if (n) {
        rep_unlink(t, n, prev);
        if (n->held) {
            t->rep_held -= n->held;
            pthread_cond_broadcast(&t->rep_cv);
            show(t);
        }
        free(n);
    }
    pthread_mutex_unlock(&t->rep_mu);
}

/* A reply to n's update takes a slot (rep_mu held); its seq, or -1 with
 * nothing to record. */
static int64_t hold(tg *t, tg_rep_node *n) {
    if (!n) return -1;
    n->held++;
    t->rep_held++;
    show(t);
    return n->seq;
}

int64_t tg_replied_reserve(tg *t, int64_t chat, int64_t message) {
    if (!message) return -1;
    pthread_mutex_lock(&t->rep_mu);
    tg_rep_node *n = rep_find(t, chat, message, -1, NULL);
    int64_t seq = n ? n->seq : -1;
    int waited = 0;
    while (n && unrecorded(t) >= (size_t)t->c.max_unrecorded && !atomic_load(&t->closing)) {
        if (!waited) tg_count(t, t->m_record_waits, NULL, NULL, 1);
        waited = 1;
        t->rep_waiters++;
        wake_intake(t);
        pthread_cond_wait(&t->rep_cv, &t->rep_mu);
        t->rep_waiters--;
        /* Another reply to it may have marked it meanwhile: this one then
         * goes out as a further reply, with nothing left to record. */
        n = rep_find(t, chat, message, seq, NULL);
    }
    if (n && unrecorded(t) >= (size_t)t->c.max_unrecorded) { /* stopped while waiting */
        pthread_mutex_unlock(&t->rep_mu);
        return -2;
    }
    seq = hold(t, n);
    pthread_mutex_unlock(&t->rep_mu);
    return seq;
}

int64_t tg_replied_try_reserve(tg *t, int64_t chat, int64_t message) {
    if (!message) return -1;
    pthread_mutex_lock(&t->rep_mu);
    tg_rep_node *n = rep_find(t, chat, message, -1, NULL);
    if (n && unrecorded(t) >= (size_t)t->c.max_unrecorded) {
        wake_intake(t);
        pthread_mutex_unlock(&t->rep_mu);
        return -3;
    }
    int64_t seq = hold(t, n);
    pthread_mutex_unlock(&t->rep_mu);
    return seq;
}

void tg_replied_release(tg *t, int64_t chat, int64_t message, int64_t seq) {
    if (!message || seq < 0) return;
    pthread_mutex_lock(&t->rep_mu);
    tg_rep_node *n = rep_find(t, chat, message, seq, NULL);
    if (n && n->held) {
        n->held--;
        t->rep_held--;
        pthread_cond_broadcast(&t->rep_cv);
        show(t);
    }
    pthread_mutex_unlock(&t->rep_mu);
}

void tg_replied_mark(tg *t, int64_t chat, int64_t message) {
    if (!message) return;
    pthread_mutex_lock(&t->rep_mu);
    tg_rep_node *prev, *n = rep_find(t, chat, message, -1, &prev);
    if (n) {
        rep_unlink(t, n, prev);
        rep_done_push(t, n->seq);
        /* An album's other parts were answered with it. */
        album_answered(t, n->seq);
        /* The slots stay taken until the mark is stored; a reply that
         * holds none (it took another update of the message) still
         * counts once. */
        t->rep_held -= n->held;
        t->rep_unrec += n->held ? n->held : 1;
        show(t);
        /* Half the slots taken: have the marks written now, before
         * senders must wait for them. Once per write. */
        if (t->rep_waiters || (!t->rep_kicked && half_taken(t))) {
            t->rep_kicked = true;
            wake_intake(t);
        }
        free(n);
    }
    pthread_mutex_unlock(&t->rep_mu);
}

/* Drops registrations at or below the watermark (updates the core handled
 * without a reply: rejections). rep_mu held. */
typedef struct rep_sweep {
    int64_t w;
    size_t freed, held;
} rep_sweep;

static int rep_stale(void *arg, int64_t key, void *val) {
    (void)key;
    rep_sweep *a = arg;
    tg_rep_node *head = val;
    for (tg_rep_node *p = head; p->next;) {
        if (p->next->seq <= a->w) {
            tg_rep_node *d = p->next;
            p->next = d->next;
            a->held += d->held;
            free(d);
            a->freed++;
        } else {
            p = p->next;
        }
    }
    if (head->seq > a->w) return 0;
    a->freed++;
    a->held += head->held;
    if (!head->next) {
        free(head);
        return 1;
    }
    /* The map keeps pointing at head: move the next node into it. */
    tg_rep_node *d = head->next;
    *head = *d;
    free(d);
    return 0;
}

static void rep_free_all(void *val) {
    for (tg_rep_node *n = val, *next; n; n = next) {
        next = n->next;
        free(n);
    }
}

int tg_replied_urgent(tg *t) {
    pthread_mutex_lock(&t->rep_mu);
    int urgent = t->rep_waiters > 0 || half_taken(t);
    pthread_mutex_unlock(&t->rep_mu);
    return urgent;
}

size_t tg_replied_pending(tg *t) {
    pthread_mutex_lock(&t->rep_mu);
    size_t n = t->nrep_done + t->rep_unrec; /* a mark's seq may have found no memory */
    pthread_mutex_unlock(&t->rep_mu);
    return n;
}

int64_t *tg_replied_take(tg *t, int64_t w, int64_t now, size_t *n) {
    pthread_mutex_lock(&t->rep_mu);
    int64_t *done = t->rep_done;
    *n = t->nrep_done;
    t->rep_done = NULL;
    t->nrep_done = t->caprep_done = 0;
    t->rep_taking += t->rep_unrec;
    t->rep_unrec = 0;
    t->rep_kicked = false;
    if (t->nrep_nodes > 256 && now - t->rep_swept_ms > 1000) {
        rep_sweep a = {.w = w, .freed = 0, .held = 0};
        tg_map_sweep(t->rep_keys, rep_stale, &a);
        t->nrep_nodes -= a.freed;
        t->rep_swept_ms = now;
        if (a.held) {
            t->rep_held -= a.held;
            pthread_cond_broadcast(&t->rep_cv);
            show(t);
        }
    }
    pthread_mutex_unlock(&t->rep_mu);
    return done;
}

void tg_replied_put_back(tg *t, const int64_t *seqs, size_t n) {
    pthread_mutex_lock(&t->rep_mu);
    for (size_t i = 0; i < n; i++)
        rep_done_push(t, seqs[i]);
    t->rep_unrec += t->rep_taking;
    t->rep_taking = 0;
    pthread_mutex_unlock(&t->rep_mu);
}

void tg_replied_committed(tg *t) {
    pthread_mutex_lock(&t->rep_mu);
    if (t->rep_taking) {
        t->rep_taking = 0;
        pthread_cond_broadcast(&t->rep_cv);
        show(t);
    }
    pthread_mutex_unlock(&t->rep_mu);
}

void tg_replied_free(tg *t) {
    if (t->rep_keys) tg_map_free(t->rep_keys, rep_free_all);
    t->rep_keys = NULL;
    free(t->rep_done);
    t->rep_done = NULL;
    free(t->rep_albums);
    t->rep_albums = NULL;
}
