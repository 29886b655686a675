/* p11fault: a PKCS#11 module that forwards every call to a real module it dlopens and injects
 * faults on the way (error codes, lost sessions, failovers, latency, hidden mechanisms, session
 * limits), or answers key generation from a pool of key pairs made beforehand, as told by the
 * file named by $P11FAULT_CONFIG. Grammar: tests/tools/README.md. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define EXPORT __attribute__((visibility("default")))

/* Every function of the v2.40 list, in CK_FUNCTION_LIST order. */
#define P11_FUNCS(X)                                                                               \
    X(C_Initialize)                                                                                \
    X(C_Finalize)                                                                                  \
    X(C_GetInfo)                                                                                   \
    X(C_GetFunctionList)                                                                           \
    X(C_GetSlotList)                                                                               \
    X(C_GetSlotInfo)                                                                               \
    X(C_GetTokenInfo)                                                                              \
    X(C_GetMechanismList)                                                                          \
    X(C_GetMechanismInfo)                                                                          \
    X(C_InitToken)                                                                                 \
    X(C_InitPIN)                                                                                   \
    X(C_SetPIN)                                                                                    \
    X(C_OpenSession)                                                                               \
    X(C_CloseSession)                                                                              \
    X(C_CloseAllSessions)                                                                          \
    X(C_GetSessionInfo)                                                                            \
    X(C_GetOperationState)                                                                         \
    X(C_SetOperationState)                                                                         \
    X(C_Login)                                                                                     \
    X(C_Logout)                                                                                    \
    X(C_CreateObject)                                                                              \
    X(C_CopyObject)                                                                                \
    X(C_DestroyObject)                                                                             \
    X(C_GetObjectSize)                                                                             \
    X(C_GetAttributeValue)                                                                         \
    X(C_SetAttributeValue)                                                                         \
    X(C_FindObjectsInit)                                                                           \
    X(C_FindObjects)                                                                               \
    X(C_FindObjectsFinal)                                                                          \
    X(C_EncryptInit)                                                                               \
    X(C_Encrypt)                                                                                   \
    X(C_EncryptUpdate)                                                                             \
    X(C_EncryptFinal)                                                                              \
    X(C_DecryptInit)                                                                               \
    X(C_Decrypt)                                                                                   \
    X(C_DecryptUpdate)                                                                             \
    X(C_DecryptFinal)                                                                              \
    X(C_DigestInit)                                                                                \
    X(C_Digest)                                                                                    \
    X(C_DigestUpdate)                                                                              \
    X(C_DigestKey)                                                                                 \
    X(C_DigestFinal)                                                                               \
    X(C_SignInit)                                                                                  \
    X(C_Sign)                                                                                      \
    X(C_SignUpdate)                                                                                \
    X(C_SignFinal)                                                                                 \
    X(C_SignRecoverInit)                                                                           \
    X(C_SignRecover)                                                                               \
    X(C_VerifyInit)                                                                                \
    X(C_Verify)                                                                                    \
    X(C_VerifyUpdate)                                                                              \
    X(C_VerifyFinal)                                                                               \
    X(C_VerifyRecoverInit)                                                                         \
    X(C_VerifyRecover)                                                                             \
    X(C_DigestEncryptUpdate)                                                                       \
    X(C_DecryptDigestUpdate)                                                                       \
    X(C_SignEncryptUpdate)                                                                         \
    X(C_DecryptVerifyUpdate)                                                                       \
    X(C_GenerateKey)                                                                               \
    X(C_GenerateKeyPair)                                                                           \
    X(C_WrapKey)                                                                                   \
    X(C_UnwrapKey)                                                                                 \
    X(C_DeriveKey)                                                                                 \
    X(C_SeedRandom)                                                                                \
    X(C_GenerateRandom)                                                                            \
    X(C_GetFunctionStatus)                                                                         \
    X(C_CancelFunction)                                                                            \
    X(C_WaitForSlotEvent)

enum {
#define ENUM(n) F_##n,
    P11_FUNCS(ENUM)
#undef ENUM
        F_COUNT
};

/* Function name -> its slot in CK_FUNCTION_LIST. */
static const struct {
    const char *name;
    size_t offset;
} functions[F_COUNT] = {
#define ROW(n) {#n, offsetof(CK_FUNCTION_LIST, n)},
    P11_FUNCS(ROW)
#undef ROW
};

/* '*' in a latency directive: the calls that cost an HSM time. */
static const int crypto_calls[] = {F_C_GenerateKeyPair, F_C_GenerateKey, F_C_Sign,
                                   F_C_SignInit,        F_C_WrapKey,     F_C_UnwrapKey,
                                   F_C_Encrypt,         F_C_Decrypt,     F_C_CreateObject,
                                   F_C_DestroyObject,   F_C_FindObjects};

#define NAME(x)                                                                                    \
    {                                                                                              \
        x, #x                                                                                      \
    }
