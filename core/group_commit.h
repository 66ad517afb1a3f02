/* The queue of a group commit, shared by the state stores: writers queue,
 * the one at the head commits for every writer queued behind it, and each
 * returns once its group committed. Each writer's link lives on its own
 * stack; the queue is guarded by the store's mutex (`gmu` below). */
#ifndef ROUTERD_GROUP_COMMIT_H
#define ROUTERD_GROUP_COMMIT_H

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>

enum { GC_WAIT, GC_HEAD, GC_DONE };

typedef struct gc_link {
    struct gc_link *next;
    int state;  /* GC_WAIT, then GC_HEAD or GC_DONE, set before wake is posted */
    sem_t wake; /* posted once; safe to destroy as soon as its wait returns */
} gc_link;

typedef struct gc_queue {
    gc_link *head, *tail;
} gc_queue;

/* Appends me (gmu held, me->wake initialised); true when it heads the
 * queue and commits the next group itself. */
static inline bool gc_join(gc_queue *q, gc_link *me) {
    me->next = NULL;
    me->state = GC_WAIT;
    if (q->tail)
        q->tail->next = me;
    else
        q->head = me;
    q->tail = me;
    return q->head == me;
}

/* After gc_join() said no and gmu was released: woken once, true when me
 * now heads the queue, false when the group it was in committed. */
static inline bool gc_await(gc_link *me) {
    while (sem_wait(&me->wake) != 0)
        ;
    return me->state == GC_HEAD;
}

/* The head, once me..last committed: takes the group off the queue, then
 * wakes each member and the next head once, after gmu is free so they do
 * not wake only to wait for it. The members' links no longer change:
 * arrivals append after the next head, or start a new queue. */
static inline void gc_finish(pthread_mutex_t *gmu, gc_queue *q, gc_link *me, gc_link *last) {
    pthread_mutex_lock(gmu);
    gc_link *after = last->next;
    q->head = after;
    if (!after) q->tail = NULL;
    pthread_mutex_unlock(gmu);
    for (gc_link *r = me->next, *next; r != after; r = next) {
        next = r->next; /* before the post: r may return at once */
        r->state = GC_DONE;
        sem_post(&r->wake);
    }
    if (after) {
        after->state = GC_HEAD;
        sem_post(&after->wake);
    }
}

#endif
