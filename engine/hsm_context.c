/* Opening the tokens of a run, the wrapping key, and teardown. */
#include "engine/hsm_context.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#include "ca/hsm_signer.h"
#include "batch/log.h"
#include "batch/secret.h"
#include "hsm/ckr.h"

/* The export wrap: the standard RFC 5649 mechanism first, then CKM_AES_KEY_WRAP_PAD as this
 * module was seen to do it, then AES-CBC-PAD; only what every key token offers for wrapping. */
static void choose_wrap(hsm_context *ctx, hsm_wrap_scheme pad_scheme)
{
    static const CK_MECHANISM_TYPE order[] = {CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD,
                                              CKM_AES_CBC_PAD};
    for (size_t m = 0; m < sizeof order / sizeof order[0]; m++) {
        bool all = ctx->key_token_count > 0;
        for (size_t t = 0; t < ctx->key_token_count; t++)
            all = all && hsm_caps_has(&ctx->caps[t], order[m], CKF_WRAP);
        hsm_wrap_scheme scheme = order[m] == CKM_AES_KEY_WRAP_KWP   ? HSM_WRAP_RFC5649
                                 : order[m] == CKM_AES_KEY_WRAP_PAD ? pad_scheme
                                                                    : HSM_WRAP_CBC_PAD;
        if (all && scheme != HSM_WRAP_NONE) {
            ctx->wrap_mechanism = order[m];
            ctx->wrap_scheme = scheme;
            return;
        }
    }
    snprintf(ctx->export_reason, sizeof ctx->export_reason,
             "this module cannot export keys (no AES key wrap or AES-CBC-PAD wrapping "
             "mechanism): use KeyStorage token");
}

/* Token i logged in again when its login is gone (hsm_token_relogin); *relogged says whether it
 * was, and the context counts it. 0, or -1 with err (code). */
static int relogin_token(hsm_context *ctx, size_t i, hse_code code, bool *relogged,
                         enroll_error *err)
{
    hsm_error herr;
    if (hsm_token_relogin(&ctx->tokens[i], ctx->token_pin[i], relogged, &herr) != 0) {
        hsm_error_to_enroll(&herr, code, err);
        return -1;
    }
    if (*relogged)
        atomic_fetch_add(&ctx->relogins, 1);
    return 0;
}

/* Capabilities of the key tokens, the module's quirks (Hsm.Profile, or seen: a module whose
 * CKM_AES_KEY_WRAP_PAD gives RFC 5649 output is SoftHSM 2.x's code, with its transient
 * CKR_GENERAL_ERROR and its destroyed session objects kept until C_Finalize), the export wrap. */
