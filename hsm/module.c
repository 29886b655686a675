/* PKCS#11 modules: dlopen + C_GetFunctionList + C_Initialize (OS locking), token discovery by
 * label, and token initialization (C_InitToken + C_InitPIN). */
#include "hsm.h"
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ckr.h"

#ifndef HSMENROLL_DEFAULT_MODULE
#define HSMENROLL_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

struct hsm_module {
    void *dl;
    CK_FUNCTION_LIST *f;
    bool initialized_here;
    char *path;
    char *init_args;              /* C_Initialize's pReserved, or NULL */
    unsigned quirks;              /* HSM_QUIRK_* */
    pthread_mutex_t token_writes; /* HSM_QUIRK_SERIAL_TOKEN_WRITES: one token write at a time */
};

void hsm_error_set(hsm_error *err, const char *function, CK_RV rv, const char *fmt, ...)
{
    if (err == NULL)
        return;
    snprintf(err->function, sizeof err->function, "%s", function ? function : "");
    err->rv = rv;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

const char *hsm_default_module_path(void)
{
    return HSMENROLL_DEFAULT_MODULE;
}

/* C_Initialize with the OS's locking: the engine's workers call the module from many threads. */
static CK_RV initialize(hsm_module *m)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    args.pReserved = m->init_args;
    return m->f->C_Initialize(&args);
}

hsm_module *hsm_module_load(const char *path, hsm_error *err)
{
    return hsm_module_load_args(path, NULL, err);
}

hsm_module *hsm_module_load_args(const char *path, const char *init_args, hsm_error *err)
{
    if (path == NULL || *path == '\0')
        path = hsm_default_module_path();
    struct stat st;
    if (stat(path, &st) != 0) {
        hsm_error_set(err, "", CKR_OK, "cannot load PKCS#11 module %s: %s", path, strerror(errno));
        return NULL;
    }
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        hsm_error_set(err, "", CKR_OK, "cannot load PKCS#11 module %s: %s", path, dlerror());
        return NULL;
    }
    CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (get_list == NULL) {
        hsm_error_set(err, "", CKR_OK, "%s is not a PKCS#11 module (no C_GetFunctionList)", path);
        dlclose(dl);
        return NULL;
    }
    hsm_module *m = calloc(1, sizeof *m);
    if (m != NULL)
        pthread_mutex_init(&m->token_writes, NULL);
    if (m == NULL) {
        dlclose(dl);
        hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
        return NULL;
    }
    m->dl = dl;
    m->path = strdup(path);
    if (init_args != NULL && *init_args != '\0')
        m->init_args = strdup(init_args);
    CK_RV rv = get_list(&m->f);
    if (rv != CKR_OK || m->f == NULL) {
        hsm_error_set(err, "C_GetFunctionList", rv, "C_GetFunctionList failed on %s: %s", path,
                      ckr_name(rv));
        hsm_module_unload(m);
        return NULL;
    }
    rv = initialize(m);
    if (rv == CKR_OK) {
        m->initialized_here = true;
    } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        hsm_error_set(err, "C_Initialize", rv, "C_Initialize failed on %s: %s%s", path,
                      ckr_name(rv),
                      rv == CKR_ARGUMENTS_BAD && m->init_args == NULL
                          ? " (does the module need an initialisation string: Hsm.InitArgs?)"
                          : "");
        hsm_module_unload(m);
        return NULL;
    }
    return m;
}

int hsm_module_restart(hsm_module *module, hsm_error *err)
{
    if (module == NULL || !module->initialized_here) {
        hsm_error_set(err, "C_Finalize", CKR_OK,
                      "the module was initialized by someone else in this process: it is not "
                      "restarted");
        return -1;
    }
    CK_RV rv = module->f->C_Finalize(NULL);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_Finalize", rv, "C_Finalize failed on %s: %s", module->path,
                      ckr_name(rv));
        return -1;
    }
    rv = initialize(module);
    if (rv != CKR_OK) {
        module->initialized_here = false;
        hsm_error_set(err, "C_Initialize", rv, "C_Initialize failed on %s: %s", module->path,
                      ckr_name(rv));
        return -1;
    }
    return 0;
}

unsigned hsm_module_quirks(const hsm_module *module)
{
    return module != NULL ? module->quirks : 0;
}

void hsm_token_write_begin(const hsm_session *session)
{
    hsm_module *m = session->token->module;
    if (m->quirks & HSM_QUIRK_SERIAL_TOKEN_WRITES)
        pthread_mutex_lock(&m->token_writes);
}

void hsm_token_write_end(const hsm_session *session)
{
    hsm_module *m = session->token->module;
    if (m->quirks & HSM_QUIRK_SERIAL_TOKEN_WRITES)
        pthread_mutex_unlock(&m->token_writes);
}

void hsm_module_set_quirks(hsm_module *module, unsigned quirks)
{
    module->quirks = quirks;
}

