/* Leadership among replicas that share a store: one lease per key (a
 * long-polling bot), renewed by a core thread, fencing the holder's state
 * writes. With SQLite the one process always leads.
 *
 * A holder counts as leader only while its last renewal, measured from the
 * moment it was sent, is younger than the lease minus a margin: the lease
 * in the store (on the database clock) outlives what this process believes,
 * so a cut-off leader stops before anyone else may start. */
#include "admission.h"
#include "router.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct lease {
    rd_ctx *ctx;
    char key[128];
    int64_t token;       /* fencing token of the current term; 0 = none */
    int64_t valid_until; /* mono ms */
    int64_t renewed_at;  /* mono ms the last renewal was sent */
    bool held, released;
    rd_series *gauge;
} lease;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lease **v; /* entries never move: attempt() drops the lock */
    size_t n;
    int64_t lease_ms;
    char holder[96];
    rd_metric *m_leader;
    pthread_t th;
    bool running, stop;
    int64_t unhealthy_at; /* mono ms the store was last seen unreachable */
    char lease_ms_str[24];
} L = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

void lease_init(int64_t lease_ms) {
    L.lease_ms = lease_ms > 0 ? lease_ms : 10000;
    snprintf(L.lease_ms_str, sizeof L.lease_ms_str, "%lld", (long long)L.lease_ms);
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    char rnd[17];
    random_hex(rnd, 8);
    snprintf(L.holder, sizeof L.holder, "%.60s/%d/%s", host, (int)getpid(), rnd);
    L.m_leader = metric_family(RD_METRIC_GAUGE, "routerd_leader",
                               "1 while this replica is the active poller of the transport.",
                               (const char *const[]){"transport", NULL}, NULL, 0);
}

static int64_t margin(void) {
    int64_t m = L.lease_ms / 5;
    return m > 1000 ? 1000 : m;
}

/* One renewal or acquisition attempt (L.mu held; released around I/O). */
static void attempt(lease *l) {
    char key[128];
    snprintf(key, sizeof key, "%s", l->key);
    int64_t t0 = mono_ms(), token = 0;
    l->renewed_at = t0;
    pthread_mutex_unlock(&L.mu);
    int rc = store_lease(R.st, key, L.holder, L.lease_ms, &token);
    pthread_mutex_lock(&L.mu);
    if (l->released) return;
    bool was = l->held && mono_ms() < l->valid_until;
    if (rc == 1) {
        if (!l->held || token != l->token) {
            log_msg(l->ctx->name, RD_LOG_INFO, "leader for %s (term %lld)", l->key,
                    (long long)token);
            /* Chat state other replicas wrote while this one stood by. */
            pthread_mutex_unlock(&L.mu);
            admission_reload_overrides();
            pthread_mutex_lock(&L.mu);
        }
        l->held = true;
        l->token = token;
        l->valid_until = t0 + L.lease_ms - margin();
    } else if (rc == 0) {
        if (l->held)
            log_msg(l->ctx->name, RD_LOG_WARN, "another replica took over %s; standing by", l->key);
        l->held = false;
        l->valid_until = 0;
    } else if (was) {
        /* Unreachable store: the term may still be ours; lead() says no
         * until a renewal succeeds. */
    }
    series_set(l->gauge, l->held && mono_ms() < l->valid_until);
}

static lease *find(rd_ctx *ctx) {
    for (size_t i = 0; i < L.n; i++)
        if (L.v[i]->ctx == ctx) return L.v[i];
    return NULL;
}

static int64_t current_term(lease *l) {
    if (!l->held || l->released || !store_healthy(R.st) || mono_ms() >= l->valid_until) return 0;
    return l->token;
}

int64_t lease_lead(rd_ctx *ctx, const char *key) {
    if (!ctx || !key || !*key) return 0;
    pthread_mutex_lock(&L.mu);
    lease *l = find(ctx);
    if (!l) {
        L.v = xrealloc(L.v, (L.n + 1) * sizeof *L.v);
        l = L.v[L.n++] = xcalloc(1, sizeof *l);
        l->ctx = ctx;
        snprintf(l->key, sizeof l->key, "%s", key);
        l->gauge = metric_series(L.m_leader, (const char *const[]){ctx->inst});
        attempt(l); /* at once, so a lone replica polls without waiting a tick */
        pthread_cond_signal(&L.cv);
    } else if (strcmp(l->key, key)) {
        /* Another bot behind the same instance (token changed): a new
         * lease; the old one lapses. */
        snprintf(l->key, sizeof l->key, "%s", key);
        l->held = false;
        l->token = 0;
        attempt(l);
    }
    int64_t term = current_term(l);
    pthread_mutex_unlock(&L.mu);
    return term;
}