static const struct {
    CK_ULONG value;
    const char *name;
} ckr_names[] = {
    NAME(CKR_OK),
    NAME(CKR_CANCEL),
    NAME(CKR_HOST_MEMORY),
    NAME(CKR_SLOT_ID_INVALID),
    NAME(CKR_GENERAL_ERROR),
    NAME(CKR_FUNCTION_FAILED),
    NAME(CKR_ARGUMENTS_BAD),
    NAME(CKR_ATTRIBUTE_READ_ONLY),
    NAME(CKR_ATTRIBUTE_SENSITIVE),
    NAME(CKR_ATTRIBUTE_TYPE_INVALID),
    NAME(CKR_ATTRIBUTE_VALUE_INVALID),
    NAME(CKR_ACTION_PROHIBITED),
    NAME(CKR_DATA_INVALID),
    NAME(CKR_DATA_LEN_RANGE),
    NAME(CKR_DEVICE_ERROR),
    NAME(CKR_DEVICE_MEMORY),
    NAME(CKR_DEVICE_REMOVED),
    NAME(CKR_ENCRYPTED_DATA_INVALID),
    NAME(CKR_FUNCTION_CANCELED),
    NAME(CKR_FUNCTION_NOT_SUPPORTED),
    NAME(CKR_KEY_HANDLE_INVALID),
    NAME(CKR_KEY_SIZE_RANGE),
    NAME(CKR_KEY_TYPE_INCONSISTENT),
    NAME(CKR_KEY_FUNCTION_NOT_PERMITTED),
    NAME(CKR_KEY_NOT_WRAPPABLE),
    NAME(CKR_KEY_UNEXTRACTABLE),
    NAME(CKR_MECHANISM_INVALID),
    NAME(CKR_MECHANISM_PARAM_INVALID),
    NAME(CKR_OBJECT_HANDLE_INVALID),
    NAME(CKR_OPERATION_ACTIVE),
    NAME(CKR_OPERATION_NOT_INITIALIZED),
    NAME(CKR_PIN_INCORRECT),
    NAME(CKR_PIN_INVALID),
    NAME(CKR_PIN_LOCKED),
    NAME(CKR_SESSION_CLOSED),
    NAME(CKR_SESSION_COUNT),
    NAME(CKR_SESSION_HANDLE_INVALID),
    NAME(CKR_SESSION_READ_ONLY),
    NAME(CKR_SESSION_EXISTS),
    NAME(CKR_SIGNATURE_INVALID),
    NAME(CKR_TEMPLATE_INCOMPLETE),
    NAME(CKR_TEMPLATE_INCONSISTENT),
    NAME(CKR_TOKEN_NOT_PRESENT),
    NAME(CKR_TOKEN_NOT_RECOGNIZED),
    NAME(CKR_TOKEN_WRITE_PROTECTED),
    NAME(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    NAME(CKR_USER_ALREADY_LOGGED_IN),
    NAME(CKR_USER_NOT_LOGGED_IN),
    NAME(CKR_USER_PIN_NOT_INITIALIZED),
    NAME(CKR_USER_TYPE_INVALID),
    NAME(CKR_WRAPPED_KEY_INVALID),
    NAME(CKR_WRAPPING_KEY_HANDLE_INVALID),
    NAME(CKR_RANDOM_NO_RNG),
    NAME(CKR_BUFFER_TOO_SMALL),
    NAME(CKR_CRYPTOKI_NOT_INITIALIZED),
    NAME(CKR_CRYPTOKI_ALREADY_INITIALIZED),
};

static const struct {
    CK_ULONG value;
    const char *name;
} ckm_names[] = {
    NAME(CKM_RSA_PKCS_KEY_PAIR_GEN),
    NAME(CKM_RSA_PKCS),
    NAME(CKM_RSA_X_509),
    NAME(CKM_RSA_PKCS_OAEP),
    NAME(CKM_RSA_PKCS_PSS),
    NAME(CKM_SHA1_RSA_PKCS),
    NAME(CKM_SHA256_RSA_PKCS),
    NAME(CKM_SHA384_RSA_PKCS),
    NAME(CKM_SHA512_RSA_PKCS),
    NAME(CKM_SHA256_RSA_PKCS_PSS),
    NAME(CKM_SHA384_RSA_PKCS_PSS),
    NAME(CKM_SHA512_RSA_PKCS_PSS),
    NAME(CKM_SHA_1),
    NAME(CKM_SHA256),
    NAME(CKM_SHA384),
    NAME(CKM_SHA512),
    NAME(CKM_GENERIC_SECRET_KEY_GEN),
    NAME(CKM_EC_KEY_PAIR_GEN),
    NAME(CKM_ECDSA),
    NAME(CKM_ECDSA_SHA1),
    NAME(CKM_ECDSA_SHA256),
    NAME(CKM_ECDSA_SHA384),
    NAME(CKM_ECDSA_SHA512),
    NAME(CKM_ECDH1_DERIVE),
    NAME(CKM_EC_EDWARDS_KEY_PAIR_GEN),
    NAME(CKM_EDDSA),
    NAME(CKM_AES_KEY_GEN),
    NAME(CKM_AES_ECB),
    NAME(CKM_AES_CBC),
    NAME(CKM_AES_CBC_PAD),
    NAME(CKM_AES_GCM),
    NAME(CKM_AES_KEY_WRAP),
    NAME(CKM_AES_KEY_WRAP_PAD),
};
#undef NAME

enum action { ACT_FAIL, ACT_SESSION_LOSS, ACT_FAILOVER, ACT_LOGOUT };

typedef struct fault {
    int fn;
    enum action action;
    CK_RV rv;
    unsigned long at, every, count; /* 0: not given */
    double rate;                    /* < 0: not given */
    uint64_t prng;
    unsigned long fired;
    struct fault *next;
} fault;

#define MAX_HIDDEN 32

typedef struct config {
    char module[512];
    char log[512];
    char init_args[512];
    bool has_init_args;
    long latency_us[F_COUNT];
    fault *faults[F_COUNT];
    CK_MECHANISM_TYPE hidden[MAX_HIDDEN];
    int n_hidden;
    unsigned long session_limit; /* 0: none */
    unsigned long keypool;       /* key pairs made per token at login, 0: no pool */
    char keypool_label[33];      /* only the token with this label, "": every token */
} config;

typedef struct open_session {
    CK_SESSION_HANDLE handle;
    CK_SLOT_ID slot;
} open_session;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Calls into the real module hold it shared; a failover holds it alone, so that it closes the
 * sessions between calls, as a real failover looks to a client: SoftHSM frees a session's state
 * in C_CloseAllSessions under another thread's running call on it (a use after free). Writers
 * are preferred, so that a failover is not starved by a busy client. */
static pthread_rwlock_t gate;
static pthread_once_t gate_once = PTHREAD_ONCE_INIT;

static void gate_init(void)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&gate, &attr);
    pthread_rwlockattr_destroy(&attr);
}

/* The real call, inside the gate. */
#define GATED(call)                                                                                \
    ({                                                                                             \
        pthread_once(&gate_once, gate_init);                                                       \
        pthread_rwlock_rdlock(&gate);                                                              \
        CK_RV gated_rv_ = (call);                                                                  \
        pthread_rwlock_unlock(&gate);                                                              \
        gated_rv_;                                                                                 \
    })
static config *cfg;                        /* under lock */
static CK_FUNCTION_LIST_PTR real;          /* set by C_Initialize */
static void *real_lib;                     /* kept loaded for the life of the process */
static char real_lib_path[512];            /* what real_lib is */
static CK_FUNCTION_LIST_PTR real_lib_list; /* its function list */
static atomic_ulong calls[F_COUNT];        /* per function, process-wide */
static int log_fd = -1;        /* under lock for (re)opening; writes are single write()s */
static open_session *sessions; /* under lock */
static size_t n_sessions, cap_sessions;
static char cfg_path[512];
static bool reload;
static struct timespec cfg_mtime;
static atomic_llong next_check_ns;

static CK_FUNCTION_LIST wrapper_list;

/* ---- configuration ---------------------------------------------------------------------- */

static void config_free(config *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < F_COUNT; i++)
        while (c->faults[i] != NULL) {
            fault *f = c->faults[i];
            c->faults[i] = f->next;
            free(f);
        }
    free(c);
}

static int function_index(const char *name)
{
    for (int i = 0; i < F_COUNT; i++)
        if (strcmp(functions[i].name, name) == 0)
            return i;
    return -1;
}

static bool parse_ulong(const char *s, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
        return false;
    *out = v;
    return true;
}

static bool parse_rv(const char *s, CK_RV *out)
{
    for (size_t i = 0; i < sizeof ckr_names / sizeof ckr_names[0]; i++)
        if (strcmp(ckr_names[i].name, s) == 0) {
            *out = ckr_names[i].value;
            return true;
        }
    unsigned long v;
    if (strncasecmp(s, "0x", 2) == 0 && parse_ulong(s, &v)) {
        *out = v;
        return true;
    }
    return false;
}

