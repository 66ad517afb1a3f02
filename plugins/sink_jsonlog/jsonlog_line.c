/* JSON log line builder. */
#include "jsonlog_line.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void jl_rfc3339(int64_t ts_ns, char *out, size_t outsz) {
    /* Floor division so times before 1970 still get a positive fraction. */
    int64_t sec = ts_ns / 1000000000, ns = ts_ns % 1000000000;
    if (ns < 0) {
        ns += 1000000000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, outsz, "1970-01-01T00:00:00.000Z");
        return;
    }
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outsz, "%s.%03dZ", day, (int)(ns / 1000000));
}

const char *jl_level_name(rd_log_level l) {
    switch (l) {
    case RD_LOG_DEBUG:
        return "debug";
    case RD_LOG_INFO:
        return "info";
    case RD_LOG_WARN:
        return "warn";
    case RD_LOG_ERROR:
        return "error";
    }
    return l > RD_LOG_ERROR ? "error" : "debug";
}

const char *jl_event_name(rd_event_type t) {
    switch (t) {
    case RD_EV_LOG:
        return "log";
    case RD_EV_RECEIVED:
        return "received";
    case RD_EV_REJECTED:
        return "rejected";
    case RD_EV_REPLIED:
        return "replied";
    case RD_EV_SEND_FAILED:
        return "send_failed";
    }
    return "unknown";
}

int jl_level_parse(const char *s) {
    if (!s) return -1;
    if (!strcasecmp(s, "debug")) return RD_LOG_DEBUG;
    if (!strcasecmp(s, "info")) return RD_LOG_INFO;
    if (!strcasecmp(s, "warn") || !strcasecmp(s, "warning")) return RD_LOG_WARN;
    if (!strcasecmp(s, "error")) return RD_LOG_ERROR;
    return -1;
}

static void key(sbuf *b, const char *k) {
    sbuf_putc(b, ',');
    sbuf_json_str(b, k);
    sbuf_putc(b, ':');
}

static void str_field(sbuf *b, const char *k, const char *v) {
    key(b, k);
    sbuf_json_str(b, v);
}

static void opt_field(sbuf *b, const char *k, const char *v) {
    if (v) str_field(b, k, v);
}

void jl_format(sbuf *b, const rd_event *ev, const char *msg, const char *env,
               const char *build_sha) {
    char ts[40];
    jl_rfc3339(ev->ts_ns, ts, sizeof ts);
    bool message_event = ev->type != RD_EV_LOG;
    sbuf_puts(b, "{\"ts\":");
    sbuf_json_str(b, ts);
    str_field(b, "level", jl_level_name(ev->level));
    str_field(b, "event", jl_event_name(ev->type));
    str_field(b, "correlation_id", ev->correlation_id);
    str_field(b, "chat_id_hash", ev->chat_id_hash);
    str_field(b, "persona_tag", ev->persona);
    str_field(b, "status", ev->status);
    key(b, "latency_ms");
    /* A latency exists once a message is answered or turned away. */
    if (message_event && ev->type != RD_EV_RECEIVED && isfinite(ev->latency_ms) &&
        ev->latency_ms >= 0)
        sbuf_printf(b, "%.3f", ev->latency_ms);
    else
        sbuf_puts(b, "null");
    str_field(b, "env", env);
    str_field(b, "build_sha", build_sha);
    opt_field(b, "source", ev->source);
    opt_field(b, "msg", msg);
    opt_field(b, "transport", ev->transport);
    opt_field(b, "backend", ev->backend);
    if (RD_HAS(ev, caller)) opt_field(b, "caller", ev->caller); /* inbound messages (1.3) */
    opt_field(b, "failure_class", ev->failure_class);
    if (message_event) {
        key(b, "update_id");
        sbuf_i64(b, ev->update_id);
    }
    opt_field(b, "trace_id", ev->trace_id);
    opt_field(b, "span_id", ev->span_id);
    sbuf_puts(b, "}\n");
}

static void human_text(sbuf *b, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) { /* C1 control in UTF-8 */
            sbuf_putc(b, '?');
            p++;
        } else {
            sbuf_putc(b, *p < 0x20 || *p == 0x7f ? '?' : (char)*p);
        }
    }
}

bool jl_human(sbuf *b, const rd_event *ev, const char *msg) {
    bool ok_reply = ev->type == RD_EV_REPLIED && ev->status && !strcmp(ev->status, "ok");
    if (ev->type == RD_EV_RECEIVED || ok_reply) return false;
    time_t sec = (time_t)(ev->ts_ns / 1000000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char when[16];
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    sbuf_puts(b, when);
    if (ev->level != RD_LOG_INFO) {
        sbuf_putc(b, ' ');
        for (const char *l = jl_level_name(ev->level); *l; l++)
            sbuf_putc(b, (char)(*l - 32));
    }
    sbuf_puts(b, " [");
    human_text(b, ev->source ? ev->source : "core");
    sbuf_puts(b, "] ");
    if (ev->type != RD_EV_LOG) {
        sbuf_puts(b, jl_event_name(ev->type));
        if (ev->status) {
            sbuf_puts(b, " ");
            human_text(b, ev->status);
        }
        if (ev->failure_class) {
            sbuf_puts(b, " (");
            human_text(b, ev->failure_class);
            sbuf_puts(b, ")");
        }
        if (ev->persona) {
            sbuf_puts(b, " persona ");
            human_text(b, ev->persona);
        }
        if (msg && *msg) sbuf_puts(b, ": ");
    }
    human_text(b, msg);
    sbuf_putc(b, '\n');
    return true;
}
