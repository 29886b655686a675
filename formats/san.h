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
    SAN_IP, /* "ip" (Keyfactor's Vault plugin): an IPv4 or an IPv6 address */
} san_kind;

san_kind san_kind_from_key(const char *key);
const char *san_kind_key(san_kind kind); /* the canonical lower-case key, "dns", ...; NULL for
                                            SAN_UNKNOWN or a value outside the enum */

/* Validates `value` for `kind` and appends it to names. `field` names the value in errors
 * ("SANs.ip4[0]"). Codes: INVALID_SAN (bad value), UNKNOWN_SAN_TYPE (kind SAN_UNKNOWN).
 * A dns value may start with "*." (wildcard); whether wildcards are allowed is policy, not here.
 * Returns 0, or -1 with err filled.
 * Rules (an empty or NULL value is always INVALID_SAN):
 *   dns: LDH labels of 1-63 bytes, 253 in all, no hyphen first or last in a label, '_' only as a
 *        label's first character (_sip._tcp.example.com), no trailing dot, ASCII only (A-labels);
 *        stored as given (case kept) as an IA5String dNSName.
 *   ip4, ip6: what inet_pton(AF_INET / AF_INET6) accepts (dotted quad, no leading zeros; no zone
 *        id, no brackets); a 4- or 16-byte iPAddress.
 *   uri: a scheme [A-Za-z][A-Za-z0-9+.-]*, ':', then something; printable ASCII without spaces.
 *   rfc822: local@domain split at the last '@', local part 1-64 bytes, printable ASCII without
 *        spaces, domain a host name as for dns (no wildcard).
 *   ms_ntprincipalname: strict UTF-8 user@domain, both parts non-empty (split at the last '@');
 *        otherName 1.3.6.1.4.1.311.20.2.3 with a [0] EXPLICIT UTF8String.
 *   registeredid: a dotted numeric OID (two or more arcs, no leading zeros, first arc 0-2).
 * On error names is unchanged; allocation failure is INVALID_SAN "out of memory". */
int san_add(GENERAL_NAMES *names, san_kind kind, const char *value, const char *field,
            enroll_error *err);

/* True when names holds a dNSName equal (case-insensitively) to dns. */
bool san_has_dns(const GENERAL_NAMES *names, const char *dns);

/* Appends to names each entry of `extra` that names does not hold yet (GENERAL_NAME_cmp).
 * Returns 0, -1 on allocation failure.
 * Appends copies, in extra's order, an entry repeated in extra once; names is unchanged on -1.
 * GENERAL_NAME_cmp compares dNSNames byte for byte, so "A.example" and "a.example" both stay. */
int san_merge(GENERAL_NAMES *names, const GENERAL_NAMES *extra);

/* One entry as "kind:value" text (e.g. "dns:a.example", "ip4:10.0.0.1"), malloc'd; NULL on failure.
 * ip6 is in inet_ntop form ("ip6:2001:db8::1"). NULL also for entries no key describes (dirName,
 * other otherNames, an iPAddress of other than 4 or 16 bytes) and for values holding a NUL byte. */
char *san_entry_text(const GENERAL_NAME *name);

#endif
