/* What an OTLP collector answers, read as hostile input: every number is
 * range-checked before use. Pure functions, unit-tested and fuzzed. */
#ifndef ROUTERD_OTLP_ANSWER_H
#define ROUTERD_OTLP_ANSWER_H

#include <stddef.h>
#include <stdint.h>

typedef struct otlp_answer {
    int64_t rejected;  /* spans refused (partialSuccess.rejectedSpans), 0..spans sent */
    char message[256]; /* partialSuccess.errorMessage, printable ASCII only */
    char bad[160];     /* why a field was ignored or cut, "" if none */
} otlp_answer;

/* Parses an ExportTraceServiceResponse (JSON) for a batch of `spans`
 * spans. An empty or unparsable body means all were accepted. */
void otlp_answer_parse(const char *body, size_t len, int64_t spans, otlp_answer *out);

/* Retry-After in delta-seconds, as milliseconds cut to max_ms; -1 when
 * absent or not a plain number (dates are left to the caller). */
int64_t otlp_retry_after_ms(const char *value, int64_t max_ms);

#endif
