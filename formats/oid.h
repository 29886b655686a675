/* Object identifiers as text: the dotted form of an ASN1_OBJECT, however long, for the printers
 * of subjects (dn_format) and SANs (san_entry_text), which must print whatever their parsers took.
 */
#ifndef HSMENROLL_FORMATS_OID_H
#define HSMENROLL_FORMATS_OID_H

#include <openssl/asn1.h>

/* "1.2.3.4" (always numeric), malloc'd; NULL on failure. */
char *oid_dotted_text(const ASN1_OBJECT *obj);

#endif
