/* A minimal, fast A2A 0.3 agent for benchmarks: answers message/send with
 * a Message "echo: <text>" after an optional delay, counts concurrent
 * requests and, when tracking, records when each "c<C>-m<K>" text arrived
 * and how long the agent held it. Slow answers are parked (suspended
 * connections on two event-loop threads), so 10,000 calls in flight cost
 * sockets, not threads. */
#ifndef BENCH_AGENT_H
#define BENCH_AGENT_H

typedef struct bench_agent bench_agent;

bench_agent *bench_agent_start(int delay_ms);
void bench_agent_stop(bench_agent *a);
const char *bench_agent_url(bench_agent *a);
long bench_agent_requests(bench_agent *a);
long bench_agent_max_inflight(bench_agent *a);
/* CLOCK_MONOTONIC microseconds of the latest request's arrival (0: none). */
long long bench_agent_last_arrival_us(bench_agent *a);
/* Records texts "c<C>-m<K>" with C < chats, K < per_chat from now on. */
void bench_agent_track(bench_agent *a, int chats, int per_chat);
/* Microseconds the agent held text (C, K) (request received to answer
 * queued), or -1 when it was not seen. */
long long bench_agent_held_us(bench_agent *a, int c, int k);
/* The first request body received (malloc, NULL when none). */
char *bench_agent_sample(bench_agent *a);

#endif
