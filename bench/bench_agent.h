/* A minimal, fast A2A 0.3 agent for benchmarks: answers message/send with
 * a Message after an optional delay, and counts concurrent requests. */
#ifndef BENCH_AGENT_H
#define BENCH_AGENT_H

typedef struct bench_agent bench_agent;

bench_agent *bench_agent_start(int delay_ms);
void bench_agent_stop(bench_agent *a);
const char *bench_agent_url(bench_agent *a);
long bench_agent_requests(bench_agent *a);
long bench_agent_max_inflight(bench_agent *a);

#endif
