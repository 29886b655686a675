/* The pipeline of a run: the reader (this thread) parses and checks lines and admits jobs into a
 * bounded queue; a pool of workers takes them through the HSM and the CA; results are written as
 * jobs finish. Memory is bounded by the queue, whatever the batch size. */
#ifndef HSMENROLL_ENGINE_PIPELINE_H
#define HSMENROLL_ENGINE_PIPELINE_H

#include "engine/run_state.h"

/* Runs the whole batch. r must be set up (config, HSM context with the export key, connectors,
 * output directory, results writer). Returns 0 when the batch was read to the end, -1 on a read
 * error of the batch itself (err filled). */
int pipeline_run(run *r, enroll_error *err);

#endif
