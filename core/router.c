/* Routing engine: admission (allowlist -> persona -> rate limit, in
 * admission.c) -> per-chat FIFO -> worker pool -> backend -> transport ->
 * acknowledge.
 *
 * One mutex, R.mu, guards the chat table and its idle list, the run queue
 * and its counters, each transport's watermark and closed flag, and the
 * persona maps and buckets of admission.c. It is held for bookkeeping:
 * constant work per message (at most starting a worker thread), plus table
 * resizes and sweeps in bounded batches. No backend, send, progress or activity call and no store
 * I/O runs under it; the one plugin call that does is a transport's ack() when its watermark moves
 * (so acks arrive in order; ack must not block). A chat with queued work sits at most once in the
 * run queue and is owned by one worker at a time, which gives per-chat order and cross-chat
 * parallelism. */
#include "admission.h"
#include "router.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

router R;

struct chat {
    chat *hnext;
    chat *iprev, *inext; /* idle list (oldest first) while nothing is queued or running */
    qnode runq;          /* link in R.runq */
    int tr_index;
    int64_t id;
    fifo q;
    bool busy, in_runq, in_idle;
    uint64_t gen;       /* counts the jobs started: whose is `busy` */
    atomic_int sending; /* send_text() calls past a released chat: not freed meanwhile */
    int parked;         /* its messages held until the inbound instances started */
    bucket rl;
    int rl_limit;    /* per-minute limit the bucket was last used with */
    int64_t last_ms; /* last message or rejection */
    char hash[17];   /* chat_id_hash, computed once per chat */
};

/* ---- chat table ----------------------------------------------------------
 * Chained hash that doubles at load 1 and halves below load 1/4, so its
 * slot array follows the chats in memory. A chat with nothing queued or
 * running sits on the idle list in order of last activity; the sweep frees
 * from its head, so it costs what it frees, not the table size. */
#define TAB_MIN 1024
static chat **tab;
static size_t tab_size, tab_count;
static chat *idle_head, *idle_tail;

static size_t chat_slot(int tr, int64_t id, size_t size) {
    return mix64((uint64_t)id ^ ((uint64_t)tr << 56)) & (size - 1);
}

static void tab_resize(size_t ns) {
    chat **nt = xcalloc(ns, sizeof *nt);
    for (size_t i = 0; i < tab_size; i++) {
        chat *c = tab[i];
        while (c) {
            chat *n = c->hnext;
            size_t s = chat_slot(c->tr_index, c->id, ns);
            c->hnext = nt[s];
            nt[s] = c;
            c = n;
        }
    }
    free(tab);
    tab = nt;
    tab_size = ns;
    series_set(R.m_chat_slots, (double)tab_size);
}

static void idle_unlink(chat *c) {
    if (!c->in_idle) return;
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        idle_head = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    else
        idle_tail = c->iprev;
    c->iprev = c->inext = NULL;
    c->in_idle = false;
}

/* (Re)queues c at the idle tail when nothing of it is queued or running. */
static void idle_touch(chat *c) {
    idle_unlink(c);
    if (c->busy || c->in_runq || c->q.len || c->parked || atomic_load(&c->sending)) return;
    c->iprev = idle_tail;
    if (idle_tail)
        idle_tail->inext = c;
    else
        idle_head = c;
    idle_tail = c;
    c->in_idle = true;
}

static chat *chat_get(int tr, int64_t id) {
    if (tab_count >= tab_size) tab_resize(tab_size ? tab_size * 2 : TAB_MIN);
    size_t s = chat_slot(tr, id, tab_size);
    for (chat *c = tab[s]; c; c = c->hnext)
        if (c->id == id && c->tr_index == tr) return c;
    chat *c = xcalloc(1, sizeof *c);
    c->tr_index = tr;
    c->id = id;
    c->hnext = tab[s];
    tab[s] = c;
    tab_count++;
    series_set(R.m_chats, (double)tab_count); /* exact, not only at sweeps */
    return c;
}

static void chat_remove(chat *c) {
    idle_unlink(c);
    chat **pp = &tab[chat_slot(c->tr_index, c->id, tab_size)];
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp) *pp = c->hnext;
    tab_count--;
    series_set(R.m_chats, (double)tab_count);
    free(c);
}

void chat_hash(int64_t chat_id, char out[17]) {
    char num[24], full[65];
    int n = snprintf(num, sizeof num, "%" PRId64, chat_id);
    hmac_sha256_hex(R.hash_key, strlen(R.hash_key), num, (size_t)n, full);
    memcpy(out, full, 16);
    out[16] = 0;
}

/* ---- liveness and worker growth -------------------------------------------
 * Workers start at once while fewer than spawn_floor run; past it, only
 * when the run queue has not moved for R.worker_spawn_ms with no worker
 * idle: then the workers are held in backend calls or sends, and a burst
 * served by a backend that completes later (RD_PENDING) does not start a
 * thread per chat just because none was idle in that instant. The
 * watchdog thread notices the stall; it waits that short only while the
 * stall is armed (work queued, nothing idle), else twice a second. A
 * worker the kernel shows runnable only waits for a CPU (a busy machine)
 * or computes, and another thread would not help it: only the sleeping
 * ones are replaced. */
static pthread_t wd_thread;
static bool wd_on, wd_stop;   /* under R.mu */
static pthread_cond_t wd_cv;  /* waited with R.mu, on CLOCK_MONOTONIC */
static int spawn_floor;       /* started without waiting for a stall */
static uint64_t taken;        /* pops from the run and completion queues */
static bool stall_armed;      /* the watchdog watches the queue */
static uint64_t stall_mark;   /* taken when the queue last moved */
static int64_t stall_mark_ms; /* and when */
static fifo doneq;            /* completions for a worker, see router_complete() */

typedef struct worker_rec {
    struct worker_rec *prev, *next;
    int tid;
} worker_rec;
static worker_rec *workers_head; /* under R.mu */

static void *worker_main(void *arg);

/* Starts up to n workers and counts them: under R.mu, which it releases
 * around the thread creations when n > 1 (the count is taken first, so
 * nobody else starts them twice). Returns how many started. */
static int workers_start_locked(int n) {
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    /* Small stacks keep hundreds of blocked backend calls cheap. */
    pthread_attr_setstacksize(&a, 512 * 1024);
    R.nthreads += n;
    if (n > 1) pthread_mutex_unlock(&R.mu);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        pthread_t th;
        if (pthread_create(&th, &a, worker_main, NULL) == 0) ok++;
    }
    if (n > 1) pthread_mutex_lock(&R.mu);
    R.nthreads -= n - ok;
    series_set(R.m_workers, R.nthreads);
    pthread_attr_destroy(&a);
    return ok;
}

/* Work was queued and no worker is idle: one more now below the floor,
 * else the watchdog looks for a stall. */
static void workers_grow_locked(void) {
    if (R.nthreads >= R.max_workers || R.shutdown) return;
    if (R.nthreads < spawn_floor || !wd_on) {
        workers_start_locked(1);
    } else if (!stall_armed) {
        stall_armed = true;
        stall_mark = taken;
        stall_mark_ms = mono_ms();
        pthread_cond_signal(&wd_cv);
    }
}

