/* p11caps: print what a PKCS#11 module offers, as JSON, and optionally try what hsmenroll needs.
 *
 *   cc -o p11caps p11caps.c -ldl
 *   p11caps [-t TOKEN_LABEL -p PIN [-c CERT1.der -C CERT2.der]] MODULE [INIT_ARGS]
 *
 * Without -t: for every slot with a token, the token's flags, PIN length range, session counts,
 * manufacturer and model, and every mechanism with its flags and key size range.
 * With -t: also logs in as user on the token labelled TOKEN_LABEL and tries key generation
 * (timed), signing, AES key generation/import, encryption and key wrapping; with -c/-C two DER
 * certificates of different subjects are stored under one CKA_LABEL. Objects it creates are
 * destroyed again. INIT_ARGS, when given, is passed in CK_C_INITIALIZE_ARGS.pReserved (NSS
 * softokn's parameter string). Standalone: needs only <p11-kit/pkcs11.h> and dlopen. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#if defined(__has_include)
#if __has_include(<p11-kit/pkcs11.h>)
#include <p11-kit/pkcs11.h>
#else
#include <p11-kit-1/p11-kit/pkcs11.h> /* Debian's path without pkg-config's -I */
#endif
#else
#include <p11-kit/pkcs11.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210BUL
#endif

static CK_FUNCTION_LIST_PTR f;

