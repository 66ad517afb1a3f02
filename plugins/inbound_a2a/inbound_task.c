/* Tasks in the host's store, their state changes, the answers taken by
 * intercept(), and the two threads: the sender (delivers stored
 * `submitted` tasks) and the timer (fails questions at their deadline,
 * forgets old finished tasks).
 *
 * Keys: t/<task> the task (JSON), m/<caller>/<sha256 of messageId> its
 * task id (dedupe), p/<transport>/<chat>/<task> while it is open,
 * s/<task> while it waits for delivery, a/<transport>/<chat>/<sent id> the
 * task a sent question belongs to (late button presses). */
#include "inbound.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sbuf.h"

static const char *const state03[TS_N] = {"submitted", "input-required", "completed", "failed",
                                          "canceled"};
static const char *const state10[TS_N] = {"TASK_STATE_SUBMITTED", "TASK_STATE_INPUT_REQUIRED",
                                          "TASK_STATE_COMPLETED", "TASK_STATE_FAILED",
                                          "TASK_STATE_CANCELED"};

const char *ib_state_name(ib_state s, int v10) {
    return s < TS_N ? (v10 ? state10 : state03)[s] : "unknown";
}

int ib_terminal(ib_state s) {
    return s == TS_COMPLETED || s == TS_FAILED || s == TS_CANCELED;
}

int64_t ib_wall_ms(ib *b) {
    return b->h->wall_ns() / 1000000;
}

void ib_iso(int64_t ms, char *out, size_t sz) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char d[32];
    strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, sz, "%s.%03dZ", d, (int)(ms % 1000));
}

/* ---- the stored form ----------------------------------------------------- */

void ib_task_free(ib_task *t) {
    char **s[] = {&t->id,     &t->ctx_id, &t->caller, &t->skill,  &t->transport,
                  &t->msg_id, &t->text,   &t->sent,   &t->answer, &t->reason};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        free(*s[i]);
    for (size_t i = 0; t->choices && t->choices[i]; i++)
        free(t->choices[i]);
    free(t->choices);
    memset(t, 0, sizeof *t);
}

static void put_str(cJSON *o, const char *k, const char *v) {
    if (v) cJSON_AddStringToObject(o, k, v);
}

/* int64 as text: JSON numbers lose digits past 2^53. */
static void put_i64(cJSON *o, const char *k, int64_t v) {
    char n[24];
    snprintf(n, sizeof n, "%" PRId64, v);
    cJSON_AddStringToObject(o, k, n);
}

static char *task_dump(const ib_task *t) {
    cJSON *o = cJSON_CreateObject();
    put_str(o, "id", t->id);
    put_str(o, "ctx", t->ctx_id);
    put_str(o, "caller", t->caller);
    put_str(o, "skill", t->skill);
    put_str(o, "tr", t->transport);
    put_str(o, "mid", t->msg_id);
    put_str(o, "text", t->text);
    put_str(o, "sent", t->sent);
    put_str(o, "answer", t->answer);
    put_str(o, "reason", t->reason);
    put_i64(o, "chat", t->chat);
    put_i64(o, "sent_id", t->sent_id);
    put_i64(o, "created", t->created_ms);
    put_i64(o, "updated", t->updated_ms);
    put_i64(o, "deadline", t->deadline_ms);
    put_i64(o, "delivered", t->delivered_ms);
    put_i64(o, "answered", t->answered_ms);
    cJSON_AddBoolToObject(o, "notify", t->notify);
    cJSON_AddStringToObject(o, "state", state03[t->state]);
    if (t->choices) {
        cJSON *a = cJSON_AddArrayToObject(o, "choices");
        for (size_t i = 0; t->choices[i]; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(t->choices[i]));
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static char *get_str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static int64_t get_i64(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? strtoll(v->valuestring, NULL, 10) : 0;
}

static int task_parse(const char *json, ib_task *t) {
    memset(t, 0, sizeof *t);
    cJSON *o = cJSON_Parse(json);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return -1;
    }
    t->id = get_str(o, "id");
    t->ctx_id = get_str(o, "ctx");
    t->caller = get_str(o, "caller");
    t->skill = get_str(o, "skill");
    t->transport = get_str(o, "tr");
    t->msg_id = get_str(o, "mid");
    t->text = get_str(o, "text");
    t->sent = get_str(o, "sent");
    t->answer = get_str(o, "answer");
    t->reason = get_str(o, "reason");
    t->chat = get_i64(o, "chat");
    t->sent_id = get_i64(o, "sent_id");
    t->created_ms = get_i64(o, "created");
    t->updated_ms = get_i64(o, "updated");
    t->deadline_ms = get_i64(o, "deadline");
    t->delivered_ms = get_i64(o, "delivered");
    t->answered_ms = get_i64(o, "answered");
    t->notify = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "notify"));
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
    t->state = TS_N;
    for (int i = 0; i < TS_N && cJSON_IsString(st); i++)
        if (!strcmp(st->valuestring, state03[i])) t->state = (ib_state)i;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
    int n = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : 0;
    if (n > 0 && n <= IB_CHOICES_MAX) {
        t->choices = calloc((size_t)n + 1, sizeof *t->choices);
        for (int i = 0; t->choices && i < n; i++) {
            const cJSON *c = cJSON_GetArrayItem(ch, i);
            t->choices[i] = strdup(cJSON_IsString(c) ? c->valuestring : "");
        }
    }
    cJSON_Delete(o);
    int ok = t->id && t->caller && t->transport && t->state < TS_N && t->sent;
    if (!ok) ib_task_free(t);
    return ok ? 0 : -1;
}

