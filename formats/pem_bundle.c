/* The single-file outputs: the PEM bundle (subject headers, certificates, encrypted PKCS#8 key),
 * the DER certificate and the DER EncryptedPrivateKeyInfo (PBES2, PBKDF2-HMAC-SHA256,
 * AES-256-CBC). */
#include "bundle.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <stdlib.h>
#include <string.h>

#include "dn.h"
#include "pbe.h"

#define DEFAULT_PBKDF2_ITERATIONS 2048

/* Copies the content of the memory BIO mem to out, whole. */
static int flush_mem(BIO *mem, BIO *out, enroll_error *err)
{
    char *data = NULL;
    long len = BIO_get_mem_data(mem, &data);
    if (len < 0 || len > INT_MAX || (len > 0 && BIO_write(out, data, (int)len) != (int)len)) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "cannot write the bundle");
        enroll_error_add_openssl(err);
        return -1;
    }
    return 0;
}

X509_SIG *bundle_encrypt_key(EVP_PKEY *key, const char *password, int iterations, enroll_error *err)
{
    if (key == NULL) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "no private key to write");
        return NULL;
    }
    if (password == NULL || password[0] == '\0' || strlen(password) > INT_MAX) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "a private key needs a non-empty password");
        return NULL;
    }
    if (iterations < 0) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "invalid PBKDF2 iteration count %d",
                         iterations);
        return NULL;
    }
    if (iterations == 0)
        iterations = DEFAULT_PBKDF2_ITERATIONS;

    (void)bundle_crypto_init();
    X509_SIG *p8 = NULL;
    PKCS8_PRIV_KEY_INFO *p8inf = EVP_PKEY2PKCS8(key);
    if (p8inf == NULL)
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "the private key cannot be exported");
    else if ((p8 = pbe_seal_pkcs8(p8inf, password, iterations, NID_undef)) == NULL)
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "cannot encrypt the private key");
    if (p8 == NULL)
        enroll_error_add_openssl(err);
    PKCS8_PRIV_KEY_INFO_free(p8inf); /* clears the key octets */
    return p8;
}

static int write_subject_header(BIO *mem, X509 *cert, int index, enroll_error *err)
{
    char *dn = dn_format(X509_get_subject_name(cert));
    if (dn == NULL) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL,
                         "cannot format the subject of certificate %d", index);
        return -1;
    }
    int ok = BIO_printf(mem, "subject=%s\n", dn) > 0;
    free(dn);
    if (!ok) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "cannot write the bundle");
        enroll_error_add_openssl(err);
        return -1;
    }
    return 0;
}

int pem_bundle_write(BIO *out, STACK_OF(X509) * certs, const pem_bundle_options *opt,
                     enroll_error *err)
{
    static const pem_bundle_options no_options;
    if (opt == NULL)
        opt = &no_options;
    if (out == NULL) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "no output");
        return -1;
    }
    int rc = -1;
    X509_SIG *p8 = NULL;
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem == NULL) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "out of memory");
        enroll_error_add_openssl(err);
        goto done;
    }
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *cert = sk_X509_value(certs, i);
        if (opt->include_subject_header && write_subject_header(mem, cert, i, err) != 0)
            goto done;
        if (!PEM_write_bio_X509(mem, cert)) {
            enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "cannot write certificate %d", i);
            enroll_error_add_openssl(err);
            goto done;
        }
    }
    if (opt->key != NULL) {
        if ((p8 = bundle_encrypt_key(opt->key, opt->password, opt->pbkdf2_iterations, err)) == NULL)
            goto done;
        if (!PEM_write_bio_PKCS8(mem, p8)) {
            enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "cannot write the private key");
            enroll_error_add_openssl(err);
            goto done;
        }
    }
    rc = flush_mem(mem, out, err);
done:
    X509_SIG_free(p8);
    BIO_free(mem);
    return rc;
}

int der_cert_write(BIO *out, X509 *cert, enroll_error *err)
{
    if (out == NULL || cert == NULL) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "no certificate or no output");
        return -1;
    }
    if (!i2d_X509_bio(out, cert)) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "cannot write the DER certificate");
        enroll_error_add_openssl(err);
        return -1;
    }
    return 0;
}

int pkcs8_der_write(BIO *out, EVP_PKEY *key, const char *password, int pbkdf2_iterations,
                    enroll_error *err)
{
    if (out == NULL) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "no output");
        return -1;
    }
    X509_SIG *p8 = bundle_encrypt_key(key, password, pbkdf2_iterations, err);
    if (p8 == NULL)
        return -1;
    int rc = 0;
    if (!i2d_PKCS8_bio(out, p8)) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "cannot write the PKCS#8 key");
        enroll_error_add_openssl(err);
        rc = -1;
    }
    X509_SIG_free(p8);
    return rc;
}
