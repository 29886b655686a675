/* CRLs of the embedded CA (see crl.h). OpenSSL signs a CRL only with a key it holds, so the
 * TBSCertList is assembled in DER from OpenSSL's encodings of its parts, signed through the
 * signer, and read back as an X509_CRL. */
#include "ca/crl.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "formats/der.h"

/* Appends the DER of an i2d-encodable object; 0 or -1. */
#define PUT_I2D(buf, fn, obj)                                                                      \
    do {                                                                                           \
        unsigned char *der_ = NULL;                                                                \
        int len_ = fn(obj, &der_);                                                                 \
        if (len_ <= 0) {                                                                           \
            (buf)->failed = true;                                                                  \
        } else {                                                                                   \
            der_put(buf, der_, (size_t)len_);                                                      \
        }                                                                                          \
        OPENSSL_free(der_);                                                                        \
    } while (0)

static int put_time(der_buf *b, time_t t)
{
    ASN1_TIME *at = ASN1_TIME_set(NULL, t); /* UTCTime through 2049, then GeneralizedTime */
    if (at == NULL)
        return -1;
    PUT_I2D(b, i2d_ASN1_TIME, at);
    ASN1_TIME_free(at);
    return 0;
}

static X509_REVOKED *revoked_entry(const revocation_entry *e)
{
    X509_REVOKED *r = X509_REVOKED_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = ASN1_TIME_set(NULL, e->revoked);
    int ok = r != NULL && when != NULL && BN_hex2bn(&bn, e->serial) > 0 &&
             (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL &&
             X509_REVOKED_set_serialNumber(r, serial) && X509_REVOKED_set_revocationDate(r, when);
    if (ok && e->reason != REVOKE_UNSPECIFIED) { /* RFC 5280: unspecified is left out */
        ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
        ok = reason != NULL && ASN1_ENUMERATED_set(reason, e->reason) &&
             X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0) == 1;
        ASN1_ENUMERATED_free(reason);
    }
    BN_free(bn);
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(when);
    if (!ok) {
        X509_REVOKED_free(r);
        return NULL;
    }
    return r;
}

static X509_EXTENSION *aki_extension(X509 *issuer)
{
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(issuer);
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    if (akid == NULL || skid == NULL || (akid->keyid = ASN1_OCTET_STRING_dup(skid)) == NULL) {
        AUTHORITY_KEYID_free(akid);
        return NULL;
    }
    X509_EXTENSION *ext = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
    AUTHORITY_KEYID_free(akid);
    return ext;
}

X509_CRL *crl_build(X509 *issuer, const signer *s, const revocation_entry *entries, size_t count,
                    long long number, time_t this_update, time_t next_update, enroll_error *err)
{
    der_buf tbs = {0}, list = {0}, exts = {0};
    unsigned char *alg = NULL, *tbs_der = NULL, *crl_der = NULL;
    size_t tbs_len = 0, crl_len = 0;
    X509_CRL *crl = NULL;
    static const unsigned char version2[] = {0x02, 0x01, 0x01};
    der_put(&tbs, version2, sizeof version2);
    int alg_len = sig_alg_der(s->alg, &alg);
    if (alg_len <= 0) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "no signature algorithm for the CA key");
        goto done;
    }
    der_put(&tbs, alg, (size_t)alg_len);
    PUT_I2D(&tbs, i2d_X509_NAME, X509_get_subject_name(issuer));
    if (put_time(&tbs, this_update) != 0 || put_time(&tbs, next_update) != 0)
        tbs.failed = true;
    for (size_t i = 0; i < count; i++) {
        X509_REVOKED *r = revoked_entry(&entries[i]);
        if (r == NULL) {
            enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL,
                             "cannot encode the revocation of serial %s", entries[i].serial);
            goto done;
        }
        PUT_I2D(&list, i2d_X509_REVOKED, r);
        X509_REVOKED_free(r);
    }
    if (count > 0) /* RFC 5280: absent when nothing is revoked */
        der_put_wrapped(&tbs, 0x30, &list);
    X509_EXTENSION *aki = aki_extension(issuer);
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    X509_EXTENSION *crl_number = NULL;
    if (num != NULL && ASN1_INTEGER_set_int64(num, number))
        crl_number = X509V3_EXT_i2d(NID_crl_number, 0, num);
    ASN1_INTEGER_free(num);
    if (aki == NULL || crl_number == NULL) {
        X509_EXTENSION_free(aki);
        X509_EXTENSION_free(crl_number);
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "cannot encode the CRL's extensions");
        goto done;
    }
    PUT_I2D(&exts, i2d_X509_EXTENSION, aki);
    PUT_I2D(&exts, i2d_X509_EXTENSION, crl_number);
    X509_EXTENSION_free(aki);
    X509_EXTENSION_free(crl_number);
    der_buf seq = {0};
    der_put_wrapped(&seq, 0x30, &exts);
    der_put_wrapped(&tbs, 0xa0, &seq); /* crlExtensions [0] EXPLICIT */
    tbs_der = der_wrap(&tbs, 0x30, &tbs_len);
    if (tbs_der == NULL) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "cannot encode the CRL");
        enroll_error_add_openssl(err);
        goto done;
    }
    if ((crl_der = der_sign_wrap(tbs_der, tbs_len, s, &crl_len, err)) == NULL)
        goto done;
    const unsigned char *p = crl_der;
    crl = d2i_X509_CRL(NULL, &p, (long)crl_len);
    if (crl == NULL || X509_CRL_verify(crl, X509_get0_pubkey(issuer)) != 1) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL,
                         "the CRL made does not verify with the issuing CA's key");
        enroll_error_add_openssl(err);
        X509_CRL_free(crl);
        crl = NULL;
    }
done:
    der_free(&tbs);
    der_free(&list);
    der_free(&exts);
    OPENSSL_free(alg);
    free(tbs_der);
    free(crl_der);
    return crl;
}

long long crl_next_number(const char *home, enroll_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/crlnumber", home);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "cannot open %s: %s", path,
                         strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char buf[32] = "";
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    long long next = strtoll(buf, NULL, 10) + 1;
    if (next < 1)
        next = 1;
    /* Fixed width, written over in place: a crash leaves the old number or the new one. */
    int len = snprintf(buf, sizeof buf, "%020lld\n", next);
    if (pwrite(fd, buf, (size_t)len, 0) != len || fdatasync(fd) != 0) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "cannot write %s: %s", path,
                         strerror(errno));
        next = -1;
    }
    flock(fd, LOCK_UN);
    close(fd);
    return next;
}

X509_CRL *crl_make(const char *home, X509 *issuer, const signer *s, revocation_list *list,
                   long valid_seconds, enroll_error *err)
{
    revocation_refresh(list);
    size_t count = 0;
    revocation_entry *entries = revocation_snapshot(list, &count);
    if (entries == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    long long number = crl_next_number(home, err);
    X509_CRL *crl = NULL;
    if (number > 0) {
        time_t now = time(NULL);
        crl = crl_build(issuer, s, entries, count, number, now, now + valid_seconds, err);
    }
    free(entries);
    return crl;
}