int ib_task_load(ib *b, const char *id, ib_task *t) {
    char key[16 + IB_ID_MAX];
    if (!id || strlen(id) > IB_ID_MAX) return -1;
    snprintf(key, sizeof key, "t/%s", id);
    char *v = NULL;
    size_t n = 0;
    if (b->h->kv_get(b->ctx, key, &v, &n) != RD_OK || !v) return -1;
    int rc = task_parse(v, t);
    free(v);
    return rc;
}

/* ---- keys ------------------------------------------------------------------ */

static void pkey(const ib_task *t, char *k, size_t sz) {
    snprintf(k, sz, "p/%s/%" PRId64 "/%s", t->transport, t->chat, t->id);
}

static void akey(const char *tr, int64_t chat, int64_t sent, char *k, size_t sz) {
    snprintf(k, sz, "a/%s/%" PRId64 "/%" PRId64, tr, chat, sent);
}

/* The messageId is hashed: any text a caller sends makes a safe key. */
void ib_mkey(const char *caller, const char *msg_id, char *k, size_t sz) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(msg_id, strlen(msg_id), md, &mdlen, EVP_sha256(), NULL);
    char hex[65];
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    snprintf(k, sz, "m/%s/%s", caller, hex);
}

static int new_id(char out[40]) {
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) return -1;
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
    return 0;
}

/* ---- waiting for changes ------------------------------------------------------ */

uint64_t ib_gen(ib *b) {
    pthread_mutex_lock(&b->mu);
    uint64_t g = b->gen;
    pthread_mutex_unlock(&b->mu);
    return g;
}

static void wait_locked(ib *b, int64_t ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&b->cv, &b->mu, &ts);
}

uint64_t ib_wait(ib *b, uint64_t seen, int64_t ms) {
    int64_t end = b->h->now_ms() + ms;
    pthread_mutex_lock(&b->mu);
    int64_t left;
    while (b->gen == seen && !b->stopping && (left = end - b->h->now_ms()) > 0)
        wait_locked(b, left);
    uint64_t g = b->gen;
    pthread_mutex_unlock(&b->mu);
    return g;
}

/* mu held: wakes streams, blocked sends and the threads. */
static void changed_locked(ib *b) {
    b->gen++;
    pthread_cond_broadcast(&b->cv);
}

