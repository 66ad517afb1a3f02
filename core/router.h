/* The router state R and the interfaces between the core files that run
 * it (see docs/layout.md). */
#ifndef ROUTERD_ROUTER_H
#define ROUTERD_ROUTER_H

#include "core.h"

struct rd_ctx {
    rd_kind kind;
    char *name; /* "backend.helper" */
    char *inst; /* "helper" */
    plugin_so *so;
    const rd_plugin *desc;
    const rd_ops *ops;
    cfg_set cfg;
    void *self;
    bool created, started;
    /* A config getter asked for an undeclared key or with the wrong type:
     * the start fails after create()/start() (cfg_bug_msg: the first one). */
    atomic_int cfg_bug;
    char cfg_bug_msg[200];
    /* RD_PF_SERIAL: held around handle() / send() / progress() */
    pthread_mutex_t serial_mu;
    atomic_int ready;
    /* transport */
    watermark wm;       /* under R.mu */
    atomic_bool closed; /* set under R.mu (stopped after a drain timeout); read without it */
    int64_t *allow;     /* sorted; NULL = everyone */
    size_t nallow;
    rd_series *m_rejected_allowlist, *m_rejected_nopersona, *m_rejected_ratelimit;
    /* backend */
    rd_series *m_latency;
    /* sink */
    struct sinkq *q;
    rd_series *m_dropped;
};

typedef struct persona {
    char *tag;
    rd_ctx *backend;
    char **chats; /* as written */
    bool is_default, selectable;
    int chat_limit;  /* per chat per minute (router default unless set) */
    int total_limit; /* whole persona per minute, 0 = off */
    bucket total;
    rd_series *m_rl_hits;
    rd_series **m_received, **m_replied; /* per transport */
    char *description;
} persona;

typedef struct chat chat;

/* Attachments a message or reply carries (attach.c), NULL-terminated. */
typedef struct att_list {
    rd_attachment **v;
    size_t n, bytes;
} att_list;
#define RD_CHOICES_MAX 10      /* reply_choices(): choices kept */
#define RD_CHOICE_MAX_BYTES 64 /* reply_choices(): longest choice */

/* JOB_DELIVER: host->deliver() (1.3), a message from an inbound instance
 * sent in the chat's order; no update behind it, so no acknowledgement. */
typedef enum { JOB_MSG = 0, JOB_NOTICE, JOB_DELIVER } job_kind;

/* What a deliver() caller waits on (router.c). The caller and the worker
 * each hold a reference; the last to let go frees it, so a caller that gave
 * up waiting is never written to. */
typedef struct delivery delivery;

struct rd_reply {
    struct job *job;
    char *buf;
    size_t len, cap;
    int64_t progress_id;
    int64_t last_progress_ms;
    att_list att;       /* reply_attach() */
    char **choices;     /* reply_choices(), NULL-terminated; NULL = none */
    pthread_mutex_t mu; /* progress and complete may come from other threads */
};

typedef struct job {
    qnode q;
    job_kind kind;
    chat *c;
    uint64_t gen; /* c->gen when the job started */
    rd_ctx *tr;
    persona *p;
    int tr_index;
    int64_t update_id, chat_id, user_id, message_id, thread_id;
    uint32_t flags;
    char *text;
    size_t text_len;
    char *meta;
    att_list att;     /* copied at submit() */
    int64_t reply_to; /* rd_inbound.reply_to (1.3) */
    /* JOB_DELIVER: the waiter, the inbound instance that asked, the caller's
     * correlation id (any length; NULL = corr), what send() reported. */
    delivery *dl;
    rd_ctx *origin;
    char *ext_corr;
    int64_t sent_id;
    uint32_t out_flags;
    /* The inbound instance whose intercept() took the message, or NULL. */
    rd_ctx *taken_by;
    /* The calling agent a delivery is sent for or a taken answer is for
     * (rd_event.caller); NULL = none. */
    char *caller;
    char corr[33], span[17], bspan[17], traceparent[56], hash[17];
    int64_t t_recv_ns, t_route_ns, t_bstart_ns, t_bend_ns, t_sstart_ns, t_send_ns;
    int64_t t_recv_ms;
    const char *status;
    char klass[24];
    struct rd_reply reply;
} job;

/* Admin server limits ([router] admin_* keys). */
typedef struct http_limits {
    int header_timeout_s, request_timeout_s;
    int max_conns, max_conns_per_ip;
    int grace_ms; /* a connection this young is not closed for the per-address limit */
    size_t max_body;
} http_limits;

typedef enum { PHASE_INIT = 0, PHASE_STARTING, PHASE_RUNNING, PHASE_DRAINING } run_phase;