static bool parse_mechanism(const char *s, CK_MECHANISM_TYPE *out)
{
    for (size_t i = 0; i < sizeof ckm_names / sizeof ckm_names[0]; i++)
        if (strcmp(ckm_names[i].name, s) == 0) {
            *out = ckm_names[i].value;
            return true;
        }
    unsigned long v;
    if (strncasecmp(s, "0x", 2) == 0 && parse_ulong(s, &v)) {
        *out = v;
        return true;
    }
    return false;
}

static const char *rv_name(CK_RV rv, char *buf, size_t len)
{
    for (size_t i = 0; i < sizeof ckr_names / sizeof ckr_names[0]; i++)
        if (ckr_names[i].value == rv)
            return ckr_names[i].name;
    snprintf(buf, len, "0x%lx", (unsigned long)rv);
    return buf;
}

/* Milliseconds (decimals allowed) -> microseconds. */
static bool parse_ms(const char *s, long *us)
{
    char *end;
    errno = 0;
    double ms = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(ms >= 0) || ms > 3600e3)
        return false;
    *us = (long)(ms * 1000.0 + 0.5);
    return true;
}

#define MAX_WORDS 16

/* The trigger words after "fail FN RV" / "session-loss FN" / "failover FN". */
static const char *parse_trigger(fault *f, char **w, int n)
{
    unsigned long seed = 1;
    for (int i = 0; i < n; i += 2) {
        if (i + 1 >= n)
            return "a trigger word without its value";
        unsigned long v;
        if (strcmp(w[i], "rate") == 0) {
            char *end;
            f->rate = strtod(w[i + 1], &end);
            if (end == w[i + 1] || *end != '\0' || !(f->rate >= 0 && f->rate <= 1))
                return "rate wants a probability in [0,1]";
            continue;
        }
        if (!parse_ulong(w[i + 1], &v))
            return "a trigger wants a number";
        if (strcmp(w[i], "at") == 0 && v > 0)
            f->at = v;
        else if (strcmp(w[i], "every") == 0 && v > 0)
            f->every = v;
        else if (strcmp(w[i], "count") == 0 && v > 0)
            f->count = v;
        else if (strcmp(w[i], "seed") == 0)
            seed = v;
        else
            return "unknown trigger (at N, every N, rate P, seed S, count N; N >= 1)";
    }
    if (f->at == 0 && f->every == 0 && f->rate < 0)
        return "a fault wants a trigger: at N, every N or rate P";
    f->prng = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B9E9E5ULL;
    return NULL;
}

static bool has_session_arg(int fn)
{
    switch (fn) {
    case F_C_Initialize:
    case F_C_Finalize:
    case F_C_GetInfo:
    case F_C_GetFunctionList:
    case F_C_GetSlotList:
    case F_C_GetSlotInfo:
    case F_C_GetTokenInfo:
    case F_C_GetMechanismList:
    case F_C_GetMechanismInfo:
    case F_C_InitToken:
    case F_C_OpenSession:
    case F_C_CloseAllSessions:
    case F_C_WaitForSlotEvent:
        return false;
    default:
        return true;
    }
}

/* One directive; NULL or what is wrong with it. */
static const char *parse_line(config *c, char *line)
{
    char *hash = strchr(line, '#');
    if (hash != NULL)
        *hash = '\0';
    char *w[MAX_WORDS];
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " \t\r\n", &save); t != NULL;
         t = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == MAX_WORDS)
            return "too many words";
        w[n++] = t;
    }
    if (n == 0)
        return NULL;
    if (strcmp(w[0], "module") == 0 || strcmp(w[0], "log") == 0) {
        if (n != 2)
            return "wants one path";
        char *dst = w[0][0] == 'm' ? c->module : c->log;
        if (strlen(w[1]) >= sizeof c->module)
            return "path too long";
        strcpy(dst, w[1]);
        return NULL;
    }
    if (strcmp(w[0], "init-args") == 0) {
        /* The rest of the line, words joined by one space. */
        c->init_args[0] = '\0';
        for (int i = 1; i < n; i++) {
            if (strlen(c->init_args) + strlen(w[i]) + 2 > sizeof c->init_args)
                return "init-args too long";
            if (i > 1)
                strcat(c->init_args, " ");
            strcat(c->init_args, w[i]);
        }
        c->has_init_args = true;
        return NULL;
    }
    if (strcmp(w[0], "latency") == 0) {
        long us;
        if (n != 3 || !parse_ms(w[2], &us))
            return "wants: latency FUNCTION|* MILLISECONDS";
        if (strcmp(w[1], "*") == 0) {
            for (size_t i = 0; i < sizeof crypto_calls / sizeof crypto_calls[0]; i++)
                c->latency_us[crypto_calls[i]] = us;
            return NULL;
        }
        int fn = function_index(w[1]);
        if (fn < 0)
            return "unknown function";
        c->latency_us[fn] = us;
        return NULL;
    }
    if (strcmp(w[0], "fail") == 0 || strcmp(w[0], "session-loss") == 0 ||
        strcmp(w[0], "failover") == 0 || strcmp(w[0], "logout") == 0) {
        bool is_fail = strcmp(w[0], "fail") == 0;
        int first_trigger = is_fail ? 3 : 2;
        if (n < first_trigger)
            return is_fail ? "wants: fail FUNCTION CKR_... TRIGGER" : "wants: FUNCTION TRIGGER";
        int fn = function_index(w[1]);
        if (fn < 0)
            return "unknown function";
        if (fn == F_C_GetFunctionList || fn == F_C_Initialize)
            return "faults on C_GetFunctionList/C_Initialize are not supported";
        fault *f = calloc(1, sizeof *f);
        if (f == NULL)
            return "out of memory";
        f->fn = fn;
        f->rate = -1;
        if (is_fail) {
            f->action = ACT_FAIL;
            if (!parse_rv(w[2], &f->rv)) {
                free(f);
                return "unknown CKR_ value";
            }
        } else if (strcmp(w[0], "session-loss") == 0) {
            f->action = ACT_SESSION_LOSS;
            f->rv = CKR_SESSION_HANDLE_INVALID;
            if (!has_session_arg(fn)) {
                free(f);
                return "session-loss wants a function that takes a session";
            }
        } else if (strcmp(w[0], "logout") == 0) {
            f->action = ACT_LOGOUT;
            f->rv = CKR_OK; /* the call goes on, on a session that is no longer logged in */
            if (!has_session_arg(fn)) {
                free(f);
                return "logout wants a function that takes a session";
            }
        } else {
            f->action = ACT_FAILOVER;
            f->rv = CKR_SESSION_HANDLE_INVALID;
        }
        const char *err = parse_trigger(f, w + first_trigger, n - first_trigger);
        if (err != NULL) {
            free(f);
            return err;
        }
        fault **tail = &c->faults[fn];
        while (*tail != NULL)
            tail = &(*tail)->next;
        *tail = f;
        return NULL;
    }
    if (strcmp(w[0], "hide-mechanism") == 0) {
        for (int i = 1; i < n; i++) {
            if (c->n_hidden == MAX_HIDDEN)
                return "too many hidden mechanisms";
            if (!parse_mechanism(w[i], &c->hidden[c->n_hidden]))
                return "unknown CKM_ name (or use 0x...)";
            c->n_hidden++;
        }
        return n > 1 ? NULL : "wants: hide-mechanism CKM_...";
    }
    if (strcmp(w[0], "keypool") == 0) {
        if (n < 2 || n > 3 || !parse_ulong(w[1], &c->keypool) || c->keypool == 0 ||
            c->keypool > 10000000 || (n == 3 && strlen(w[2]) >= sizeof c->keypool_label))
            return "wants: keypool N [TOKEN-LABEL] (N >= 1)";
        snprintf(c->keypool_label, sizeof c->keypool_label, "%s", n == 3 ? w[2] : "");
        return NULL;
    }
    if (strcmp(w[0], "session-limit") == 0) {
        if (n != 2 || !parse_ulong(w[1], &c->session_limit) || c->session_limit == 0)
            return "wants: session-limit N (N >= 1)";
        return NULL;
    }
    return "unknown directive";
}

