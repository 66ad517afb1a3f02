/* The inbound A2A tests' two sides: the calling agent
 * (tests/interop/inbound_client.mjs under node, its JSON lines read back)
 * and the person (the fake Bot API). Shared by test_inbound_e2e.c and
 * test_inbound_ha.c. */
#ifndef TEST_INBOUND_UTIL_H
#define TEST_INBOUND_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "fake_telegram.h"
#include "harness.h"

extern char ie_base[64];    /* http://127.0.0.1:<port> of the listener the client calls */
extern ftg *ie_tg;          /* the fake Bot API the person uses */
extern rt_proc *ie_routerd; /* its stderr is printed when a client fails */
/* Called before a wait for a message fails, to print what explains it
 * (the logs of every replica, a client still running); NULL = ie_routerd's. */
extern void (*ie_on_fail)(void);

/* node on PATH, then the client and its npm packages in the build tree:
 * 0, or 77 (skip) with the reason on stderr. */
int ie_setup_node(void);

/* The client: args[0] is the command, the rest its options; token NULL =
 * none sent. cli_done waits for its exit (want_rc) and returns its JSON
 * lines as an array (cJSON_Delete it); cli = both. */
rt_proc *cli_start(const char *token, const char *const *args);
cJSON *cli_lines(rt_proc *p);
cJSON *cli_done(rt_proc *p, int want_rc);
cJSON *cli(const char *token, const char *const *args, int want_rc);

/* The nth line (from 0; -1 = last) whose "event" is event, or NULL. */
const cJSON *ev(const cJSON *lines, const char *event, int nth);
/* Members by dotted path ("task.state"): "" / -999999 when absent. */
const cJSON *jget(const cJSON *o, const char *path);
const char *jstr(const cJSON *o, const char *path);
double jnum(const cJSON *o, const char *path);
/* The event's member; fails the test when the event is missing. */
const char *evs(const cJSON *lines, const char *event, int nth, const char *path);
/* The first wire call of method, and whether one carried state. */
const cJSON *wire(const cJSON *lines, const char *method);
int wire_state(const cJSON *lines, const char *method, const char *state);

/* Waits until the bot sent exactly text to chat: the message id (the
 * latest such) and a copy of its reply_markup (malloc) when markup. */
int64_t question(int64_t chat, const char *text, int timeout_ms, char **markup);
/* Messages to chat equal to text / starting with prefix. */
int sent_count(int64_t chat, const char *text);
int sent_prefix(int64_t chat, const char *prefix);
/* The person writes text (quoting quoted, when not 0) and the persona
 * (an echoing mock) answers it: it was not taken as an answer. */
void expect_echo(int64_t chat, int64_t quoted, const char *text);
/* "Question from <caller>:\n\n<text>" (one of four rotating buffers). */
const char *qtext(const char *caller, const char *text);

#endif
