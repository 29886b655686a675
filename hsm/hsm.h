/* The PKCS#11 layer: loading a module, tokens and logins, one session per worker thread, key
 * generation inside the token, signing, and taking export keys out. It talks to the module through
 * its function list only (no libp11: that is not thread-safe and has no EdDSA), keeps every object
 * handle it creates, and never searches objects on the hot path. Knows nothing of X.509. */
#ifndef HSMENROLL_HSM_HSM_H
#define HSMENROLL_HSM_HSM_H

#include <p11-kit/pkcs11.h>
#include <stdbool.h>
#include <stddef.h>

/* PKCS#11 3.0's RFC 5649 mechanism, missing from older headers. */
#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x0000210BUL
#endif

/* What failed: the PKCS#11 function, its return value, and a message that says it all. */
typedef struct hsm_error {
    char function[40]; /* "C_GenerateKeyPair"; "" when not a PKCS#11 call */
    CK_RV rv;          /* CKR_OK when not a PKCS#11 failure */
    char message[320]; /* "C_GenerateKeyPair failed: CKR_TEMPLATE_INCONSISTENT (RSA 2048)" */
} hsm_error;

void hsm_error_set(hsm_error *err, const char *function, CK_RV rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- module (hsm/module.c) ---- */

typedef struct hsm_module hsm_module;

/* dlopens path (NULL: the default SoftHSM2 module), C_GetFunctionList, C_Initialize with
 * CKF_OS_LOCKING_OK. NULL with err on failure (missing file, not a PKCS#11 module, ...). */
hsm_module *hsm_module_load(const char *path, hsm_error *err);
/* The same with init_args (NULL: none) as C_Initialize's pReserved: the initialisation string
 * some modules need (NSS softokn: "configdir='sql:/path' certPrefix='' ..."). Kept for restarts. */
hsm_module *hsm_module_load_args(const char *path, const char *init_args, hsm_error *err);

/* Behaviour of a module the engine works around, set from an explicit profile or from what the
 * module was seen to do (engine/hsm_context.c), never from its name. */
enum {
    HSM_QUIRK_RETRY_GENERAL_ERROR = 1, /* transient CKR_GENERAL_ERROR under concurrent keygen and
                                          signing (SoftHSM 2.6.1, upstream #573): retried */
    HSM_QUIRK_KEEPS_DESTROYED = 2,     /* destroyed session objects freed only at C_Finalize
                                          (SoftHSM 2.6, upstream #562/#563): restart the module */
    HSM_QUIRK_SERIAL_TOKEN_WRITES = 4, /* two threads writing token objects at once can deadlock
                                          inside the module (NSS softokn 3.87: one waits on its
                                          sqlite lock holding a monitor the other waits for):
                                          token writes one at a time. A deadlock cannot be seen
                                          and survived, so this one is set from the token model
                                          ("NSS 3") or Hsm.Profile "nss". */
};
unsigned hsm_module_quirks(const hsm_module *module);
void hsm_module_set_quirks(hsm_module *module, unsigned quirks);
/* C_Finalize (when this load initialized it) and dlclose. NULL is accepted. */
void hsm_module_unload(hsm_module *module);
/* C_Finalize then C_Initialize: every session, login and session object of the process is gone
 * (tokens must be reopened). For modules that only free memory there (SoftHSM 2.6 keeps every
 * destroyed session object until C_Finalize, upstream #562/#563). 0, or -1 with err. */
int hsm_module_restart(hsm_module *module, hsm_error *err);
CK_FUNCTION_LIST *hsm_module_functions(const hsm_module *module);
const char *hsm_module_path(const hsm_module *module);
const char *hsm_default_module_path(void);

typedef struct hsm_token_desc {
    CK_SLOT_ID slot;
    char label[33]; /* trailing spaces removed */
    char manufacturer[33];
    char model[17];
    char serial[17];
    bool initialized;
    bool user_pin_initialized;
    unsigned long max_rw_sessions; /* ulMaxRwSessionCount; 0: no limit given (effectively
                                      infinite or unavailable) */
} hsm_token_desc;

/* The tokens present (up to max); returns how many were found, or -1 with err. */
int hsm_module_list_tokens(hsm_module *module, hsm_token_desc *out, size_t max, hsm_error *err);
/* The one initialized token with this label; 0, or -1 with err: rv CKR_TOKEN_NOT_PRESENT ("no
 * token labelled ..."), CKR_ARGUMENTS_BAD when several tokens carry the label (each is named). */
int hsm_module_find_token(hsm_module *module, const char *label, hsm_token_desc *out,
                          hsm_error *err);
/* Initializes a token with this label in a slot without an initialized token (C_InitToken with
 * so_pin, then C_InitPIN with user_pin); out describes the new token (its slot may change, as
 * SoftHSM moves it). A token of this label left without a user PIN by an interrupted or failed
 * init is finished (C_InitPIN) instead. PINs outside the token's length range are refused before
 * C_InitToken. 0, or -1 with err. */
int hsm_module_init_token(hsm_module *module, const char *label, const char *so_pin,
                          const char *user_pin, hsm_token_desc *out, hsm_error *err);

/* The slot hsm_module_init_token would use (the first without an initialized token). 0 or -1. */
int hsm_module_free_slot(hsm_module *module, CK_SLOT_ID *slot, hsm_error *err);

/* ---- token and sessions (hsm/session.c) ---- */

/* A logged-in token: one login session kept open for the whole run (login state is shared by
 * every session the process opens on the token). */
typedef struct hsm_token {
    hsm_module *module;
    hsm_token_desc desc;
    CK_SESSION_HANDLE login_session;
    bool logged_in;
} hsm_token;

/* Finds the token by label, opens its login session and logs the user in with pin.
 * A wrong PIN gives err->rv CKR_PIN_INCORRECT. 0, or -1 with err. */
int hsm_token_open(hsm_module *module, const char *label, const char *pin, hsm_token *token,
                   hsm_error *err);
void hsm_token_close(hsm_token *token);

/* One worker's read/write session on a token. Not shared between threads. */
typedef struct hsm_session {
    hsm_token *token;
    CK_FUNCTION_LIST *f;
    CK_SESSION_HANDLE handle;
    /* Set by this layer when a call on the session answered that the session or the login is
     * gone (hsm_rv_session_lost): sign, wrap, key generation, find, destroy, create; or, for
     * sign and wrap, that the key's handle is gone (hsm_session_note_key_use). Cleared by
     * hsm_session_open. The owner reopens the session (engine/hsm_context.c) and retries. */
    bool lost;
    /* Set by this layer when such a call answered that the module is busy (hsm_rv_busy); the
     * owner (engine/enroll.c) clears it, backs off and retries. */
    bool busy;
} hsm_session;

int hsm_session_open(hsm_token *token, hsm_session *session, hsm_error *err);
void hsm_session_close(hsm_session *session);
/* True for the answers that mean the session (or the token's login) is gone, not the request:
 * CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_REMOVED. */
bool hsm_rv_session_lost(CK_RV rv);
/* True for the answers of a module that is busy, not broken: CKR_SESSION_COUNT and
 * CKR_DEVICE_MEMORY (no room for one more operation now). */
bool hsm_rv_busy(CK_RV rv);
/* True for the answers that say nothing of what the module can do, only of this moment: a lost
 * session or login, a busy module, a handle gone with a failover (CKR_OBJECT_HANDLE_INVALID,
 * CKR_KEY_HANDLE_INVALID, CKR_WRAPPING_KEY_HANDLE_INVALID), a cancelled call, a token taken
 * out. A capability is never concluded from such an answer. (CKR_GENERAL_ERROR and
 * CKR_DEVICE_ERROR are not in it: some modules refuse a wrap with them, every time.) */
bool hsm_rv_transient(CK_RV rv);
/* Marks the session lost when rv says so (hsm_rv_session_lost), busy when hsm_rv_busy. */
void hsm_session_note(hsm_session *session, CK_RV rv);
/* The same for the answer to a call that uses a key (sign, wrap), which also marks the session
 * lost when the key's handle is gone (CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID,
 * CKR_WRAPPING_KEY_HANDLE_INVALID): after a failover a new session may see the token logged out
 * or the handles of its token objects renumbered before any call says the session was lost, and
 * the owner's recovery logs in again and finds the keys again. */
void hsm_session_note_key_use(hsm_session *session, CK_RV rv);
/* Makes sure the token is logged in: when its login session is gone or no longer in a user
 * state (C_GetSessionInfo), a new login session is opened and C_Login'ed with pin. *relogged
 * tells whether that happened (every session object of the token, and on some modules every
 * object handle, is then gone). 0, or -1 with err. */
int hsm_token_relogin(hsm_token *token, const char *pin, bool *relogged, hsm_error *err);

/* ---- keys (hsm/keygen.c) ---- */

typedef enum hsm_key_type {
    HSM_KEY_RSA = 1,
    HSM_KEY_EC,
    HSM_KEY_ED25519,
    HSM_KEY_ED448,
} hsm_key_type;

typedef enum hsm_curve {
    HSM_CURVE_NONE = 0,
    HSM_CURVE_P256,
    HSM_CURVE_P384,
    HSM_CURVE_P521,
} hsm_curve;

typedef struct hsm_key_spec {
    hsm_key_type type;
    unsigned rsa_bits; /* HSM_KEY_RSA: 2048, 3072, 4096 */
    hsm_curve curve;   /* HSM_KEY_EC */
} hsm_key_spec;

/* Where the key lives and how it may leave. */
typedef enum hsm_key_storage {
    HSM_STORAGE_TOKEN = 1, /* persistent, private, sensitive, never extractable */
    HSM_STORAGE_WRAPPABLE, /* session object, sensitive, extractable: leaves only by C_WrapKey */
    HSM_STORAGE_READABLE,  /* session object, not sensitive: for modules that will not wrap
                              this key type (SoftHSM 2.6.1 and EdDSA); CKA_VALUE is read */
} hsm_key_storage;

#define HSM_KEY_ID_LEN 16

typedef struct hsm_keypair {
    hsm_key_spec spec;
    hsm_key_storage storage;
    CK_OBJECT_HANDLE public_key;
    CK_OBJECT_HANDLE private_key;
    unsigned char id[HSM_KEY_ID_LEN]; /* CKA_ID: random, unique */
    /* The public key as the token gives it (malloc'd; released by hsm_keypair_release):
     * RSA: modulus + exponent; EC/EdDSA: CKA_EC_POINT (a DER OCTET STRING for SoftHSM). */
    unsigned char *modulus, *exponent, *ec_point;
    size_t modulus_len, exponent_len, ec_point_len;
    int attempts; /* how many C_GenerateKeyPair calls it took (transient failures retried) */
} hsm_keypair;

/* Generates a key pair in the session's token with CKA_LABEL = label and a fresh random CKA_ID,
 * and reads its public part. The transient CKR_GENERAL_ERROR SoftHSM 2.6.1 returns under
 * concurrency is retried (a few times, with a short back-off); any other failure is returned with
 * the function and CKR named. 0, or -1 with err. */
int hsm_generate_keypair(hsm_session *session, const hsm_key_spec *spec, hsm_key_storage storage,
                         const char *label, hsm_keypair *out, hsm_error *err);
/* The same with a CKA_ID chosen by the caller (HSM_KEY_ID_LEN bytes), e.g. derived from the
 * request so that a key made just before a crash can be found again; id NULL: random. */
int hsm_generate_keypair_with_id(hsm_session *session, const hsm_key_spec *spec,
                                 hsm_key_storage storage, const char *label,
                                 const unsigned char *id, hsm_keypair *out, hsm_error *err);
/* Destroys both objects in the token (C_DestroyObject); handles already gone are fine. */
int hsm_destroy_keypair(hsm_session *session, hsm_keypair *pair, hsm_error *err);
/* Frees the public parts read at generation (not the objects). */
void hsm_keypair_release(hsm_keypair *pair);

/* Signs data with a private key: mechanism CKM_RSA_PKCS (data = DigestInfo), CKM_ECDSA (data =
 * hash; signature r||s), CKM_EDDSA (data = message). sig has capacity *sig_len; 0 or -1. */
int hsm_sign(hsm_session *session, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mechanism,
             const unsigned char *data, size_t data_len, unsigned char *sig, size_t *sig_len,
             hsm_error *err);

/* ---- import (hsm/import.c): CSR enrollments that hand their private key over ---- */

/* Key material, big-endian: RSA n, e, d, p, q, dp, dq, qinv; EC the private scalar (value) and
 * the uncompressed public point 04||X||Y (point); EdDSA the seed (value) and the raw public key
 * (point). */
typedef struct hsm_key_material {
    hsm_key_spec spec;
    const unsigned char *n, *e, *d, *p, *q, *dp, *dq, *qinv;
    size_t n_len, e_len, d_len, p_len, q_len, dp_len, dq_len, qinv_len;
    const unsigned char *value, *point;
    size_t value_len, point_len;
} hsm_key_material;

/* Creates the key pair in the session's token as token storage keeps generated keys (persistent,
 * private, sensitive, not extractable, CKA_LABEL = label, a fresh random CKA_ID) and reads its
 * public part back into out. An imported key is not CKA_NEVER_EXTRACTABLE: it was outside once.
 * 0, or -1 with err (C_CreateObject and the CKR). */
int hsm_import_keypair(hsm_session *session, const hsm_key_material *material, const char *label,
                       hsm_keypair *out, hsm_error *err);

/* ---- export (hsm/wrap.c) ---- */

/* Imports an AES-256 key (kek, 32 bytes, held by the caller) into the token as a session object
 * usable only for wrapping (CKA_WRAP, sensitive); the per-run wrapping key. 0 or -1. */
int hsm_import_wrapping_key(hsm_session *session, const unsigned char kek[32],
                            CK_OBJECT_HANDLE *out, hsm_error *err);
/* C_WrapKey with CKM_AES_KEY_WRAP_PAD (RFC 5649): the key's PKCS#8 encoding, wrapped. *out is
 * malloc'd. A module that will not wrap this key type answers CKR_KEY_NOT_WRAPPABLE (err->rv). */
int hsm_wrap_private_key(hsm_session *session, CK_OBJECT_HANDLE wrapping_key,
                         CK_OBJECT_HANDLE private_key, unsigned char **out, size_t *out_len,
                         hsm_error *err);
/* The token's persistent AES-256 key labelled label (private, sensitive, never extractable,
 * encrypt/decrypt only), made by C_GenerateKey when there is none. It protects what must survive
 * a crash outside the HSM (the journal's copy of a run's wrapping key). 0 or -1. */
int hsm_storage_key(hsm_session *session, const char *label, CK_OBJECT_HANDLE *out, hsm_error *err);
/* AES-256-CBC with PKCS#7 padding under key (CKM_AES_CBC_PAD): *out is the 16-byte IV followed
 * by the ciphertext (malloc'd). decrypt takes that form back; *out is malloc'd, the caller wipes
 * it. 0 or -1. */
int hsm_aes_encrypt(hsm_session *session, CK_OBJECT_HANDLE key, const unsigned char *in,
                    size_t in_len, unsigned char **out, size_t *out_len, hsm_error *err);
int hsm_aes_decrypt(hsm_session *session, CK_OBJECT_HANDLE key, const unsigned char *in,
                    size_t in_len, unsigned char **out, size_t *out_len, hsm_error *err);
/* Sealing a small secret (the journal's copy of a run's wrapping key) under a key that never
 * leaves the token, by one of these schemes: AES-CBC-PAD and AES-GCM under the storage key
 * (hsm_storage_key, label), RSA-OAEP (SHA-256, or SHA-1 for modules without it) under the
 * token's RSA-2048 key pair labelled "<label>-rsa" (made when absent; private key decrypt-only,
 * sensitive, never extractable). */
typedef enum hsm_seal_scheme {
    HSM_SEAL_NONE = 0,
    HSM_SEAL_AES_CBC_PAD,     /* IV(16) || CBC-PAD ciphertext */
    HSM_SEAL_AES_GCM,         /* IV(12) || ciphertext || tag(16) */
    HSM_SEAL_RSA_OAEP_SHA256, /* the OAEP ciphertext */
    HSM_SEAL_RSA_OAEP_SHA1,
} hsm_seal_scheme;
const char *hsm_seal_name(hsm_seal_scheme scheme);
/* The scheme of that name; HSM_SEAL_NONE for an unknown one. */
hsm_seal_scheme hsm_seal_from_name(const char *name);
int hsm_seal(hsm_session *session, const char *label, hsm_seal_scheme scheme,
             const unsigned char *in, size_t in_len, unsigned char **out, size_t *out_len,
             hsm_error *err);
/* *out malloc'd; the caller wipes it. */
int hsm_unseal(hsm_session *session, const char *label, hsm_seal_scheme scheme,
               const unsigned char *in, size_t in_len, unsigned char **out, size_t *out_len,
               hsm_error *err);
struct hsm_caps;
/* Seals by the first scheme, in the order above, that caps offers (NULL: try each) and that
 * survives a seal/unseal round trip; *used names it. -1 when none does: tried says why ("none
 * offered", or per scheme tried: "AES-GCM CKR_MECHANISM_PARAM_INVALID"). */
int hsm_seal_best(hsm_session *session, const struct hsm_caps *caps, const char *label,
                  const unsigned char *in, size_t in_len, unsigned char **out, size_t *out_len,
                  hsm_seal_scheme *used, char *tried, size_t tried_size, hsm_error *err);
/* Reads CKA_VALUE of a non-sensitive private key (HSM_STORAGE_READABLE). *out is malloc'd; the
 * caller wipes and frees it. */
int hsm_read_private_value(hsm_session *session, CK_OBJECT_HANDLE private_key, unsigned char **out,
                           size_t *out_len, hsm_error *err);

/* The ways C_WrapKey output is read back in process. */
typedef enum hsm_wrap_scheme {
    HSM_WRAP_NONE = 0,
    HSM_WRAP_RFC5649,       /* AES key wrap with padding (CKM_AES_KEY_WRAP_KWP; also what
                               SoftHSM 2.6.1 gives for CKM_AES_KEY_WRAP_PAD, its issue #726) */
    HSM_WRAP_RFC3394_PKCS7, /* CKM_AES_KEY_WRAP_PAD as PKCS#11 defines it: RFC 3394 over
                               PKCS#7-padded data */
    HSM_WRAP_CBC_PAD,       /* CKM_AES_CBC_PAD: the 16-byte IV, then the ciphertext */
} hsm_wrap_scheme;

/* How CKM_AES_KEY_WRAP_PAD behaves on this session's token, seen by wrapping a known 32-byte key
 * under a throwaway key (both session objects, destroyed after): 40 bytes out is RFC 5649, 56 is
 * RFC 3394 over PKCS#7 padding. HSM_WRAP_NONE when the module cannot (no such object, no
 * mechanism), with the module's refusal in *answer (CKR_OK otherwise): an answer for which
 * hsm_rv_transient holds says nothing of the module, and the caller probes again. */
hsm_wrap_scheme hsm_probe_wrap_pad(hsm_session *session, CK_RV *answer);
/* C_WrapKey of private_key under wrapping_key with mechanism (CKM_AES_KEY_WRAP_KWP,
 * CKM_AES_KEY_WRAP_PAD, or CKM_AES_CBC_PAD, for which a random IV is made and put in front of
 * the output). *out is malloc'd. */
int hsm_wrap_private_key_with(hsm_session *session, CK_MECHANISM_TYPE mechanism,
                              CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE private_key,
                              unsigned char **out, size_t *out_len, hsm_error *err);

/* ---- capabilities (hsm/caps.c) ---- */

/* What one token offers, probed once (hsm_caps_probe), owned by the caller (hsm_caps_free). */
typedef struct hsm_caps {
    CK_SLOT_ID slot;
    CK_FLAGS token_flags;                   /* CK_TOKEN_INFO flags */
    CK_ULONG min_pin, max_pin;              /* PIN length range */
    CK_ULONG max_sessions, max_rw_sessions; /* 0 / CK_EFFECTIVELY_INFINITE: no limit stated */
    CK_MECHANISM_TYPE *mechanisms;          /* count entries, each with its info */
    CK_MECHANISM_INFO *infos;
    size_t count;
} hsm_caps;

int hsm_caps_probe(hsm_module *module, CK_SLOT_ID slot, hsm_caps *out, hsm_error *err);
void hsm_caps_free(hsm_caps *caps);
/* The mechanism's info, or NULL when the token does not offer it. */
const CK_MECHANISM_INFO *hsm_caps_mechanism(const hsm_caps *caps, CK_MECHANISM_TYPE mechanism);
/* True when the token offers mechanism with every flag of flags (CKF_WRAP, ...). */
bool hsm_caps_has(const hsm_caps *caps, CK_MECHANISM_TYPE mechanism, CK_FLAGS flags);
/* Whether the token offers key pair generation of spec (mechanism and key size); false with the
 * reason in why ("this module cannot generate Ed25519 keys (no CKM_EC_EDWARDS_KEY_PAIR_GEN)"). */
bool hsm_caps_keygen(const hsm_caps *caps, const hsm_key_spec *spec, char *why, size_t why_size);
/* wanted, brought into the token's PIN length range. */
size_t hsm_caps_pin_length(const hsm_caps *caps, size_t wanted);

/* ---- objects (hsm/objects.c): for start-up and maintenance, never the hot path ---- */

/* Handles of the objects of a class (CKO_PRIVATE_KEY, ...) with this CKA_ID and/or CKA_LABEL
 * (either may be NULL/0 length to match all). Returns how many (up to max), -1 with err. */
int hsm_find_objects(hsm_session *session, CK_OBJECT_CLASS cls, const unsigned char *id,
                     size_t id_len, const char *label, CK_OBJECT_HANDLE *out, size_t max,
                     hsm_error *err);
/* Every object of class *cls (every object when cls is NULL) in one C_FindObjects pass, into a
 * malloc'd array *out (freed by the caller; NULL when there are none). The count, or -1 with err.
 */
long hsm_list_objects(hsm_session *session, const CK_OBJECT_CLASS *cls, CK_OBJECT_HANDLE **out,
                      hsm_error *err);
/* One attribute's value, malloc'd (NUL-terminated for convenience). 0 or -1. */
int hsm_get_attribute(hsm_session *session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type,
                      unsigned char **out, size_t *out_len, hsm_error *err);
/* A CK_BBOOL or CK_ULONG attribute. */
int hsm_get_bool(hsm_session *session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, bool *out,
                 hsm_error *err);
int hsm_get_ulong(hsm_session *session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type,
                  CK_ULONG *out, hsm_error *err);
int hsm_destroy_object(hsm_session *session, CK_OBJECT_HANDLE object, hsm_error *err);
/* Destroys the private and public key objects with this CKA_ID (a key pair whose handles are not
 * held: taken up after a crash, or an orphan). Returns how many were destroyed. */
int hsm_destroy_keypair_by_id(hsm_session *session, const unsigned char *id, size_t id_len);

/* ---- names (hsm/uri.c) ---- */

/* The RFC 7512 URI of an object on the token (p11-kit's formatter): token, manufacturer, model,
 * serial, id, object (label), type. malloc'd; NULL on failure. */
char *hsm_object_uri(const hsm_token_desc *token, const unsigned char *id, size_t id_len,
                     const char *label, CK_OBJECT_CLASS cls);

/* ---- certificate objects (hsm/certobject.c) ---- */

/* The DER of a certificate and of the parts PKCS#11 indexes it by: subject (required), issuer
 * and serial INTEGER (both, or neither). */
typedef struct hsm_certificate_der {
    const unsigned char *value, *subject, *issuer, *serial;
    size_t value_len, subject_len, issuer_len, serial_len;
} hsm_certificate_der;

/* Creates a persistent, public CKO_CERTIFICATE (CKC_X_509) with this label and CKA_ID. */
int hsm_create_certificate(hsm_session *session, const hsm_certificate_der *cert, const char *label,
                           const unsigned char *id, size_t id_len, CK_OBJECT_HANDLE *out,
                           hsm_error *err);

/* ---- a token's inventory (hsm/inventory.c) ---- */

typedef struct hsm_object_info {
    CK_OBJECT_HANDLE handle;
    CK_OBJECT_CLASS cls;  /* CKO_PRIVATE_KEY, CKO_PUBLIC_KEY or CKO_CERTIFICATE */
    CK_KEY_TYPE key_type; /* keys; (CK_KEY_TYPE)-1 when unreadable */
    char *label;          /* CKA_LABEL, NUL-terminated; "" when none */
    unsigned char *id;    /* CKA_ID (id_len 0 when none) */
    size_t id_len;
    unsigned char *value; /* certificates: the DER (CKA_VALUE); NULL otherwise */
    size_t value_len;
} hsm_object_info;

/* Every private key, public key and certificate the session sees, in one C_FindObjects pass,
 * with their attributes. *out is malloc'd (hsm_inventory_free). The count, or -1 with err. */
long hsm_inventory(hsm_session *session, hsm_object_info **out, hsm_error *err);
void hsm_inventory_free(hsm_object_info *objects, long count);

#endif