/* Reads path; NULL (and a message on stderr) when it cannot be read or a line is bad. */
static config *config_read(const char *path, struct timespec *mtime)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        fprintf(stderr, "p11fault: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && mtime != NULL)
        *mtime = st.st_mtim;
    config *c = calloc(1, sizeof *c);
    char line[2048];
    int lineno = 0;
    while (c != NULL && fgets(line, sizeof line, fp) != NULL) {
        lineno++;
        char copy[sizeof line];
        snprintf(copy, sizeof copy, "%s", line);
        copy[strcspn(copy, "\r\n")] = '\0';
        const char *err = parse_line(c, line);
        if (err != NULL) {
            fprintf(stderr, "p11fault: %s:%d: %s: %s\n", path, lineno, err, copy);
            config_free(c);
            c = NULL;
        }
    }
    fclose(fp);
    return c;
}

static void log_open(const char *path)
{
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
    if (path[0] != '\0') {
        log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0)
            fprintf(stderr, "p11fault: log %s: %s\n", path, strerror(errno));
    }
}

static void log_fault(int fn, const char *what, unsigned long n)
{
    if (log_fd < 0)
        return;
    char line[160];
    int len = snprintf(line, sizeof line, "%s %s %lu\n", functions[fn].name, what, n);
    if (len > 0 && write(log_fd, line, (size_t)len) < 0) {
        /* Nothing to do about a lost log line. */
    }
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* With P11FAULT_RELOAD=1: re-reads the file when its mtime changed (at most every 50 ms).
 * Called under lock. The module and init-args of a reloaded file are ignored. */
static void maybe_reload(void)
{
    long long now = now_ns();
    if (now < atomic_load(&next_check_ns))
        return;
    atomic_store(&next_check_ns, now + 50000000LL);
    struct stat st;
    if (stat(cfg_path, &st) != 0 ||
        (st.st_mtim.tv_sec == cfg_mtime.tv_sec && st.st_mtim.tv_nsec == cfg_mtime.tv_nsec))
        return;
    struct timespec mtime;
    config *c = config_read(cfg_path, &mtime);
    cfg_mtime = st.st_mtim;
    if (c == NULL)
        return; /* keep the faults in force; the message is on stderr */
    if (strcmp(c->log, cfg->log) != 0)
        log_open(c->log);
    config_free(cfg);
    cfg = c;
}

/* ---- sessions per slot ------------------------------------------------------------------ */

static unsigned long sessions_on(CK_SLOT_ID slot)
{
    unsigned long n = 0;
    for (size_t i = 0; i < n_sessions; i++)
        n += sessions[i].slot == slot;
    return n;
}

static bool session_add(CK_SESSION_HANDLE h, CK_SLOT_ID slot)
{
    if (n_sessions == cap_sessions) {
        size_t cap = cap_sessions ? cap_sessions * 2 : 64;
        open_session *bigger = realloc(sessions, cap * sizeof *bigger);
        if (bigger == NULL)
            return false;
        sessions = bigger;
        cap_sessions = cap;
    }
    sessions[n_sessions].handle = h;
    sessions[n_sessions].slot = slot;
    n_sessions++;
    return true;
}

static void session_remove(CK_SESSION_HANDLE h)
{
    for (size_t i = 0; i < n_sessions; i++)
        if (sessions[i].handle == h) {
            sessions[i] = sessions[--n_sessions];
            return;
        }
}

static void sessions_remove_slot(CK_SLOT_ID slot)
{
    for (size_t i = 0; i < n_sessions;)
        if (sessions[i].slot == slot)
            sessions[i] = sessions[--n_sessions];
        else
            i++;
}

/* ---- the hook every forwarded call goes through ----------------------------------------- */

static uint64_t prng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Whether fault f fires on call number n (called under lock). */
static bool fires(fault *f, unsigned long n)
{
    unsigned long first = f->at ? f->at : (f->every ? f->every : 1);
    if (n < first)
        return false;
    if (f->every && (n - first) % f->every != 0)
        return false;
    unsigned long limit = f->count ? f->count : (!f->every && f->rate < 0 ? 1 : ULONG_MAX);
    if (f->fired >= limit)
        return false;
    if (f->rate >= 0 && (double)(prng_next(&f->prng) >> 11) * 0x1.0p-53 >= f->rate)
        return false;
    f->fired++;
    return true;
}

static bool hidden_locked(CK_MECHANISM_TYPE m)
{
    for (int i = 0; i < cfg->n_hidden; i++)
        if (cfg->hidden[i] == m)
            return true;
    return false;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void pools_forget(CK_SLOT_ID slot, bool every);

static void failover(void)
{
    CK_ULONG n = 0;
    if (real->C_GetSlotList(CK_FALSE, NULL, &n) != CKR_OK || n == 0)
        return;
    CK_SLOT_ID *slots = calloc(n, sizeof *slots);
    pthread_once(&gate_once, gate_init);
    pthread_rwlock_wrlock(&gate); /* no other call inside the real module meanwhile */
    if (slots != NULL && real->C_GetSlotList(CK_FALSE, slots, &n) == CKR_OK)
        for (CK_ULONG i = 0; i < n; i++)
            real->C_CloseAllSessions(slots[i]);
    pthread_rwlock_unlock(&gate);
    free(slots);
    pools_forget(0, true);
    pthread_mutex_lock(&lock);
    n_sessions = 0;
    pthread_mutex_unlock(&lock);
}

/* Calls fn (C_CloseSession for a session loss, C_Logout for a logout) on session between calls,
 * as a failover closes every session: no other thread inside the real module meanwhile.
 * SoftHSM 2.6 destroys a closed session's objects, or a logged-out token's private ones, under
 * other threads' running calls, which a module that loses a session or a login would not. */
static void between_calls(CK_C_CloseSession fn, CK_SESSION_HANDLE session)
{
    pthread_once(&gate_once, gate_init);
    pthread_rwlock_wrlock(&gate);
    fn(session);
    pthread_rwlock_unlock(&gate);
}

/* Counts the call, sleeps its latency, and returns CKR_OK to forward it or the injected CK_RV. */
static CK_RV enter(int fn, CK_SESSION_HANDLE session, const CK_MECHANISM *mech)
{
    unsigned long n = atomic_fetch_add(&calls[fn], 1) + 1;
    pthread_mutex_lock(&lock);
    if (cfg == NULL) {
        pthread_mutex_unlock(&lock);
        return CKR_OK;
    }
    if (reload)
        maybe_reload();
    long us = cfg->latency_us[fn];
    bool hidden = mech != NULL && hidden_locked(mech->mechanism);
    fault *hit = NULL;
    for (fault *f = cfg->faults[fn]; f != NULL && hit == NULL && !hidden; f = f->next)
        if (fires(f, n))
            hit = f;
    enum action action = hit ? hit->action : ACT_FAIL;
    CK_RV rv = hidden ? CKR_MECHANISM_INVALID : hit ? hit->rv : CKR_OK;
    if (hit != NULL) {
        char buf[32];
        log_fault(fn,
                  action == ACT_FAIL           ? rv_name(rv, buf, sizeof buf)
                  : action == ACT_SESSION_LOSS ? "session-loss"
                  : action == ACT_LOGOUT       ? "logout"
                                               : "failover",
                  n);
    }
    if (hit != NULL && action == ACT_SESSION_LOSS)
        session_remove(session);
    pthread_mutex_unlock(&lock);
    if (us > 0)
        sleep_us(us);
    if (hit != NULL && action == ACT_SESSION_LOSS)
        between_calls(real->C_CloseSession, session);
    else if (hit != NULL && action == ACT_FAILOVER)
        failover();
    else if (hit != NULL && action == ACT_LOGOUT)
        between_calls(real->C_Logout, session);
    return rv;
}

/* ---- the wrappers ----------------------------------------------------------------------- */

#define CHECK_INIT                                                                                 \
    if (real == NULL)                                                                              \
    return CKR_CRYPTOKI_NOT_INITIALIZED

/* S: first argument is the session; M: second argument is the mechanism; N: neither. */
#define WRAP_S(name, params, args)                                                                 \
    static CK_RV w_##name params                                                                   \
    {                                                                                              \
        CHECK_INIT;                                                                                \
        CK_RV frv = enter(F_##name, session, NULL);                                                \
        return frv != CKR_OK ? frv : GATED(real->name args);                                       \
    }
#define WRAP_M(name, params, args)                                                                 \
    static CK_RV w_##name params                                                                   \
    {                                                                                              \
        CHECK_INIT;                                                                                \
        CK_RV frv = enter(F_##name, session, mech);                                                \
        return frv != CKR_OK ? frv : GATED(real->name args);                                       \
    }
#define WRAP_N(name, params, args)                                                                 \
    static CK_RV w_##name params                                                                   \
    {                                                                                              \
        CHECK_INIT;                                                                                \
        CK_RV frv = enter(F_##name, 0, NULL);                                                      \
        return frv != CKR_OK ? frv : GATED(real->name args);                                       \
    }

typedef CK_SESSION_HANDLE SH;
typedef CK_OBJECT_HANDLE OH;
typedef unsigned char *BP;
typedef CK_ULONG UL;
typedef CK_ULONG *ULP;
typedef CK_ATTRIBUTE_PTR AP;
typedef CK_MECHANISM_PTR MP;

WRAP_N(C_GetInfo, (CK_INFO_PTR info), (info))
WRAP_N(C_GetSlotList, (CK_BBOOL present, CK_SLOT_ID_PTR list, ULP count), (present, list, count))
WRAP_N(C_GetSlotInfo, (CK_SLOT_ID slot, CK_SLOT_INFO_PTR info), (slot, info))
WRAP_N(C_GetTokenInfo, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info), (slot, info))
WRAP_N(C_InitToken, (CK_SLOT_ID slot, BP pin, UL len, BP label), (slot, pin, len, label))
WRAP_N(C_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR r), (flags, slot, r))
WRAP_S(C_InitPIN, (SH session, BP pin, UL len), (session, pin, len))
WRAP_S(C_SetPIN, (SH session, BP o, UL ol, BP n, UL nl), (session, o, ol, n, nl))
WRAP_S(C_GetSessionInfo, (SH session, CK_SESSION_INFO_PTR info), (session, info))
WRAP_S(C_GetOperationState, (SH session, BP st, ULP len), (session, st, len))
WRAP_S(C_SetOperationState, (SH session, BP st, UL len, OH e, OH a), (session, st, len, e, a))
WRAP_S(C_Logout, (SH session), (session))
WRAP_S(C_CreateObject, (SH session, AP t, UL n, OH *o), (session, t, n, o))
WRAP_S(C_CopyObject, (SH session, OH o, AP t, UL n, OH *no), (session, o, t, n, no))
WRAP_S(C_DestroyObject, (SH session, OH o), (session, o))
WRAP_S(C_GetObjectSize, (SH session, OH o, ULP size), (session, o, size))
WRAP_S(C_GetAttributeValue, (SH session, OH o, AP t, UL n), (session, o, t, n))
WRAP_S(C_SetAttributeValue, (SH session, OH o, AP t, UL n), (session, o, t, n))
WRAP_S(C_FindObjectsInit, (SH session, AP t, UL n), (session, t, n))
WRAP_S(C_FindObjects, (SH session, OH *o, UL max, ULP n), (session, o, max, n))
WRAP_S(C_FindObjectsFinal, (SH session), (session))
WRAP_M(C_EncryptInit, (SH session, MP mech, OH k), (session, mech, k))
WRAP_S(C_Encrypt, (SH session, BP d, UL dl, BP e, ULP el), (session, d, dl, e, el))
WRAP_S(C_EncryptUpdate, (SH session, BP d, UL dl, BP e, ULP el), (session, d, dl, e, el))
WRAP_S(C_EncryptFinal, (SH session, BP e, ULP el), (session, e, el))
WRAP_M(C_DecryptInit, (SH session, MP mech, OH k), (session, mech, k))
WRAP_S(C_Decrypt, (SH session, BP e, UL el, BP d, ULP dl), (session, e, el, d, dl))
WRAP_S(C_DecryptUpdate, (SH session, BP e, UL el, BP d, ULP dl), (session, e, el, d, dl))
WRAP_S(C_DecryptFinal, (SH session, BP d, ULP dl), (session, d, dl))
WRAP_M(C_DigestInit, (SH session, MP mech), (session, mech))
WRAP_S(C_Digest, (SH session, BP d, UL dl, BP g, ULP gl), (session, d, dl, g, gl))
WRAP_S(C_DigestUpdate, (SH session, BP d, UL dl), (session, d, dl))
WRAP_S(C_DigestKey, (SH session, OH k), (session, k))
WRAP_S(C_DigestFinal, (SH session, BP g, ULP gl), (session, g, gl))
WRAP_M(C_SignInit, (SH session, MP mech, OH k), (session, mech, k))
WRAP_S(C_Sign, (SH session, BP d, UL dl, BP s, ULP sl), (session, d, dl, s, sl))
WRAP_S(C_SignUpdate, (SH session, BP d, UL dl), (session, d, dl))
WRAP_S(C_SignFinal, (SH session, BP s, ULP sl), (session, s, sl))
WRAP_M(C_SignRecoverInit, (SH session, MP mech, OH k), (session, mech, k))
WRAP_S(C_SignRecover, (SH session, BP d, UL dl, BP s, ULP sl), (session, d, dl, s, sl))
WRAP_M(C_VerifyInit, (SH session, MP mech, OH k), (session, mech, k))
WRAP_S(C_Verify, (SH session, BP d, UL dl, BP s, UL sl), (session, d, dl, s, sl))
WRAP_S(C_VerifyUpdate, (SH session, BP d, UL dl), (session, d, dl))
WRAP_S(C_VerifyFinal, (SH session, BP s, UL sl), (session, s, sl))
WRAP_M(C_VerifyRecoverInit, (SH session, MP mech, OH k), (session, mech, k))
WRAP_S(C_VerifyRecover, (SH session, BP s, UL sl, BP d, ULP dl), (session, s, sl, d, dl))
WRAP_S(C_DigestEncryptUpdate, (SH session, BP p, UL pl, BP e, ULP el), (session, p, pl, e, el))
WRAP_S(C_DecryptDigestUpdate, (SH session, BP e, UL el, BP p, ULP pl), (session, e, el, p, pl))
WRAP_S(C_SignEncryptUpdate, (SH session, BP p, UL pl, BP e, ULP el), (session, p, pl, e, el))
WRAP_S(C_DecryptVerifyUpdate, (SH session, BP e, UL el, BP p, ULP pl), (session, e, el, p, pl))
WRAP_M(C_GenerateKey, (SH session, MP mech, AP t, UL n, OH *k), (session, mech, t, n, k))
WRAP_M(C_WrapKey, (SH session, MP mech, OH wk, OH k, BP w, ULP wl), (session, mech, wk, k, w, wl))
WRAP_M(C_UnwrapKey, (SH session, MP mech, OH uk, BP w, UL wl, AP t, UL n, OH *k),
       (session, mech, uk, w, wl, t, n, k))
WRAP_M(C_DeriveKey, (SH session, MP mech, OH bk, AP t, UL n, OH *k), (session, mech, bk, t, n, k))
WRAP_S(C_SeedRandom, (SH session, BP s, UL sl), (session, s, sl))
WRAP_S(C_GenerateRandom, (SH session, BP r, UL rl), (session, r, rl))
WRAP_S(C_GetFunctionStatus, (SH session), (session))
WRAP_S(C_CancelFunction, (SH session), (session))

/* ---- the key pool ----------------------------------------------------------------------- */

/* `keypool N`: at the first user login on a token, N session key pairs (EC P-256, private key
 * sensitive and extractable: what an export request asks for) are made in a session of the
 * wrapper's own, kept open until C_Finalize, so that they outlive the caller's sessions. A
 * matching C_GenerateKeyPair then takes one of them (its CKA_ID and CKA_LABEL set to the
 * caller's) instead of calling the real module: key generation costs nothing. Counters go to the
 * log at C_Finalize. */
typedef struct key_pool {
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE session; /* the wrapper's own */
    CK_OBJECT_HANDLE *pub, *priv;
    size_t made, next;
} key_pool;

#define MAX_POOLS 16
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static key_pool pools[MAX_POOLS]; /* under pool_lock */
static size_t n_pools;            /* under pool_lock */
static atomic_ulong pool_made, pool_served, pool_missed;

static const CK_BYTE oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static const CK_ATTRIBUTE *find_attr(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; t != NULL && i < n; i++)
        if (t[i].type == type)
            return &t[i];
    return NULL;
}

static bool attr_bool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, bool dflt)
{
    const CK_ATTRIBUTE *a = find_attr(t, n, type);
    if (a == NULL || a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL))
        return dflt;
    return *(const CK_BBOOL *)a->pValue != CK_FALSE;
}