/* Under R.mu, which it releases while it reads procfs: how many workers
 * sleep (blocked in a call or a send), counted up to cap. One waiting
 * for a mutex is not counted: the holder runs or waits for a CPU, and a
 * new worker would queue behind the same lock (on a busy machine a
 * preempted holder otherwise looks like a stall). */
static size_t workers_asleep_locked(size_t cap) {
    size_t n = 0, asleep = 0;
    int *tids = xmalloc(((size_t)R.nthreads + 1) * sizeof *tids);
    for (worker_rec *w = workers_head; w && n <= (size_t)R.nthreads; w = w->next)
        tids[n++] = w->tid;
    pthread_mutex_unlock(&R.mu);
    for (size_t i = 0; i < n && asleep < cap; i++)
        asleep += thread_state_of(tids[i]) == THREAD_ASLEEP;
    pthread_mutex_lock(&R.mu);
    free(tids);
    return asleep;
}

/* Under R.mu: how long the watchdog may wait before looking again (-1:
 * disarmed). A stall starts a worker for each one asleep, at most as many
 * as are queued and as run already (doubling): a stall that procfs
 * misjudges costs a few threads, not `workers`, and blocking backends
 * still reach `workers` in a few rounds. */
static int64_t stall_check_locked(int64_t now) {
    size_t queued = R.runq.len + doneq.len;
    if (!queued || R.idle_threads > 0 || R.nthreads >= R.max_workers || R.shutdown) {
        stall_armed = false;
        return -1;
    }
    if (taken != stall_mark) {
        stall_mark = taken;
        stall_mark_ms = now;
    } else if (now - stall_mark_ms >= R.worker_spawn_ms) {
        size_t n = queued;
        if (n > (size_t)R.nthreads) n = (size_t)(R.nthreads > 0 ? R.nthreads : 1);
        if (n > (size_t)(R.max_workers - R.nthreads)) n = (size_t)(R.max_workers - R.nthreads);
        n = workers_asleep_locked(n);
        /* The lock was let go: look again. */
        queued = R.runq.len + doneq.len;
        if (!queued || R.idle_threads > 0 || R.nthreads >= R.max_workers || R.shutdown) {
            stall_armed = false;
            return -1;
        }
        if (n > queued) n = queued;
        if (n > (size_t)(R.max_workers - R.nthreads)) n = (size_t)(R.max_workers - R.nthreads);
        if (taken == stall_mark && n > 0) workers_start_locked((int)n);
        stall_mark = taken;
        stall_mark_ms = mono_ms();
        return R.worker_spawn_ms;
    }
    return stall_mark_ms + R.worker_spawn_ms - now;
}

/* Holds the global lock but while waiting: a deadlock or a thread that
 * keeps the lock shows up as a stale stamp, while a slow peer inside a
 * plugin call (start() waiting for Telegram) does not. */
static void *watchdog_main(void *arg) {
    pthread_setname_np(pthread_self(), "rd-watchdog");
    (void)arg;
    pthread_mutex_lock(&R.mu);
    while (!wd_stop) {
        int64_t now = mono_ms();
        atomic_store(&R.watchdog_ms, now);
        int64_t wait = 500;
        if (stall_armed) {
            int64_t left = stall_check_locked(now);
            if (left >= 0 && left < wait) wait = left > 0 ? left : 1;
        }
        struct timespec dl = deadline_in(CLOCK_MONOTONIC, wait * 1000);
        if (!wd_stop) pthread_cond_timedwait(&wd_cv, &R.mu, &dl);
    }
    pthread_mutex_unlock(&R.mu);
    return NULL;
}

#define LIVE_STALE_MS 10000

bool router_live(int64_t *age_ms, const char **phase) {
    static const char *const names[] = {"init", "starting", "running", "draining"};
    int ph = atomic_load(&R.phase);
    int64_t now = mono_ms();
    int64_t age = now - atomic_load(&R.watchdog_ms);
    /* While plugins start, the main thread waits on peers by design (each
     * start() is bounded by its own timeout); once the loop runs it must
     * keep turning. */
    if (ph == PHASE_RUNNING || ph == PHASE_DRAINING) {
        int64_t ml = now - atomic_load(&R.heartbeat_ms);
        if (ml > age) age = ml;
    }
    *age_ms = age;
    *phase = names[ph >= 0 && ph <= PHASE_DRAINING ? ph : 0];
    return age < LIVE_STALE_MS;
}

/* While inbound instances exist and have not all started, admitted
 * messages wait here instead of in their chats (under R.mu), so none is
 * routed before every intercept() can see it; deliveries meanwhile go
 * straight to their chats and are not held up behind them. */
static fifo parked;
static bool parking;

