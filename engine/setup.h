/* What every subcommand does first: find the configuration (a --config file, or the embedded
 * default under the engine home, ./.hsmenroll by default), load the PKCS#11 module, make sure the
 * tokens and the embedded CA exist where the embedded default is used, and log in. */
#ifndef HSMENROLL_ENGINE_SETUP_H
#define HSMENROLL_ENGINE_SETUP_H

#include <stdbool.h>

#include "batch/config.h"
#include "formats/error.h"
#include "engine/hsm_context.h"

typedef struct engine_setup {
    char *home;    /* absolute engine home (embedded default), or NULL with --config */
    bool embedded; /* no --config: the embedded default */
    config *cfg;
    hsm_module *module; /* loaded, not yet owned by hsm */
    hsm_context hsm;
    bool hsm_open;
    /* The command line's --config and --home (borrowed from argv; NULL when not given), for the
     * hints that name a command to run next. */
    const char *config_option, *home_option;
} engine_setup;

/* The options a hint's command needs to act on the same configuration: " --config FILE" or
 * " --home DIR" as given, else "" (into buf, quoted for a shell when needed). */
const char *setup_hint_options(const engine_setup *s, char *buf, size_t size);

/* The engine home: option, else $HSMENROLL_HOME, else the per-user default
 * ${XDG_DATA_HOME:-$HOME/.local/share}/hsmenroll (whatever the working directory); made
 * absolute. */
char *setup_home_path(const char *option);

/* Loads --config (config_path not NULL) or the embedded default of home_option; for the
 * embedded default, prepares the home directory and its SoftHSM2 configuration (SOFTHSM2_CONF
 * is pointed at it). Every configuration error is logged with its JSON path. 0 or -1. */
int setup_config(engine_setup *s, const char *config_path, const char *home_option,
                 enroll_error *err);
/* The same, touching nothing on disk (for `validate`): the embedded default is read as it would
 * be, without creating the home directory or its SoftHSM2 configuration. */
int setup_config_readonly(engine_setup *s, const char *config_path, const char *home_option,
                          enroll_error *err);

/* Loads the module. With create_missing, tokens of the configuration that do not exist yet are
 * initialized (PINs taken from the environment or the PIN files, generated into the files when
 * neither is there). 0 or -1. */
int setup_module(engine_setup *s, bool create_missing, enroll_error *err);

/* Initializes the token labelled label if the module has none (as setup_module does). Sets
 * *created. 0 or -1. */
int setup_ensure_token(engine_setup *s, const char *label, bool *created, enroll_error *err);

/* Logs into the key tokens and the tokens of the local CAs. */
int setup_login(engine_setup *s, enroll_error *err);

/* Creates the embedded CA of every local CA whose home holds none yet (only when allowed:
 * the embedded default, or `ca init`). */
int setup_local_cas(engine_setup *s, bool create_missing, enroll_error *err);

void setup_free(engine_setup *s);

/* --template NAME and --pattern ID (NULL / -1: not given) name what cfg has: 0, or -1 with err
 * USAGE saying what it has and the nearest name. */
int setup_check_defaults(const config *cfg, const char *template_name, long long pattern_id,
                         enroll_error *err);

#endif
