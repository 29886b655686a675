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
 * fills err with code INVALID_SUBJECT, field `field_name` and where/why ("at offset 17: ..."; the
 * offset counts bytes of text from 0).
 * Precisely: aliases S (ST), EMAIL and EMAILADDRESS (E), TITLE (T), GN and GIVENNAME (G), SURNAME
 * (SN), INITIALS (I); an OID is digits in two or more dot-separated arcs without leading zeros.
 * Blanks (space, tab) around ',' '+' '=' are ignored. A value in "..." takes anything but a bare
 * '"', and only \" and \\ as escapes. An unquoted value ends at ',' or '+', loses its trailing
 * blanks, takes the RFC 4514 escapes \, \+ \" \\ \< \> \; \= \# \<space> and \XX (hex
 * byte); a bare ';' or '"' in it, or a leading '#', is an error. Values must be non-empty, strict
 * UTF-8 (no overlongs, surrogates) without NUL. Each goes in with MBSTRING_UTF8, so OpenSSL's
 * string table applies (C is two PrintableString letters, E is IA5String, CN at most 64, ...):
 * its refusal is "invalid value for C: <OpenSSL reason>". Duplicate attributes are allowed.
 * The members of a '+' RDN are one X509_NAME set, kept in written order. */
X509_NAME *dn_parse(const char *text, const char *field_name, enroll_error *err);

/* Prints name back in the same syntax (canonical form: CN first, keywords upper-case, a value is
 * quoted with "..." when it holds , + = ; < > # " \ or leading/trailing spaces, and inside quotes
 * only " and \ are backslash-escaped). Parsing the output gives an equal name; a string already in
 * canonical form prints back identically. Returns a malloc'd string (free()), NULL on failure.
 * Precisely: keywords are the first spelling of each (CN OU O L ST C E STREET DC UID SERIALNUMBER
 * T G SN I DNQUALIFIER POSTALCODE), other attributes print as a bare dotted OID; "leading/trailing
 * spaces" includes tabs; members of a multi-valued RDN are joined by '+' in entry order (after
 * d2i that is DER SET OF order, sorted by encoding, not necessarily the order they were written
 * in). An empty name prints as "". NULL when name is NULL, on allocation failure, or when a value
 * has no UTF-8 form or holds a NUL byte. An empty value prints as "" (which does not parse). */
char *dn_format(const X509_NAME *name);

/* Returns the value (UTF-8, malloc'd) of the last (most specific) entry with this NID, or NULL
 * (also when the value has no UTF-8 form or holds a NUL byte). */
char *dn_get_text(const X509_NAME *name, int nid);

/* The NID a subject keyword names ("O", "st", "E", ...), case-insensitively; NID_undef if none. */
int dn_keyword_nid(const char *keyword);
/* The keyword dn_format prints for nid ("CN", "ST", ...), or NULL. */
const char *dn_keyword_for_nid(int nid);

/* Adds an attribute the name lacks (an enrollment pattern's default subject part) in its
 * customary place of the string order CN, OU, O, STREET, L, ST, POSTALCODE, C, DC (e.g. L=Denver
 * goes after O and before C). A new single-valued RDN; value is UTF-8. 0, or -1 with err. */
int dn_add_default(X509_NAME *name, int nid, const char *value, enroll_error *err);

#endif