int router_init(char *err, size_t errsz) {
    (void)err, (void)errsz;
    parking = R.ninb > 0;
    pthread_mutex_init(&R.mu, NULL);
    pthread_cond_init(&R.work_cv, NULL);
    pthread_cond_init(&R.idle_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wd_cv, &ca);
    pthread_condattr_destroy(&ca);
    /* Enough to keep the CPUs busy with work that does not block. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    spawn_floor = cpus > 2 ? (int)(cpus < 32768 ? 2 * cpus : 65536) : 4;
    if (R.worker_spawn_ms <= 0 || spawn_floor > R.max_workers) spawn_floor = R.max_workers;
    taken = stall_mark = 0;
    stall_armed = false;
    atomic_store(&R.watchdog_ms, mono_ms());
    wd_stop = false;
    wd_on = pthread_create(&wd_thread, NULL, watchdog_main, NULL) == 0;
    admission_init();
    tab_resize(TAB_MIN);
    return 0;
}

static void job_free(job *j);

void router_fini(void) {
    if (wd_on) {
        pthread_mutex_lock(&R.mu);
        wd_stop = true;
        pthread_cond_signal(&wd_cv);
        pthread_mutex_unlock(&R.mu);
        pthread_join(wd_thread, NULL);
        wd_on = false;
    }
    pthread_cond_destroy(&wd_cv);
    for (qnode *q; (q = fifo_pop(&parked));)
        job_free((job *)q);
    for (size_t i = 0; i < tab_size; i++) {
        chat *c = tab[i];
        while (c) {
            chat *n = c->hnext;
            qnode *q;
            while ((q = fifo_pop(&c->q)))
                job_free((job *)q);
            free(c);
            c = n;
        }
    }
    free(tab);
    tab = NULL;
    tab_size = tab_count = 0;
    idle_head = idle_tail = NULL;
    admission_fini();
}

/* ---- workers ------------------------------------------------------------ */

/* The job a worker thread is processing: when that job finishes on its own
 * worker, the worker looks at the run queue again right after. */
static _Thread_local const struct job *carrying;
/* The inbound instance whose intercept() runs on this worker, for
 * answered(); NULL outside intercept(). */
static _Thread_local rd_ctx *intercepting;

/* Queues c to run. True when an idle worker should be woken: the caller
 * signals R.work_cv after releasing R.mu, so the worker does not wake only
 * to wait for the lock. */
static bool runq_push_locked(chat *c) {
    c->in_runq = true;
    fifo_push(&R.runq, &c->runq);
    if (R.idle_threads > 0) return true;
    workers_grow_locked();
    return false;
}

static void finish_locked_ack(rd_ctx *tr, int64_t update_id) {
    if (wm_done(&tr->wm, update_id) && tr->ops->ack && !atomic_load(&tr->closed))
        tr->ops->ack(tr->self, wm_get(&tr->wm));
}

void router_close_transports(void) {
    pthread_mutex_lock(&R.mu);
    for (size_t i = 0; i < R.ntr; i++)
        atomic_store(&R.tr[i]->closed, true);
    pthread_mutex_unlock(&R.mu);
}

/* Checked before every send: a flag, not the router lock, so workers do
 * not queue on R.mu for it. */
static bool transport_closed(rd_ctx *tr) {
    return atomic_load(&tr->closed);
}

/* Marks an update handled without a job (rejections, skips). */
static void handled_now_locked(rd_ctx *tr, int64_t update_id) {
    if (wm_add(&tr->wm, update_id) == 0) finish_locked_ack(tr, update_id);
}

void router_skip(rd_ctx *tr, int64_t update_id, const char *why) {
    pthread_mutex_lock(&R.mu);
    handled_now_locked(tr, update_id);
    pthread_mutex_unlock(&R.mu);
    log_msg(tr->name, RD_LOG_DEBUG, "update %" PRId64 " skipped: %s", update_id, why ? why : "");
}

int64_t router_watermark(rd_ctx *tr) {
    pthread_mutex_lock(&R.mu);
    int64_t w = wm_get(&tr->wm);
    pthread_mutex_unlock(&R.mu);
    return w;
}

/* The correlation id events and send() carry: a delivery's own, if given. */
static const char *job_corr(const job *j) {
    return j->ext_corr ? j->ext_corr : j->corr;
}

/* A plugin's id or name for events: cut, valid UTF-8; NULL for none. */
static char *name_dup(const char *s) {
    if (!s || !*s) return NULL;
    size_t n = strnlen(s, 128);
    return utf8_clean_dup(s, n, &n);
}

void router_answered(rd_ctx *from, const char *correlation_id, const char *caller) {
    /* Only the instance whose intercept() runs here, on the message's worker. */
    job *j = (job *)carrying;
    if (!from || !j || from != intercepting || j->kind != JOB_MSG) return;
    free(j->ext_corr);
    free(j->caller);
    j->ext_corr = name_dup(correlation_id);
    j->caller = name_dup(caller);
}

static void fill_event(rd_event *ev, const job *j, rd_event_type type, rd_log_level lvl) {
    memset(ev, 0, sizeof *ev);
    ev->size = sizeof *ev;
    ev->type = type;
    ev->level = lvl;
    ev->ts_ns = wall_ns();
    ev->source = "core";
    ev->correlation_id = job_corr(j);
    ev->chat_id_hash = j->hash;
    ev->persona = j->p ? j->p->tag : NULL;
    ev->transport = j->tr->inst;
    /* A delivery or an intercepted answer names its inbound instance. */
    const rd_ctx *by = j->origin ? j->origin : j->taken_by;
    ev->backend = by ? by->name : j->p && j->p->backend ? j->p->backend->inst : NULL;
    ev->status = j->status;
    ev->failure_class = j->klass[0] ? j->klass : NULL;
    ev->update_id = j->update_id;
    ev->t_received_ns = j->t_recv_ns;
    ev->t_routed_ns = j->t_route_ns;
    ev->t_backend_start_ns = j->t_bstart_ns;
    ev->t_backend_end_ns = j->t_bend_ns;
    ev->t_send_start_ns = j->t_sstart_ns;
    ev->t_send_end_ns = j->t_send_ns;
    ev->trace_id = j->corr;
    ev->span_id = j->span;
    ev->backend_span_id = j->t_bstart_ns ? j->bspan : NULL;
    ev->caller = j->caller;
    if (j->t_send_ns) ev->latency_ms = (double)(j->t_send_ns - j->t_recv_ns) / 1e6;
}

static void reject_event(const job *j, const char *status, const char *why) {
    rd_event ev;
    fill_event(&ev, j, RD_EV_REJECTED, RD_LOG_INFO);
    ev.status = status;
    ev.msg = why;
    ev.latency_ms = (double)(wall_ns() - j->t_recv_ns) / 1e6;
    emit_event(&ev);
}

/* Trace and span ids: random, but they guard nothing, so the fast
 * per-thread generator (seeded from the CSPRNG) serves. */
static void ids_hex(char *out, int words) {
    static const char d[] = "0123456789abcdef";
    for (int w = 0; w < words; w++) {
        uint64_t x = rand_u64();
        for (int i = 0; i < 16; i++, x >>= 4)
            out[w * 16 + i] = d[x & 15];
    }
    out[words * 16] = 0;
}

static job *job_new(rd_ctx *tr, const rd_inbound *in) {
    /* Backends get valid UTF-8 without NUL, whatever the transport read. */
    size_t tl = in->text ? utf8_clean(in->text, in->text_len, NULL) : 0;
    size_t ml = in->meta && RD_HAS(in, meta) ? strlen(in->meta) + 1 : 0;
    job *j = xcalloc(1, sizeof *j + tl + 1 + ml);
    j->kind = JOB_MSG;
    j->tr = tr;
    j->update_id = in->update_id;
    j->chat_id = in->chat_id;
    j->user_id = in->user_id;
    j->message_id = in->message_id;
    j->thread_id = in->thread_id;
    j->flags = in->flags;
    j->reply_to = RD_HAS(in, reply_to) ? in->reply_to : 0;
    j->text = (char *)(j + 1);
    utf8_clean(in->text ? in->text : "", in->text ? in->text_len : 0, j->text);
    j->text_len = tl;
    if (ml) {
        j->meta = j->text + tl + 1;
        memcpy(j->meta, in->meta, ml);
    }
    j->t_recv_ns = wall_ns();
    j->t_recv_ms = mono_ms();
    ids_hex(j->corr, 2);
    ids_hex(j->span, 1);
    ids_hex(j->bspan, 1);
    snprintf(j->traceparent, sizeof j->traceparent, "00-%s-%s-01", j->corr, j->bspan);
    j->reply.job = j;
    pthread_mutex_init(&j->reply.mu, NULL);
    return j;
}

static void delivery_done(delivery *d, rd_status st, const rd_error *err, int64_t sent_id);

static void job_free(job *j) {
    if (j->dl) { /* never sent (shutdown): the caller is told */
        rd_error e = {.code = RD_E_UNAVAILABLE, .klass = "transient"};
        snprintf(e.msg, sizeof e.msg, "not sent: routerd is stopping");
        delivery_done(j->dl, RD_E_UNAVAILABLE, &e, 0);
    }
    free(j->ext_corr);
    free(j->caller);
    att_free(&j->att);
    att_free(&j->reply.att);
    choices_free(j->reply.choices);
    free(j->reply.buf);
    pthread_mutex_destroy(&j->reply.mu);
    free(j);
}

static int tr_index(const rd_ctx *tr) {
    for (size_t i = 0; i < R.ntr; i++)
        if (R.tr[i] == tr) return (int)i;
    return 0;
}

/* What router_submit keeps of a queued job, which a worker may free. */
typedef struct job_snap {
    char corr[sizeof((job *)0)->corr], hash[sizeof((job *)0)->hash], span[sizeof((job *)0)->span];
    int64_t t_recv_ns;
} job_snap;

/* Counts, logs and reports an update refused at admission. */
static void report_reject(rd_ctx *tr, job *j, persona *p, const char *reject) {
    if (!strcmp(reject, "allowlist")) {
        series_add(tr->m_rejected_allowlist, 1);
        log_msg(tr->name, RD_LOG_INFO, "chat %s not in allowlist: update %" PRId64 " dropped",
                j->hash, j->update_id);
    } else if (!strcmp(reject, "no_persona")) {
        series_add(tr->m_rejected_nopersona, 1);
        log_msg(tr->name, RD_LOG_WARN,
                "chat %s has no persona (add chats = * to one): update %" PRId64 " dropped",
                j->hash, j->update_id);
    } else {
        series_add(tr->m_rejected_ratelimit, 1);
        series_add(p->m_rl_hits, 1);
        log_msg(tr->name, RD_LOG_INFO, "chat %s over its rate limit: update %" PRId64 " dropped",
                j->hash, j->update_id);
    }
    char status[48];
    snprintf(status, sizeof status, "rejected:%s", reject);
    reject_event(j, status, reject);
}

static void received_event(rd_ctx *tr, persona *p, const job_snap *snap, int64_t update_id) {
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_RECEIVED,
                   .level = RD_LOG_DEBUG,
                   .ts_ns = wall_ns(),
                   .source = "core",
                   .correlation_id = snap->corr,
                   .chat_id_hash = snap->hash,
                   .persona = p->tag,
                   .transport = tr->inst,
                   .backend = p->backend->inst,
                   .status = "received",
                   .update_id = update_id,
                   .t_received_ns = snap->t_recv_ns,
                   .trace_id = snap->corr,
                   .span_id = snap->span};
    emit_event(&ev);
    series_add(p->m_received[tr_index(tr)], 1);
}

