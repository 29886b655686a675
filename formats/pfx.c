/* PKCS#12 (PFX) output, built bag by bag so the certificate bags keep the caller's order: modern
 * (PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC, MAC SHA-256) or legacy (3DES key, RC2-40 certs, SHA-1),
 * every key derived by formats/kdf.c. */
#include "bundle.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/hmac.h>
#include <string.h>

#include "algs.h"
#include "kdf.h"
#include "pbe.h"

#define DEFAULT_PFX_ITERATIONS 2048

/* Index in certs of the first certificate whose public key is key's, or -1. */
static int find_leaf(STACK_OF(X509) * certs, EVP_PKEY *key)
{
    for (int i = 0; i < sk_X509_num(certs); i++) {
        if (X509_check_private_key(sk_X509_value(certs, i), key) == 1) {
            ERR_clear_error();
            return i;
        }
    }
    ERR_clear_error(); /* the mismatches leave "key values mismatch" behind */
    return -1;
}

/* friendlyName (UTF-8, stored as BMPString) and localKeyID, on the key bag and the leaf bag. */
static int add_leaf_attributes(PKCS12_SAFEBAG *bag, const pfx_options *opt, unsigned char *keyid,
                               int keyid_len)
{
    if (opt->friendly_name != NULL && !PKCS12_add_friendlyname_utf8(bag, opt->friendly_name, -1))
        return 0;
    return PKCS12_add_localkeyid(bag, keyid, keyid_len);
}

/* One certificate bag per certificate, in order. PKCS12_SAFEBAG_create_cert rather than
 * PKCS12_add_cert: the latter copies an alias or key id a certificate may carry in its auxiliary
 * (trust) data, which would put a stray friendlyName or localKeyID on a CA bag. */
static STACK_OF(PKCS12_SAFEBAG) * make_cert_bags(STACK_OF(X509) * certs, int leaf,
                                                 const pfx_options *opt, unsigned char *keyid,
                                                 int keyid_len)
{
    STACK_OF(PKCS12_SAFEBAG) *bags = sk_PKCS12_SAFEBAG_new_null();
    if (bags == NULL)
        return NULL;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        PKCS12_SAFEBAG *bag = PKCS12_SAFEBAG_create_cert(sk_X509_value(certs, i));
        if (bag == NULL || (i == leaf && !add_leaf_attributes(bag, opt, keyid, keyid_len)) ||
            sk_PKCS12_SAFEBAG_push(bags, bag) <= 0) {
            PKCS12_SAFEBAG_free(bag);
            sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
            return NULL;
        }
    }
    return bags;
}

/* The certificate safe: the bags as SafeContents in a PKCS#7 EncryptedData, under PBES2 (pbe_nid
 * NID_undef) or PKCS#12's PBE pbe_nid (formats/pbe.c): what PKCS12_add_safe_ex writes, with the
 * fast key derivations. Pushed on *safes. */
static int add_encrypted_safe(STACK_OF(PKCS7) * *safes, STACK_OF(PKCS12_SAFEBAG) * bags,
                              const char *pass, int iter, int pbe_nid)
{
    unsigned char *der = NULL;
    int der_len = ASN1_item_i2d((ASN1_VALUE *)bags, &der, ASN1_ITEM_rptr(PKCS12_SAFEBAGS));
    PKCS7 *p7 = der_len > 0 ? PKCS7_new() : NULL;
    int ok = p7 != NULL && PKCS7_set_type(p7, NID_pkcs7_encrypted);
    if (ok) {
        PKCS7_ENC_CONTENT *content = p7->d.encrypted->enc_data;
        if (content->enc_data == NULL)
            content->enc_data = ASN1_OCTET_STRING_new();
        ok = content->enc_data != NULL &&
             (pbe_nid == NID_undef
                  ? pbe_seal_pbes2(der, der_len, pass, iter, content->algorithm, content->enc_data)
                  : pbe_seal_pkcs12(pbe_nid, der, der_len, pass, iter, content->algorithm,
                                    content->enc_data)) == 0;
    }
    if (ok && *safes == NULL)
        ok = (*safes = sk_PKCS7_new_null()) != NULL;
    ok = ok && sk_PKCS7_push(*safes, p7) > 0;
    if (!ok)
        PKCS7_free(p7);
    OPENSSL_free(der);
    return ok;
}

/* The MAC (HMAC with md_nid, NID_sha256 or NID_sha1, over the AuthenticatedSafe, its key by
 * PKCS#12's derivation): what PKCS12_set_mac computes, with the derivation of formats/kdf.c. safes
 * is what p12 was packed from: its DER is the MAC's input. */
static int set_mac(PKCS12 *p12, STACK_OF(PKCS7) * safes, const char *pass, int iter, int md_nid)
{
    const EVP_MD *md = algs_md(md_nid);
    unsigned char *der = NULL, key[32], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    int der_len = ASN1_item_i2d((ASN1_VALUE *)safes, &der, ASN1_ITEM_rptr(PKCS12_AUTHSAFES));
    const ASN1_OCTET_STRING *digest = NULL, *salt = NULL;
    const X509_ALGOR *alg = NULL;
    const ASN1_INTEGER *count = NULL;
    int ok = der_len > 0 && PKCS12_setup_mac(p12, iter, NULL, 0, md);
    if (ok) {
        PKCS12_get0_mac(&digest, &alg, &salt, &count, p12);
        ok = digest != NULL && salt != NULL && salt->length > 0 &&
             kdf_pkcs12(md_nid, PKCS12_MAC_ID, pass, salt->data, (size_t)salt->length,
                        (unsigned)iter, key, (size_t)EVP_MD_get_size(md)) == 0 &&
             HMAC(md, key, EVP_MD_get_size(md), der, (size_t)der_len, mac, &mac_len) != NULL &&
             /* PKCS12_setup_mac left the digest empty; OpenSSL 3.0 has no setter for it. */
             ASN1_OCTET_STRING_set((ASN1_OCTET_STRING *)digest, mac, (int)mac_len);
    }
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_free(der);
    return ok;
}

