/*
 * Outbound pacing for the telegram transport, pure (the caller passes the
 * clock and holds the lock), plus the small int64-keyed map it uses.
 */
#ifndef TELEGRAM_THROTTLE_H
#define TELEGRAM_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

/* int64 -> pointer map; values are owned by the caller. Not thread-safe. */
typedef struct tg_map tg_map;
tg_map *tg_map_new(void);
void tg_map_free(tg_map *m, void (*free_val)(void *));
void *tg_map_get(const tg_map *m, int64_t key);
int tg_map_put(tg_map *m, int64_t key, void *val); /* 0 ok, -1 no memory */
void *tg_map_del(tg_map *m, int64_t key);          /* returns the value removed */
size_t tg_map_count(const tg_map *m);
/* Calls fn for each entry; when fn returns nonzero the entry is removed
 * (fn owns freeing its value then). */
void tg_map_sweep(tg_map *m, int (*fn)(void *arg, int64_t key, void *val), void *arg);

typedef struct tg_throttle_cfg {
    int64_t chat_interval_ms; /* min gap between sends to one chat; 0 = none */
    int group_per_minute;     /* sends per 60 s to one group (chat id < 0); 0 = none */
    int global_per_s;         /* sends per second overall; 0 = none */
} tg_throttle_cfg;

typedef struct tg_throttle tg_throttle;
tg_throttle *tg_throttle_new(const tg_throttle_cfg *cfg);
void tg_throttle_free(tg_throttle *t);

/* Phase 1: reserves the chat's next slot at or after now and returns it.
 * Sends to one chat are serial (host contract), so slots per chat are
 * monotonic; a chat held by a 429 or busy does not delay other chats. */
int64_t tg_throttle_chat(tg_throttle *t, int64_t chat_id, int64_t now);
/* Like tg_throttle_chat, without reserving. */
int64_t tg_throttle_chat_peek(tg_throttle *t, int64_t chat_id, int64_t now);
/* Phase 2, right before the request: the global slot at or after now
 * (a token bucket of global_per_s tokens refilled at global_per_s/s). */
int64_t tg_throttle_global(tg_throttle *t, int64_t now);
/* After a 429 for this chat: nothing is sent to it before until. */
void tg_throttle_hold(tg_throttle *t, int64_t chat_id, int64_t until);
/* Forgets chats idle for long enough; call now and then. */
void tg_throttle_gc(tg_throttle *t, int64_t now);
size_t tg_throttle_chats(const tg_throttle *t);

#endif
