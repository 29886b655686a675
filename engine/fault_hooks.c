/* The test hooks of engine/fault_hooks.h: loaded once, then read-only but for one counter. */
#include "engine/fault_hooks.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    char kill_point[64];     /* "" when none */
    long session_loss_every; /* 0 when none */
    _Atomic long keygens;    /* key generations seen, for session_loss_every */
    long kill_after;         /* 0 when none */
    _Atomic long answers;    /* certificates answered, for kill_after */
} hooks;

void fault_hooks_load(void)
{
    const char *kill = getenv("HSMENROLL_FAULT_KILL");
    snprintf(hooks.kill_point, sizeof hooks.kill_point, "%s", kill ? kill : "");
    const char *loss = getenv("HSMENROLL_FAULT_SESSION_LOSS");
    hooks.session_loss_every = loss ? atol(loss) : 0;
    atomic_store(&hooks.keygens, 0);
    const char *after = getenv("HSMENROLL_FAULT_KILL_AFTER");
    hooks.kill_after = after ? atol(after) : 0;
    atomic_store(&hooks.answers, 0);
}

void fault_answered(void)
{
    if (hooks.kill_after > 0 && atomic_fetch_add(&hooks.answers, 1) + 1 >= hooks.kill_after)
        raise(SIGKILL);
}

void fault_point(const char *point)
{
    if (hooks.kill_point[0] != '\0' && strcmp(hooks.kill_point, point) == 0)
        raise(SIGKILL);
}

void fault_session_loss(hsm_session *s)
{
    long every = hooks.session_loss_every;
    if (every > 0 && atomic_fetch_add(&hooks.keygens, 1) % every == every - 1)
        s->f->C_CloseSession(s->handle);
}
