/* Secrets: PINs from the environment or a 0600 file (never from argv), random PINs and
 * passwords from the CSPRNG, written and wiped with care. */
#ifndef HSMENROLL_BATCH_SECRET_H
#define HSMENROLL_BATCH_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "formats/error.h"

/* The secret from environment variable env_name when set and non-empty, else the first line of
 * file (which must not be readable by group or others), else, when the process has a controlling
 * terminal and the file does not exist, a prompt on /dev/tty with echo off. Returns malloc'd
 * memory to release with secret_free, or NULL with err (code PIN_UNAVAILABLE) naming where it
 * looked, never the value. */
char *secret_read(const char *env_name, const char *file, const char *what, enroll_error *err);
/* Where secret_read takes the secret from, for messages: "$NAME", "the file FILE" or "the
 * terminal prompt" (the same precedence), into buf. */
const char *secret_source(const char *env_name, const char *file, char *buf, size_t size);
/* A random string of len characters from [A-Za-z0-9] (RAND_priv_bytes, rejection sampling). */
char *secret_random(size_t len);
/* Creates file with mode 0600 holding value (no newline: libp11's pin-source=file: reads the
 * bytes as they are); fails if it exists. 0 or -1. */
int secret_write_file(const char *file, const char *value, enroll_error *err);
/* Wipes and frees. NULL is accepted. */
void secret_free(char *secret);
/* Keeps this process's memory out of core dumps and away from ptrace by other users. */
void secret_protect_process(void);

#endif
