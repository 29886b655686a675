/* What happens to one request: key pair in the HSM, CSR signed there, submission to its CA,
 * the bundle written, the result line. Runs on a worker thread with that worker's sessions. */
#ifndef HSMENROLL_ENGINE_ENROLL_H
#define HSMENROLL_ENGINE_ENROLL_H

#include "engine/run_state.h"

/* Takes a freshly admitted job through every stage it can reach now; finishes it (result line
 * written, job freed) and returns true, or returns false when its CA answers later. */
bool enroll_job(worker *w, job *j);
/* Continues a job whose CA has answered (SUBMIT_PENDING connectors). */
void enroll_answered(worker *w, job *j);

/* The HSM key spec for a request's key. */
hsm_key_spec enroll_hsm_spec(const request_key *key);

#endif
