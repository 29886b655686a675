/* The HSM side of a run: the loaded module, every token the run uses (logged in once), the
 * per-run wrapping key for export keys, and what the module can do with each key type. */
#ifndef HSMENROLL_ENGINE_HSM_CONTEXT_H
#define HSMENROLL_ENGINE_HSM_CONTEXT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "batch/config.h"
#include "batch/request.h"
#include "formats/error.h"
#include "hsm/hsm.h"

typedef enum export_method {
    EXPORT_UNKNOWN = 0, /* not tried yet: try C_WrapKey */
    EXPORT_WRAP,        /* sensitive session key, C_WrapKey (AES-KWP) */
    EXPORT_READ,        /* module will not wrap this type: non-sensitive session key, CKA_VALUE */
    EXPORT_NONE,        /* neither: export requests of this type are refused before keygen */
} export_method;

/* PIN sources a run can have: Hsm's and those of the CA tokens with a PIN of their own. */
#define HSM_CONTEXT_MAX_PINS 8

typedef struct hsm_context {
    hsm_module *module;
    hsm_token *tokens; /* the key tokens (Hsm.Tokens) first, then the CA tokens */
    size_t token_count;
    size_t key_token_count;        /* the key tokens: Hsm.Tokens, then Hsm.EdDSAToken if given */
    size_t spread_token_count;     /* those requests are spread over (Hsm.Tokens) */
    size_t eddsa_token;            /* index of Hsm.EdDSAToken; SIZE_MAX: none */
    unsigned char *kek;            /* the run's AES-256 wrapping key, in locked memory; or NULL */
    CK_OBJECT_HANDLE *kek_handles; /* its object in each key token */
    _Atomic int export_methods[KEYALG_ED448 + 1];
    /* What the key tokens can do (hsm_context_open): caps[i] for key token i. */
    hsm_caps *caps;
    CK_MECHANISM_TYPE wrap_mechanism; /* the export wrap the key tokens offer; 0: none */
    hsm_wrap_scheme wrap_scheme;      /* how its output reads back */
    /* The wrapping key is made by the first export request (hsm_context_export_ready). */
    pthread_mutex_t export_lock;
    bool export_lock_made;
    int export_state; /* 0 not tried, 1 ready, -1 impossible (export_reason says why) */
    /* The module's answer when the wrapping key could not be made ready (its import here, its
     * sealing for the journal by on_made in engine/recovery.c); CKR_OK for other failures. */
    CK_RV export_answer;
    char export_reason[400];
    /* The user PINs, kept, locked, wiped at close: to log in again (restart, lost login). One per
     * PIN source (Hsm's, a CA token's own); token_pin[i] is tokens[i]'s, an entry of pins. */
    char *pins[HSM_CONTEXT_MAX_PINS];
    size_t pin_count;
    const char **token_pin;
    long restart_every; /* restart the module after this many session key pairs; 0: never */
    long restarts;
    /* Session recovery (hsm_context_recover): one at a time; counts for the run's log. */
    pthread_mutex_t recover_lock;
    bool recover_lock_ready;
    _Atomic long sessions_reopened, relogins;
} hsm_context;

/* SoftHSM 2.6 frees a destroyed session object only at C_Finalize (upstream #562/#563): about
 * 420 bytes per export key. A run restarts it after this many, which bounds that memory (~8 MiB)
 * at a cost of one drain of the pipeline and one login per 20,000 keys. */
#define HSM_CONTEXT_SOFTHSM_RESTART_EVERY 20000

/* Logs into every token of cfg->hsm.tokens plus extra_tokens (duplicates are opened once) with
 * the PIN of cfg->hsm, then into the tokens of cfg->stores that are present (an absent store
 * token is no error: hsm_context_token_index finds no such token). Takes ownership of module on
 * success. Codes: PIN_UNAVAILABLE, HSM_TOKEN (absent token), HSM_LOGIN (wrong PIN: the message
 * names the CKR). */
int hsm_context_open(hsm_context *ctx, hsm_module *module, const config *cfg,
                     const char *const *extra_tokens, size_t extra_count, enroll_error *err);
/* Creates the wrapping key (random, mlock'ed) and imports it into each key token. */
int hsm_context_prepare_export(hsm_context *ctx, enroll_error *err);
/* Whether key token t offers key pair generation of spec; false with the reason. */
bool hsm_context_can_generate(const hsm_context *ctx, size_t t, const hsm_key_spec *spec, char *why,
                              size_t why_size);
/* Whether keys can be exported at all (a wrap mechanism every key token offers, and the wrapping
 * key could be made); false with the reason and the way out. */
bool hsm_context_can_export(hsm_context *ctx, char *why, size_t why_size);
/* The wrapping key, made now if it is not yet (once per run, under a lock); made calls
 * on_made(arg) before any key is wrapped under it (the journal keeps it), and a failure there
 * makes export impossible for the run. 0, or -1 with err HSM_CANNOT_EXPORT. */
int hsm_context_export_ready(hsm_context *ctx, int (*on_made)(void *arg, enroll_error *err),
                             void *arg, enroll_error *err);
/* The same with a given key (32 bytes, copied): a resumed run keeps the wrapping key of the run
 * it continues, so the keys its journal holds wrapped can still be read. */
int hsm_context_prepare_export_with(hsm_context *ctx, const unsigned char *kek, enroll_error *err);
/* Destroys the wrapping key's objects and wipes it (export impossible from now on). */
void hsm_context_drop_export(hsm_context *ctx);
/* Index of the token labelled label, or -1. */
int hsm_context_token_index(const hsm_context *ctx, const char *label);
/* A session struct over a token's login session (not to be closed). */
void hsm_context_login_session(hsm_context *ctx, size_t token_index, hsm_session *out);
/* Restarts the module (hsm_module_restart) with every token logged in again and the wrapping key
 * imported again (new handles). Every other session and handle of the process is gone: the caller
 * has closed its sessions and reopens them after. Code HSM_RESTART. */
int hsm_context_restart(hsm_context *ctx, enroll_error *err);
/* A worker's session on token t is lost (session->lost, set by hsm/): under one lock, logs every
 * token whose login is gone in again (a failover ends them all; the wrapping key, a session
 * object, is imported again with a new handle in kek_handles), calls relogged(arg, t) when any
 * was, so that handles of token objects are found again (e.g. the embedded CA's key), then
 * replaces the worker's session by a new one. The caller
 * retries its step once. 0, or -1 with err (code HSM_SESSION_LOST). */
int hsm_context_recover(hsm_context *ctx, size_t t, hsm_session *session,
                        int (*relogged)(void *arg, size_t t, enroll_error *err), void *arg,
                        enroll_error *err);
/* The wrapping key's handle in key token t (it changes when the token is logged in again). */
CK_OBJECT_HANDLE hsm_context_kek_handle(hsm_context *ctx, size_t t);
void hsm_context_close(hsm_context *ctx);

#endif