/* Whether a C_GenerateKeyPair asks for what the pool holds: a P-256 session key pair whose
 * private key is sensitive and extractable. */
static bool pool_matches(const CK_MECHANISM *mech, const CK_ATTRIBUTE *pt, CK_ULONG pn,
                         const CK_ATTRIBUTE *st, CK_ULONG sn)
{
    const CK_ATTRIBUTE *params = find_attr(pt, pn, CKA_EC_PARAMS);
    return mech != NULL && mech->mechanism == CKM_EC_KEY_PAIR_GEN && params != NULL &&
           params->ulValueLen == sizeof oid_p256 && params->pValue != NULL &&
           memcmp(params->pValue, oid_p256, sizeof oid_p256) == 0 &&
           !attr_bool(pt, pn, CKA_TOKEN, false) && !attr_bool(st, sn, CKA_TOKEN, false) &&
           attr_bool(st, sn, CKA_SENSITIVE, false) && attr_bool(st, sn, CKA_EXTRACTABLE, false);
}

/* Fills the pool of the token in session's slot, once (called after a user login). */
static void pool_fill(CK_SESSION_HANDLE session)
{
    pthread_mutex_lock(&lock);
    unsigned long want = cfg ? cfg->keypool : 0;
    char label[33];
    snprintf(label, sizeof label, "%s", cfg ? cfg->keypool_label : "");
    pthread_mutex_unlock(&lock);
    CK_SESSION_INFO si;
    if (want == 0 || GATED(real->C_GetSessionInfo(session, &si)) != CKR_OK)
        return;
    if (label[0] != '\0') {
        CK_TOKEN_INFO ti;
        if (GATED(real->C_GetTokenInfo(si.slotID, &ti)) != CKR_OK)
            return;
        size_t len = sizeof ti.label;
        while (len > 0 && ti.label[len - 1] == ' ')
            len--;
        if (len != strlen(label) || memcmp(ti.label, label, len) != 0)
            return;
    }
    pthread_mutex_lock(&pool_lock);
    for (size_t i = 0; i < n_pools; i++)
        if (pools[i].slot == si.slotID) {
            pthread_mutex_unlock(&pool_lock);
            return;
        }
    key_pool *kp = n_pools < MAX_POOLS ? &pools[n_pools] : NULL;
    if (kp != NULL) {
        memset(kp, 0, sizeof *kp);
        kp->slot = si.slotID;
        kp->pub = calloc(want, sizeof *kp->pub);
        kp->priv = calloc(want, sizeof *kp->priv);
    }
    if (kp == NULL || kp->pub == NULL || kp->priv == NULL ||
        GATED(real->C_OpenSession(si.slotID, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                  &kp->session)) != CKR_OK) {
        if (kp != NULL) {
            free(kp->pub);
            free(kp->priv);
        }
        pthread_mutex_unlock(&pool_lock);
        fprintf(stderr, "p11fault: cannot make the key pool\n");
        return;
    }
    n_pools++;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &no, sizeof no},
                          {CKA_PRIVATE, &no, sizeof no},
                          {CKA_VERIFY, &yes, sizeof yes},
                          {CKA_EC_PARAMS, (void *)oid_p256, sizeof oid_p256}};
    CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &no, sizeof no},
                           {CKA_PRIVATE, &yes, sizeof yes},
                           {CKA_SENSITIVE, &yes, sizeof yes},
                           {CKA_EXTRACTABLE, &yes, sizeof yes},
                           {CKA_SIGN, &yes, sizeof yes}};
    while (kp->made < want &&
           GATED(real->C_GenerateKeyPair(kp->session, &mech, pub, 4, priv, 5, &kp->pub[kp->made],
                                         &kp->priv[kp->made])) == CKR_OK)
        kp->made++;
    atomic_fetch_add(&pool_made, kp->made);
    pthread_mutex_unlock(&pool_lock);
}