rd_status router_submit(rd_ctx *tr, const rd_inbound *in) {
    if (atomic_load(&R.draining)) return RD_E_FULL;
    job *j = job_new(tr, in);
    char why[160];
    if (att_copy_in(&j->att, in, why, sizeof why) != RD_OK) {
        log_msg(tr->name, RD_LOG_ERROR, "update %" PRId64 " refused: %s", in->update_id, why);
        job_free(j);
        return RD_E_FATAL;
    }
    j->tr_index = tr_index(tr);
    const char *reject = NULL;
    int rl = 1;
    bool wake = false;
    pthread_mutex_lock(&R.mu);
    if (wm_add(&tr->wm, in->update_id) == 1) {
        pthread_mutex_unlock(&R.mu);
        job_free(j);
        return RD_E_DUPLICATE;
    }
    if (!admission_allowed(tr, in->chat_id)) {
        reject = "allowlist";
    } else if (!(j->p = admission_persona_locked(in->chat_id))) {
        reject = "no_persona";
    } else {
        chat *c = chat_get(j->tr_index, in->chat_id);
        if (!c->hash[0]) chat_hash(in->chat_id, c->hash);
        memcpy(j->hash, c->hash, sizeof j->hash);
        size_t cap = R.chat_queue_depth > 0 ? (size_t)R.chat_queue_depth : (size_t)R.queue_depth;
        if (R.waiting >= (size_t)R.queue_depth || c->q.len >= cap) {
            /* Back-pressure: forget the id so the retry is not a duplicate. */
            wm_remove(&tr->wm, in->update_id);
            if (!c->last_ms) c->last_ms = mono_ms();
            idle_touch(c); /* a new chat refused at once is still swept */
            pthread_mutex_unlock(&R.mu);
            job_free(j);
            return RD_E_FULL;
        }
        int64_t now = mono_ms();
        c->rl_limit = j->p->chat_limit;
        rl = admission_rate_locked(&c->rl, j->p, now);
        if (rl == 0) { /* first refusal in this window: queue one polite notice */
            j->kind = JOB_NOTICE;
            rl = 1;
            j->status = "rate_limited";
            series_add(j->p->m_rl_hits, 1);
        }
        if (rl == 1) {
            j->c = c;
            j->t_route_ns = wall_ns();
            c->last_ms = now;
            idle_unlink(c);
            R.waiting++;
            if (parking) {
                fifo_push(&parked, &j->q);
                c->parked++;
            } else {
                fifo_push(&c->q, &j->q);
                if (!c->busy && !c->in_runq) wake = runq_push_locked(c);
            }
            series_set(R.m_queue_depth, (double)R.waiting);
        } else {
            reject = "rate_limited";
            c->last_ms = now;
            idle_touch(c);
        }
    }
    /* Once queued, a worker may finish and free j at any moment: keep what
     * the event needs. */
    bool notice = j->kind == JOB_NOTICE;
    persona *p = j->p;
    job_snap snap;
    memcpy(snap.corr, j->corr, sizeof snap.corr);
    memcpy(snap.hash, j->hash, sizeof snap.hash);
    memcpy(snap.span, j->span, sizeof snap.span);
    snap.t_recv_ns = j->t_recv_ns;
    if (reject) finish_locked_ack(tr, in->update_id);
    pthread_mutex_unlock(&R.mu);
    if (wake) pthread_cond_signal(&R.work_cv);
    if (reject && !j->hash[0]) chat_hash(in->chat_id, j->hash);

    if (reject) {
        report_reject(tr, j, p, reject);
        job_free(j);
        return RD_OK;
    }
    if (notice)
        log_msg(tr->name, RD_LOG_INFO, "chat %s over its rate limit: notice queued", snap.hash);
    received_event(tr, p, &snap, in->update_id);
    return RD_OK;
}

/* ---- processing ---------------------------------------------------------- */
/* Brackets a handle(), send() or progress() call: one at a time for an
 * instance whose plugin sets RD_PF_SERIAL, no-ops otherwise. */
static bool serial(const rd_ctx *c) {
    return c->desc && (c->desc->flags & RD_PF_SERIAL);
}

static void ctx_serial_enter(rd_ctx *c) {
    if (serial(c)) pthread_mutex_lock(&c->serial_mu);
}

static void ctx_serial_leave(rd_ctx *c) {
    if (serial(c)) pthread_mutex_unlock(&c->serial_mu);
}

static void job_finish(job *j);

/* What follows a send, now or from router_send_done(): the deliver()
 * caller is told, a failure logged and counted. */
static void send_after(job *j, rd_status st, rd_error *err) {
    j->t_send_ns = wall_ns();
    if (st != RD_OK && !err->msg[0]) snprintf(err->msg, sizeof err->msg, "send failed");
    if (j->dl) { /* the deliver() caller may go on now */
        delivery_done(j->dl, st, err, st == RD_OK ? j->sent_id : 0);
        j->dl = NULL;
    }
    if (st != RD_OK) {
        log_msg(j->tr->name, RD_LOG_ERROR, "correlation %s: reply to chat %s not delivered: %s",
                job_corr(j), j->hash, err->msg);
        rd_event ev;
        fill_event(&ev, j, RD_EV_SEND_FAILED, RD_LOG_ERROR);
        ev.status = "send_failed";
        ev.msg = err->msg;
        emit_event(&ev);
        j->status = "send_failed";
    }
}

/* A send flag of a transport built for ABI minor `since` or later (a
 * serial transport gets none of them). */
static bool tr_sends(const rd_ctx *tr, uint32_t since, uint32_t flag) {
    return tr->desc && tr->desc->abi_minor >= since && (tr->desc->flags & flag) &&
           !(tr->desc->flags & RD_PF_SERIAL);
}