static int check_options(BIO *out, EVP_PKEY *key, const pfx_options *opt, enroll_error *err)
{
    if (out == NULL || key == NULL || opt == NULL) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL,
                         "PKCS#12 needs an output, a key and options");
        return -1;
    }
    if (opt->password == NULL || opt->password[0] == '\0' || strlen(opt->password) > INT_MAX) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "PKCS#12 needs a non-empty password");
        return -1;
    }
    if (opt->iterations < 0) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "invalid PKCS#12 iteration count %d",
                         opt->iterations);
        return -1;
    }
    if (bundle_crypto_init() != 0 && opt->legacy) {
        enroll_error_set(err, HSE_LEGACY_UNAVAILABLE, NULL,
                         "legacy PKCS#12 (3DES, RC2-40) needs the OpenSSL legacy provider, "
                         "which cannot be loaded (see OPENSSL_MODULES)");
        return -1;
    }
    return 0;
}

int pfx_write(BIO *out, EVP_PKEY *key, STACK_OF(X509) * certs, const pfx_options *opt,
              enroll_error *err)
{
    if (check_options(out, key, opt, err) != 0)
        return -1;
    const char *pass = opt->password;
    int iter = opt->iterations ? opt->iterations : DEFAULT_PFX_ITERATIONS;
    /* PBES2 (NID_undef) for a modern PFX, PKCS#12's own PBE with SHA-1 for a legacy one. */
    int key_nid = opt->legacy ? NID_pbe_WithSHA1And3_Key_TripleDES_CBC : NID_undef;
    int cert_nid = opt->legacy ? NID_pbe_WithSHA1And40BitRC2_CBC : NID_undef;

    int leaf = find_leaf(certs, key);
    if (leaf < 0) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL,
                         "no certificate of the PKCS#12 matches the private key");
        return -1;
    }
    unsigned char keyid[EVP_MAX_MD_SIZE];
    unsigned int keyid_len = 0;
    if (!X509_digest(sk_X509_value(certs, leaf), EVP_sha1(), keyid, &keyid_len)) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "cannot hash the leaf certificate");
        enroll_error_add_openssl(err);
        return -1;
    }

    int rc = -1;
    const char *what = "cannot build the certificate bags";
    STACK_OF(PKCS7) *safes = NULL;
    STACK_OF(PKCS12_SAFEBAG) *key_bags = NULL;
    PKCS12 *p12 = NULL;
    STACK_OF(PKCS12_SAFEBAG) *cert_bags = make_cert_bags(certs, leaf, opt, keyid, (int)keyid_len);
    if (cert_bags == NULL)
        goto done;
    what = "cannot encrypt the certificates";
    if (!add_encrypted_safe(&safes, cert_bags, pass, iter, cert_nid))
        goto done;

    /* The shrouded key bag: for a modern PFX, the PEM bundle's EncryptedPrivateKeyInfo. */
    what = "cannot encrypt the private key";
    PKCS12_SAFEBAG *bag = NULL;
    PKCS8_PRIV_KEY_INFO *p8inf = EVP_PKEY2PKCS8(key);
    X509_SIG *p8 = p8inf != NULL ? pbe_seal_pkcs8(p8inf, pass, iter, key_nid) : NULL;
    PKCS8_PRIV_KEY_INFO_free(p8inf); /* clears the key octets */
    if (p8 != NULL && (bag = PKCS12_SAFEBAG_create0_pkcs8(p8)) == NULL)
        X509_SIG_free(p8);
    if (bag != NULL && ((key_bags = sk_PKCS12_SAFEBAG_new_null()) == NULL ||
                        sk_PKCS12_SAFEBAG_push(key_bags, bag) <= 0)) {
        PKCS12_SAFEBAG_free(bag);
        bag = NULL;
    }
    if (bag == NULL)
        goto done;
    what = "cannot set the key bag attributes";
    if (!add_leaf_attributes(bag, opt, keyid, (int)keyid_len) ||
        (opt->csp_name != NULL && !PKCS12_add_CSPName_asc(bag, opt->csp_name, -1)))
        goto done;
    /* The shrouded key bag is encrypted already: its safe is plain data. */
    what = "cannot build the PKCS#12";
    if (!PKCS12_add_safe_ex(&safes, key_bags, -1, 0, NULL, NULL, NULL))
        goto done;
    if ((p12 = PKCS12_add_safes_ex(safes, 0, NULL, NULL)) == NULL)
        goto done;
    what = "cannot compute the PKCS#12 MAC";
    if (!set_mac(p12, safes, pass, iter, opt->legacy ? NID_sha1 : NID_sha256))
        goto done;
    what = "cannot write the PKCS#12";
    if (!i2d_PKCS12_bio(out, p12))
        goto done;
    rc = 0;
done:
    if (rc != 0) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "%s", what);
        enroll_error_add_openssl(err);
    }
    PKCS12_free(p12);
    sk_PKCS7_pop_free(safes, PKCS7_free);
    sk_PKCS12_SAFEBAG_pop_free(key_bags, PKCS12_SAFEBAG_free);
    sk_PKCS12_SAFEBAG_pop_free(cert_bags, PKCS12_SAFEBAG_free);
    return rc;
}
