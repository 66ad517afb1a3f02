/* A pool of reusable curl easy handles: a handle keeps its connections
 * alive between requests, so taking the most recently returned one reuses
 * a warm connection. The pool is thread-safe; a handle belongs to one
 * thread between get and put. */
#ifndef ROUTERD_COMMON_CURL_POOL_H
#define ROUTERD_COMMON_CURL_POOL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct easy_pool {
    pthread_mutex_t mu; /* held only to push and pop, never across I/O */
    CURL **idle;        /* LIFO of handles ready for reuse, made at the first put */
    size_t n, max;
    CURLSH *share; /* given to each new handle: DNS cache, TLS sessions */
    bool ready;
} easy_pool;

/* Keeps at most max_idle idle handles. */
void easy_pool_init(easy_pool *p, size_t max_idle);
/* New handles join share (NULL: none). curl_easy_reset keeps it, so it
 * is set once per handle. Call before the first get. */
void easy_pool_share(easy_pool *p, CURLSH *share);
/* An idle handle as its last user left it (options included: reset it
 * before use), or a new one; NULL when curl cannot make one. */
CURL *easy_pool_get(easy_pool *p);
/* Gives c back for reuse, or cleans it up when the pool is full (or its
 * list cannot be allocated). NULL is ignored. */
void easy_pool_put(easy_pool *p, CURL *c);
/* Cleans up the idle handles and frees the pool. A zeroed pool that was
 * never initialised is ignored. */
void easy_pool_destroy(easy_pool *p);

#endif
