/* See curl_pool.h. */
#include "curl_pool.h"

#include <stdlib.h>

int easy_pool_init(easy_pool *p, size_t max_idle) {
    *p = (easy_pool){0};
    p->idle = calloc(max_idle ? max_idle : 1, sizeof *p->idle);
    if (!p->idle) return -1;
    p->max = max_idle;
    pthread_mutex_init(&p->mu, NULL);
    return 0;
}

CURL *easy_pool_get(easy_pool *p) {
    CURL *c = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0) c = p->idle[--p->n];
    pthread_mutex_unlock(&p->mu);
    return c ? c : curl_easy_init();
}

void easy_pool_put(easy_pool *p, CURL *c) {
    if (!c) return;
    pthread_mutex_lock(&p->mu);
    if (p->n < p->max) {
        p->idle[p->n++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (c) curl_easy_cleanup(c);
}

void easy_pool_destroy(easy_pool *p) {
    if (!p->idle) return;
    for (size_t i = 0; i < p->n; i++)
        curl_easy_cleanup(p->idle[i]);
    free(p->idle);
    pthread_mutex_destroy(&p->mu);
    *p = (easy_pool){0};
}
