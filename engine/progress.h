/* The progress line: done (of the whole batch on a resume, of the shard's lines with --shard),
 * failed, certificates/s, ETA. On a terminal one line redrawn a few times a second by its own
 * thread and cleared at the end; elsewhere (--progress always into a file) a plain log line every
 * 10 s and one at the end. */
#ifndef HSMENROLL_ENGINE_PROGRESS_H
#define HSMENROLL_ENGINE_PROGRESS_H

#include "engine/run_state.h"

typedef struct progress progress;

/* Starts the display when r->opt.progress asks for it (auto: stderr is a terminal); NULL when
 * there is nothing to show. */
progress *progress_start(run *r);
void progress_stop(progress *p);

#endif
