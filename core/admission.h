/* Admission rules (admission.c): allowlist, persona lookup and /persona
 * overrides, rate limits. Functions named _locked expect R.mu held. */
#ifndef ROUTERD_ADMISSION_H
#define ROUTERD_ADMISSION_H

#include "router.h"

/* Builds the chat -> persona map and loads the stored /persona choices. */
void admission_init(void);
void admission_fini(void);
/* Whether the transport's allowlist lets chat_id in. */
bool admission_allowed(const rd_ctx *tr, int64_t chat_id);
/* The persona answering chat_id: its /persona choice, else the manifest's
 * map, else the default; NULL when none. */
persona *admission_persona_locked(int64_t chat_id);
/* Takes a token from the chat's bucket, then from the persona's: 1 let
 * through, 0 refused (send the one notice), -1 refused silently. */
int admission_rate_locked(bucket *chat_rl, persona *p, int64_t now);
/* Whether j is a /persona command (only when a persona is selectable). */
bool admission_is_persona_cmd(const job *j);
/* Carries out /persona [NAME] for j's chat (j->p becomes the current
 * persona) and returns the reply text (malloc()ed). */
char *admission_persona_command(job *j);
/* Forgets /persona choices unused for persona_override_idle_days. */
void admission_sweep(int64_t now);
/* Re-reads the /persona choices from the store (a replica's new term). */
void admission_reload_overrides(void);

#endif