void ib_kick_sender(ib *b) {
    pthread_mutex_lock(&b->mu);
    b->kick = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* ---- counting ---------------------------------------------------------------- */

static int count_visit(void *arg, const char *key, const void *val, size_t len) {
    (void)key, (void)val, (void)len;
    (*(size_t *)arg)++;
    return 0;
}

static size_t count_prefix(ib *b, const char *prefix) {
    size_t n = 0;
    b->h->kv_scan(b->ctx, prefix, count_visit, &n);
    return n;
}

void ib_count_pending(ib *b) {
    if (b->pending_s) b->h->set(b->pending_s, (double)count_prefix(b, "p/"));
}

/* ---- state changes ------------------------------------------------------------- */

/* mu held. Writes t with its new state and the index keys that go with
 * it, in one transaction. 0, or -1 when the store refused. */
static int save_locked(ib *b, ib_task *t, ib_state from) {
    char tk[16 + IB_ID_MAX], pk[256], sk[16 + IB_ID_MAX], ak[256];
    snprintf(tk, sizeof tk, "t/%s", t->id);
    pkey(t, pk, sizeof pk);
    snprintf(sk, sizeof sk, "s/%s", t->id);
    char *json = task_dump(t);
    if (!json) return -1;
    rd_kv_op ops[4] = {{.op = RD_KV_PUT, .key = tk, .val = json, .val_len = strlen(json)}};
    size_t n = 1;
    if (from == TS_SUBMITTED && t->state != TS_SUBMITTED)
        ops[n++] = (rd_kv_op){.op = RD_KV_DEL, .key = sk};
    if (ib_terminal(t->state)) ops[n++] = (rd_kv_op){.op = RD_KV_DEL, .key = pk};
    if (from == TS_SUBMITTED && t->state != TS_SUBMITTED && t->sent_id) {
        akey(t->transport, t->chat, t->sent_id, ak, sizeof ak);
        ops[n++] = (rd_kv_op){.op = RD_KV_PUT, .key = ak, .val = t->id, .val_len = strlen(t->id)};
    }
    rd_status st = b->h->kv_txn(b->ctx, ops, n);
    free(json);
    if (st != RD_OK) return -1;
    changed_locked(b);
    return 0;
}

/* mu held. With a shared store another replica may change the same task
 * (its answer, our expiry): claim x/<task> around the read and the write.
 * The claim's token, 0 when no claim is needed, -1 when none was had
 * within about 2 s. */
static int64_t lock_task(ib *b, const char *id) {
    const rd_host *h = b->h;
    if (!b->shared_store || !RD_HAS(h, claim) || !h->claim) return 0;
    char ck[16 + IB_ID_MAX];
    snprintf(ck, sizeof ck, "x/%s", id);
    for (int i = 0; i < 40; i++) {
        int64_t tok = h->claim(b->ctx, ck, 0);
        if (tok) return tok > 0 ? tok : -1;
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static void unlock_task(ib *b, const char *id, int64_t tok) {
    if (tok <= 0) return;
    char ck[16 + IB_ID_MAX];
    snprintf(ck, sizeof ck, "x/%s", id);
    b->h->claim(b->ctx, ck, tok);
}

/* Moves task id to state `to` when it is in one of the states of mask
 * (bit per ib_state); fill() sets what goes with it. 0 moved, -1 unknown
 * or not in such a state, -2 the store refused (or another replica held
 * the task). *out (may be NULL) gets the task as it is afterwards (or as
 * it was, when it did not move). */
typedef void (*fill_fn)(ib_task *t, void *arg);

static int move(ib *b, const char *id, unsigned mask, ib_state to, fill_fn fill, void *arg,
                ib_task *out) {
    ib_task t = {0};
    pthread_mutex_lock(&b->mu);
    int64_t tok = lock_task(b, id);
    if (tok < 0 || ib_task_load(b, id, &t)) {
        unlock_task(b, id, tok);
        pthread_mutex_unlock(&b->mu);
        if (out) memset(out, 0, sizeof *out);
        return tok < 0 ? -2 : -1;
    }
    int rc = -1;
    if (mask & (1u << t.state)) {
        ib_state from = t.state;
        t.state = to;
        t.updated_ms = ib_wall_ms(b);
        if (fill) fill(&t, arg);
        rc = save_locked(b, &t, from) ? -2 : 0;
    }
    unlock_task(b, id, tok);
    pthread_mutex_unlock(&b->mu);
    if (out)
        *out = t;
    else
        ib_task_free(&t);
    return rc;
}

#define OPEN ((1u << TS_SUBMITTED) | (1u << TS_INPUT))

static void set_reason(ib_task *t, void *arg) {
    free(t->reason);
    t->reason = strdup(arg);
}

/* ---- creation ------------------------------------------------------------------- */

/* The task a dedupe key names; a crash between the key and the task
 * leaves a key without one: the task is made then under that id. */
static int dedupe_hit(ib *b, const char *mk, ib_task *t) {
    char *id = NULL;
    size_t n = 0;
    if (b->h->kv_get(b->ctx, mk, &id, &n) != RD_OK || !id) return -1;
    ib_task old;
    for (int i = 0; i < 20; i++) { /* another thread may be writing it */
        if (!ib_task_load(b, id, &old)) {
            free(id);
            ib_task_free(t);
            *t = old;
            return 0;
        }
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    free(t->id);
    t->id = id;
    return 1;
}

static rd_status claim_message(ib *b, ib_task *t, const char *mk) {
    rd_status st;
    if (RD_HAS(b->h, kv_add) && b->h->kv_add)
        st = b->h->kv_add(b->ctx, mk, t->id, strlen(t->id));
    else {
        char *v = NULL;
        size_t n;
        st = b->h->kv_get(b->ctx, mk, &v, &n) == RD_OK ? RD_E_DUPLICATE : RD_OK;
        free(v);
        if (st == RD_OK) st = b->h->kv_put(b->ctx, mk, t->id, strlen(t->id));
    }
    if (st != RD_E_DUPLICATE) return st;
    return dedupe_hit(b, mk, t) == 0 ? RD_E_DUPLICATE : RD_OK;
}

/* mu held. The task another request stored under t's id: t becomes it,
 * and the index keys just written are taken back where its state no
 * longer has them. */
static void adopt_locked(ib *b, ib_task *t, const char *pk, const char *sk) {
    ib_task old;
    if (ib_task_load(b, t->id, &old)) return;
    rd_kv_op ops[2];
    size_t n = 0;
    char opk[256];
    pkey(&old, opk, sizeof opk); /* a retry may have named another person */
    if (old.state != TS_SUBMITTED) ops[n++] = (rd_kv_op){.op = RD_KV_DEL, .key = sk};
    if (ib_terminal(old.state) || strcmp(opk, pk))
        ops[n++] = (rd_kv_op){.op = RD_KV_DEL, .key = pk};
    if (n) b->h->kv_txn(b->ctx, ops, n);
    ib_task_free(t);
    *t = old;
}

rd_status ib_task_create(ib *b, ib_task *t) {
    char id[40], ctx[40], mk[IB_NAME_MAX + 80];
    if (new_id(id) || new_id(ctx)) return RD_E_INTERNAL;
    t->id = strdup(id);
    if (!t->ctx_id) t->ctx_id = strdup(ctx);
    ib_mkey(t->caller, t->msg_id, mk, sizeof mk);
    rd_status st = claim_message(b, t, mk);
    if (st != RD_OK) return st;
    t->state = TS_SUBMITTED;
    t->created_ms = t->updated_ms = ib_wall_ms(b);
    t->deadline_ms = t->created_ms + b->cf.answer_timeout;
    char tk[16 + IB_ID_MAX], pk[256], sk[16 + IB_ID_MAX];
    snprintf(tk, sizeof tk, "t/%s", t->id);
    snprintf(sk, sizeof sk, "s/%s", t->id);
    pkey(t, pk, sizeof pk);
    char *json = task_dump(t);
    if (!json) return RD_E_INTERNAL;
    /* The indexes first (a crash then leaves keys without a task, which
     * readers skip), then the task itself, inserted only if absent: a
     * request that took over a dedupe key whose writer was merely slow
     * adopts the task that writer stored instead of writing it again
     * (which would deliver the question a second time). */
    rd_kv_op ops[2] = {{.op = RD_KV_PUT, .key = pk, .val = "", .val_len = 0},
                       {.op = RD_KV_PUT, .key = sk, .val = "", .val_len = 0}};
    pthread_mutex_lock(&b->mu);
    st = b->h->kv_txn(b->ctx, ops, 2);
    if (st == RD_OK) st = b->h->kv_add(b->ctx, tk, json, strlen(json));
    if (st == RD_E_DUPLICATE) adopt_locked(b, t, pk, sk);
    if (st == RD_OK) {
        if (!b->earliest_ms || t->deadline_ms < b->earliest_ms) b->earliest_ms = t->deadline_ms;
        b->kick = 1;
        changed_locked(b);
    }
    pthread_mutex_unlock(&b->mu);
    free(json);
    if (st == RD_OK) ib_count_pending(b);
    return st;
}

int ib_task_cancel(ib *b, const char *id, const char *caller, ib_task *out) {
    ib_task t;
    if (ib_task_load(b, id, &t)) return -1;
    int mine = !strcmp(t.caller, caller);
    ib_task_free(&t);
    if (!mine) return -1;
    int rc = move(b, id, OPEN, TS_CANCELED, NULL, NULL, out);
    if (rc == -1 && out->id) return -2;
    if (rc == 0) {
        b->h->log(b->ctx, RD_LOG_INFO, "task %s from %s: canceled", id, caller);
        ib_count_pending(b);
    }
    return rc == 0 ? 0 : rc == -2 ? -3 : -1;
}

/* ---- the sender ---------------------------------------------------------------- */

typedef struct delivered_arg {
    int64_t sent_id;
} delivered_arg;

static void set_sent(ib_task *t, void *arg) {
    t->sent_id = ((delivered_arg *)arg)->sent_id;
    t->delivered_ms = t->updated_ms;
}

/* What a delivery's status makes of the task; 1 when worth trying again. */
static int delivered(ib *b, const ib_task *t, rd_status st, int64_t sent, const rd_error *err) {
    const rd_host *h = b->h;
    if (st == RD_E_UNAVAILABLE || st == RD_E_RETRY || st == RD_E_FULL) {
        int64_t now = h->now_ms(); /* once a minute: a transport may be away for long */
        if (!b->warned_ms || now - b->warned_ms >= 60000) {
            b->warned_ms = now;
            h->log(b->ctx, RD_LOG_WARN,
                   "task %s from %s: delivery to %s not possible now (%s), retried every "
                   "retry_delay",
                   t->id, t->caller, t->skill, err->msg);
        }
        return 1;
    }
    if (st != RD_OK && st != RD_E_TIMEOUT) {
        char why[300];
        snprintf(why, sizeof why, "the message could not be delivered: %s", err->msg);
        move(b, t->id, 1u << TS_SUBMITTED, TS_FAILED, set_reason, why, NULL);
        h->log(b->ctx, RD_LOG_WARN, "task %s from %s: delivery to %s refused: %s", t->id, t->caller,
               t->skill, err->msg);
        ib_count_pending(b);
        return 0;
    }
    /* A timeout may still deliver: the question counts as asked (quote
     * replies cannot find it without its id; the one-pending rule can). */
    delivered_arg da = {sent};
    move(b, t->id, 1u << TS_SUBMITTED, t->notify ? TS_COMPLETED : TS_INPUT, set_sent, &da, NULL);
    h->log(b->ctx, RD_LOG_INFO, "task %s from %s: %s delivered to %s%s", t->id, t->caller,
           t->notify ? "notification" : "question", t->skill,
           st == RD_E_TIMEOUT ? " (the wait ran out; its message id is unknown)" : "");
    if (t->notify) ib_count_pending(b);
    return 0;
}

/* host->deliver() for one stored task; 1 when worth trying again later. */
static int deliver_one(ib *b, const ib_task *t) {
    const rd_host *h = b->h;
    if (b->shared_store && RD_HAS(h, claim) && h->claim) {
        char ck[16 + IB_ID_MAX];
        snprintf(ck, sizeof ck, "d/%s", t->id);
        int64_t tok = h->claim(b->ctx, ck, 0);
        if (tok < 0) return 1;  /* the store cannot say: later */
        if (tok == 0) return 0; /* another replica sends it */
        /* A replica whose claim ran out may have sent it meanwhile. */
        ib_task now;
        if (ib_task_load(b, t->id, &now)) return 0;
        int still = now.state == TS_SUBMITTED;
        ib_task_free(&now);
        if (!still) return 0;
    }
    rd_outbound out = {.size = sizeof out,
                       .chat_id = t->chat,
                       .text = t->sent,
                       .text_len = strlen(t->sent),
                       .flags = t->notify ? 0 : RD_OUT_QUESTION,
                       .correlation_id = t->id,
                       .update_id = -1,
                       .choices = (const char *const *)t->choices,
                       .caller = t->caller};
    int64_t sent = 0;
    rd_error err = {0};
    rd_status st = h->deliver(b->ctx, t->transport, &out, b->cf.deliver_timeout, &sent, &err);
    return delivered(b, t, st, sent, &err);
}

typedef struct id_list {
    char **v;
    size_t n, max;
} id_list;

/* Collects the last path segment of each key (the task id). */
static int collect_visit(void *arg, const char *key, const void *val, size_t len) {
    (void)val, (void)len;
    id_list *l = arg;
    if (l->n >= l->max) return 1;
    const char *id = strrchr(key, '/');
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv) return 1;
    l->v = nv;
    l->v[l->n] = strdup(id ? id + 1 : key);
    if (l->v[l->n]) l->n++;
    return 0;
}

static void ids_free(id_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

int ib_stopping(ib *b) {
    pthread_mutex_lock(&b->mu);
    int s = b->stopping;
    pthread_mutex_unlock(&b->mu);
    return s;
}

/* One pass over s/: 1 when a delivery should be tried again later. */
static int send_pass(ib *b) {
    id_list l = {.max = 256};
    b->h->kv_scan(b->ctx, "s/", collect_visit, &l);
    int again = 0;
    int64_t now = ib_wall_ms(b);
    for (size_t i = 0; i < l.n && !ib_stopping(b); i++) {
        ib_task t;
        if (ib_task_load(b, l.v[i], &t)) continue;
        if (t.state == TS_SUBMITTED && t.deadline_ms > now) again |= deliver_one(b, &t);
        ib_task_free(&t);
    }
    ids_free(&l);
    return again;
}

static void *sender_main(void *arg) {
    pthread_setname_np(pthread_self(), "inbound-sender");
    ib *b = arg;
    while (!ib_stopping(b)) {
        int again = send_pass(b);
        pthread_mutex_lock(&b->mu);
        int64_t wait = again ? b->cf.retry_delay : 60000;
        int64_t end = b->h->now_ms() + wait, left;
        while (!b->kick && !b->stopping && (left = end - b->h->now_ms()) > 0)
            wait_locked(b, left);
        b->kick = 0;
        pthread_mutex_unlock(&b->mu);
    }
    return NULL;
}

/* ---- the timer ----------------------------------------------------------------- */

static void fmt_duration(int64_t ms, char *out, size_t sz) {
    if (ms % 86400000 == 0)
        snprintf(out, sz, "%" PRId64 "d", ms / 86400000);
    else if (ms % 3600000 == 0)
        snprintf(out, sz, "%" PRId64 "h", ms / 3600000);
    else if (ms % 60000 == 0)
        snprintf(out, sz, "%" PRId64 "m", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(out, sz, "%" PRId64 "s", ms / 1000);
    else
        snprintf(out, sz, "%" PRId64 "ms", ms);
}

static void expire(ib *b, const ib_task *t) {
    char d[32], why[64];
    fmt_duration(b->cf.answer_timeout, d, sizeof d);
    snprintf(why, sizeof why, "no answer within %s", d);
    if (move(b, t->id, OPEN, TS_FAILED, set_reason, why, NULL) != 0) return;
    b->h->log(b->ctx, RD_LOG_INFO, "task %s from %s: expired (%s)", t->id, t->caller, why);
    for (size_t i = 0; i < b->ncallers; i++)
        if (!strcmp(b->callers[i].name, t->caller) && b->expired_s[i])
            b->h->add(b->expired_s[i], 1);
}

/* Fails open tasks past their deadline; returns the next deadline. */
static int64_t expire_pass(ib *b, int64_t now) {
    id_list l = {.max = SIZE_MAX};
    b->h->kv_scan(b->ctx, "p/", collect_visit, &l);
    int64_t next = 0;
    for (size_t i = 0; i < l.n; i++) {
        ib_task t;
        if (ib_task_load(b, l.v[i], &t)) continue;
        if (!ib_terminal(t.state) && t.deadline_ms <= now)
            expire(b, &t);
        else if (!ib_terminal(t.state) && (!next || t.deadline_ms < next))
            next = t.deadline_ms;
        ib_task_free(&t);
    }
    ids_free(&l);
    ib_count_pending(b);
    return next;
}

/* Finished tasks older than task_retention: their task, dedupe key and
 * sent-message key go (a retried messageId after that is a new task). */
typedef struct prune_acc {
    ib *b;
    int64_t before;
    size_t n;
} prune_acc;

static void forget(ib *b, const ib_task *t) {
    char tk[16 + IB_ID_MAX], mk[IB_NAME_MAX + 80], ak[256];
    snprintf(tk, sizeof tk, "t/%s", t->id);
    rd_kv_op ops[3] = {{.op = RD_KV_DEL, .key = tk}};
    size_t n = 1;
    if (t->msg_id) {
        ib_mkey(t->caller, t->msg_id, mk, sizeof mk);
        ops[n++] = (rd_kv_op){.op = RD_KV_DEL, .key = mk};
    }
    if (t->sent_id) {
        akey(t->transport, t->chat, t->sent_id, ak, sizeof ak);
        ops[n++] = (rd_kv_op){.op = RD_KV_DEL, .key = ak};
    }
    b->h->kv_txn(b->ctx, ops, n);
}

static int prune_visit(void *arg, const char *key, const void *val, size_t len) {
    (void)key, (void)len;
    prune_acc *p = arg;
    ib_task t;
    if (task_parse(val, &t)) return 0;
    if (ib_terminal(t.state) && t.updated_ms < p->before) {
        forget(p->b, &t);
        p->n++;
    }
    ib_task_free(&t);
    return 0;
}

static void prune(ib *b) {
    prune_acc p = {b, ib_wall_ms(b) - b->cf.task_retention, 0};
    b->h->kv_scan(b->ctx, "t/", prune_visit, &p);
    if (p.n) b->h->log(b->ctx, RD_LOG_INFO, "%zu finished tasks forgotten", p.n);
}

#define PRUNE_EVERY_MS 600000

/* With a shared store other replicas add tasks this one never saw: every
 * rescan_interval the timer reads p/ again (deadlines) and wakes the
 * sender to read s/ (a dead replica's undelivered questions). */
static void *timer_main(void *arg) {
    pthread_setname_np(pthread_self(), "inbound-expiry");
    ib *b = arg;
    int64_t next = expire_pass(b, ib_wall_ms(b));
    prune(b);
    int64_t pruned = b->h->now_ms(), rescanned = pruned;
    pthread_mutex_lock(&b->mu);
    b->earliest_ms = next;
    while (!b->stopping) {
        wait_locked(b, 250);
        if (b->h->now_ms() - pruned >= PRUNE_EVERY_MS) {
            pthread_mutex_unlock(&b->mu);
            prune(b);
            pthread_mutex_lock(&b->mu);
            pruned = b->h->now_ms();
        }
        int rescan = b->shared_store && b->h->now_ms() - rescanned >= b->cf.rescan_interval;
        if (rescan) {
            rescanned = b->h->now_ms();
            b->kick = 1;
            pthread_cond_broadcast(&b->cv);
        }
        int64_t now = ib_wall_ms(b);
        if (!rescan && (!b->earliest_ms || now < b->earliest_ms)) continue;
        b->earliest_ms = 0;
        pthread_mutex_unlock(&b->mu);
        next = expire_pass(b, now);
        pthread_mutex_lock(&b->mu);
        if (next && (!b->earliest_ms || next < b->earliest_ms)) b->earliest_ms = next;
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int ib_threads_start(ib *b, rd_error *err) {
    if (pthread_create(&b->timer, NULL, timer_main, b)) goto fail;
    b->timer_on = 1;
    if (pthread_create(&b->sender, NULL, sender_main, b)) goto fail;
    b->sender_on = 1;
    return 0;
fail:
    b->h->error(err, RD_E_INTERNAL, "fatal", "cannot start a thread");
    return -1;
}

void ib_threads_stop(ib *b) {
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (b->sender_on) pthread_join(b->sender, NULL);
    if (b->timer_on) pthread_join(b->timer, NULL);
    b->sender_on = b->timer_on = 0;
}

/* ---- answers ----------------------------------------------------------------- */

typedef struct answer_arg {
    const char *text;
    size_t len;
    int64_t at;
} answer_arg;

static void set_answer(ib_task *t, void *arg) {
    answer_arg *a = arg;
    free(t->answer);
    t->answer = strndup(a->text, a->len);
    t->answered_ms = a->at;
}

/* The chat's tasks waiting for an answer: the one whose question
 * reply_to names, and the only one when there is just one. */
typedef struct pick {
    char *match, *only;
    int64_t match_ms, only_ms; /* when each was delivered */
    size_t waiting;
} pick;

static void pick_task(ib *b, const id_list *l, int64_t reply_to, pick *p) {
    for (size_t i = 0; i < l->n; i++) {
        ib_task t;
        if (ib_task_load(b, l->v[i], &t)) continue;
        if (t.state == TS_INPUT) {
            p->waiting++;
            if (reply_to && t.sent_id == reply_to && !p->match) {
                p->match = strdup(t.id);
                p->match_ms = t.delivered_ms;
            }
            if (!p->only) {
                p->only = strdup(t.id);
                p->only_ms = t.delivered_ms;
            }
        }
        ib_task_free(&t);
    }
}

/* Names the task and its caller in the host's event of the taken message. */
static void answered(ib *b, const char *id, const char *caller) {
    if (RD_HAS(b->h, answered) && b->h->answered) b->h->answered(b->ctx, id, caller);
}

/* A button of a question already answered, expired or canceled. */
static int late_press(ib *b, const rd_request *rq, int64_t reply_to) {
    if (!(rq->flags & RD_MSG_CHOICE) || !reply_to) return 0;
    char ak[256];
    akey(rq->transport, rq->chat_id, reply_to, ak, sizeof ak);
    char *id = NULL;
    size_t n;
    if (b->h->kv_get(b->ctx, ak, &id, &n) != RD_OK || !id) return 0;
    b->h->log(b->ctx, RD_LOG_INFO, "task %s: a button pressed after the question closed, dropped",
              id);
    ib_task t = {0};
    int known = ib_task_load(b, id, &t) == 0; /* gone (purged): no caller to name */
    answered(b, id, known ? t.caller : NULL);
    if (known) ib_task_free(&t);
    free(id);
    return 1;
}

/* Cuts s to at most max bytes on a UTF-8 boundary. */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
    if (len <= max) return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static int take_answer(ib *b, const rd_request *rq, const char *id, int64_t delivered_ms) {
    answer_arg a = {rq->text ? rq->text : "", 0, ib_wall_ms(b)};
    a.len = utf8_cut(a.text, rq->text ? rq->text_len : 0, (size_t)b->cf.max_answer_bytes);
    ib_task t = {0};
    int rc = move(b, id, 1u << TS_INPUT, TS_COMPLETED, set_answer, &a, &t);
    if (rc == 0) {
        double secs = (double)(a.at - delivered_ms) / 1000.0;
        if (b->answer_s) b->h->observe(b->answer_s, secs < 0 ? 0 : secs);
        b->h->log(b->ctx, RD_LOG_INFO, "task %s from %s: answered by %s after %.0f s", t.id,
                  t.caller, t.skill, secs);
        answered(b, t.id, t.caller);
        ib_count_pending(b);
    } else if (rc == -2) {
        b->h->log(b->ctx, RD_LOG_ERROR,
                  "task %s: the answer could not be stored (the store refused, or another "
                  "replica held the task); not taken",
                  id);
    }
    ib_task_free(&t);
    return rc == 0;
}

/* Rules, in order: the question the message replies to (a quote or a
 * button), a button of a question already closed (dropped), the only
 * question waiting in the chat; else the message is not an answer. A
 * button names its message: one of another message (a persona's reply)
 * is never taken by the third rule. */
int ib_intercept(void *self, const rd_request *rq) {
    ib *b = self;
    if (!rq || !rq->transport || strlen(rq->transport) > IB_NAME_MAX) return 0;
    int64_t reply_to = RD_HAS(rq, reply_to) ? rq->reply_to : 0;
    char prefix[IB_NAME_MAX + 32];
    snprintf(prefix, sizeof prefix, "p/%s/%" PRId64 "/", rq->transport, rq->chat_id);
    id_list l = {.max = 4096};
    b->h->kv_scan(b->ctx, prefix, collect_visit, &l);
    pick p = {0};
    pick_task(b, &l, reply_to, &p);
    ids_free(&l);
    int taken = 0;
    if (p.match)
        taken = take_answer(b, rq, p.match, p.match_ms);
    else if (late_press(b, rq, reply_to))
        taken = 1;
    else if (p.waiting == 1 && !((rq->flags & RD_MSG_CHOICE) && reply_to))
        taken = take_answer(b, rq, p.only, p.only_ms);
    free(p.match);
    free(p.only);
    return taken;
}