/* Under R.mu: the job of generation gen no longer holds c, if it still
 * did; 1 when a worker must be woken for c's next message (the worker
 * carrying the job, `carried`, takes from the run queue next anyway). */
static bool chat_free_locked(chat *c, uint64_t gen, bool carried) {
    if (!c->busy || c->gen != gen) return false; /* freed already */
    c->busy = false;
    return c->q.len && !c->in_runq && runq_push_locked(c) && !carried;
}

/* After an ordered transport's send() (1.7, c->sending held since before
 * it): a reply it took (pending) frees the chat for its next message,
 * unless send_done() got there first. */
static void chat_release(chat *c, uint64_t gen, bool pending, bool carried) {
    if (!pending) { /* the caller ends the job itself */
        atomic_fetch_sub(&c->sending, 1);
        return;
    }
    pthread_mutex_lock(&R.mu);
    bool wake = chat_free_locked(c, gen, carried);
    atomic_fetch_sub(&c->sending, 1);
    idle_touch(c);
    /* under the lock: see job_finish() */
    if (wake) pthread_cond_signal(&R.work_cv);
    pthread_mutex_unlock(&R.mu);
}

/* What send_text() left to its caller. */
enum { SEND_ENDED = 0, SEND_LATER, SEND_WOULDBLOCK };

/* Sends text for j. SEND_LATER when the transport finishes later
 * (RD_PENDING): router_send_done() then ends the job, not the caller.
 * nowait (a transport with RD_PF_NOWAIT_SEND, on a backend's thread):
 * SEND_WOULDBLOCK when the transport would have waited and sent nothing. */
static int send_text(job *j, const char *text, uint32_t flags, bool nowait) {
    rd_outbound out = {.size = sizeof out,
                       .chat_id = j->chat_id,
                       .thread_id = j->thread_id,
                       .reply_to = j->message_id,
                       .text = text,
                       .text_len = strlen(text),
                       .flags = flags,
                       .correlation_id = job_corr(j),
                       .edit_of = j->reply.progress_id,
                       .update_id = j->update_id,
                       .sent_id = j->dl ? &j->sent_id : NULL,
                       .done = (rd_send *)j};
    if (out.edit_of) out.flags |= RD_OUT_FINAL_EDIT;
    if (nowait) out.flags |= RD_OUT_NOWAIT;
    /* what the backend (or deliver()) added goes with its answer */
    if (!(flags & RD_OUT_NOTICE) || j->dl) {
        out.attachments = (const rd_attachment *const *)j->reply.att.v;
        out.nattachments = j->reply.att.n;
        out.choices = (const char *const *)j->reply.choices;
    }
    rd_error err = {0};
    j->t_sstart_ns = wall_ns();
    if (transport_closed(j->tr)) { /* too late: the update stays unacknowledged */
        j->status = "abandoned";
        return SEND_ENDED;
    }
    /* A pending send may end (and free j) before send() returns. */
    rd_ctx *tr = j->tr;
    chat *c = tr_sends(tr, 7, RD_PF_ORDERED_SEND) ? j->c : NULL;
    uint64_t gen = j->gen;
    bool carried = carrying == j;
    if (c) atomic_fetch_add(&c->sending, 1);
    ctx_serial_enter(tr);
    rd_status st = tr->ops->send(tr->self, &out, &err);
    ctx_serial_leave(tr);
    if (c) chat_release(c, gen, st == RD_PENDING, carried);
    if (st == RD_PENDING) return SEND_LATER;
    if (st == RD_E_WOULDBLOCK && nowait) return SEND_WOULDBLOCK;
    send_after(j, st, &err);
    return SEND_ENDED;
}

/* host->send_done(): the end of a send that returned RD_PENDING, on the
 * transport's thread. What is left is short (events, the acknowledgement,
 * the chat's next message queued for a worker), so it runs here. */
void router_send_done(rd_send *s, rd_status st, int64_t sent_id, const rd_error *err) {
    job *j = (job *)s;
    if (!j) return;
    rd_error e = {0};
    if (err && st != RD_OK) e = *err;
    if (st == RD_PENDING) { /* not an end: a transport bug, counted as a failure */
        st = RD_E_INTERNAL;
        snprintf(e.msg, sizeof e.msg, "send_done() called with RD_PENDING");
    }
    j->sent_id = st == RD_OK ? sent_id : 0;
    send_after(j, st, &e);
    job_finish(j);
}

/* What the backend's answer makes of j: its status, the backend's metrics
 * and log lines, and the text to send with its flags. Once per message. */
static const char *answer_of(job *j, rd_status st, const rd_error *err, uint32_t *flags) {
    rd_ctx *be = j->p->backend;
    j->t_bend_ns = wall_ns();
    if (j->tr->ops->activity) {
        rd_outbound w = {.size = sizeof w,
                         .chat_id = j->chat_id,
                         .thread_id = j->thread_id,
                         .update_id = j->update_id};
        j->tr->ops->activity(j->tr->self, &w, 0);
    }
    series_observe(be->m_latency, (double)(j->t_bend_ns - j->t_bstart_ns) / 1e9);
    if (j->reply.len) { /* transports get valid UTF-8 without NUL */
        char *clean = utf8_clean_dup(j->reply.buf, j->reply.len, &j->reply.len);
        free(j->reply.buf);
        j->reply.buf = clean;
        j->reply.cap = j->reply.len + 1;
    }
    if (st == RD_OK && j->reply.len == 0 && !j->reply.att.n) {
        st = RD_E_FATAL;
        snprintf(j->klass, sizeof j->klass, "empty");
        log_msg(be->name, RD_LOG_WARN, "correlation %s: backend returned an empty reply", j->corr);
    }
    if (st == RD_OK) {
        j->status = "ok";
        *flags = 0;
        return j->reply.buf ? j->reply.buf : "";
    } else {
        if (err && err->klass[0]) snprintf(j->klass, sizeof j->klass, "%s", err->klass);
        if (!j->klass[0])
            snprintf(j->klass, sizeof j->klass, "%s",
                     st == RD_E_TIMEOUT                           ? "timeout"
                     : st == RD_E_RETRY || st == RD_E_UNAVAILABLE ? "transient"
                                                                  : "fatal");
        const char *lv[] = {be->inst, j->klass};
        series_add(metric_series(R.m_backend_fail, lv), 1);
        log_msg(be->name, RD_LOG_WARN, "correlation %s: backend failed (%s): %s", j->corr, j->klass,
                err && err->msg[0] ? err->msg : "no detail");
        j->status = "failed";
        *flags = RD_OUT_NOTICE;
        return j->reply.len ? j->reply.buf : R.failure_notice;
    }
}

/* After the backend answered (directly or via complete()). */
static void after_backend(job *j, rd_status st, const rd_error *err) {
    uint32_t flags;
    const char *text = answer_of(j, st, err, &flags);
    if (send_text(j, text, flags, false) == SEND_ENDED) job_finish(j);
}

