/* Prometheus text exposition format 0.0.4: a pure renderer over the views
 * that host->metrics_visit() hands out, so it can be tested without a host.
 * Series are gathered per family first: the output has one HELP and one
 * TYPE line per family even if a family's series were visited apart. */
#ifndef ROUTERD_PROM_FORMAT_H
#define ROUTERD_PROM_FORMAT_H

#include <routerd/plugin.h>

#include "sbuf.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct prom_doc prom_doc;

prom_doc *prom_doc_new(void);
void prom_doc_free(prom_doc *d);
/* Adds one series; an rd_metric_visit_fn with arg = the document. A series
 * whose family was already added with another type is skipped. */
void prom_doc_add(void *doc, const rd_metric_view *m, const rd_series_view *s);
/* Adds a family with no labels and one value (gauge or counter). */
void prom_doc_add_simple(prom_doc *d, rd_metric_type type, const char *name, const char *help,
                         double value);
/* The exposition text (malloc()ed), NULL when out of memory. */
char *prom_doc_render(prom_doc *d, size_t *len);

/* Building blocks, exposed for tests. */
/* Shortest text that reads back as the same double; NaN, +Inf, -Inf. */
void prom_put_double(sbuf *b, double v);
/* HELP text: backslash and line feed escaped, invalid UTF-8 replaced. */
void prom_put_help(sbuf *b, const char *help);
/* Label value: backslash, double quote and line feed escaped; invalid
 * UTF-8 replaced by U+FFFD (Prometheus refuses invalid UTF-8). */
void prom_put_label_value(sbuf *b, const char *v);
/* Metric (colons allowed) or label name; invalid characters become '_'. */
void prom_put_name(sbuf *b, const char *name, bool metric);

#endif
