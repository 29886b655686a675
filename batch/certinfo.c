/* CertificateInformation members of a certificate (see certinfo.h). */
#include "batch/certinfo.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <time.h>

#include "formats/algs.h"
#include "formats/dn.h"
#include "formats/hex.h"

static json_t *iso_time(const ASN1_TIME *t)
{
    struct tm tm;
    char buf[32];
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return json_null();
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

json_t *certinfo_describe(X509 *cert)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *serial = bn ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    X509_digest(cert, algs_md(NID_sha1), md, &md_len);
    char *thumb = hex_encode_alloc(md, md_len, true);
    char *issuer = dn_format(X509_get_issuer_name(cert));
    char *subject = dn_format(X509_get_subject_name(cert));
    json_t *info = json_pack("{s:s?, s:s?, s:s?, s:s?, s:o, s:o}", "SerialNumber", serial,
                             "IssuerDN", issuer, "SubjectDN", subject, "Thumbprint", thumb,
                             "NotBefore", iso_time(X509_get0_notBefore(cert)), "NotAfter",
                             iso_time(X509_get0_notAfter(cert)));
    OPENSSL_free(serial);
    free(thumb);
    free(issuer);
    free(subject);
    return info;
}
