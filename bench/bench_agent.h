/* A minimal, fast A2A 0.3 agent for benchmarks: answers message/send with
 * a Message "echo: <text>" after an optional delay, counts concurrent
 * requests and, when tracking, records when each "c<C>-m<K>" text arrived
 * and how long the agent held it. Slow answers are parked (suspended
 * connections on two event-loop threads), so 10,000 calls in flight cost
 * sockets, not threads.
 *
 * Task mode (bench_agent_start_tasks): the card offers push notifications;
 * a message/send with "configuration":{"blocking":false} is answered at
 * once with a Task "bt-<n>" in state working, completed with the artifact
 * "echo: <text>" after the delay; tasks/get returns it (a completed task
 * is forgotten once fetched) and tasks/pushNotificationConfig/set makes
 * the agent POST the completed Task to the webhook. A blocking send is
 * answered as in the default mode.
 *
 * Stream mode: the card offers streaming; a message/stream is answered at
 * once with the events of a Task "bs-<n>" in state working and a partial
 * answer ("working on it"), and after the delay with the artifact "echo:
 * <text>" and the final completed status. */
#ifndef BENCH_AGENT_H
#define BENCH_AGENT_H

typedef struct bench_agent bench_agent;

bench_agent *bench_agent_start(int delay_ms);
enum { BENCH_AGENT_DEFAULT, BENCH_AGENT_TASKS, BENCH_AGENT_STREAM };
/* mode: BENCH_AGENT_* (above); bench_agent_start(d) is (d, BENCH_AGENT_DEFAULT). */
bench_agent *bench_agent_start_tasks(int delay_ms, int mode);
void bench_agent_stop(bench_agent *a);
const char *bench_agent_url(bench_agent *a);
/* message/send calls received. */
long bench_agent_requests(bench_agent *a);
/* Most calls in flight at once: a send is in flight until its Message is
 * queued, or (task mode) until its task completes. */
long bench_agent_max_inflight(bench_agent *a);
/* Task mode: tasks/get calls received. */
long bench_agent_polls(bench_agent *a);
/* Task mode: push notifications sent; *ok (may be NULL) those answered 2xx. */
long bench_agent_pushes(bench_agent *a, long *ok);
/* Task mode: how late completed tasks were fetched (tasks/get after the
 * deadline), average and most in ms; returns how many were fetched. */
long bench_agent_fetch_lag(bench_agent *a, double *avg_ms, double *max_ms);
/* CLOCK_MONOTONIC microseconds of the latest message/send's arrival (0: none). */
long long bench_agent_last_arrival_us(bench_agent *a);
/* Records texts "c<C>-m<K>" with C < chats, K < per_chat from now on. */
void bench_agent_track(bench_agent *a, int chats, int per_chat);
/* Microseconds the agent held text (C, K) (request received to answer
 * queued, or to its task's completion), or -1 when it was not seen. */
long long bench_agent_held_us(bench_agent *a, int c, int k);
/* The first request body received (malloc, NULL when none). */
char *bench_agent_sample(bench_agent *a);

#endif