bool lease_fence(rd_ctx *ctx, store_fence *f, char *key, size_t keysz, bool *fenced) {
    pthread_mutex_lock(&L.mu);
    lease *l = find(ctx);
    *fenced = l != NULL;
    bool ok = true;
    if (l) {
        int64_t term = current_term(l);
        ok = term > 0;
        snprintf(key, keysz, "%s", l->key);
        *f = (store_fence){.key = key, .holder = L.holder, .token = term};
    }
    pthread_mutex_unlock(&L.mu);
    return ok;
}

int64_t lease_claim(rd_ctx *ctx, const char *key, int64_t release) {
    if (!ctx || !key || !*key) return -1;
    char k[256];
    snprintf(k, sizeof k, "claim:%s:%s", ctx->name, key);
    if (release > 0) {
        store_release(R.st, k, L.holder, release);
        return 0;
    }
    int64_t token = 0;
    int rc = store_lease(R.st, k, L.holder, L.lease_ms, &token);
    return rc == 1 ? (token > 0 ? token : 1) : rc;
}

const char *lease_ms_info(void) {
    return L.lease_ms_str[0] ? L.lease_ms_str : NULL;
}

int lease_role(void) {
    pthread_mutex_lock(&L.mu);
    int role = L.n ? 0 : -1;
    for (size_t i = 0; i < L.n; i++)
        if (current_term(L.v[i]) > 0) role = 1;
    pthread_mutex_unlock(&L.mu);
    return role;
}

/* How long the lease thread may sleep (L.mu held): every 100 ms while a
 * standby watches for a lease to take or the store is unreachable; when
 * every lease is held, until the next renewal, the end of a term (its
 * gauge) or the store's maintenance. */
static int64_t next_turn(int64_t last_maint) {
    if (!store_healthy(R.st)) return 100;
    int64_t now = mono_ms(), next = last_maint + 2000;
    for (size_t i = 0; i < L.n; i++) {
        lease *l = L.v[i];
        if (l->released) continue;
        if (!l->held) return 100;
        int64_t renew = l->renewed_at + L.lease_ms / 3;
        if (renew < next) next = renew;
        if (l->valid_until > now && l->valid_until < next) next = l->valid_until;
    }
    return next - now < 10 ? 10 : next - now > 2000 ? 2000 : next - now;
}

static void *lease_loop(void *arg) {
    pthread_setname_np(pthread_self(), "rd-lease");
    (void)arg;
    int64_t last_maint = 0;
    pthread_mutex_lock(&L.mu);
    while (!L.stop) {
        int64_t now = mono_ms();
        if (!store_healthy(R.st)) L.unhealthy_at = now;
        /* Back from a store outage, a standby waits one lease before
         * taking over, so the leader of before (which renews as soon as
         * it reconnects) keeps its term and nothing is replayed. */
        bool may_take = !L.unhealthy_at || now - L.unhealthy_at >= L.lease_ms;
        for (size_t i = 0; i < L.n && !L.stop; i++) {
            lease *l = L.v[i];
            if (l->released) continue;
            /* Holders renew three times a lease; standbys try often, so a
             * released lease is taken within a fraction of a second. */
            int64_t every = l->held ? L.lease_ms / 3 : 200;
            if ((l->held || may_take) && now - l->renewed_at >= every) attempt(l);
            series_set(l->gauge, current_term(l) > 0);
        }
        if (now - last_maint >= 2000) {
            last_maint = now;
            pthread_mutex_unlock(&L.mu);
            store_maintain(R.st, (int64_t)time(NULL));
            pthread_mutex_lock(&L.mu);
        }
        int64_t wait = next_turn(last_maint);
        struct timespec ts = deadline_in(CLOCK_REALTIME, wait * 1000);
        pthread_cond_timedwait(&L.cv, &L.mu, &ts);
    }
    pthread_mutex_unlock(&L.mu);
    return NULL;
}

void lease_start(void) {
    L.stop = false;
    if (pthread_create(&L.th, NULL, lease_loop, NULL) == 0) L.running = true;
}

/* Hands leadership over at once: the store forgets this holder's terms. */
void lease_release_all(void) {
    pthread_mutex_lock(&L.mu);
    for (size_t i = 0; i < L.n; i++) {
        lease *l = L.v[i];
        if (l->released) continue;
        l->released = true;
        series_set(l->gauge, 0);
        if (!l->held) continue;
        char key[128];
        snprintf(key, sizeof key, "%s", l->key);
        int64_t token = l->token;
        l->held = false;
        pthread_mutex_unlock(&L.mu);
        store_release(R.st, key, L.holder, token);
        log_msg(l->ctx->name, RD_LOG_INFO, "leadership of %s released", key);
        pthread_mutex_lock(&L.mu);
    }
    pthread_mutex_unlock(&L.mu);
}

void lease_stop(void) {
    pthread_mutex_lock(&L.mu);
    L.stop = true;
    pthread_cond_signal(&L.cv);
    pthread_mutex_unlock(&L.mu);
    if (L.running) pthread_join(L.th, NULL);
    L.running = false;
    for (size_t i = 0; i < L.n; i++)
        free(L.v[i]);
    free(L.v);
    L.v = NULL;
    L.n = 0;
}