static const struct { CK_ULONG v; const char *n; } rvs[] = {
    {CKR_OK, "CKR_OK"}, {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"}, {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
    {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY"},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
    {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"}, {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
    {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED"},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"}, {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE"},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
    {CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE"},
    {CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE"},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
    {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED"},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"}, {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
    {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY"},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
    {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED"},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
    {CKR_WRAPPING_KEY_HANDLE_INVALID, "CKR_WRAPPING_KEY_HANDLE_INVALID"},
    {CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT"},
    {CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT"},
    {CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID"},
    {CKR_WRAPPED_KEY_LEN_RANGE, "CKR_WRAPPED_KEY_LEN_RANGE"},
    {CKR_DOMAIN_PARAMS_INVALID, "CKR_DOMAIN_PARAMS_INVALID"},
    {CKR_CURVE_NOT_SUPPORTED, "CKR_CURVE_NOT_SUPPORTED"},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"}, {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
};
static const char *rvname(CK_RV rv)
{
    static char buf[32];
    for (size_t i = 0; i < sizeof rvs / sizeof rvs[0]; i++)
        if (rvs[i].v == rv) return rvs[i].n;
    snprintf(buf, sizeof buf, "0x%lx", (unsigned long)rv);
    return buf;
}

static const struct { CK_ULONG v; const char *n; } mechs[] = {
    {CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN"}, {CKM_RSA_PKCS, "CKM_RSA_PKCS"},
    {CKM_RSA_X_509, "CKM_RSA_X_509"}, {CKM_RSA_PKCS_OAEP, "CKM_RSA_PKCS_OAEP"},
    {CKM_RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS"}, {CKM_SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS"},
    {CKM_SHA384_RSA_PKCS, "CKM_SHA384_RSA_PKCS"}, {CKM_SHA512_RSA_PKCS, "CKM_SHA512_RSA_PKCS"},
    {CKM_SHA256_RSA_PKCS_PSS, "CKM_SHA256_RSA_PKCS_PSS"},
    {CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"}, {CKM_ECDSA, "CKM_ECDSA"},
    {CKM_ECDSA_SHA256, "CKM_ECDSA_SHA256"}, {CKM_ECDSA_SHA384, "CKM_ECDSA_SHA384"},
    {CKM_ECDSA_SHA512, "CKM_ECDSA_SHA512"}, {CKM_ECDH1_DERIVE, "CKM_ECDH1_DERIVE"},
    {CKM_EC_EDWARDS_KEY_PAIR_GEN, "CKM_EC_EDWARDS_KEY_PAIR_GEN"}, {CKM_EDDSA, "CKM_EDDSA"},
    {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN"}, {CKM_AES_ECB, "CKM_AES_ECB"},
    {CKM_AES_CBC, "CKM_AES_CBC"}, {CKM_AES_CBC_PAD, "CKM_AES_CBC_PAD"},
    {CKM_AES_CTR, "CKM_AES_CTR"}, {CKM_AES_GCM, "CKM_AES_GCM"},
    {CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP"}, {CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD"},
    {CKM_AES_KEY_WRAP_KWP, "CKM_AES_KEY_WRAP_KWP"}, {CKM_SHA_1, "CKM_SHA_1"},
    {CKM_SHA256, "CKM_SHA256"}, {CKM_SHA384, "CKM_SHA384"}, {CKM_SHA512, "CKM_SHA512"},
    {CKM_SHA256_HMAC, "CKM_SHA256_HMAC"}, {CKM_GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN"},
};
static void mechname(CK_ULONG m, char *buf, size_t n)
{
    for (size_t i = 0; i < sizeof mechs / sizeof mechs[0]; i++)
        if (mechs[i].v == m) { snprintf(buf, n, "%s", mechs[i].n); return; }
    snprintf(buf, n, "0x%lx", (unsigned long)m);
}

/* A blank-padded fixed field as a JSON string (trailing blanks cut). */
static void jfield(const CK_UTF8CHAR *p, size_t n)
{
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == 0)) n--;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') printf("\\%c", p[i]);
        else if (p[i] < 0x20) printf("\\u%04x", p[i]);
        else putchar(p[i]);
    }
    putchar('"');
}

static const struct { CK_FLAGS v; const char *n; } tflags[] = {
    {CKF_RNG, "RNG"}, {CKF_WRITE_PROTECTED, "WRITE_PROTECTED"},
    {CKF_LOGIN_REQUIRED, "LOGIN_REQUIRED"}, {CKF_USER_PIN_INITIALIZED, "USER_PIN_INITIALIZED"},
    {CKF_RESTORE_KEY_NOT_NEEDED, "RESTORE_KEY_NOT_NEEDED"},
    {CKF_CLOCK_ON_TOKEN, "CLOCK_ON_TOKEN"},
    {CKF_PROTECTED_AUTHENTICATION_PATH, "PROTECTED_AUTHENTICATION_PATH"},
    {CKF_DUAL_CRYPTO_OPERATIONS, "DUAL_CRYPTO_OPERATIONS"},
    {CKF_TOKEN_INITIALIZED, "TOKEN_INITIALIZED"},
    {CKF_SECONDARY_AUTHENTICATION, "SECONDARY_AUTHENTICATION"},
    {CKF_USER_PIN_COUNT_LOW, "USER_PIN_COUNT_LOW"}, {CKF_USER_PIN_FINAL_TRY, "USER_PIN_FINAL_TRY"},
    {CKF_USER_PIN_LOCKED, "USER_PIN_LOCKED"}, {CKF_USER_PIN_TO_BE_CHANGED, "USER_PIN_TO_BE_CHANGED"},
    {CKF_SO_PIN_COUNT_LOW, "SO_PIN_COUNT_LOW"}, {CKF_SO_PIN_FINAL_TRY, "SO_PIN_FINAL_TRY"},
    {CKF_SO_PIN_LOCKED, "SO_PIN_LOCKED"}, {CKF_SO_PIN_TO_BE_CHANGED, "SO_PIN_TO_BE_CHANGED"},
};
static const struct { CK_FLAGS v; const char *n; } mflags[] = {
    {CKF_HW, "hw"}, {CKF_ENCRYPT, "encrypt"}, {CKF_DECRYPT, "decrypt"}, {CKF_DIGEST, "digest"},
    {CKF_SIGN, "sign"}, {CKF_SIGN_RECOVER, "sign_recover"}, {CKF_VERIFY, "verify"},
    {CKF_VERIFY_RECOVER, "verify_recover"}, {CKF_GENERATE, "generate"},
    {CKF_GENERATE_KEY_PAIR, "generate_key_pair"}, {CKF_WRAP, "wrap"}, {CKF_UNWRAP, "unwrap"},
    {CKF_DERIVE, "derive"}, {CKF_EC_F_P, "ec_f_p"}, {CKF_EC_NAMEDCURVE, "ec_namedcurve"},
    {CKF_EC_UNCOMPRESS, "ec_uncompress"}, {CKF_EC_COMPRESS, "ec_compress"},
};

static void print_caps(CK_SLOT_ID slot, int first)
{
    CK_TOKEN_INFO ti;
    CK_RV rv = f->C_GetTokenInfo(slot, &ti);
    printf("%s\n  {\"slot\": %lu", first ? "" : ",", (unsigned long)slot);
    if (rv != CKR_OK) { printf(", \"token_error\": \"%s\"}", rvname(rv)); return; }
    printf(", \"label\": "); jfield(ti.label, sizeof ti.label);
    printf(", \"manufacturer\": "); jfield(ti.manufacturerID, sizeof ti.manufacturerID);
    printf(", \"model\": "); jfield(ti.model, sizeof ti.model);
    printf(", \"serial\": "); jfield(ti.serialNumber, sizeof ti.serialNumber);
    printf(",\n   \"flags\": [");
    int n = 0;
    for (size_t i = 0; i < sizeof tflags / sizeof tflags[0]; i++)
        if (ti.flags & tflags[i].v) printf("%s\"%s\"", n++ ? ", " : "", tflags[i].n);
    printf("], \"ulMinPinLen\": %lu, \"ulMaxPinLen\": %lu", (unsigned long)ti.ulMinPinLen,
           (unsigned long)ti.ulMaxPinLen);
    printf(", \"ulMaxSessionCount\": %ld, \"ulMaxRwSessionCount\": %ld",
           (long)ti.ulMaxSessionCount, (long)ti.ulMaxRwSessionCount);
    printf(", \"ulSessionCount\": %ld, \"ulRwSessionCount\": %ld",
           (long)ti.ulSessionCount, (long)ti.ulRwSessionCount);
    CK_ULONG cnt = 0;
    rv = f->C_GetMechanismList(slot, NULL, &cnt);
    CK_MECHANISM_TYPE *ml = calloc(cnt + 1, sizeof *ml);
    if (rv == CKR_OK) rv = f->C_GetMechanismList(slot, ml, &cnt);
    printf(",\n   \"mechanisms\": {");
    for (CK_ULONG i = 0; rv == CKR_OK && i < cnt; i++) {
        CK_MECHANISM_INFO mi;
        char name[64];
        mechname(ml[i], name, sizeof name);
        printf("%s\n    \"%s\": {", i ? "," : "", name);
        if (f->C_GetMechanismInfo(slot, ml[i], &mi) != CKR_OK) { printf("}"); continue; }
        printf("\"min\": %lu, \"max\": %lu, \"flags\": [", (unsigned long)mi.ulMinKeySize,
               (unsigned long)mi.ulMaxKeySize);
        n = 0;
        for (size_t k = 0; k < sizeof mflags / sizeof mflags[0]; k++)
            if (mi.flags & mflags[k].v) printf("%s\"%s\"", n++ ? ", " : "", mflags[k].n);
        printf("]}");
    }
    printf("}");
    if (rv != CKR_OK) printf(", \"mechanism_error\": \"%s\"", rvname(rv));
    printf("}");
    free(ml);
}

/* ---- functional tests ---- */
static CK_SESSION_HANDLE ses;
static int nres;
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
static void res(const char *name, CK_RV rv, double ms, const char *extra)
{
    printf("%s\n    \"%s\": {\"rv\": \"%s\"", nres++ ? "," : "", name, rvname(rv));
    if (ms >= 0) printf(", \"ms\": %.1f", ms);
    if (extra) printf(", %s", extra);
    printf("}");
    fflush(stdout);
}

static CK_BBOOL T = CK_TRUE, F = CK_FALSE;
static CK_OBJECT_CLASS c_pub = CKO_PUBLIC_KEY, c_priv = CKO_PRIVATE_KEY, c_sec = CKO_SECRET_KEY,
                       c_cert = CKO_CERTIFICATE;
static CK_KEY_TYPE k_aes = CKK_AES;
static CK_ULONG n_destroy;
static CK_BYTE idseq; /* a distinct CKA_ID per key pair (NSS merges objects by CKA_ID) */
static CK_OBJECT_HANDLE destroy[64];
static void later(CK_OBJECT_HANDLE h)
{
    if (h != CK_INVALID_HANDLE && n_destroy < 64) destroy[n_destroy++] = h;
}

/* Destroy a key pair at once (a TPM without a resource manager holds only ~3 loaded objects). */
static void drop(CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv)
{
    for (CK_ULONG i = 0; i < n_destroy; i++)
        if (destroy[i] == pub || destroy[i] == priv) {
            f->C_DestroyObject(ses, destroy[i]);
            destroy[i--] = destroy[--n_destroy];
        }
}

#define A(t, v) {t, (void *)&(v), sizeof(v)}

static CK_RV rsa_gen(CK_ULONG bits, CK_BBOOL token, CK_BBOOL extractable, CK_OBJECT_HANDLE *pub,
                     CK_OBJECT_HANDLE *priv, double *ms)
{
    CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_BYTE e[] = {1, 0, 1};
    CK_BYTE id[] = {0x68, 0x65, 0x72, (CK_BYTE)(bits >> 8), ++idseq};
    char label[] = "p11caps";
    CK_ATTRIBUTE pt[] = {A(CKA_CLASS, c_pub), A(CKA_TOKEN, token), A(CKA_VERIFY, T),
                         A(CKA_MODULUS_BITS, bits), {CKA_PUBLIC_EXPONENT, e, sizeof e},
                         {CKA_ID, id, sizeof id}, {CKA_LABEL, label, 7}};
    CK_ATTRIBUTE vt[] = {A(CKA_CLASS, c_priv), A(CKA_TOKEN, token), A(CKA_PRIVATE, T),
                         A(CKA_SENSITIVE, T), A(CKA_EXTRACTABLE, extractable), A(CKA_SIGN, T),
                         {CKA_ID, id, sizeof id}, {CKA_LABEL, label, 7}};
    double t0 = now_ms();
    CK_RV rv = f->C_GenerateKeyPair(ses, &m, pt, 7, vt, 8, pub, priv);
    *ms = now_ms() - t0;
    if (rv == CKR_OK) { later(*pub); later(*priv); }
    return rv;
}

/* ec_params DER: OID or PrintableString */
static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const CK_BYTE p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const CK_BYTE p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const CK_BYTE ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const CK_BYTE ed448[] = {0x06, 0x03, 0x2b, 0x65, 0x71};
static const CK_BYTE ed25519s[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'};
static const CK_BYTE ed448s[] = {0x13, 0x0a, 'e', 'd', 'w', 'a', 'r', 'd', 's', '4', '4', '8'};

static CK_RV ec_gen(CK_MECHANISM_TYPE mt, const CK_BYTE *params, size_t plen, CK_BBOOL token,
                    CK_BBOOL extractable, int with_false_crypt, CK_OBJECT_HANDLE *pub,
                    CK_OBJECT_HANDLE *priv, double *ms)
{
    CK_MECHANISM m = {mt, NULL, 0};
    CK_BYTE id[] = {0x68, 0x65, 0x63, (CK_BYTE)plen, ++idseq};
    char label[] = "p11caps";
    CK_ATTRIBUTE pt[] = {A(CKA_CLASS, c_pub), A(CKA_TOKEN, token), A(CKA_VERIFY, T),
                         {CKA_EC_PARAMS, (void *)params, plen}, {CKA_ID, id, sizeof id},
                         {CKA_LABEL, label, 7}, A(CKA_ENCRYPT, F)};
    CK_ATTRIBUTE vt[] = {A(CKA_CLASS, c_priv), A(CKA_TOKEN, token), A(CKA_PRIVATE, T),
                         A(CKA_SENSITIVE, T), A(CKA_EXTRACTABLE, extractable), A(CKA_SIGN, T),
                         {CKA_ID, id, sizeof id}, {CKA_LABEL, label, 7}, A(CKA_DECRYPT, F)};
    double t0 = now_ms();
    CK_RV rv = f->C_GenerateKeyPair(ses, &m, pt, with_false_crypt ? 7 : 6, vt,
                                    with_false_crypt ? 9 : 8, pub, priv);
    *ms = now_ms() - t0;
    if (rv == CKR_OK) { later(*pub); later(*priv); }
    return rv;
}

static CK_RV sign_with(CK_OBJECT_HANDLE priv, CK_MECHANISM_TYPE mt, size_t inlen)
{
    CK_MECHANISM m = {mt, NULL, 0};
    CK_BYTE in[64], sig[1024];
    CK_ULONG sl = sizeof sig;
    memset(in, 0x5a, sizeof in);
    CK_RV rv = f->C_SignInit(ses, &m, priv);
    if (rv == CKR_OK) rv = f->C_Sign(ses, in, inlen, sig, &sl);
    return rv;
}

static CK_RV aes_gen(CK_BBOOL token, CK_OBJECT_HANDLE *h)
{
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {A(CKA_CLASS, c_sec), A(CKA_KEY_TYPE, k_aes), A(CKA_TOKEN, token),
                        A(CKA_VALUE_LEN, len), A(CKA_WRAP, T), A(CKA_UNWRAP, T),
                        A(CKA_ENCRYPT, T), A(CKA_DECRYPT, T), A(CKA_SENSITIVE, T),
                        A(CKA_PRIVATE, T), {CKA_LABEL, "p11caps-aes", 11}};
    CK_RV rv = f->C_GenerateKey(ses, &m, t, 11, h);
    if (rv == CKR_OK) later(*h);
    return rv;
}

static CK_RV aes_import(CK_BBOOL token, CK_OBJECT_HANDLE *h)
{
    CK_BYTE v[32];
    for (int i = 0; i < 32; i++) v[i] = (CK_BYTE)(i * 7 + 1);
    CK_ATTRIBUTE t[] = {A(CKA_CLASS, c_sec), A(CKA_KEY_TYPE, k_aes), A(CKA_TOKEN, token),
                        {CKA_VALUE, v, sizeof v}, A(CKA_WRAP, T), A(CKA_UNWRAP, T),
                        A(CKA_ENCRYPT, T), A(CKA_DECRYPT, T), A(CKA_PRIVATE, T),
                        {CKA_LABEL, "p11caps-aes-imp", 15}};
    CK_RV rv = f->C_CreateObject(ses, t, 10, h);
    if (rv == CKR_OK) later(*h);
    return rv;
}

static CK_BYTE iv16[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static CK_RV encrypt_with(CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mt)
{
    CK_GCM_PARAMS gcm;
    memset(&gcm, 0, sizeof gcm);
    gcm.pIv = iv16;
    gcm.ulIvLen = 12;
    gcm.ulIvBits = 96;
    gcm.ulTagBits = 128;
    CK_MECHANISM m = {mt, NULL, 0};
    if (mt == CKM_AES_GCM) { m.pParameter = &gcm; m.ulParameterLen = sizeof gcm; }
    else if (mt == CKM_AES_CBC_PAD) { m.pParameter = iv16; m.ulParameterLen = 16; }
    CK_BYTE in[37], out[128];
    CK_ULONG ol = sizeof out;
    memset(in, 0x33, sizeof in);
    CK_RV rv = f->C_EncryptInit(ses, &m, key);
    if (rv == CKR_OK) rv = f->C_Encrypt(ses, in, sizeof in, out, &ol);
    return rv;
}

/* Wrap target with wrapping key, then unwrap it back (as a session object). */
static void wrap_test(const char *name, CK_OBJECT_HANDLE wk, CK_OBJECT_HANDLE target,
                      CK_MECHANISM_TYPE mt, CK_KEY_TYPE kt)
{
    CK_MECHANISM m = {mt, NULL, 0};
    if (mt == CKM_AES_CBC_PAD) { m.pParameter = iv16; m.ulParameterLen = 16; }
    static CK_BYTE buf[8192];
    CK_ULONG bl = sizeof buf;
    CK_RV rv = f->C_WrapKey(ses, &m, wk, target, buf, &bl);
    char ex[128];
    if (rv != CKR_OK) { res(name, rv, -1, NULL); return; }
    CK_ATTRIBUTE t[] = {A(CKA_CLASS, c_priv), A(CKA_KEY_TYPE, kt), A(CKA_TOKEN, F),
                        A(CKA_PRIVATE, T), A(CKA_SENSITIVE, T), A(CKA_SIGN, T)};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV urv = f->C_UnwrapKey(ses, &m, wk, buf, bl, t, 6, &h);
    if (urv == CKR_OK) later(h);
    snprintf(ex, sizeof ex, "\"wrapped_len\": %lu, \"unwrap_rv\": \"%s\"", (unsigned long)bl,
             rvname(urv));
    res(name, rv, -1, ex);
}

/* Tiny DER reader: the subject, issuer and serial of a certificate. */
static const CK_BYTE *der_next(const CK_BYTE *p, const CK_BYTE *end, size_t *tot, size_t *hdr)
{
    if (end - p < 2) return NULL;
    size_t len = p[1], h = 2;
    if (len & 0x80) {
        int nb = len & 0x7f;
        if (nb > 4 || end - p < 2 + nb) return NULL;
        len = 0;
        for (int i = 0; i < nb; i++) len = (len << 8) | p[2 + i];
        h += nb;
    }
    if ((size_t)(end - p) < h + len) return NULL;
    *tot = h + len;
    *hdr = h;
    return p;
}
struct certparts { const CK_BYTE *serial, *issuer, *subject; size_t sl, il, subl; };
static int cert_parts(const CK_BYTE *d, size_t n, struct certparts *cp)
{
    size_t tot, h;
    const CK_BYTE *end = d + n;
    if (!der_next(d, end, &tot, &h)) return -1;
    const CK_BYTE *p = d + h; /* into Certificate */
    if (!der_next(p, end, &tot, &h)) return -1;
    end = p + tot;
    p += h; /* into tbsCertificate */
    if (!der_next(p, end, &tot, &h)) return -1;
    if (*p == 0xa0) { p += tot; if (!der_next(p, end, &tot, &h)) return -1; }
    cp->serial = p; cp->sl = tot; p += tot;
    if (!der_next(p, end, &tot, &h)) return -1;
    p += tot; /* signature alg */
    if (!der_next(p, end, &tot, &h)) return -1;
    cp->issuer = p; cp->il = tot; p += tot;
    if (!der_next(p, end, &tot, &h)) return -1;
    p += tot; /* validity */
    if (!der_next(p, end, &tot, &h)) return -1;
    cp->subject = p; cp->subl = tot;
    return 0;
}
static CK_BYTE *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    CK_BYTE *b = malloc(65536);
    *n = fread(b, 1, 65536, fp);
    fclose(fp);
    return b;
}
static CK_RV cert_create(const char *path, const char *label, CK_OBJECT_HANDLE *h)
{
    size_t n;
    CK_BYTE *d = slurp(path, &n);
    struct certparts cp;
    if (!d || cert_parts(d, n, &cp) != 0) { free(d); return CKR_ARGUMENTS_BAD; }
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_BYTE id[] = {0xce, 0x47, (CK_BYTE)n, ++idseq};
    CK_ATTRIBUTE t[] = {A(CKA_CLASS, c_cert), A(CKA_CERTIFICATE_TYPE, ct), A(CKA_TOKEN, T),
                        {CKA_LABEL, (void *)label, strlen(label)}, {CKA_VALUE, d, n},
                        {CKA_SUBJECT, (void *)cp.subject, cp.subl},
                        {CKA_ISSUER, (void *)cp.issuer, cp.il},
                        {CKA_SERIAL_NUMBER, (void *)cp.serial, cp.sl}, {CKA_ID, id, sizeof id}};
    CK_RV rv = f->C_CreateObject(ses, t, 9, h);
    if (rv == CKR_OK) later(*h);
    free(d);
    return rv;
}

static void run_tests(CK_SLOT_ID slot, const char *pin, const char *c1, const char *c2)
{
    CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &ses);
    printf(",\n  \"tests\": {");
    res("open_rw_session", rv, -1, NULL);
    if (rv != CKR_OK) { printf("}"); return; }
    rv = f->C_Login(ses, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
    res("login_user", rv, -1, NULL);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) { printf("}"); return; }

    CK_OBJECT_HANDLE pub, priv, rsa = CK_INVALID_HANDLE, ec = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE rsax = CK_INVALID_HANDLE, ecx = CK_INVALID_HANDLE;
    double ms;
    static const CK_ULONG bits[] = {2048, 3072, 4096};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "rsa%lu_keygen_token", (unsigned long)bits[i]);
        rv = rsa_gen(bits[i], T, F, &pub, &priv, &ms);
        res(name, rv, ms, NULL);
        if (rv == CKR_OK && i == 0) rsa = priv;
        else if (rv == CKR_OK) drop(pub, priv);
    }
    rv = rsa_gen(2048, F, F, &pub, &priv, &ms);
    res("rsa2048_keygen_session", rv, ms, NULL);
    if (rv == CKR_OK) drop(pub, priv);
    if (rsa != CK_INVALID_HANDLE) res("sign_CKM_RSA_PKCS", sign_with(rsa, CKM_RSA_PKCS, 51), -1, NULL);

    struct { const char *n; const CK_BYTE *p; size_t l; CK_MECHANISM_TYPE m; } curves[] = {
        {"ec_p256_keygen_token", p256, sizeof p256, CKM_EC_KEY_PAIR_GEN},
        {"ec_p384_keygen_token", p384, sizeof p384, CKM_EC_KEY_PAIR_GEN},
        {"ec_p521_keygen_token", p521, sizeof p521, CKM_EC_KEY_PAIR_GEN},
        {"ed25519_keygen_token_oid", ed25519, sizeof ed25519, CKM_EC_EDWARDS_KEY_PAIR_GEN},
        {"ed25519_keygen_token_name", ed25519s, sizeof ed25519s, CKM_EC_EDWARDS_KEY_PAIR_GEN},
        {"ed448_keygen_token_oid", ed448, sizeof ed448, CKM_EC_EDWARDS_KEY_PAIR_GEN},
        {"ed448_keygen_token_name", ed448s, sizeof ed448s, CKM_EC_EDWARDS_KEY_PAIR_GEN},
    };
    CK_OBJECT_HANDLE ed = CK_INVALID_HANDLE;
    for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++) {
        rv = ec_gen(curves[i].m, curves[i].p, curves[i].l, T, F, 0, &pub, &priv, &ms);
        res(curves[i].n, rv, ms, NULL);
        if (rv == CKR_OK && i == 0) ec = priv;
        else if (rv == CKR_OK && (i == 3 || i == 4) && ed == CK_INVALID_HANDLE) ed = priv;
        else if (rv == CKR_OK) drop(pub, priv);
    }
    rv = ec_gen(CKM_EC_KEY_PAIR_GEN, p256, sizeof p256, F, F, 0, &pub, &priv, &ms);
    res("ec_p256_keygen_session", rv, ms, NULL);
    if (rv == CKR_OK) drop(pub, priv);
    rv = ec_gen(CKM_EC_KEY_PAIR_GEN, p256, sizeof p256, T, F, 1, &pub, &priv, &ms);
    res("ec_p256_keygen_with_DECRYPT_false_ENCRYPT_false", rv, ms, NULL);
    if (rv == CKR_OK) drop(pub, priv);
    if (ec != CK_INVALID_HANDLE) res("sign_CKM_ECDSA", sign_with(ec, CKM_ECDSA, 32), -1, NULL);
    if (ed != CK_INVALID_HANDLE) res("sign_CKM_EDDSA", sign_with(ed, CKM_EDDSA, 64), -1, NULL);

    CK_OBJECT_HANDLE aes = CK_INVALID_HANDLE, aesi = CK_INVALID_HANDLE, h;
    res("aes256_keygen_token", aes_gen(T, &aes), -1, NULL);
    rv = aes_gen(F, &h);
    res("aes256_keygen_session", rv, -1, NULL);
    if (rv == CKR_OK) drop(h, h);
    res("aes256_import_session_WRAP_ENCRYPT", aes_import(F, &aesi), -1, NULL);
    rv = aes_import(T, &h);
    res("aes256_import_token_WRAP_ENCRYPT", rv, -1, NULL);
    if (rv == CKR_OK) drop(h, h);
    CK_OBJECT_HANDLE wk = aes != CK_INVALID_HANDLE ? aes : aesi;
    if (wk != CK_INVALID_HANDLE) {
        res("encrypt_CKM_AES_CBC_PAD", encrypt_with(wk, CKM_AES_CBC_PAD), -1, NULL);
        res("encrypt_CKM_AES_GCM", encrypt_with(wk, CKM_AES_GCM), -1, NULL);
    }
    rv = rsa_gen(2048, T, T, &pub, &rsax, &ms);
    res("rsa2048_keygen_token_sensitive_extractable", rv, ms, NULL);
    rv = ec_gen(CKM_EC_KEY_PAIR_GEN, p256, sizeof p256, T, T, 0, &pub, &ecx, &ms);
    res("ec_p256_keygen_token_sensitive_extractable", rv, ms, NULL);
    static const struct { CK_MECHANISM_TYPE m; const char *n; } wm[] = {
        {CKM_AES_KEY_WRAP, "AES_KEY_WRAP"}, {CKM_AES_KEY_WRAP_PAD, "AES_KEY_WRAP_PAD"},
        {CKM_AES_KEY_WRAP_KWP, "AES_KEY_WRAP_KWP"}, {CKM_AES_CBC_PAD, "AES_CBC_PAD"}};
    for (size_t i = 0; wk != CK_INVALID_HANDLE && i < 4; i++) {
        char name[80];
        if (rsax != CK_INVALID_HANDLE) {
            snprintf(name, sizeof name, "wrap_rsa_with_%s", wm[i].n);
            wrap_test(name, wk, rsax, wm[i].m, CKK_RSA);
        }
        if (ecx != CK_INVALID_HANDLE) {
            snprintf(name, sizeof name, "wrap_ec_with_%s", wm[i].n);
            wrap_test(name, wk, ecx, wm[i].m, CKK_EC);
        }
    }
    if (c1 && c2) {
        CK_OBJECT_HANDLE h1, h2;
        res("cert_create", cert_create(c1, "p11caps-cert", &h1), -1, NULL);
        res("cert_create_same_label_other_subject", cert_create(c2, "p11caps-cert", &h2), -1,
            NULL);
    }
    int bad = 0;
    for (CK_ULONG i = n_destroy; i-- > 0;)
        if (f->C_DestroyObject(ses, destroy[i]) != CKR_OK) bad++;
    char ex[64];
    snprintf(ex, sizeof ex, "\"objects\": %lu, \"failed\": %d", (unsigned long)n_destroy, bad);
    res("cleanup", CKR_OK, -1, ex);
    printf("}");
    f->C_Logout(ses);
    f->C_CloseSession(ses);
}

int main(int argc, char **argv)
{
    const char *tlabel = NULL, *pin = NULL, *c1 = NULL, *c2 = NULL;
    int o;
    while ((o = getopt(argc, argv, "t:p:c:C:")) != -1) {
        if (o == 't') tlabel = optarg;
        else if (o == 'p') pin = optarg;
        else if (o == 'c') c1 = optarg;
        else if (o == 'C') c2 = optarg;
        else goto usage;
    }
    if (optind >= argc || (tlabel && !pin)) {
    usage:
        fprintf(stderr, "usage: %s [-t TOKEN_LABEL -p PIN [-c CERT1.der -C CERT2.der]] "
                        "MODULE [INIT_ARGS]\n", argv[0]);
        return 2;
    }
    const char *module = argv[optind];
    const char *initargs = optind + 1 < argc && argv[optind + 1][0] ? argv[optind + 1] : NULL;
    void *dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (!dl) { fprintf(stderr, "p11caps: %s\n", dlerror()); return 1; }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (!gfl || gfl(&f) != CKR_OK) { fprintf(stderr, "p11caps: no C_GetFunctionList\n"); return 1; }
    CK_C_INITIALIZE_ARGS ia;
    memset(&ia, 0, sizeof ia);
    ia.flags = CKF_OS_LOCKING_OK;
    ia.pReserved = (void *)initargs;
    CK_RV rv = f->C_Initialize(&ia);
    if (rv != CKR_OK) { fprintf(stderr, "p11caps: C_Initialize: %s\n", rvname(rv)); return 1; }
    CK_INFO info;
    rv = f->C_GetInfo(&info);
    printf("{\"module\": \"%s\"", module);
    if (rv == CKR_OK) {
        printf(", \"library_manufacturer\": "); jfield(info.manufacturerID, sizeof info.manufacturerID);
        printf(", \"library_description\": "); jfield(info.libraryDescription, sizeof info.libraryDescription);
        printf(", \"library_version\": \"%u.%u\", \"cryptoki_version\": \"%u.%u\"",
               info.libraryVersion.major, info.libraryVersion.minor,
               info.cryptokiVersion.major, info.cryptokiVersion.minor);
    }
    CK_ULONG n = 0;
    rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
    CK_SLOT_ID *slots = calloc(n + 1, sizeof *slots);
    if (rv == CKR_OK) rv = f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) { fprintf(stderr, "p11caps: C_GetSlotList: %s\n", rvname(rv)); return 1; }
    printf(",\n \"slots\": [");
    CK_SLOT_ID tslot = (CK_SLOT_ID)-1;
    for (CK_ULONG i = 0; i < n; i++) {
        print_caps(slots[i], i == 0);
        CK_TOKEN_INFO ti;
        if (tlabel && f->C_GetTokenInfo(slots[i], &ti) == CKR_OK) {
            size_t l = sizeof ti.label;
            while (l > 0 && (ti.label[l - 1] == ' ' || ti.label[l - 1] == 0)) l--;
            if (l == strlen(tlabel) && memcmp(ti.label, tlabel, l) == 0 && tslot == (CK_SLOT_ID)-1)
                tslot = slots[i];
        }
    }
    printf("]");
    int ret = 0;
    if (tlabel) {
        if (tslot == (CK_SLOT_ID)-1) {
            printf(",\n \"tests\": {\"error\": \"no token labelled %s\"}", tlabel);
            ret = 1;
        } else {
            printf(",\n \"test_slot\": %lu", (unsigned long)tslot);
            run_tests(tslot, pin, c1, c2);
        }
    }
    printf("}\n");
    f->C_Finalize(NULL);
    return ret;
}
