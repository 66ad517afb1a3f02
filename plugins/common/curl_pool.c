/* See curl_pool.h. */
#include "curl_pool.h"

#include <errno.h>
#include <stdio.h>
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

static void share_lock(CURL *c, curl_lock_data d, curl_lock_access a, void *arg) {
    (void)c, (void)a;
    pthread_mutex_lock(&((curl_share_locked *)arg)->mu[d]);
}

static void share_unlock(CURL *c, curl_lock_data d, void *arg) {
    (void)c;
    pthread_mutex_unlock(&((curl_share_locked *)arg)->mu[d]);
}

void curl_share_locked_init(curl_share_locked *s) {
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&s->mu[i], NULL);
    s->ready = true;
    s->sh = curl_share_init();
    if (!s->sh) return;
    curl_share_setopt(s->sh, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(s->sh, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(s->sh, CURLSHOPT_USERDATA, s);
    curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

void curl_share_locked_free(curl_share_locked *s) {
    if (!s->ready) return;
    if (s->sh) curl_share_cleanup(s->sh);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&s->mu[i]);
    *s = (curl_share_locked){0};
}

int ca_file_check(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return errno ? errno : EIO;
    fclose(f);
    return 0;
}
