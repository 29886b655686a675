/* The embedded CA's revocation list, revoked.ndjson in the CA's home: one JSON line per revoked
 * certificate (Serial, Revoked, Reason, KeyfactorID), appended under a lock shared across
 * processes; a serial is recorded once however often it is revoked. Owns the RFC 5280 reason
 * names and the one spelling of serials (upper-case hex, as the issuance log writes them). */
#ifndef HSMENROLL_CA_REVOCATION_H
#define HSMENROLL_CA_REVOCATION_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "formats/error.h"

#define REVOCATION_FILE       "revoked.ndjson"
#define REVOCATION_SERIAL_MAX 72 /* hex digits of a 20-byte serial and more, with the NUL */

/* CRLReason (RFC 5280 section 5.3.1); 7 is not used. */
enum {
    REVOKE_UNSPECIFIED = 0,
    REVOKE_KEY_COMPROMISE = 1,
    REVOKE_CA_COMPROMISE = 2,
    REVOKE_AFFILIATION_CHANGED = 3,
    REVOKE_SUPERSEDED = 4,
    REVOKE_CESSATION_OF_OPERATION = 5,
    REVOKE_CERTIFICATE_HOLD = 6,
    REVOKE_REMOVE_FROM_CRL = 8,
    REVOKE_PRIVILEGE_WITHDRAWN = 9,
    REVOKE_AA_COMPROMISE = 10,
};

/* The reason of an RFC 5280 name ("keyCompromise", case-insensitive) or of its number ("1"); -1
 * for anything else. removeFromCRL is not a reason to revoke: -1 too. */
int revocation_reason_parse(const char *text);
/* "keyCompromise", ...; "unspecified" for numbers without a name. */
const char *revocation_reason_name(int reason);

/* Writes serial (hex digits, either case, colons allowed, "0x" allowed) as upper-case hex without
 * leading zero bytes (BN_bn2hex) into out. 0, or -1 when it is no positive hex number. */
int revocation_serial_norm(const char *serial, char out[REVOCATION_SERIAL_MAX]);
/* The same of a certificate's serial number. */
int revocation_serial_of(const ASN1_INTEGER *serial, char out[REVOCATION_SERIAL_MAX]);

typedef struct revocation_entry {
    char serial[REVOCATION_SERIAL_MAX];
    time_t revoked;
    int reason;
    long long keyfactor_id; /* 0 when not known */
} revocation_entry;

typedef struct revocation_list revocation_list;

/* Opens (creating when missing, mode 0644) the list of home and reads it. A torn last line (a
 * write cut short) is ignored and ended before the next append. NULL and err on failure. */
revocation_list *revocation_open(const char *home, enroll_error *err);
void revocation_close(revocation_list *list);
/* Reads what other processes appended since the last read. Thread-safe. */
void revocation_refresh(revocation_list *list);
/* Records the revocation of serial (normalized) unless it is recorded already: then *existing
 * (when not NULL) gets the earlier entry and 1 is returned. 0 when appended (and on disk: the
 * line is synced before this returns), -1 with err (CA_REVOKE_FAILED). Thread-safe and safe
 * across processes (the file is locked while it is read to its end and appended to). */
int revocation_add(revocation_list *list, const revocation_entry *entry, revocation_entry *existing,
                   enroll_error *err);
/* The entry of serial, as of the last read, copied into *out: true when revoked. Thread-safe. */
bool revocation_find(revocation_list *list, const char *serial, revocation_entry *out);
/* A copy of every entry, in the order recorded (free it); *count gets their number. */
revocation_entry *revocation_snapshot(revocation_list *list, size_t *count);
/* The size of the file as last read: a change means new revocations. */
long long revocation_size(revocation_list *list);

#endif