static int probe(hsm_context *ctx, const config *cfg, enroll_error *err)
{
    ctx->caps = calloc(ctx->key_token_count ? ctx->key_token_count : 1, sizeof *ctx->caps);
    if (ctx->caps == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    for (size_t t = 0; t < ctx->key_token_count; t++) {
        hsm_error herr;
        if (hsm_caps_probe(ctx->module, ctx->tokens[t].desc.slot, &ctx->caps[t], &herr) != 0) {
            hsm_error_to_enroll(&herr, HSE_HSM_TOKEN, err);
            return -1;
        }
    }
    hsm_wrap_scheme pad = HSM_WRAP_NONE;
    if (ctx->key_token_count > 0 && hsm_caps_has(&ctx->caps[0], CKM_AES_KEY_WRAP_PAD, CKF_WRAP)) {
        /* A lost session or a busy module says nothing of the mechanism: the login is made
         * again and the probe repeated, and a module that never answers is a set-up error
         * rather than a module without the wrap. */
        CK_RV answer = CKR_OK;
        for (int attempt = 0; attempt < 3; attempt++) {
            hsm_session s;
            bool relogged;
            if (attempt > 0 && relogin_token(ctx, 0, HSE_HSM_LOGIN, &relogged, err) != 0)
                return -1;
            hsm_context_login_session(ctx, 0, &s);
            pad = hsm_probe_wrap_pad(&s, &answer);
            if (!hsm_rv_transient(answer))
                break;
        }
        if (hsm_rv_transient(answer)) {
            enroll_error_set(err, HSE_HSM_TOKEN, NULL,
                             "token \"%s\" answered %s three times while its key wrap was probed",
                             ctx->tokens[0].desc.label, ckr_name(answer));
            return -1;
        }
    }
    const char *profile = cfg->hsm.profile ? cfg->hsm.profile : "auto";
    unsigned quirks = 0;
    if (strcasecmp(profile, "softhsm") == 0 ||
        (strcasecmp(profile, "auto") == 0 && pad == HSM_WRAP_RFC5649))
        quirks = HSM_QUIRK_RETRY_GENERAL_ERROR | HSM_QUIRK_KEEPS_DESTROYED;
    /* NSS softokn deadlocks with two token writes at once: a quirk that cannot be seen and
     * survived, so the token's model says it. */
    bool nss = ctx->token_count > 0 && strcmp(ctx->tokens[0].desc.model, "NSS 3") == 0;
    if (strcasecmp(profile, "nss") == 0 || (strcasecmp(profile, "auto") == 0 && nss))
        quirks |= HSM_QUIRK_SERIAL_TOKEN_WRITES;
    hsm_module_set_quirks(ctx->module, quirks);
    choose_wrap(ctx, pad);
    log_verbose("module %s: profile %s, quirks 0x%x, export wrap %s", hsm_module_path(ctx->module),
                profile, quirks,
                ctx->wrap_mechanism == CKM_AES_KEY_WRAP_KWP ? "CKM_AES_KEY_WRAP_KWP"
                : ctx->wrap_mechanism == CKM_AES_CBC_PAD    ? "CKM_AES_CBC_PAD"
                : ctx->wrap_mechanism == 0                  ? "none"
                : pad == HSM_WRAP_RFC5649 ? "CKM_AES_KEY_WRAP_PAD (RFC 5649 output)"
                                          : "CKM_AES_KEY_WRAP_PAD (RFC 3394 over PKCS#7 padding)");
    return 0;
}

/* Both NULL, or the same string. */
static bool same_text(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int hsm_context_open(hsm_context *ctx, hsm_module *module, const config *cfg,
                     const char *const *extra_tokens, size_t extra_count, enroll_error *err)
{
    memset(ctx, 0, sizeof *ctx);
    size_t keys = cfg->hsm.token_count + (cfg->hsm.eddsa_token != NULL);
    size_t max = keys + extra_count + cfg->store_count;
    const char **labels = calloc(max ? max : 1, sizeof *labels);
    ctx->tokens = calloc(max ? max : 1, sizeof *ctx->tokens);
    if (labels == NULL || ctx->tokens == NULL) {
        free(labels);
        free(ctx->tokens);
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    /* Key tokens, then the other tokens the run needs, then the stores' tokens (opened when
     * present: an absent store token fails only the requests for its store). */
    size_t n = 0, required = 0;
    ctx->eddsa_token = SIZE_MAX;
    for (size_t i = 0; i < max; i++) {
        size_t others = keys + extra_count;
        const char *label = i < cfg->hsm.token_count ? cfg->hsm.tokens[i]
                            : i < keys               ? cfg->hsm.eddsa_token
                            : i < others             ? extra_tokens[i - keys]
                                                     : cfg->stores[i - others].token;
        bool seen = false;
        for (size_t j = 0; j < n; j++)
            seen = seen || strcmp(labels[j], label) == 0;
        if (!seen)
            labels[n++] = label;
        if (i + 1 == cfg->hsm.token_count)
            ctx->spread_token_count = n;
        if (i == cfg->hsm.token_count && i < keys)
            ctx->eddsa_token = n - 1;
        if (i + 1 == keys)
            ctx->key_token_count = n;
        if (i + 1 == others)
            required = n;
    }
    /* Each token's PIN source (Hsm's, or its CA's own), each source read once; the prompt names
     * the tokens the PIN opens. */
    const char *env[HSM_CONTEXT_MAX_PINS], *file[HSM_CONTEXT_MAX_PINS];
    size_t *source_of = calloc(n ? n : 1, sizeof *source_of);
    ctx->token_pin = calloc(n ? n : 1, sizeof *ctx->token_pin);
    int rc = source_of != NULL && ctx->token_pin != NULL ? 0 : -1;
    if (rc != 0)
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *e, *f;
        config_token_pin(cfg, labels[i], &e, &f);
        size_t k = 0;
        while (k < ctx->pin_count && !(same_text(e, env[k]) && same_text(f, file[k])))
            k++;
        if (k == ctx->pin_count) {
            if (k == HSM_CONTEXT_MAX_PINS) {
                enroll_error_set(err, HSE_CONFIG_INVALID, NULL, "more than %d different token PINs",
                                 HSM_CONTEXT_MAX_PINS);
                rc = -1;
                break;
            }
            env[k] = e;
            file[k] = f;
            ctx->pin_count++;
        }
        source_of[i] = k;
    }
    for (size_t k = 0; rc == 0 && k < ctx->pin_count; k++) {
        size_t opens = 0;
        for (size_t i = 0; i < n; i++)
            opens += source_of[i] == k;
        char what[300];
        int used = snprintf(what, sizeof what, "user PIN of token%s", opens > 1 ? "s" : "");
        for (size_t i = 0, named = 0; i < n && (size_t)used < sizeof what; i++)
            if (source_of[i] == k)
                used += snprintf(what + used, sizeof what - (size_t)used, "%s \"%s\"",
                                 named++ ? "," : "", labels[i]);
        ctx->pins[k] = secret_read(env[k], file[k], what, err);
        if (ctx->pins[k] == NULL) {
            rc = -1;
            break;
        }
        /* Kept (locked in memory, wiped at close) to log in again after a module restart or
         * when the module drops the login (an HSM failover closes every session). */
        mlock(ctx->pins[k], strlen(ctx->pins[k]) + 1);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        hsm_error herr;
        const char *pin = ctx->pins[source_of[i]];
        if (hsm_token_open(module, labels[i], pin, &ctx->tokens[ctx->token_count], &herr) == 0) {
            ctx->token_pin[ctx->token_count++] = pin;
        } else if (i < required || herr.rv != CKR_TOKEN_NOT_PRESENT) {
            hsm_error_to_enroll(
                &herr, herr.rv == CKR_TOKEN_NOT_PRESENT ? HSE_HSM_TOKEN : HSE_HSM_LOGIN, err);
            if (herr.rv == CKR_PIN_INCORRECT || herr.rv == CKR_PIN_LEN_RANGE ||
                herr.rv == CKR_PIN_INVALID) {
                char source[300];
                secret_source(env[source_of[i]], file[source_of[i]], source, sizeof source);
                size_t len = strlen(err->message);
                if (len < sizeof err->message)
                    snprintf(err->message + len, sizeof err->message - len,
                             " (the PIN came from %.200s)", source);
            }
            rc = -1;
            break;
        }
    }
    free(source_of);
    free(labels);
    ctx->module = module;
    if (pthread_mutex_init(&ctx->export_lock, NULL) == 0)
        ctx->export_lock_made = true;
    if (rc == 0 && probe(ctx, cfg, err) != 0)
        rc = -1;
    long long every = cfg->hsm.restart_every;
    if (every < 0)
        every = hsm_module_quirks(module) & HSM_QUIRK_KEEPS_DESTROYED
                    ? HSM_CONTEXT_SOFTHSM_RESTART_EVERY
                    : 0;
    if (rc == 0) {
        ctx->restart_every = every > 0 ? (long)every : 0;
        pthread_mutex_init(&ctx->recover_lock, NULL);
        ctx->recover_lock_ready = true;
    }
    if (rc != 0) {
        ctx->module = NULL; /* the caller still owns it */
        hsm_context_close(ctx);
    }
    return rc;
}

int hsm_context_token_index(const hsm_context *ctx, const char *label)
{
    for (size_t i = 0; i < ctx->token_count; i++)
        if (strcmp(ctx->tokens[i].desc.label, label) == 0)
            return (int)i;
    return -1;
}

void hsm_context_login_session(hsm_context *ctx, size_t token_index, hsm_session *out)
{
    memset(out, 0, sizeof *out);
    out->token = &ctx->tokens[token_index];
    out->f = hsm_module_functions(ctx->module);
    out->handle = ctx->tokens[token_index].login_session;
}

int hsm_context_prepare_export(hsm_context *ctx, enroll_error *err)
{
    return hsm_context_prepare_export_with(ctx, NULL, err);
}

/* The wrapping key into each key token (new session objects; their handles in kek_handles). */
static int import_kek(hsm_context *ctx, hse_code code, enroll_error *err)
{
    for (size_t i = 0; i < ctx->key_token_count; i++) {
        hsm_session s;
        hsm_error herr;
        hsm_context_login_session(ctx, i, &s);
        if (hsm_import_wrapping_key(&s, ctx->kek, &ctx->kek_handles[i], &herr) != 0) {
            ctx->export_answer = herr.rv;
            hsm_error_to_enroll(&herr, code, err);
            return -1;
        }
    }
    return 0;
}

bool hsm_context_can_generate(const hsm_context *ctx, size_t t, const hsm_key_spec *spec, char *why,
                              size_t why_size)
{
    if (ctx->caps == NULL || t >= ctx->key_token_count)
        return true; /* not a key token (stores): the module answers for itself */
    return hsm_caps_keygen(&ctx->caps[t], spec, why, why_size);
}

bool hsm_context_can_export(hsm_context *ctx, char *why, size_t why_size)
{
    if (ctx->kek != NULL)
        return true; /* a resumed run's, or made already */
    if (ctx->wrap_mechanism != 0 && ctx->export_state >= 0)
        return true;
    snprintf(why, why_size, "%s", ctx->export_reason);
    return false;
}

/* Every key token logged in again where its login is gone (under recover_lock). */
static int relogin_key_tokens(hsm_context *ctx, enroll_error *err)
{
    for (size_t i = 0; i < ctx->key_token_count; i++) {
        bool relogged;
        if (relogin_token(ctx, i, HSE_HSM_SESSION_LOST, &relogged, err) != 0)
            return -1;
    }
    return 0;
}

int hsm_context_export_ready(hsm_context *ctx, int (*on_made)(void *arg, enroll_error *err),
                             void *arg, enroll_error *err)
{
    if (ctx->export_lock_made)
        pthread_mutex_lock(&ctx->export_lock);
    int rc = 0;
    bool transient = false;
    enroll_error e = {0};
    if (ctx->kek == NULL && ctx->export_state >= 0 && ctx->wrap_mechanism != 0) {
        /* Under recover_lock too: a recovery re-imports the wrapping key it sees. */
        if (ctx->recover_lock_ready)
            pthread_mutex_lock(&ctx->recover_lock);
        for (int attempt = 0;; attempt++) {
            memset(&e, 0, sizeof e);
            ctx->export_answer = CKR_OK;
            if (hsm_context_prepare_export_with(ctx, NULL, &e) == 0 &&
                (on_made == NULL || on_made(arg, &e) == 0)) {
                ctx->export_state = 1;
                break;
            }
            hsm_context_drop_export(ctx);
            /* A lost session or login, a busy module: the token is logged in again and the key
             * imported again; never a verdict on the module from such an answer. */
            transient = hsm_rv_transient(ctx->export_answer);
            if (!transient || attempt == 2 || relogin_key_tokens(ctx, &e) != 0)
                break;
        }
        if (ctx->recover_lock_ready)
            pthread_mutex_unlock(&ctx->recover_lock);
        if (ctx->kek == NULL && !transient) {
            ctx->export_state = -1;
            snprintf(ctx->export_reason, sizeof ctx->export_reason,
                     "this module cannot export keys (%.300s): use KeyStorage token", e.message);
        }
    }
    if (ctx->kek == NULL && transient) {
        /* Left untried: the next export request makes the key again. */
        enroll_error_set(err, HSE_HSM_EXPORT_FAILED, NULL,
                         "the run's wrapping key could not be made now (%.300s)", e.message);
        rc = -1;
    } else if (ctx->kek == NULL) {
        enroll_error_set(err, HSE_HSM_CANNOT_EXPORT, "KeyStorage", "%s",
                         ctx->export_reason[0] ? ctx->export_reason
                                               : "this module cannot export keys");
        rc = -1;
    }
    if (ctx->export_lock_made)
        pthread_mutex_unlock(&ctx->export_lock);
    return rc;
}

int hsm_context_prepare_export_with(hsm_context *ctx, const unsigned char *kek, enroll_error *err)
{
    if (ctx->kek != NULL)
        return 0;
    ctx->kek = OPENSSL_secure_malloc(32);
    if (ctx->kek == NULL)
        ctx->kek = malloc(32);
    ctx->kek_handles =
        calloc(ctx->key_token_count ? ctx->key_token_count : 1, sizeof *ctx->kek_handles);
    if (ctx->kek == NULL || ctx->kek_handles == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    mlock(ctx->kek, 32);
    if (kek != NULL)
        memcpy(ctx->kek, kek, 32);
    else if (RAND_priv_bytes(ctx->kek, 32) != 1) {
        enroll_error_set(err, HSE_HSM_EXPORT_FAILED, NULL, "no randomness for the wrapping key");
        return -1;
    }
    return import_kek(ctx, HSE_HSM_EXPORT_FAILED, err);
}

static void wipe_kek(hsm_context *ctx)
{
    if (ctx->kek != NULL) {
        OPENSSL_cleanse(ctx->kek, 32);
        munlock(ctx->kek, 32);
        if (CRYPTO_secure_allocated(ctx->kek))
            OPENSSL_secure_free(ctx->kek);
        else
            free(ctx->kek);
        ctx->kek = NULL;
    }
}

void hsm_context_drop_export(hsm_context *ctx)
{
    for (size_t i = 0; ctx->kek_handles != NULL && i < ctx->key_token_count; i++) {
        if (ctx->kek_handles[i] == CK_INVALID_HANDLE)
            continue;
        hsm_session s;
        hsm_context_login_session(ctx, i, &s);
        hsm_destroy_object(&s, ctx->kek_handles[i], NULL);
    }
    free(ctx->kek_handles);
    ctx->kek_handles = NULL;
    wipe_kek(ctx);
}

int hsm_context_restart(hsm_context *ctx, enroll_error *err)
{
    if (ctx->pin_count == 0) {
        enroll_error_set(err, HSE_HSM_RESTART, NULL, "the module cannot be restarted");
        return -1;
    }
    for (size_t i = 0; i < ctx->token_count; i++)
        hsm_token_close(&ctx->tokens[i]);
    hsm_error herr;
    if (hsm_module_restart(ctx->module, &herr) != 0) {
        hsm_error_to_enroll(&herr, HSE_HSM_RESTART, err);
        ctx->token_count = 0;
        return -1;
    }
    for (size_t i = 0; i < ctx->token_count; i++) {
        char label[sizeof ctx->tokens[i].desc.label];
        memcpy(label, ctx->tokens[i].desc.label, sizeof label);
        if (hsm_token_open(ctx->module, label, ctx->token_pin[i], &ctx->tokens[i], &herr) != 0) {
            hsm_error_to_enroll(&herr, HSE_HSM_RESTART, err);
            for (size_t k = 0; k < i; k++)
                hsm_token_close(&ctx->tokens[k]);
            ctx->token_count = 0;
            return -1;
        }
    }
    if (ctx->kek != NULL && import_kek(ctx, HSE_HSM_RESTART, err) != 0)
        return -1;
    ctx->restarts++;
    return 0;
}

CK_OBJECT_HANDLE hsm_context_kek_handle(hsm_context *ctx, size_t t)
{
    if (ctx->kek_handles == NULL || t >= ctx->key_token_count)
        return CK_INVALID_HANDLE;
    return __atomic_load_n(&ctx->kek_handles[t], __ATOMIC_ACQUIRE);
}

int hsm_context_recover(hsm_context *ctx, size_t t, hsm_session *session,
                        int (*relogged)(void *arg, size_t t, enroll_error *err), void *arg,
                        enroll_error *err)
{
    if (t >= ctx->token_count || !ctx->recover_lock_ready) {
        enroll_error_set(err, HSE_HSM_SESSION_LOST, NULL, "the session cannot be recovered");
        return -1;
    }
    hsm_token *token = &ctx->tokens[t];
    hsm_error herr;
    int rc = 0;
    pthread_mutex_lock(&ctx->recover_lock);
    /* A failover ends the login of every token of the module, not only this one's. It can also
     * come between the look at the logins and the new session: a new session that is not
     * logged in means just that, and the tokens are logged in again (three rounds at most). */
    for (int round = 0; rc == 0 && round < 3; round++) {
        bool again = false;
        for (size_t i = 0; rc == 0 && i < ctx->token_count; i++) {
            bool this_one = false;
            if (relogin_token(ctx, i, HSE_HSM_SESSION_LOST, &this_one, err) != 0) {
                rc = -1;
                break;
            }
            if (!this_one)
                continue;
            again = true;
            log_warning("token \"%s\": the login was gone (failover?): logged in again",
                        ctx->tokens[i].desc.label);
            /* The wrapping key was a session object of the old login session. */
            if (ctx->kek != NULL && i < ctx->key_token_count) {
                hsm_session login;
                CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
                hsm_context_login_session(ctx, i, &login);
                if (hsm_import_wrapping_key(&login, ctx->kek, &h, &herr) != 0) {
                    hsm_error_to_enroll(&herr, HSE_HSM_SESSION_LOST, err);
                    rc = -1;
                } else {
                    __atomic_store_n(&ctx->kek_handles[i], h, __ATOMIC_RELEASE);
                }
            }
        }
        if (rc == 0 && again && relogged != NULL && relogged(arg, t, err) != 0)
            rc = -1;
        if (rc != 0)
            break;
        hsm_session_close(session); /* its handle may be stale already: the answer is ignored */
        if (hsm_session_open(token, session, &herr) != 0) {
            hsm_error_to_enroll(&herr, HSE_HSM_SESSION_LOST, err);
            rc = -1;
            break;
        }
        atomic_fetch_add(&ctx->sessions_reopened, 1);
        CK_SESSION_INFO info;
        if (session->f->C_GetSessionInfo(session->handle, &info) != CKR_OK ||
            info.state == CKS_RW_USER_FUNCTIONS || info.state == CKS_RO_USER_FUNCTIONS)
            break; /* logged in (or the module cannot say: the next call will) */
    }
    pthread_mutex_unlock(&ctx->recover_lock);
    return rc;
}

void hsm_context_close(hsm_context *ctx)
{
    if (ctx->recover_lock_ready) {
        pthread_mutex_destroy(&ctx->recover_lock);
        ctx->recover_lock_ready = false;
    }
    for (size_t k = 0; k < ctx->pin_count; k++) {
        if (ctx->pins[k] == NULL)
            continue;
        size_t len = strlen(ctx->pins[k]) + 1;
        OPENSSL_cleanse(ctx->pins[k], len);
        munlock(ctx->pins[k], len);
        free(ctx->pins[k]);
        ctx->pins[k] = NULL;
    }
    ctx->pin_count = 0;
    free(ctx->token_pin);
    ctx->token_pin = NULL;
    wipe_kek(ctx);
    free(ctx->kek_handles);
    ctx->kek_handles = NULL;
    for (size_t i = 0; ctx->caps != NULL && i < ctx->key_token_count; i++)
        hsm_caps_free(&ctx->caps[i]);
    free(ctx->caps);
    ctx->caps = NULL;
    if (ctx->export_lock_made) {
        pthread_mutex_destroy(&ctx->export_lock);
        ctx->export_lock_made = false;
    }
    for (size_t i = 0; i < ctx->token_count; i++)
        hsm_token_close(&ctx->tokens[i]); /* closing the login session ends its session objects */
    free(ctx->tokens);
    ctx->tokens = NULL;
    ctx->token_count = 0;
    hsm_module_unload(ctx->module);
    ctx->module = NULL;
}