static void process(job *j) {
    if (j->kind == JOB_DELIVER) {
        j->status = "delivered";
        if (send_text(j, j->text, j->out_flags, false) == SEND_ENDED) job_finish(j);
        return;
    }
    if (j->kind == JOB_NOTICE) {
        if (send_text(j, R.rate_limit_notice, RD_OUT_NOTICE, false) == SEND_ENDED) job_finish(j);
        return;
    }
    if (admission_is_persona_cmd(j)) {
        char *reply = admission_persona_command(j);
        j->status = "ok";
        int sent = send_text(j, reply, 0, false);
        free(reply);
        if (sent == SEND_ENDED) job_finish(j);
        return;
    }
    if (R.persona_cmd) {
        /* A /persona switch queued before this message applies to it. */
        pthread_mutex_lock(&R.mu);
        persona *now = admission_persona_locked(j->chat_id);
        pthread_mutex_unlock(&R.mu);
        if (now) j->p = now;
    }
    rd_ctx *be = j->p->backend;
    rd_request rq = {.size = sizeof rq,
                     .chat_id = j->chat_id,
                     .user_id = j->user_id,
                     .message_id = j->message_id,
                     .text = j->text,
                     .text_len = j->text_len,
                     .persona = j->p->tag,
                     .correlation_id = j->corr,
                     .traceparent = j->traceparent,
                     .deadline_ms = R.request_timeout_s > 0
                                        ? mono_ms() + (int64_t)R.request_timeout_s * 1000
                                        : 0,
                     .meta = j->meta,
                     .flags = j->flags,
                     .update_id = j->update_id,
                     .transport = j->tr->inst,
                     .attachments = (const rd_attachment *const *)j->att.v,
                     .nattachments = j->att.n,
                     .reply_to = j->reply_to};
    /* An answer an inbound instance waits for goes to it, not the backend. */
    for (size_t i = 0; i < R.ninb; i++) {
        rd_ctx *ib = R.inb[i];
        if (!ib->started) continue;
        intercepting = ib;
        int took = ib->ops->intercept(ib->self, &rq);
        intercepting = NULL;
        if (took == 1) {
            j->taken_by = ib;
            j->status = "answered";
            job_finish(j);
            return;
        }
        /* answered() without taking the message: forgotten. */
        free(j->ext_corr);
        free(j->caller);
        j->ext_corr = j->caller = NULL;
    }
    if (j->tr->ops->activity) {
        rd_outbound w = {.size = sizeof w,
                         .chat_id = j->chat_id,
                         .thread_id = j->thread_id,
                         .update_id = j->update_id};
        j->tr->ops->activity(j->tr->self, &w, 1);
    }
    rd_error err = {0};
    j->t_bstart_ns = wall_ns();
    ctx_serial_enter(be);
    rd_status st = be->ops->handle(be->self, &rq, &j->reply, &err);
    ctx_serial_leave(be);         /* an RD_PENDING completion may overlap the next call */
    if (st == RD_PENDING) return; /* router_complete() takes it from here */
    after_backend(j, st, &err);
}

void router_reply_append(rd_reply *r, const char *text, size_t len) {
    if (!r || !text) return;
    pthread_mutex_lock(&r->mu);
    if (r->len + len + 1 > r->cap) {
        r->cap = (r->len + len + 1) * 2;
        r->buf = xrealloc(r->buf, r->cap);
    }
    memcpy(r->buf + r->len, text, len);
    r->len += len;
    r->buf[r->len] = 0;
    pthread_mutex_unlock(&r->mu);
}

void router_reply_progress(rd_reply *r, const char *text, size_t len) {
    job *j = r ? r->job : NULL;
    if (!j || !j->tr->ops->progress || !text) return;
    size_t clen;
    char *copy = utf8_clean_dup(text, len, &clen);
    rd_outbound out = {.size = sizeof out,
                       .chat_id = j->chat_id,
                       .thread_id = j->thread_id,
                       .reply_to = j->message_id,
                       .text = copy,
                       .text_len = clen,
                       .correlation_id = j->corr,
                       .edit_of = r->progress_id,
                       .update_id = j->update_id};
    rd_error err = {0};
    int64_t id = r->progress_id;
    ctx_serial_enter(j->tr);
    if (j->tr->ops->progress(j->tr->self, &out, &id, &err) == RD_OK) r->progress_id = id;
    ctx_serial_leave(j->tr);
    free(copy);
}

/* ---- completions ----------------------------------------------------------
 * A backend that returned RD_PENDING completes from its own thread (an
 * event loop): the rest of the message (transport send, acknowledgement)
 * is queued for a worker, so one loop thread does not carry thousands of
 * sends one after the other. Completions go before new messages. */
typedef struct done_item {
    qnode q;
    job *j;
    rd_status st;
    rd_error err;
    bool has_err;
    /* answer_of() ran (the transport would have waited): only the send
     * of text with flags is left */
    bool answered;
    uint32_t flags;
    const char *text;
} done_item;

static void done_body(done_item *d) {
    if (d->answered) {
        if (send_text(d->j, d->text, d->flags, false) == SEND_ENDED) job_finish(d->j);
    } else {
        after_backend(d->j, d->st, d->has_err ? &d->err : NULL);
    }
}

/* On a worker, or where no worker is to be had. */
static void done_run(done_item *d) {
    carrying = d->j;
    done_body(d);
    carrying = NULL;
    free(d);
}

void router_complete(rd_reply *r, rd_status st, const rd_error *err) {
    if (!r || !r->job) return;
    job *j = r->job;
    done_item dd = {.j = j, .st = st, .has_err = err != NULL};
    /* A transport that takes the reply without waiting gets it here, on
     * the backend's thread: no hand-off to a worker. */
    if (tr_sends(j->tr, 5, RD_PF_NOWAIT_SEND) && !atomic_load(&R.draining)) {
        dd.answered = true;
        dd.text = answer_of(j, st, err, &dd.flags);
        int sent = send_text(j, dd.text, dd.flags, true);
        if (sent == SEND_ENDED) job_finish(j);
        if (sent != SEND_WOULDBLOCK) return;
    } else if (err) {
        dd.err = *err; /* for after_backend() on the worker */
    }
    done_item *d = malloc(sizeof *d);
    if (!d) {
        done_body(&dd);
        return;
    }
    *d = dd;
    pthread_mutex_lock(&R.mu);
    /* Once stopping, a worker still counted takes it before it exits. */
    bool queue = R.nthreads > 0 || !R.shutdown;
    if (queue && !R.shutdown && R.idle_threads == 0) {
        workers_grow_locked();
        queue = R.nthreads > 0;
    }
    bool wake = queue && R.idle_threads > 0;
    if (queue) fifo_push(&doneq, &d->q);
    /* under the lock: a worker may end the job as soon as it is released
     * (see job_finish()) */
    if (wake) pthread_cond_signal(&R.work_cv);
    pthread_mutex_unlock(&R.mu);
    if (!queue) done_run(d); /* no worker to be had: here */
}

