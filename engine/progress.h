/* The progress line on a terminal: done, failed, certificates/s, ETA; refreshed a few times a
 * second by its own thread, cleared at the end. */
#ifndef HSMENROLL_ENGINE_PROGRESS_H
#define HSMENROLL_ENGINE_PROGRESS_H

#include "engine/run_state.h"

typedef struct progress progress;

/* Starts the display when r->opt.progress asks for it (auto: stderr is a terminal); NULL when
 * there is nothing to show. */
progress *progress_start(run *r);
void progress_stop(progress *p);

#endif