void hsm_module_unload(hsm_module *module)
{
    if (module == NULL)
        return;
    if (module->initialized_here && module->f != NULL)
        module->f->C_Finalize(NULL);
    /* SoftHSM and most modules keep thread-local state that outlives dlclose badly; closing the
     * library at exit is not worth the risk, the process is ending anyway. */
    free(module->path);
    free(module->init_args);
    free(module);
}

CK_FUNCTION_LIST *hsm_module_functions(const hsm_module *module)
{
    return module->f;
}

const char *hsm_module_path(const hsm_module *module)
{
    return module->path;
}

/* Copies a blank-padded PKCS#11 string field into a NUL-terminated C string. */
static void copy_padded(char *dst, size_t dst_size, const CK_UTF8CHAR *src, size_t src_len)
{
    size_t n = src_len < dst_size - 1 ? src_len : dst_size - 1;
    memcpy(dst, src, n);
    while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == '\0'))
        n--;
    dst[n] = '\0';
}

static void describe(CK_SLOT_ID slot, const CK_TOKEN_INFO *info, hsm_token_desc *out)
{
    memset(out, 0, sizeof *out);
    out->slot = slot;
    copy_padded(out->label, sizeof out->label, info->label, sizeof info->label);
    copy_padded(out->manufacturer, sizeof out->manufacturer, info->manufacturerID,
                sizeof info->manufacturerID);
    copy_padded(out->model, sizeof out->model, info->model, sizeof info->model);
    copy_padded(out->serial, sizeof out->serial, info->serialNumber, sizeof info->serialNumber);
    out->initialized = (info->flags & CKF_TOKEN_INITIALIZED) != 0;
    out->user_pin_initialized = (info->flags & CKF_USER_PIN_INITIALIZED) != 0;
    /* No limit: CK_UNAVAILABLE_INFORMATION, and any count no token means (openCryptoki 3.8
     * states ~0 - 1, which read as a limit made the run's lane count negative). */
    out->max_rw_sessions =
        info->ulMaxRwSessionCount > INT_MAX ? 0 : (unsigned long)info->ulMaxRwSessionCount;
}

int hsm_module_list_tokens(hsm_module *module, hsm_token_desc *out, size_t max, hsm_error *err)
{
    CK_ULONG count = 0;
    CK_RV rv = module->f->C_GetSlotList(CK_TRUE, NULL, &count);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_GetSlotList", rv, "C_GetSlotList failed: %s", ckr_name(rv));
        return -1;
    }
    CK_SLOT_ID *slots = calloc(count ? count : 1, sizeof *slots);
    if (slots == NULL) {
        hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
        return -1;
    }
    rv = module->f->C_GetSlotList(CK_TRUE, slots, &count);
    if (rv != CKR_OK) {
        free(slots);
        hsm_error_set(err, "C_GetSlotList", rv, "C_GetSlotList failed: %s", ckr_name(rv));
        return -1;
    }
    size_t found = 0;
    for (CK_ULONG i = 0; i < count && found < max; i++) {
        CK_TOKEN_INFO info;
        if (module->f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
            continue; /* token removed meanwhile */
        describe(slots[i], &info, &out[found++]);
    }
    free(slots);
    return (int)found;
}

/* One look through the slot list for label (see hsm_module_find_token). */
static int find_token_once(hsm_module *module, const char *label, hsm_token_desc *out,
                           hsm_error *err)
{
    hsm_token_desc tokens[64];
    int n = hsm_module_list_tokens(module, tokens, 64, err);
    if (n < 0)
        return -1;
    int match = -1, matches = 0;
    char seen[512] = "";
    for (int i = 0; i < n; i++) {
        if (tokens[i].initialized && strcmp(tokens[i].label, label) == 0) {
            if (matches++ == 0)
                match = i;
            size_t used = strlen(seen);
            snprintf(seen + used, sizeof seen - used, "%sslot %lu (%s, %s, serial %s)",
                     used ? "; " : "", (unsigned long)tokens[i].slot, tokens[i].model,
                     tokens[i].manufacturer, tokens[i].serial);
        }
    }
    if (matches == 1) {
        *out = tokens[match];
        return 0;
    }
    if (matches > 1) {
        /* Two tokens under one label (two modules behind p11-kit's proxy, a stale registration):
         * taking the first would put keys, or take a PIN, on a token nobody meant. */
        hsm_error_set(err, "", CKR_ARGUMENTS_BAD,
                      "%d tokens are labelled \"%s\" in module %s: %s; give each a label of its "
                      "own, or load the module that holds the one you mean",
                      matches, label, module->path, seen);
        return -1;
    }
    hsm_error_set(err, "", CKR_TOKEN_NOT_PRESENT, "no token labelled \"%s\" in module %s", label,
                  module->path);
    return -1;
}