/* Takes a pair from the pool of session's token; false when there is none left (or no pool). */
static bool pool_take(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    CK_SLOT_ID slot = 0;
    bool known = false;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_sessions && !known; i++)
        if (sessions[i].handle == session) {
            slot = sessions[i].slot;
            known = true;
        }
    pthread_mutex_unlock(&lock);
    bool got = false;
    pthread_mutex_lock(&pool_lock);
    for (size_t i = 0; i < n_pools && known && !got; i++)
        if (pools[i].slot == slot && pools[i].next < pools[i].made) {
            *pub = pools[i].pub[pools[i].next];
            *priv = pools[i].priv[pools[i].next];
            pools[i].next++;
            got = true;
        }
    pthread_mutex_unlock(&pool_lock);
    return got;
}

/* The pools' sessions are gone (C_Finalize, C_CloseAllSessions, a failover). */
static void pools_forget(CK_SLOT_ID slot, bool every)
{
    pthread_mutex_lock(&pool_lock);
    for (size_t i = 0; i < n_pools;)
        if (every || pools[i].slot == slot) {
            free(pools[i].pub);
            free(pools[i].priv);
            pools[i] = pools[--n_pools];
        } else {
            i++;
        }
    pthread_mutex_unlock(&pool_lock);
}

static CK_RV w_C_Login(SH session, CK_USER_TYPE u, BP pin, UL len)
{
    CHECK_INIT;
    CK_RV rv = enter(F_C_Login, session, NULL);
    if (rv != CKR_OK)
        return rv;
    rv = GATED(real->C_Login(session, u, pin, len));
    if (u == CKU_USER && (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN))
        pool_fill(session);
    return rv;
}