static void job_finish(job *j) {
    rd_ctx *tr = j->tr;
    chat *c = j->c;
    double rt = (double)(wall_ns() - j->t_recv_ns) / 1e9;
    if (!j->t_send_ns) j->t_send_ns = wall_ns();
    bool fine = j->status && (!strcmp(j->status, "ok") || !strcmp(j->status, "delivered") ||
                              !strcmp(j->status, "answered"));
    rd_event ev;
    fill_event(&ev, j, RD_EV_REPLIED, fine ? RD_LOG_INFO : RD_LOG_WARN);
    if (!ev.status) ev.status = "ok";
    emit_event(&ev);
    /* Deliveries and intercepted answers are no round trip nor reply. */
    if (j->kind != JOB_DELIVER && !j->taken_by) {
        series_observe(R.m_round_trip, rt);
        series_add(j->p->m_replied[j->tr_index], 1);
    }

    pthread_mutex_lock(&R.mu);
    if (j->kind != JOB_DELIVER) finish_locked_ack(tr, j->update_id); /* no update behind it */
    c->last_ms = mono_ms();
    R.inflight--;
    /* The chat's next message: the worker that carried j takes from the run
     * queue next anyway; a completion elsewhere (RD_PENDING) wakes one.
     * An ordered transport's send may have freed the chat already. */
    bool wake = chat_free_locked(c, j->gen, carrying == j);
    idle_touch(c);
    series_set(R.m_inflight, (double)R.inflight);
    if (R.waiting == 0 && R.inflight == 0) pthread_cond_broadcast(&R.idle_cv);
    /* Signalled under the lock: on a transport's or backend's thread, the
     * unlock may let a stop see the last job end and tear the router
     * down, so nothing of R is touched after it. */
    if (wake) pthread_cond_signal(&R.work_cv);
    pthread_mutex_unlock(&R.mu);
    job_free(j);
}

static void *worker_main(void *arg) {
    pthread_setname_np(pthread_self(), "rd-worker");
    (void)arg;
    worker_rec self = {.tid = (int)syscall(SYS_gettid)};
    pthread_mutex_lock(&R.mu);
    self.next = workers_head;
    if (workers_head) workers_head->prev = &self;
    workers_head = &self;
    for (;;) {
        qnode *n = NULL, *dn = NULL;
        while (!(dn = fifo_pop(&doneq)) && !R.shutdown && !(n = fifo_pop(&R.runq))) {
            R.idle_threads++;
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += 30;
            int rc = pthread_cond_timedwait(&R.work_cv, &R.mu, &dl);
            R.idle_threads--;
            /* Idle for 30 s: give the memory back, keep two warm. */
            if (rc != 0 && R.nthreads > 2 && !R.runq.len && !doneq.len) goto out;
        }
        if (dn || n) {
            taken++; /* the queue moved: no stall */
            /* More is queued and nobody idle takes it (woken workers count
             * as idle until they run, so the pushes may not have seen it). */
            if (!stall_armed && !R.idle_threads && (R.runq.len || doneq.len)) workers_grow_locked();
        }
        if (dn) {
            pthread_mutex_unlock(&R.mu);
            done_run((done_item *)dn);
            pthread_mutex_lock(&R.mu);
            continue;
        }
        if (!n) break;
        chat *c = (chat *)((char *)n - offsetof(chat, runq));
        c->in_runq = false;
        job *j = (job *)fifo_pop(&c->q);
        if (!j) {
            idle_touch(c);
            continue;
        }
        c->busy = true;
        j->gen = ++c->gen;
        R.waiting--;
        R.inflight++;
        if (R.m_queue_wait)
            series_observe(R.m_queue_wait, (double)(wall_ns() - j->t_route_ns) / 1e9);
        series_set(R.m_queue_depth, (double)R.waiting);
        series_set(R.m_inflight, (double)R.inflight);
        pthread_mutex_unlock(&R.mu);
        carrying = j;
        process(j);
        carrying = NULL;
        pthread_mutex_lock(&R.mu);
    }
out:
    if (self.prev)
        self.prev->next = self.next;
    else
        workers_head = self.next;
    if (self.next) self.next->prev = self.prev;
    R.nthreads--;
    series_set(R.m_workers, R.nthreads);
    pthread_cond_broadcast(&R.idle_cv);
    pthread_mutex_unlock(&R.mu);
    return NULL;
}

bool router_wait_idle(int64_t deadline_ms) {
    /* Waits at most 200 ms so the caller can keep watching for signals. */
    pthread_mutex_lock(&R.mu);
    int64_t left = deadline_ms - mono_ms();
    if ((R.waiting || R.inflight) && left > 0) {
        if (left > 200) left = 200;
        struct timespec dl = deadline_in(CLOCK_REALTIME, left * 1000);
        pthread_cond_timedwait(&R.idle_cv, &R.mu, &dl);
    }
    bool idle = !R.waiting && !R.inflight;
    pthread_mutex_unlock(&R.mu);
    return idle;
}

void router_stop_workers(int64_t deadline_ms) {
    pthread_mutex_lock(&R.mu);
    R.shutdown = true;
    pthread_cond_broadcast(&R.work_cv);
    while (R.nthreads > 0 && mono_ms() < deadline_ms) {
        struct timespec dl = deadline_in(CLOCK_REALTIME, 50 * 1000);
        pthread_cond_timedwait(&R.idle_cv, &R.mu, &dl);
    }
    pthread_mutex_unlock(&R.mu);
}

/* Forgets chats idle longer than chat_idle_s whose rate bucket is full
 * again, oldest first, and shrinks the table with them; then expires
 * unused /persona choices (admission.c). Work is bounded per call so the
 * lock is never held long. */
#define SWEEP_BATCH 20000

void router_sweep(void) {
    int64_t now = mono_ms();
    size_t freed = 0;
    pthread_mutex_lock(&R.mu);
    while (idle_head && freed < SWEEP_BATCH) {
        chat *c = idle_head;
        if (now - c->last_ms < (int64_t)R.chat_idle_s * 1000) break;
        if (!bucket_full(&c->rl, c->rl_limit, now)) {
            idle_touch(c); /* look again later */
            c->last_ms = now;
            continue;
        }
        chat_remove(c);
        freed++;
    }
    size_t want = tab_size;
    while (want > TAB_MIN && tab_count < want / 4)
        want /= 2;
    if (want != tab_size) tab_resize(want);
    series_set(R.m_chats, (double)tab_count);
    series_set(R.m_chat_slots, (double)tab_size);
    pthread_mutex_unlock(&R.mu);
    admission_sweep(now);
}

/* ---- inbound instances (1.3) ----------------------------------------------
 * deliver(): a job of its own kind in the chat's FIFO, behind the messages
 * already routed there; not refused by the queue limits (the caller already
 * holds the work) but counted in them. The caller waits on a delivery that
 * it shares with the job: whoever lets go last frees it. */
struct delivery {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int refs;
    bool done;
    rd_status st;
    rd_error err;
    int64_t sent_id;
};

static delivery *delivery_new(void) {
    delivery *d = xcalloc(1, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &a);
    pthread_condattr_destroy(&a);
    d->refs = 2; /* the caller and the job */
    return d;
}

