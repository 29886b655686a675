/* Subject alternative names with the Keyfactor SAN keys (dns, ip4, ip6, uri, rfc822,
 * ms_ntprincipalname, registeredid): validation and encoding to X.509 GeneralNames. */
#ifndef HSMENROLL_FORMATS_SAN_H
#define HSMENROLL_FORMATS_SAN_H

#include <openssl/x509v3.h>
#include <stdbool.h>

#include "error.h"

/* Which Keyfactor SAN key `key` names (matched case-insensitively); SAN_UNKNOWN if none. */
typedef enum san_kind {
    SAN_UNKNOWN = 0,
    SAN_DNS,
    SAN_IP4,
    SAN_IP6,
    SAN_URI,
    SAN_RFC822,
    SAN_UPN, /* ms_ntprincipalname: otherName 1.3.6.1.4.1.311.20.2.3, UTF8String */
    SAN_REGISTERED_ID,
} san_kind;

san_kind san_kind_from_key(const char *key);
const char *san_kind_key(san_kind kind); /* the canonical lower-case key, "dns", ... */

/* Validates `value` for `kind` and appends it to names. `field` names the value in errors
 * ("SANs.ip4[0]"). Codes: INVALID_SAN (bad value), UNKNOWN_SAN_TYPE (kind SAN_UNKNOWN).
 * A dns value may start with "*." (wildcard); whether wildcards are allowed is policy, not here.
 * Returns 0, or -1 with err filled. */
int san_add(GENERAL_NAMES *names, san_kind kind, const char *value, const char *field,
            enroll_error *err);

/* True when names holds a dNSName equal (case-insensitively) to dns. */
bool san_has_dns(const GENERAL_NAMES *names, const char *dns);

/* Appends to names each entry of `extra` that names does not hold yet (GENERAL_NAME_cmp).
 * Returns 0, -1 on allocation failure. */
int san_merge(GENERAL_NAMES *names, const GENERAL_NAMES *extra);

/* One entry as "kind:value" text (e.g. "dns:a.example", "ip4:10.0.0.1"), malloc'd; NULL on failure. */
char *san_entry_text(const GENERAL_NAME *name);

#endif