typedef struct router {
    /* [router] */
    const char *env, *admin_listen, *state_dir, *plugin_dir;
    int queue_depth, chat_queue_depth, drain_timeout_s, rate_limit, max_workers;
    int request_timeout_s;
    int worker_spawn_ms; /* past the eager floor, a stall this long starts workers; 0 = never wait
                          */
    size_t max_attachments, max_attachment_bytes; /* per message or reply */
    const char *failure_notice, *rate_limit_notice;
    http_limits http;
    int chat_idle_s, max_overrides;
    int64_t override_idle_ms; /* 0 = never */
    cfg_set cfg;
    manifest *mf;
    char persona_sha[65], allow_sha[65];
    char hash_key[65];

    rd_ctx **ctx; /* in manifest order */
    size_t nctx;
    rd_ctx **tr;
    size_t ntr;
    rd_ctx **inb; /* inbound instances (1.3), in manifest order */
    size_t ninb;
    char *tr_names; /* "main,ops": host->info(ctx, "transports") */
    persona *personas;
    size_t npersonas;
    persona *default_persona;
    bool persona_cmd;
    store *st;

    pthread_mutex_t mu;
    pthread_cond_t work_cv, idle_cv;
    size_t waiting, inflight;
    fifo runq;
    int nthreads, idle_threads;
    bool shutdown;
    atomic_bool draining, hard_stop, stop_requested;
    atomic_llong heartbeat_ms; /* main loop */
    atomic_llong watchdog_ms;  /* watchdog thread, proves R.mu is not held forever */
    atomic_int phase;          /* run_phase */
    int64_t start_ms;

    rd_series *m_queue_depth, *m_inflight, *m_round_trip, *m_uptime, *m_ready, *m_workers;
    rd_series *m_chats, *m_chat_slots, *m_overrides;
    rd_metric *m_backend_fail;
    rd_series *m_queue_wait;
} router;

extern router R;

/* host.c */
extern const rd_host host_api;
rd_ctx *ctx_new(rd_kind kind, const char *name, const char *inst);
void ctx_free(rd_ctx *c);

/* router.c */
int router_init(char *err, size_t errsz);
void router_fini(void);
rd_status router_submit(rd_ctx *tr, const rd_inbound *in);
void router_skip(rd_ctx *tr, int64_t update_id, const char *why);
int64_t router_watermark(rd_ctx *tr);
void router_reply_append(rd_reply *r, const char *text, size_t len);
void router_reply_progress(rd_reply *r, const char *text, size_t len);
void router_complete(rd_reply *r, rd_status st, const rd_error *err);
void router_send_done(rd_send *s, rd_status st, int64_t sent_id, const rd_error *err);
rd_status router_reply_attach(rd_reply *r, const rd_attachment *a); /* attach.c */
void router_reply_choices(rd_reply *r, const char *const *choices);
/* Waits until nothing is queued or in flight, or the deadline; true if idle. */
bool router_wait_idle(int64_t deadline_ms);
void router_stop_workers(int64_t deadline_ms);
void router_sweep(void);
/* After a drain timeout: no more send/ack calls reach the transports. */
void router_close_transports(void);
/* host->deliver() (1.3). */
rd_status router_deliver(rd_ctx *from, const char *transport, const rd_outbound *out,
                         int64_t timeout_ms, int64_t *sent_id, rd_error *err);
/* host->answered() (1.3): from inside intercept() only. */
void router_answered(rd_ctx *from, const char *correlation_id, const char *caller);
/* While inbound instances exist, admitted messages are held (outside
 * their chats, so deliveries are not stuck behind them) until this is
 * called: once the inbound instances started, or the start failed. None
 * reaches a backend before every intercept() could see it. */
void router_open_inbound(void);
/* After a failed start: the held messages are freed unacknowledged. */
void router_drop_parked(void);
void chat_hash(int64_t chat_id, char out[17]);
/* Liveness for /livez: the process is not wedged (the global lock is
 * taken and released, the main loop turns once it runs). Fills the age of
 * the staler clock and the phase name. */
bool router_live(int64_t *age_ms, const char **phase);

/* attach.c. The limits are R.max_attachments and R.max_attachment_bytes. */
/* Copies a into l: RD_E_FULL past the limits, RD_E_FATAL when malformed
 * (no data nor url, oversized strings); why says which. */
rd_status att_add(att_list *l, const rd_attachment *a, char *why, size_t whysz);
/* Copies every attachment of in (RD_E_FATAL and nothing kept on a problem). */
rd_status att_copy_in(att_list *l, const rd_inbound *in, char *why, size_t whysz);
void att_free(att_list *l);
/* Copies a NULL-terminated list of at most RD_CHOICES_MAX choices of at most
 * RD_CHOICE_MAX_BYTES (others dropped with a warning from source); NULL
 * when none is left. */
char **choices_copy(const char *const *in, const char *source);
void choices_free(char **c);

/* events.c */
void sinks_start(void);
void sinks_stop(void);
void sinks_flush(int timeout_ms);
/* Logs when a sink starts and stops dropping events (main loop). */
void sinks_report(void);
void emit_event(const rd_event *ev);
void router_log_event(const char *source, rd_log_level lvl, const char *msg);

/* http.c */
struct sockaddr_storage;
/* Parses admin_listen without side effects: 1 = off, 0 = ok (wildcard set
 * when it names every interface), -1 = error in err. */
int http_parse_listen(const char *listen, struct sockaddr_storage *ss, bool *wildcard, char *err,
                      size_t errsz);
int http_start(const char *listen, const http_limits *lim, char *err, size_t errsz);
void http_stop(void);
rd_status http_add_route(rd_ctx *ctx, const char *method, const char *path, rd_http_fn fn,
                         void *arg);
rd_status http_add_route_auth(rd_ctx *ctx, const char *method, const char *path, const char *header,
                              const char *secret, rd_http_fn fn, void *arg);
/* Constant-time comparison of a presented secret with the expected one. */
bool http_secret_equal(const char *given, const char *want);

#endif
