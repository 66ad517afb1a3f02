/* Leadership among replicas sharing a store (lease.c). */
#ifndef ROUTERD_LEASE_H
#define ROUTERD_LEASE_H

#include "router.h"
#include "store.h"

void lease_init(int64_t lease_ms);
void lease_start(void);
/* The host's lead(): the current term (> 0) while ctx leads key, else 0. */
int64_t lease_lead(rd_ctx *ctx, const char *key);
/* For a write of ctx: *fenced says whether ctx holds a lease at all; when
 * it does, f is filled (key copied into key) and the result says whether
 * this replica leads now. */
/* The host's claim(): an expiring lease on key among replicas; release > 0
 * gives up that token. Claims never fence. */
int64_t lease_claim(rd_ctx *ctx, const char *key, int64_t release);
/* The lease length in ms, as text (host info "lease_ms"). */
const char *lease_ms_info(void);
bool lease_fence(rd_ctx *ctx, store_fence *f, char *key, size_t keysz, bool *fenced);
/* 1 leads something, 0 stands by for everything, -1 no leases. */
int lease_role(void);
void lease_release_all(void);
void lease_stop(void);

#endif