int hsm_module_find_token(hsm_module *module, const char *label, hsm_token_desc *out,
                          hsm_error *err)
{
    /* A token another process is logging into can look missing for a moment: SoftHSM 2.6.1
     * rewrites its token.object at each C_Login (truncated under its lock, then written after
     * the lock is dropped), and a reader in between takes the token for an invalid one until
     * the file's generation changes again. A miss is looked at twice more, a few ms apart. */
    hsm_error local;
    if (err == NULL)
        err = &local;
    for (int attempt = 0;; attempt++) {
        int rc = find_token_once(module, label, out, err);
        if (rc == 0 || err->rv != CKR_TOKEN_NOT_PRESENT || attempt == 2)
            return rc;
        struct timespec pause = {0, 5000000L << attempt};
        nanosleep(&pause, NULL);
    }
}

int hsm_module_free_slot(hsm_module *module, CK_SLOT_ID *slot, hsm_error *err)
{
    hsm_token_desc tokens[64];
    int n = hsm_module_list_tokens(module, tokens, 64, err);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (!tokens[i].initialized) {
            *slot = tokens[i].slot;
            return 0;
        }
    }
    hsm_error_set(err, "", CKR_TOKEN_NOT_PRESENT,
                  "module %s has no slot with an uninitialized token", module->path);
    return -1;
}

/* C_Login as SO and C_InitPIN on the token in slot. */
static int init_user_pin(hsm_module *module, CK_SLOT_ID slot, const char *label, const char *so_pin,
                         const char *user_pin, hsm_error *err)
{
    CK_SESSION_HANDLE s;
    CK_RV rv = module->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_OpenSession", rv, "C_OpenSession failed: %s", ckr_name(rv));
        return -1;
    }
    const char *fn = "C_Login";
    rv = module->f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin));
    if (rv == CKR_OK) {
        fn = "C_InitPIN";
        rv = module->f->C_InitPIN(s, (CK_UTF8CHAR_PTR)user_pin, strlen(user_pin));
        module->f->C_Logout(s);
    }
    module->f->C_CloseSession(s);
    if (rv != CKR_OK) {
        hsm_error_set(err, fn, rv, "%s failed while initializing token \"%s\": %s", fn, label,
                      ckr_name(rv));
        return -1;
    }
    return 0;
}

/* A PIN outside the token's stated length range fails after C_InitToken otherwise. */
static int check_pin_length(const CK_TOKEN_INFO *info, const char *what, const char *pin,
                            hsm_error *err)
{
    size_t len = strlen(pin);
    if (len < info->ulMinPinLen ||
        (info->ulMaxPinLen != 0 && info->ulMaxPinLen != CK_UNAVAILABLE_INFORMATION &&
         len > info->ulMaxPinLen)) {
        hsm_error_set(err, "", CKR_PIN_LEN_RANGE,
                      "the %s has %zu characters; this token takes %lu to %lu", what, len,
                      (unsigned long)info->ulMinPinLen, (unsigned long)info->ulMaxPinLen);
        return -1;
    }
    return 0;
}

int hsm_module_init_token(hsm_module *module, const char *label, const char *so_pin,
                          const char *user_pin, hsm_token_desc *out, hsm_error *err)
{
    if (strlen(label) > 32) {
        hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "token label \"%s\" is longer than 32 bytes",
                      label);
        return -1;
    }
    hsm_token_desc tokens[64];
    int n = hsm_module_list_tokens(module, tokens, 64, err);
    if (n < 0)
        return -1;
    int free_slot = -1;
    for (int i = 0; i < n; i++) {
        if (tokens[i].initialized && strcmp(tokens[i].label, label) == 0) {
            if (tokens[i].user_pin_initialized) {
                hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "a token labelled \"%s\" already exists",
                              label);
                return -1;
            }
            /* Left half-made (C_InitToken done, C_InitPIN not): finish it. */
            if (init_user_pin(module, tokens[i].slot, label, so_pin, user_pin, err) != 0)
                return -1;
            return hsm_module_find_token(module, label, out, err);
        }
        if (!tokens[i].initialized && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) {
        hsm_error_set(err, "", CKR_TOKEN_NOT_PRESENT,
                      "module %s has no slot with an uninitialized token", module->path);
        return -1;
    }
    CK_SLOT_ID slot = tokens[free_slot].slot;
    CK_TOKEN_INFO info;
    CK_RV rv = module->f->C_GetTokenInfo(slot, &info);
    if (rv == CKR_OK && (check_pin_length(&info, "SO PIN", so_pin, err) != 0 ||
                         check_pin_length(&info, "user PIN", user_pin, err) != 0))
        return -1;
    CK_UTF8CHAR padded[32];
    memset(padded, ' ', sizeof padded);
    memcpy(padded, label, strlen(label));
    rv = module->f->C_InitToken(slot, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin), padded);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_InitToken", rv, "C_InitToken failed: %s", ckr_name(rv));
        return -1;
    }
    /* SoftHSM gives the new token a new slot: look it up again by label. */
    if (hsm_module_find_token(module, label, out, err) != 0)
        return -1;
    /* Should C_InitPIN fail, the token is left labelled without a user PIN: a rerun finishes it
     * (above) rather than reporting it as existing. */
    if (init_user_pin(module, out->slot, label, so_pin, user_pin, err) != 0)
        return -1;
    return hsm_module_find_token(module, label, out, err);
}
