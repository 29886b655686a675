/* Test hooks for the crash and fault tests, read once from the environment when a run opens (before
 * any worker starts), so workers only read them: HSMENROLL_FAULT_KILL=<point> (SIGKILL when a
 * reenrollment reaches that point of its swap), HSMENROLL_FAULT_SESSION_LOSS=N (a worker's session
 * closed under it before every Nth key generation), HSMENROLL_FAULT_KILL_AFTER=N (SIGKILL when the
 * Nth certificate comes back from the CA, before the journal records it). Nothing happens without
 * them. */
#ifndef HSMENROLL_ENGINE_FAULT_HOOKS_H
#define HSMENROLL_ENGINE_FAULT_HOOKS_H

#include "hsm/hsm.h"

/* Reads the hooks from the environment. Call before the workers start. */
void fault_hooks_load(void);
/* Kills the process with SIGKILL when point is the one HSMENROLL_FAULT_KILL names. */
void fault_point(const char *point);
/* Kills the process when HSMENROLL_FAULT_KILL_AFTER's count of answered certificates is reached. */
void fault_answered(void);
/* Closes s under its worker when HSMENROLL_FAULT_SESSION_LOSS says this key generation's turn has
 * come, as a module losing sessions would. */
void fault_session_loss(hsm_session *s);

#endif
