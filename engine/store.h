/* Certificate stores (configuration Stores): a PKCS#11 token whose keys and certificates are
 * grouped by alias, the CKA_LABEL a key pair shares with its certificate (bound by CKA_ID). A
 * store's alias index is built once, from one pass over the token, and keeps the handles. */
#ifndef HSMENROLL_ENGINE_STORE_H
#define HSMENROLL_ENGINE_STORE_H

#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>

#include "batch/config.h"
#include "batch/request.h"
#include "formats/error.h"
#include "hsm/hsm.h"

/* The objects of one alias that share a CKA_ID: a key pair and its certificate, any of which
 * may be missing (CK_INVALID_HANDLE). */
typedef struct store_entry {
    unsigned char id[64];
    size_t id_len;
    CK_OBJECT_HANDLE private_key, public_key, certificate;
    CK_KEY_TYPE key_type; /* (CK_KEY_TYPE)-1 when there is no key */
    X509 *cert;           /* parsed CKA_VALUE, or NULL */
} store_entry;

typedef struct store_alias {
    char *alias;
    store_entry *entries;
    size_t entry_count;
} store_alias;

typedef struct store_index {
    const config_store *store; /* NULL for a token listed by label */
    hsm_token_desc token;
    store_alias *aliases; /* sorted by alias */
    size_t alias_count;
} store_index;

/* Builds the index of the token session is on: every object with a label, grouped by label then
 * CKA_ID. Objects without a label are no alias and are left out. 0, or -1 with err
 * (STORE_UNAVAILABLE). */
int store_index_build(store_index *index, const config_store *store, hsm_session *session,
                      enroll_error *err);
void store_index_free(store_index *index);
/* The alias, or NULL (binary search; the index is not modified). */
const store_alias *store_index_find(const store_index *index, const char *alias);
/* The entry the alias stands for now: one with a private key and a certificate; of several (a
 * replacement interrupted half-way) the one whose certificate is newest. NULL when none. */
const store_entry *store_alias_current(const store_alias *alias);

/* Where a PFX line's certificate and key are to be installed. */
typedef struct store_target {
    const config_store *store;
    char alias[REQUEST_ALIAS_MAX + 1];
    bool overwrite;
} store_target;

void store_target_set(store_target *t, const config_store *store, const char *alias,
                      bool overwrite);

/* The indexes of a run's stores, each built by the first request that needs it. */
typedef struct store_registry {
    pthread_mutex_t lock;
    const config *cfg;
    store_index *indexes; /* one per cfg->stores entry */
    bool *built;
} store_registry;

int store_registry_init(store_registry *reg, const config *cfg);
void store_registry_free(store_registry *reg);
/* Forgets every index: after a module restart their handles are stale. */
void store_registry_reset(store_registry *reg);
/* The index of store, built now through session (on the store's token) if it is not yet. The
 * index stays valid until reset or free. NULL with err (STORE_UNAVAILABLE). Thread-safe. */
const store_index *store_registry_get(store_registry *reg, const config_store *store,
                                      hsm_session *session, enroll_error *err);

/* The swap's two steps (run and serve): the certificate installed under alias with CKA_ID id
 * (STORE_INSTALL_FAILED), then every other entry of the alias (as a's index saw it) destroyed,
 * certificate first (STORE_INSTALL_FAILED when one cannot be). 0 or -1 with err. */
int store_install_certificate(hsm_session *s, X509 *cert, const char *alias,
                              const unsigned char *id, enroll_error *err);
int store_retire_others(hsm_session *s, const store_alias *a, const unsigned char *keep_id,
                        enroll_error *err);
/* store_install_certificate on a token that may keep one subject per label (NSS: a nickname
 * belongs to one subject): when it refuses the certificate with CKR_ATTRIBUTE_VALUE_INVALID while
 * the alias (a, as the index saw it) has another certificate, those certificates are destroyed
 * first (their keys stay for store_retire_others) and the install tried again; refused again,
 * the old certificates are put back. Between the two the alias has keys and no certificate: run
 * has the new certificate in its journal and --resume completes the swap. Kill point
 * store-old-certificate-retired. 0 or -1 with err. */
int store_install_making_room(hsm_session *s, X509 *cert, const char *alias, const store_alias *a,
                              const unsigned char *id, enroll_error *err);

#endif