static CK_RV w_C_GenerateKeyPair(SH session, MP mech, AP pt, UL pn, AP st, UL sn, OH *pk, OH *sk)
{
    CHECK_INIT;
    CK_RV frv = enter(F_C_GenerateKeyPair, session, mech);
    if (frv != CKR_OK)
        return frv;
    pthread_mutex_lock(&lock);
    bool pooled = cfg != NULL && cfg->keypool > 0;
    pthread_mutex_unlock(&lock);
    if (pooled && pk != NULL && sk != NULL && pool_matches(mech, pt, pn, st, sn)) {
        CK_OBJECT_HANDLE pub, priv;
        if (pool_take(session, &pub, &priv)) {
            /* The caller's names on the pair, as a generated pair would have them. */
            CK_ATTRIBUTE names[2];
            CK_ULONG nn = 0;
            const CK_ATTRIBUTE *id = find_attr(st, sn, CKA_ID),
                               *label = find_attr(st, sn, CKA_LABEL);
            if (id != NULL)
                names[nn++] = *id;
            if (label != NULL)
                names[nn++] = *label;
            if (nn == 0 || (GATED(real->C_SetAttributeValue(session, pub, names, nn)) == CKR_OK &&
                            GATED(real->C_SetAttributeValue(session, priv, names, nn)) == CKR_OK)) {
                *pk = pub;
                *sk = priv;
                atomic_fetch_add(&pool_served, 1);
                return CKR_OK;
            }
        }
        atomic_fetch_add(&pool_missed, 1);
    }
    return GATED(real->C_GenerateKeyPair(session, mech, pt, pn, st, sn, pk, sk));
}

static CK_RV w_C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
    CHECK_INIT;
    CK_RV rv = enter(F_C_GetMechanismList, 0, NULL);
    if (rv != CKR_OK)
        return rv;
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    CK_ULONG n = 0;
    if ((rv = real->C_GetMechanismList(slot, NULL, &n)) != CKR_OK)
        return rv;
    CK_MECHANISM_TYPE *all = calloc(n ? n : 1, sizeof *all);
    if (all == NULL)
        return CKR_HOST_MEMORY;
    if ((rv = real->C_GetMechanismList(slot, all, &n)) != CKR_OK) {
        free(all);
        return rv;
    }
    CK_ULONG kept = 0;
    pthread_mutex_lock(&lock);
    for (CK_ULONG i = 0; i < n; i++)
        if (cfg == NULL || !hidden_locked(all[i]))
            all[kept++] = all[i];
    pthread_mutex_unlock(&lock);
    if (list != NULL && *count < kept)
        rv = CKR_BUFFER_TOO_SMALL;
    else if (list != NULL)
        memcpy(list, all, kept * sizeof *all);
    *count = kept;
    free(all);
    return rv;
}

static CK_RV w_C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                  CK_MECHANISM_INFO_PTR info)
{
    CHECK_INIT;
    CK_MECHANISM m = {type, NULL, 0};
    CK_RV rv = enter(F_C_GetMechanismInfo, 0, &m);
    return rv != CKR_OK ? rv : real->C_GetMechanismInfo(slot, type, info);
}

