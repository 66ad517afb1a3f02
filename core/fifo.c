/* Intrusive FIFO; see core.h. */
#include "core.h"

void fifo_push(fifo *f, qnode *n) {
    n->next = NULL;
    if (f->tail)
        f->tail->next = n;
    else
        f->head = n;
    f->tail = n;
    f->len++;
}

qnode *fifo_pop(fifo *f) {
    qnode *n = f->head;
    if (!n) return NULL;
    f->head = n->next;
    if (!f->head) f->tail = NULL;
    f->len--;
    return n;
}
