/* Intrusive FIFO and the per-chat queue / watermark interplay the router
 * builds from it (modelled here on the data structures alone). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"

#include <stdlib.h>
#include <string.h>

typedef struct item {
    int64_t id; /* the node is deliberately not the first member */
    qnode q;
    int chat;
} item;

#define ITEM(n) ((item *)((char *)(n)-offsetof(item, q)))

static void fifo_basics(void **state) {
    (void)state;
    fifo f = {0};
    assert_null(fifo_pop(&f));
    assert_int_equal(f.len, 0);
    item it[5];
    for (int i = 0; i < 5; i++) {
        it[i].id = i;
        fifo_push(&f, &it[i].q);
        assert_int_equal(f.len, (size_t)i + 1);
    }
    for (int i = 0; i < 5; i++) {
        qnode *n = fifo_pop(&f);
        assert_non_null(n);
        assert_ptr_equal(ITEM(n), &it[i]);
        assert_int_equal(f.len, 4 - (size_t)i);
    }
    assert_null(fifo_pop(&f));
    assert_null(f.head);
    assert_null(f.tail);
    /* Usable again once drained (tail was reset). */
    fifo_push(&f, &it[3].q);
    fifo_push(&f, &it[1].q);
    assert_ptr_equal(ITEM(fifo_pop(&f)), &it[3]);
    assert_ptr_equal(ITEM(fifo_pop(&f)), &it[1]);
    assert_null(fifo_pop(&f));
}

static void fifo_interleaved(void **state) {
    (void)state;
    enum { N = 10000 };
    item *it = calloc(N, sizeof *it);
    fifo f = {0};
    int64_t next_in = 0, next_out = 0;
    srand(7);
    while (next_out < N) {
        /* Random mix of pushes and pops; order must stay strictly FIFO. */
        if (next_in < N && (rand() % 3 != 0 || f.len == 0)) {
            it[next_in].id = next_in;
            fifo_push(&f, &it[next_in].q);
            next_in++;
        } else {
            qnode *n = fifo_pop(&f);
            assert_non_null(n);
            assert_int_equal(ITEM(n)->id, next_out);
            next_out++;
        }
        assert_int_equal(f.len, (size_t)(next_in - next_out));
    }
    assert_null(fifo_pop(&f));
    free(it);
}

/* A node pushed again after being popped must not keep a stale link. */
static void fifo_repush_clears_link(void **state) {
    (void)state;
    fifo f = {0};
    item a = {.id = 1}, b = {.id = 2};
    fifo_push(&f, &a.q);
    fifo_push(&f, &b.q);
    assert_ptr_equal(ITEM(fifo_pop(&f)), &a);
    fifo_push(&f, &a.q); /* a.q.next still pointed at b */
    assert_ptr_equal(ITEM(fifo_pop(&f)), &b);
    assert_ptr_equal(ITEM(fifo_pop(&f)), &a);
    assert_null(fifo_pop(&f));
    assert_int_equal(f.len, 0);
}

/* Model of router_submit/worker: updates go to per-chat FIFOs; a chat is
 * worked by one worker at a time (head first); chats finish in any order.
 * The watermark must never pass an unfinished update, and each chat must
 * see its updates in submission order. */
enum { CHATS = 5, UPDATES = 3000, CHAT_CAP = 8 };

typedef struct {
    fifo q;
    int64_t last_done;
} mchat;

static void check_watermark(const watermark *w, const bool *done, int64_t first, int64_t last) {
    int64_t wm = wm_get(w);
    /* Everything up to wm is done and the next one (if seen) is not. */
    for (int64_t id = first; id <= wm; id++)
        assert_true(done[id]);
    if (wm + 1 <= last) assert_false(done[wm + 1]);
}

static void per_chat_order_and_watermark(void **state) {
    (void)state;
    mchat chats[CHATS];
    memset(chats, 0, sizeof chats);
    for (int c = 0; c < CHATS; c++)
        chats[c].last_done = -1;
    item *it = calloc(UPDATES + 1, sizeof *it);
    bool *done = calloc(UPDATES + 2, sizeof *done);
    watermark w;
    wm_init(&w);
    srand(42);
    int64_t next = 1; /* update ids start at 1 */
    int64_t handled = 0, refused = 0, last_wm = -1;
    while (handled < UPDATES) {
        if (next <= UPDATES && rand() % 2) {
            int c = rand() % CHATS;
            it[next].id = next;
            it[next].chat = c;
            assert_int_equal(wm_add(&w, next), 0);
            if (chats[c].q.len >= CHAT_CAP) {
                /* Back-pressure: forget the id; the same id is retried. */
                wm_remove(&w, next);
                refused++;
                continue;
            }
            fifo_push(&chats[c].q, &it[next].q);
            /* Submitting again while queued is a duplicate. */
            assert_int_equal(wm_add(&w, next), 1);
            next++;
        } else {
            int c = rand() % CHATS;
            qnode *n = fifo_pop(&chats[c].q);
            if (!n) continue;
            item *x = ITEM(n);
            assert_int_equal(x->chat, c);
            assert_true(x->id > chats[c].last_done); /* per-chat order */
            chats[c].last_done = x->id;
            done[x->id] = true;
            bool moved = wm_done(&w, x->id);
            handled++;
            int64_t wm = wm_get(&w);
            assert_true(wm >= last_wm);
            assert_true(moved == (wm != last_wm));
            last_wm = wm;
            check_watermark(&w, done, 1, next - 1);
            /* Handled ids are duplicates too. */
            assert_int_equal(wm_add(&w, x->id), 1);
        }
    }
    assert_true(refused > 0); /* the cap was exercised */
    assert_int_equal(wm_get(&w), UPDATES);
    assert_int_equal(wm_pending(&w), 0);
    wm_free(&w);
    free(done);
    free(it);
}

/* One slow chat holds the watermark while other chats finish. */
static void head_of_line_chat_holds_watermark(void **state) {
    (void)state;
    watermark w;
    wm_init(&w);
    fifo slow = {0}, fast = {0};
    item it[11];
    for (int64_t id = 1; id <= 10; id++) {
        it[id].id = id;
        assert_int_equal(wm_add(&w, id), 0);
        fifo_push(id == 3 ? &slow : &fast, &it[id].q);
    }
    qnode *n;
    while ((n = fifo_pop(&fast)))
        wm_done(&w, ITEM(n)->id);
    assert_int_equal(wm_get(&w), 2); /* stuck just below the slow update */
    assert_int_equal(wm_pending(&w), 8);
    n = fifo_pop(&slow);
    assert_int_equal(ITEM(n)->id, 3);
    assert_true(wm_done(&w, 3));
    assert_int_equal(wm_get(&w), 10);
    assert_int_equal(wm_pending(&w), 0);
    wm_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fifo_basics),
        cmocka_unit_test(fifo_interleaved),
        cmocka_unit_test(fifo_repush_clears_link),
        cmocka_unit_test(per_chat_order_and_watermark),
        cmocka_unit_test(head_of_line_chat_holds_watermark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
