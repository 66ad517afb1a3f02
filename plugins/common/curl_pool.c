/* See curl_pool.h. */
#include "curl_pool.h"

#include <stdlib.h>

void easy_pool_init(easy_pool *p, size_t max_idle) {
    *p = (easy_pool){.max = max_idle, .ready = true};
    pthread_mutex_init(&p->mu, NULL);
}

void easy_pool_share(easy_pool *p, CURLSH *share) {
    p->share = share;
}

CURL *easy_pool_get(easy_pool *p) {
    CURL *c = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0) c = p->idle[--p->n];
    pthread_mutex_unlock(&p->mu);
    if (c) return c;
    c = curl_easy_init();
    if (c && p->share) curl_easy_setopt(c, CURLOPT_SHARE, p->share);
    return c;
}

void easy_pool_put(easy_pool *p, CURL *c) {
    if (!c) return;
    pthread_mutex_lock(&p->mu);
    if (!p->idle && p->max) p->idle = calloc(p->max, sizeof *p->idle);
    if (p->idle && p->n < p->max) {
        p->idle[p->n++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (c) curl_easy_cleanup(c);
}

void easy_pool_destroy(easy_pool *p) {
    if (!p->ready) return;
    for (size_t i = 0; i < p->n; i++)
        curl_easy_cleanup(p->idle[i]);
    free(p->idle);
    pthread_mutex_destroy(&p->mu);
    *p = (easy_pool){0};
}