static CK_RV w_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                             CK_SESSION_HANDLE_PTR session)
{
    CHECK_INIT;
    CK_RV rv = enter(F_C_OpenSession, 0, NULL);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&lock);
    unsigned long limit = cfg ? cfg->session_limit : 0;
    /* A placeholder entry reserves the place while the real module opens the session. */
    bool over = limit != 0 && sessions_on(slot) >= limit;
    bool reserved = !over && session_add(CK_INVALID_HANDLE, slot);
    pthread_mutex_unlock(&lock);
    if (over) {
        log_fault(F_C_OpenSession, "session-limit", atomic_load(&calls[F_C_OpenSession]));
        return CKR_SESSION_COUNT;
    }
    if (!reserved)
        return CKR_HOST_MEMORY;
    rv = GATED(real->C_OpenSession(slot, flags, app, notify, session));
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_sessions; i++)
        if (sessions[i].handle == CK_INVALID_HANDLE && sessions[i].slot == slot) {
            if (rv == CKR_OK)
                sessions[i].handle = *session;
            else
                sessions[i] = sessions[--n_sessions];
            break;
        }
    pthread_mutex_unlock(&lock);
    return rv;
}

static CK_RV w_C_CloseSession(CK_SESSION_HANDLE session)
{
    CHECK_INIT;
    CK_RV rv = enter(F_C_CloseSession, session, NULL);
    if (rv != CKR_OK)
        return rv;
    rv = GATED(real->C_CloseSession(session));
    if (rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) {
        pthread_mutex_lock(&lock);
        session_remove(session);
        pthread_mutex_unlock(&lock);
    }
    return rv;
}

static CK_RV w_C_CloseAllSessions(CK_SLOT_ID slot)
{
    CHECK_INIT;
    CK_RV rv = enter(F_C_CloseAllSessions, 0, NULL);
    if (rv != CKR_OK)
        return rv;
    rv = real->C_CloseAllSessions(slot);
    if (rv == CKR_OK) {
        pools_forget(slot, false);
        pthread_mutex_lock(&lock);
        sessions_remove_slot(slot);
        pthread_mutex_unlock(&lock);
    }
    return rv;
}

/* ---- initialization --------------------------------------------------------------------- */

static CK_RV load_module(const char *path)
{
    if (real_lib != NULL && strcmp(path, real_lib_path) == 0) {
        real = real_lib_list;
        return CKR_OK;
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "p11fault: cannot load %s: %s\n", path, dlerror());
        return CKR_GENERAL_ERROR;
    }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    CK_FUNCTION_LIST_PTR list = NULL;
    if (get == NULL || get(&list) != CKR_OK || list == NULL) {
        fprintf(stderr, "p11fault: %s has no usable C_GetFunctionList\n", path);
        dlclose(lib);
        return CKR_GENERAL_ERROR;
    }
    /* Every slot is forwarded to: a module with an empty one is not wrapped. */
    for (int i = 0; i < F_COUNT; i++) {
        void (*fp)(void);
        memcpy(&fp, (const char *)list + functions[i].offset, sizeof fp);
        if (fp == NULL) {
            fprintf(stderr, "p11fault: %s has no %s\n", path, functions[i].name);
            dlclose(lib);
            return CKR_GENERAL_ERROR;
        }
    }
    /* A module loaded before stays loaded (its atexit handlers, sanitizer stacks). */
    real_lib = lib;
    snprintf(real_lib_path, sizeof real_lib_path, "%s", path);
    real = real_lib_list = list;
    return CKR_OK;
}

static CK_RV w_C_Initialize(CK_VOID_PTR args)
{
    if (real != NULL && cfg != NULL)
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    config *c = NULL;
    const char *path = getenv("P11FAULT_CONFIG");
    if (path != NULL && path[0] != '\0') {
        if (strlen(path) >= sizeof cfg_path) {
            fprintf(stderr, "p11fault: P11FAULT_CONFIG too long\n");
            return CKR_GENERAL_ERROR;
        }
        c = config_read(path, &cfg_mtime);
        if (c == NULL)
            return CKR_GENERAL_ERROR;
        snprintf(cfg_path, sizeof cfg_path, "%s", path);
        const char *r = getenv("P11FAULT_RELOAD");
        reload = r != NULL && strcmp(r, "1") == 0;
    } else {
        const char *module = getenv("P11FAULT_MODULE");
        c = calloc(1, sizeof *c);
        if (c == NULL)
            return CKR_HOST_MEMORY;
        if (module != NULL)
            snprintf(c->module, sizeof c->module, "%s", module);
        reload = false;
    }
    const char *module = getenv("P11FAULT_MODULE");
    if (c->module[0] == '\0' && module != NULL)
        snprintf(c->module, sizeof c->module, "%s", module);
    if (c->module[0] == '\0') {
        fprintf(stderr, "p11fault: no module (a `module` line or $P11FAULT_MODULE)\n");
        config_free(c);
        return CKR_GENERAL_ERROR;
    }
    CK_RV rv = load_module(c->module);
    if (rv != CKR_OK) {
        config_free(c);
        return rv;
    }
    CK_C_INITIALIZE_ARGS own;
    if (c->has_init_args) {
        if (args != NULL)
            own = *(CK_C_INITIALIZE_ARGS *)args;
        else
            memset(&own, 0, sizeof own);
        if (args == NULL)
            own.flags = CKF_OS_LOCKING_OK;
        /* Outlives the configuration (a reload frees it); a module may keep the pointer. */
        static char kept[sizeof c->init_args];
        memcpy(kept, c->init_args, sizeof kept);
        own.pReserved = kept;
        args = &own;
    }
    pthread_mutex_lock(&lock);
    config_free(cfg);
    cfg = c;
    log_open(c->log);
    n_sessions = 0;
    for (int i = 0; i < F_COUNT; i++)
        atomic_store(&calls[i], 0);
    atomic_store(&next_check_ns, 0);
    pthread_mutex_unlock(&lock);
    rv = real->C_Initialize(args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        pthread_mutex_lock(&lock);
        config_free(cfg);
        cfg = NULL;
        pthread_mutex_unlock(&lock);
        real = NULL;
    }
    return rv;
}

static CK_RV w_C_Finalize(CK_VOID_PTR reserved)
{
    CHECK_INIT;
    CK_RV rv = real->C_Finalize(reserved);
    pools_forget(0, true);
    pthread_mutex_lock(&lock);
    if (cfg != NULL && cfg->keypool > 0) {
        log_fault(F_C_GenerateKeyPair, "keypool-made", atomic_exchange(&pool_made, 0));
        log_fault(F_C_GenerateKeyPair, "keypool-served", atomic_exchange(&pool_served, 0));
        log_fault(F_C_GenerateKeyPair, "keypool-missed", atomic_exchange(&pool_missed, 0));
    }
    config_free(cfg);
    cfg = NULL;
    log_open("");
    free(sessions);
    sessions = NULL;
    n_sessions = cap_sessions = 0;
    pthread_mutex_unlock(&lock);
    real = NULL;
    return rv;
}

static CK_RV w_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    *list = &wrapper_list;
    return CKR_OK;
}

static CK_FUNCTION_LIST wrapper_list = {.version = {2, 40},
#define INIT(n) .n = w_##n,
                                        P11_FUNCS(INIT)
#undef INIT
};

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);
EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    return w_C_GetFunctionList(list);
}
