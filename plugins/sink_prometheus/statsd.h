/* StatsD push: turns registry snapshots into StatsD lines. Counters go out
 * as deltas since the previous push (|c), gauges as values (|g), histograms
 * as deltas of their _count and _sum. Labels become DogStatsD tags
 * (|#label:value), or name suffixes when tags are off. */
#ifndef ROUTERD_STATSD_H
#define ROUTERD_STATSD_H

#include <routerd/plugin.h>

#include "sbuf.h"

typedef struct statsd_fmt statsd_fmt;

statsd_fmt *statsd_fmt_new(const char *prefix, bool tags);
void statsd_fmt_free(statsd_fmt *s);
/* Start collecting one push (clears the output). */
void statsd_begin(statsd_fmt *s);
/* rd_metric_visit_fn with arg = the formatter. */
void statsd_visit(void *s, const rd_metric_view *m, const rd_series_view *v);
/* The lines of this push, '\n'-separated (owned by s). */
const char *statsd_text(statsd_fmt *s, size_t *len);
/* Splits text into datagrams of at most max bytes at line ends; calls
 * send(arg, data, len) for each. A longer single line is sent alone. */
void statsd_packets(const char *text, size_t len, size_t max,
                    void (*send)(void *arg, const char *data, size_t len), void *arg);

#endif