/* Drops one reference; the first call (the job's) also records the outcome. */
static void delivery_unref(delivery *d, bool record, rd_status st, const rd_error *err,
                           int64_t sent_id) {
    pthread_mutex_lock(&d->mu);
    if (record && !d->done) {
        d->done = true;
        d->st = st;
        if (err) d->err = *err;
        d->err.code = st;
        d->sent_id = sent_id;
        pthread_cond_broadcast(&d->cv);
    }
    bool last = --d->refs == 0;
    pthread_mutex_unlock(&d->mu);
    if (!last) return;
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static void delivery_done(delivery *d, rd_status st, const rd_error *err, int64_t sent_id) {
    delivery_unref(d, true, st, err, sent_id);
}

static rd_status deliver_fail(rd_error *err, rd_status st, const char *klass, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static rd_status deliver_fail(rd_error *err, rd_status st, const char *klass, const char *fmt,
                              ...) {
    if (err) {
        memset(err, 0, sizeof *err);
        err->code = st;
        snprintf(err->klass, sizeof err->klass, "%s", klass);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* Copies what deliver() sends into a job (text cleaned like replies). */
static job *deliver_job(rd_ctx *from, rd_ctx *tr, const rd_outbound *out, rd_error *err,
                        rd_status *st) {
    size_t tl = out->text ? utf8_clean(out->text, out->text_len, NULL) : 0;
    job *j = xcalloc(1, sizeof *j + tl + 1);
    j->kind = JOB_DELIVER;
    j->tr = tr;
    j->tr_index = tr_index(tr);
    j->origin = from;
    j->update_id = -1;
    j->chat_id = out->chat_id;
    j->thread_id = out->thread_id;
    j->message_id = out->reply_to;
    j->out_flags = out->flags & (RD_OUT_NOTICE | RD_OUT_QUESTION);
    j->text = (char *)(j + 1);
    utf8_clean(out->text ? out->text : "", out->text ? out->text_len : 0, j->text);
    j->text_len = tl;
    j->ext_corr = name_dup(out->correlation_id); /* a task id; longer than 128 is cut */
    j->caller = RD_HAS(out, caller) ? name_dup(out->caller) : NULL;
    j->reply.job = j;
    pthread_mutex_init(&j->reply.mu, NULL);
    char why[160];
    size_t na = RD_HAS(out, nattachments) && out->attachments ? out->nattachments : 0;
    for (size_t i = 0; i < na; i++) {
        rd_status s = out->attachments[i]
                          ? att_add(&j->reply.att, out->attachments[i], why, sizeof why)
                          : RD_E_FATAL;
        if (s != RD_OK) {
            *st = deliver_fail(err, s, "fatal", "attachment %zu refused: %s", i + 1,
                               out->attachments[i] ? why : "NULL");
            job_free(j);
            return NULL;
        }
    }
    if (RD_HAS(out, choices) && out->choices)
        j->reply.choices = choices_copy(out->choices, from ? from->name : "core");
    if (!tl && !j->reply.att.n) {
        *st = deliver_fail(err, RD_E_FATAL, "fatal", "nothing to send (no text, no file)");
        job_free(j);
        return NULL;
    }
    j->t_recv_ns = wall_ns();
    j->t_recv_ms = mono_ms();
    ids_hex(j->corr, 2);
    ids_hex(j->span, 1);
    ids_hex(j->bspan, 1);
    return j;
}

rd_status router_deliver(rd_ctx *from, const char *transport, const rd_outbound *out,
                         int64_t timeout_ms, int64_t *sent_id, rd_error *err) {
    if (sent_id) *sent_id = 0;
    if (!out || !transport || out->size < offsetof(rd_outbound, edit_of))
        return deliver_fail(err, RD_E_INTERNAL, "fatal", "deliver: no message");
    rd_ctx *tr = NULL;
    for (size_t i = 0; i < R.ntr && !tr; i++)
        if (!strcmp(R.tr[i]->inst, transport)) tr = R.tr[i];
    if (!tr)
        return deliver_fail(err, RD_E_UNAVAILABLE, "fatal", "no transport instance '%s'",
                            transport);
    /* From a call carrying this chat it would wait for itself. */
    if (carrying && carrying->tr == tr && carrying->chat_id == out->chat_id)
        return deliver_fail(err, RD_E_INTERNAL, "fatal",
                            "deliver() from a call of the same chat would wait for itself");
    rd_status st = RD_OK;
    job *j = deliver_job(from, tr, out, err, &st);
    if (!j) return st;
    delivery *d = delivery_new();
    j->dl = d;
    bool wake = false;
    pthread_mutex_lock(&R.mu);
    /* Checked under the lock the drain waits with: queued here means the
     * drain sees it and sends it before stopping. */
    if (atomic_load(&R.draining) || atomic_load(&tr->closed)) {
        pthread_mutex_unlock(&R.mu);
        j->dl = NULL;
        job_free(j);
        delivery_unref(d, false, RD_OK, NULL, 0);
        delivery_unref(d, false, RD_OK, NULL, 0);
        return deliver_fail(err, RD_E_UNAVAILABLE, "transient", "routerd is draining");
    }
    chat *c = chat_get(j->tr_index, j->chat_id);
    if (!c->hash[0]) chat_hash(j->chat_id, c->hash);
    memcpy(j->hash, c->hash, sizeof j->hash);
    j->c = c;
    j->t_route_ns = wall_ns();
    c->last_ms = mono_ms();
    fifo_push(&c->q, &j->q);
    idle_unlink(c);
    R.waiting++;
    if (!c->busy && !c->in_runq) wake = runq_push_locked(c);
    series_set(R.m_queue_depth, (double)R.waiting);
    pthread_mutex_unlock(&R.mu);
    if (wake) pthread_cond_signal(&R.work_cv);

    /* j may be gone from here on: only d is shared. */
    int64_t wait_ms = timeout_ms > 0 ? timeout_ms : (int64_t)R.request_timeout_s * 1000;
    if (wait_ms > INT64_MAX / 1000) wait_ms = INT64_MAX / 1000; /* a plugin's value */
    struct timespec dl = deadline_in(CLOCK_MONOTONIC, wait_ms * 1000);
    pthread_mutex_lock(&d->mu);
    while (!d->done)
        if (wait_ms > 0 ? pthread_cond_timedwait(&d->cv, &d->mu, &dl) != 0
                        : pthread_cond_wait(&d->cv, &d->mu) != 0)
            break;
    bool done = d->done;
    if (done) {
        st = d->st;
        if (err) *err = d->err;
        if (sent_id) *sent_id = d->sent_id;
    }
    pthread_mutex_unlock(&d->mu);
    delivery_unref(d, false, RD_OK, NULL, 0);
    if (!done)
        return deliver_fail(err, RD_E_TIMEOUT, "timeout",
                            "not sent within %" PRId64 " ms (it may still be sent)", wait_ms);
    if (st == RD_OK && err) memset(err, 0, sizeof *err);
    return st;
}

void router_open_inbound(void) {
    bool wake = false;
    pthread_mutex_lock(&R.mu);
    parking = false;
    qnode *n;
    while ((n = fifo_pop(&parked))) { /* in arrival order, behind what was delivered */
        job *j = (job *)n;
        chat *c = j->c;
        c->parked--;
        fifo_push(&c->q, &j->q);
        if (!c->busy && !c->in_runq) wake |= runq_push_locked(c);
    }
    pthread_mutex_unlock(&R.mu);
    if (wake) pthread_cond_broadcast(&R.work_cv);
}

void router_drop_parked(void) {
    size_t n = 0;
    pthread_mutex_lock(&R.mu);
    for (qnode *q; (q = fifo_pop(&parked));) {
        job *j = (job *)q;
        j->c->parked--;
        idle_touch(j->c);
        R.waiting--;
        n++;
        job_free(j); /* never acknowledged: the transport offers it again */
    }
    series_set(R.m_queue_depth, (double)R.waiting);
    if (R.waiting == 0 && R.inflight == 0) pthread_cond_broadcast(&R.idle_cv);
    pthread_mutex_unlock(&R.mu);
    if (n)
        log_msg("core", RD_LOG_WARN,
                "%zu message(s) held for the inbound instances left unanswered: the transports "
                "offer them again at the next start",
                n);
}
