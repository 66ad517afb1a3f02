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

/* One DNS cache and one TLS session cache for a plugin's handles, with
 * the locks curl asks for: a connection one handle opens resumes the
 * session another made. sh is NULL when curl cannot make one (handles
 * then go without). */
typedef struct curl_share_locked {
    CURLSH *sh;
    pthread_mutex_t mu[CURL_LOCK_DATA_LAST];
    bool ready;
} curl_share_locked;
void curl_share_locked_init(curl_share_locked *s);
/* Call after every handle that joined it is cleaned up. A zeroed one
 * that was never initialised is ignored. */
void curl_share_locked_free(curl_share_locked *s);

/* 0 when a ca_file key's path can be opened for reading, else the errno:
 * checked at start, since libcurl would only say so at the first
 * request. */
int ca_file_check(const char *path);
#endif
