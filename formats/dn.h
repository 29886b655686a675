/* X.500 subject names in the syntax of the Keyfactor API pages:
 *   CN=websrvr14.keyexample.com,OU=IT,O="Key Example, Inc.",L=Independence,ST=OH,C=US
 * (quoted values, backslash escapes, '+' multi-valued RDNs, UTF-8), to and from X509_NAME. */
#ifndef HSMENROLL_FORMATS_DN_H
#define HSMENROLL_FORMATS_DN_H

#include <openssl/x509.h>

#include "error.h"

/* Parses text into a new X509_NAME. The string is written most-specific first (CN first), as in
 * RFC 4514, so the DER order is the reverse of the string order. Keywords are matched
 * case-insensitively (CN, OU, O, L, ST, C, E, STREET, DC, UID, SERIALNUMBER, T, G, SN, I,
 * DNQUALIFIER, POSTALCODE, and dotted OIDs "2.5.4.3" or "OID.2.5.4.3"). On error returns NULL and
 * fills err with code INVALID_SUBJECT, field `field_name` and where/why ("at offset 17: ..."). */
X509_NAME *dn_parse(const char *text, const char *field_name, enroll_error *err);

/* Prints name back in the same syntax (canonical form: CN first, keywords upper-case, a value is
 * quoted with "..." when it holds , + = ; < > # " \ or leading/trailing spaces, and inside quotes
 * only " and \ are backslash-escaped). Parsing the output gives an equal name; a string already in
 * canonical form prints back identically. Returns a malloc'd string (free()), NULL on failure. */
char *dn_format(const X509_NAME *name);

/* Returns the value (UTF-8, malloc'd) of the last (most specific) entry with this NID, or NULL. */
char *dn_get_text(const X509_NAME *name, int nid);

#endif
