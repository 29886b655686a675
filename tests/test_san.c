/* Unit tests of formats/san.c: SAN keys, validation of each kind (accepted and refused values),
 * the DER each kind encodes to, lookup, merging, the "kind:value" text, and what OpenSSL (the
 * library printer and the openssl x509 command) shows for the encoded names. */
#include "formats/san.h"
#include "support.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELD "SANs.x[0]"

/* Adds a value that must be accepted. */
static void add_ok(GENERAL_NAMES *names, san_kind kind, const char *value)
{
    enroll_error err;
    enroll_error_clear(&err);
    int before = sk_GENERAL_NAME_num(names);
    int rc = san_add(names, kind, value, FIELD, &err);
    if (rc != 0)
        fprintf(stderr, "\n  san_add(%s, \"%s\") failed: %s %s\n", san_kind_key(kind), value,
                err.code, err.message);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(names), before + (rc == 0));
}

/* A value that must be refused with INVALID_SAN, a message holding `why`, and names unchanged. */
static void add_bad(san_kind kind, const char *value, const char *why)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    enroll_error err;
    enroll_error_clear(&err);
    int rc = san_add(names, kind, value, FIELD, &err);
    bool ok = rc == -1 && strcmp(err.code, "INVALID_SAN") == 0 && strcmp(err.field, FIELD) == 0 &&
              strstr(err.message, why) != NULL;
    if (!ok)
        fprintf(stderr, "\n  san_add(%s, \"%s\"): rc %d, %s [%s] %s; expected \"%s\"\n",
                san_kind_key(kind), value, rc, err.code, err.field, err.message, why);
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(names), 0);
    CU_ASSERT_EQUAL(ERR_peek_error(), 0UL);
    GENERAL_NAMES_free(names);
}

/* The DER of one GENERAL_NAME compared with the expected bytes. */
static void check_der(const GENERAL_NAME *gn, const unsigned char *expect, size_t len)
{
    unsigned char *der = NULL;
    int n = i2d_GENERAL_NAME(gn, &der);
    CU_ASSERT_EQUAL(n, (int)len);
    if (n == (int)len)
        CU_ASSERT_EQUAL(memcmp(der, expect, len), 0);
    OPENSSL_free(der);
}

/* One name of every kind, in this order. */
static GENERAL_NAMES *all_kinds(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    add_ok(names, SAN_DNS, "a.example");
    add_ok(names, SAN_IP4, "10.0.0.1");
    add_ok(names, SAN_IP6, "2001:db8::1");
    add_ok(names, SAN_URI, "https://a.example/x?y=1");
    add_ok(names, SAN_RFC822, "user@example.com");
    add_ok(names, SAN_UPN, "user@corp.example");
    add_ok(names, SAN_REGISTERED_ID, "1.2.3.4");
    CU_ASSERT_EQUAL_FATAL(sk_GENERAL_NAME_num(names), 7);
    return names;
}

static void check_ia5(const GENERAL_NAME *gn, int type, const char *value)
{
    CU_ASSERT_EQUAL_FATAL(gn->type, type);
    const ASN1_STRING *s = gn->d.ia5;
    CU_ASSERT_EQUAL(ASN1_STRING_type(s), V_ASN1_IA5STRING);
    CU_ASSERT_EQUAL(ASN1_STRING_length(s), (int)strlen(value));
    CU_ASSERT_NSTRING_EQUAL(ASN1_STRING_get0_data(s), value, strlen(value));
}

static void test_kind_keys(void)
{
    static const struct {
        const char *key;
        san_kind kind;
    } keys[] = {
        {"dns", SAN_DNS},
        {"ip4", SAN_IP4},
        {"ip6", SAN_IP6},
        {"uri", SAN_URI},
        {"rfc822", SAN_RFC822},
        {"ms_ntprincipalname", SAN_UPN},
        {"registeredid", SAN_REGISTERED_ID},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        CU_ASSERT_EQUAL(san_kind_from_key(keys[i].key), keys[i].kind);
        CU_ASSERT_STRING_EQUAL(san_kind_key(keys[i].kind), keys[i].key);
    }
    CU_ASSERT_EQUAL(san_kind_from_key("DNS"), SAN_DNS);
    CU_ASSERT_EQUAL(san_kind_from_key("Ip4"), SAN_IP4);
    CU_ASSERT_EQUAL(san_kind_from_key("MS_NTPrincipalName"), SAN_UPN);
    CU_ASSERT_EQUAL(san_kind_from_key("RegisteredID"), SAN_REGISTERED_ID);
    CU_ASSERT_EQUAL(san_kind_from_key("dns2"), SAN_UNKNOWN);
    CU_ASSERT_EQUAL(san_kind_from_key("dn"), SAN_UNKNOWN);
    /* "ip" (Keyfactor's Vault plugin) takes either family. */
    CU_ASSERT_EQUAL(san_kind_from_key("ip"), SAN_IP);
    CU_ASSERT_EQUAL(san_kind_from_key("IP"), SAN_IP);
    CU_ASSERT_EQUAL(san_kind_from_key("ip5"), SAN_UNKNOWN);
    CU_ASSERT_EQUAL(san_kind_from_key(""), SAN_UNKNOWN);
    CU_ASSERT_EQUAL(san_kind_from_key(NULL), SAN_UNKNOWN);
    CU_ASSERT_PTR_NULL(san_kind_key(SAN_UNKNOWN));
    CU_ASSERT_PTR_NULL(san_kind_key((san_kind)99));
}

static void test_encode_each_kind(void)
{
    GENERAL_NAMES *names = all_kinds();
    unsigned char *der = NULL;
    int len = i2d_GENERAL_NAMES(names, &der);
    CU_ASSERT_FATAL(len > 0);
    const unsigned char *p = der;
    GENERAL_NAMES *back = d2i_GENERAL_NAMES(NULL, &p, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_EQUAL(p - der, len);
    CU_ASSERT_EQUAL_FATAL(sk_GENERAL_NAME_num(back), 7);

    check_ia5(sk_GENERAL_NAME_value(back, 0), GEN_DNS, "a.example");

    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(back, 1);
    CU_ASSERT_EQUAL_FATAL(gn->type, GEN_IPADD);
    static const unsigned char ip4[] = {10, 0, 0, 1};
    CU_ASSERT_EQUAL(ASN1_STRING_length(gn->d.iPAddress), 4);
    CU_ASSERT_EQUAL(memcmp(ASN1_STRING_get0_data(gn->d.iPAddress), ip4, 4), 0);

    gn = sk_GENERAL_NAME_value(back, 2);
    CU_ASSERT_EQUAL_FATAL(gn->type, GEN_IPADD);
    static const unsigned char ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x01};
    CU_ASSERT_EQUAL(ASN1_STRING_length(gn->d.iPAddress), 16);
    CU_ASSERT_EQUAL(memcmp(ASN1_STRING_get0_data(gn->d.iPAddress), ip6, 16), 0);

    check_ia5(sk_GENERAL_NAME_value(back, 3), GEN_URI, "https://a.example/x?y=1");
    check_ia5(sk_GENERAL_NAME_value(back, 4), GEN_EMAIL, "user@example.com");

    gn = sk_GENERAL_NAME_value(back, 5);
    CU_ASSERT_EQUAL_FATAL(gn->type, GEN_OTHERNAME);
    CU_ASSERT_EQUAL(OBJ_obj2nid(gn->d.otherName->type_id), NID_ms_upn);
    char oid[64];
    OBJ_obj2txt(oid, sizeof oid, gn->d.otherName->type_id, 1);
    CU_ASSERT_STRING_EQUAL(oid, "1.3.6.1.4.1.311.20.2.3");
    CU_ASSERT_EQUAL_FATAL(gn->d.otherName->value->type, V_ASN1_UTF8STRING);
    const ASN1_UTF8STRING *upn = gn->d.otherName->value->value.utf8string;
    CU_ASSERT_EQUAL(ASN1_STRING_length(upn), 17);
    CU_ASSERT_NSTRING_EQUAL(ASN1_STRING_get0_data(upn), "user@corp.example", 17);

    gn = sk_GENERAL_NAME_value(back, 6);
    CU_ASSERT_EQUAL_FATAL(gn->type, GEN_RID);
    OBJ_obj2txt(oid, sizeof oid, gn->d.registeredID, 1);
    CU_ASSERT_STRING_EQUAL(oid, "1.2.3.4");

    /* Decoded and original compare equal entry by entry. */
    for (int i = 0; i < 7; i++)
        CU_ASSERT_EQUAL(
            GENERAL_NAME_cmp(sk_GENERAL_NAME_value(names, i), sk_GENERAL_NAME_value(back, i)), 0);
    GENERAL_NAMES_free(back);
    OPENSSL_free(der);
    GENERAL_NAMES_free(names);
}

static void test_der_bytes(void)
{
    GENERAL_NAMES *names = all_kinds();
    static const unsigned char dns[] = {0x82, 0x09, 'a', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e'};
    static const unsigned char ip4[] = {0x87, 0x04, 10, 0, 0, 1};
    static const unsigned char ip6[] = {0x87, 0x10, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0,
                                        0,    0,    0,    0,    0,    0,    0, 0, 1};
    static const unsigned char email[] = {0x81, 0x10, 'u', 's', 'e', 'r', '@', 'e', 'x',
                                          'a',  'm',  'p', 'l', 'e', '.', 'c', 'o', 'm'};
    /* otherName [0] { type-id OID, [0] EXPLICIT UTF8String } */
    static const unsigned char upn[] = {0xa0, 0x21, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01,
                                        0x82, 0x37, 0x14, 0x02, 0x03, 0xa0, 0x13, 0x0c, 0x11,
                                        'u',  's',  'e',  'r',  '@',  'c',  'o',  'r',  'p',
                                        '.',  'e',  'x',  'a',  'm',  'p',  'l',  'e'};
    static const unsigned char rid[] = {0x88, 0x03, 0x2a, 0x03, 0x04};
    check_der(sk_GENERAL_NAME_value(names, 0), dns, sizeof dns);
    check_der(sk_GENERAL_NAME_value(names, 1), ip4, sizeof ip4);
    check_der(sk_GENERAL_NAME_value(names, 2), ip6, sizeof ip6);
    CU_ASSERT_EQUAL(i2d_GENERAL_NAME(sk_GENERAL_NAME_value(names, 3), NULL), 2 + 23);
    CU_ASSERT_EQUAL(*ASN1_STRING_get0_data(sk_GENERAL_NAME_value(names, 3)->d.ia5), 'h');
    check_der(sk_GENERAL_NAME_value(names, 4), email, sizeof email);
    check_der(sk_GENERAL_NAME_value(names, 5), upn, sizeof upn);
    check_der(sk_GENERAL_NAME_value(names, 6), rid, sizeof rid);
    GENERAL_NAMES_free(names);
}

static void test_openssl_print(void)
{
    GENERAL_NAMES *names = all_kinds();
    static const char *expect[] = {
        "DNS:a.example",
        "IP Address:10.0.0.1",
        "IP Address:2001:DB8:0:0:0:0:0:1",
        "URI:https://a.example/x?y=1",
        "email:user@example.com",
        "othername:UPN:user@corp.example",
        "Registered ID:1.2.3.4",
    };
    for (int i = 0; i < 7; i++) {
        BIO *bio = BIO_new(BIO_s_mem());
        CU_ASSERT_PTR_NOT_NULL_FATAL(bio);
        CU_ASSERT(GENERAL_NAME_print(bio, sk_GENERAL_NAME_value(names, i)) == 1);
        char *text = NULL;
        long n = BIO_get_mem_data(bio, &text);
        CU_ASSERT_EQUAL((size_t)n, strlen(expect[i]));
        CU_ASSERT_NSTRING_EQUAL(text, expect[i], strlen(expect[i]));
        if (n != (long)strlen(expect[i]) || strncmp(text, expect[i], (size_t)n) != 0)
            fprintf(stderr, "\n  GENERAL_NAME_print: %.*s\n", (int)n, text);
        BIO_free(bio);
    }
    GENERAL_NAMES_free(names);
}

/* A self-signed certificate carrying names as its subjectAltName, written as PEM to path. */
static void write_cert(GENERAL_NAMES *names, const char *path)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509_NAME *subject = X509_NAME_new();
    CU_ASSERT_FATAL(key != NULL && cert != NULL && subject != NULL);
    CU_ASSERT(X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                         (const unsigned char *)"san test", -1, -1, 0));
    CU_ASSERT(X509_set_version(cert, X509_VERSION_3));
    CU_ASSERT(ASN1_INTEGER_set(X509_get_serialNumber(cert), 1));
    CU_ASSERT(X509_set_subject_name(cert, subject));
    CU_ASSERT(X509_set_issuer_name(cert, subject));
    CU_ASSERT_PTR_NOT_NULL(X509_gmtime_adj(X509_getm_notBefore(cert), 0));
    CU_ASSERT_PTR_NOT_NULL(X509_gmtime_adj(X509_getm_notAfter(cert), 3600));
    CU_ASSERT(X509_set_pubkey(cert, key));
    CU_ASSERT(X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1);
    CU_ASSERT(X509_sign(cert, key, EVP_sha256()) > 0);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT(PEM_write_X509(f, cert));
    fclose(f);
    X509_NAME_free(subject);
    X509_free(cert);
    EVP_PKEY_free(key);
}

static void test_openssl_cli(void)
{
    GENERAL_NAMES *names = all_kinds();
    add_ok(names, SAN_DNS, "*.wild.example");
    add_ok(names, SAN_UPN, "j\xc3\xbcrgen@corp.example");
    char *dir = test_tmpdir("test_san");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    write_cert(names, path);
    int status = -1;
    char *out = test_sh_output(&status, "openssl x509 -in '%s' -noout -ext subjectAltName", path);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    const char *expect = "X509v3 Subject Alternative Name: \n"
                         "    DNS:a.example, IP Address:10.0.0.1, IP Address:2001:DB8:0:0:0:0:0:1, "
                         "URI:https://a.example/x?y=1, email:user@example.com, "
                         "othername: UPN::user@corp.example, Registered ID:1.2.3.4, "
                         "DNS:*.wild.example, othername: UPN::j\xc3\xbcrgen@corp.example\n";
    if (strcmp(out, expect) != 0)
        fprintf(stderr, "\n  openssl x509 printed:\n%s", out);
    CU_ASSERT_STRING_EQUAL(out, expect);
    free(out);

    /* openssl's verifier matches the wildcard, the addresses and the e-mail through the encoded
     * names (one -checkip per run: openssl x509 keeps only the last one given). */
    static const struct {
        const char *option, *value;
    } checks[] = {
        {"-checkhost", "x.wild.example"},
        {"-checkhost", "A.Example"},
        {"-checkip", "10.0.0.1"},
        {"-checkip", "2001:db8:0::1"},
        {"-checkemail", "user@example.com"},
    };
    static const char *label[] = {"Hostname", "Hostname", "IP", "IP", "Email"};
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        out = test_sh_output(&status, "openssl x509 -in '%s' -noout %s '%s'", path,
                             checks[i].option, checks[i].value);
        CU_ASSERT_EQUAL(status, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(out);
        char expect_line[128];
        snprintf(expect_line, sizeof expect_line, "%s %s does match certificate\n", label[i],
                 checks[i].value);
        if (strcmp(out, expect_line) != 0)
            fprintf(stderr, "\n  openssl x509 %s: %s\n", checks[i].option, out);
        CU_ASSERT_STRING_EQUAL(out, expect_line);
        free(out);
    }
    /* And does not match what is not there. */
    out = test_sh_output(&status, "openssl x509 -in '%s' -noout -checkip 10.0.0.2", path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_STRING_EQUAL(out, "IP 10.0.0.2 does NOT match certificate\n");
    free(out);
    test_rmtree(dir);
    free(dir);
    GENERAL_NAMES_free(names);
}

static void test_dns(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    char label63[64], long_name[260];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    /* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 */
    snprintf(long_name, sizeof long_name, "%s.%s.%s.%.61s", label63, label63, label63, label63);
    CU_ASSERT_EQUAL(strlen(long_name), 253);
    const char *good[] = {"a.example",
                          "localhost",
                          "A-1.Example.COM",
                          "xn--bcher-kva.example",
                          "_sip._tcp.example.com",
                          "1.2.3.4.example",
                          label63,
                          long_name,
                          "*.example.com",
                          "*.a"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        add_ok(names, SAN_DNS, good[i]);
    /* Stored as given (case kept), as IA5String dNSName. */
    check_ia5(sk_GENERAL_NAME_value(names, 2), GEN_DNS, "A-1.Example.COM");
    check_ia5(sk_GENERAL_NAME_value(names, 8), GEN_DNS, "*.example.com");
    GENERAL_NAMES_free(names);

    char label64[70], too_long[300];
    memset(label64, 'b', 64);
    snprintf(label64 + 64, sizeof label64 - 64, ".com");
    snprintf(too_long, sizeof too_long, "%s.%s.%s.%.62s", label63, label63, label63, label63);
    add_bad(SAN_DNS, "-a.com", "label 1 (\"-a\") starts with a hyphen");
    add_bad(SAN_DNS, "a-.com", "label 1 (\"a-\") ends with a hyphen");
    add_bad(SAN_DNS, "ok.b-", "label 2 (\"b-\") ends with a hyphen");
    add_bad(SAN_DNS, "a..com", "label 2 is empty");
    add_bad(SAN_DNS, ".a.com", "label 1 is empty");
    add_bad(SAN_DNS, "a.com.", "it ends with a dot");
    add_bad(SAN_DNS, label64, "label 1 is 64 characters long (at most 63)");
    add_bad(SAN_DNS, too_long, "254 characters (at most 253)");
    add_bad(SAN_DNS, "a b.com", "control or space character 0x20");
    add_bad(SAN_DNS, "a_b.com", "has '_' after its first character");
    add_bad(SAN_DNS, "a.com/x", "has the character '/'");
    add_bad(SAN_DNS,
            "b\xc3\xbc"
            "cher.example",
            "non-ASCII character (use the xn-- A-label form)");
    add_bad(SAN_DNS, "", "empty dns SAN");
    add_bad(SAN_DNS, NULL, "empty dns SAN");
    add_bad(SAN_DNS, "a.example ", "0x20");
}

static void test_wildcard(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    add_ok(names, SAN_DNS, "*.example.com");
    char *text = san_entry_text(sk_GENERAL_NAME_value(names, 0));
    CU_ASSERT_STRING_EQUAL(text, "dns:*.example.com");
    free(text);
    CU_ASSERT(san_has_dns(names, "*.EXAMPLE.com"));
    CU_ASSERT_FALSE(san_has_dns(names, "www.example.com"));
    GENERAL_NAMES_free(names);
    add_bad(SAN_DNS, "*", "not a valid DNS name: '*' may only be the whole first label");
    add_bad(SAN_DNS, "*.", "nothing follows the wildcard");
    add_bad(SAN_DNS, "*example.com", "'*' may only be the whole first label");
    add_bad(SAN_DNS, "w*.example.com", "'*' may only be the whole first label");
    add_bad(SAN_DNS, "a.*.example.com", "'*' may only be the whole first label");
    add_bad(SAN_DNS, "*.*.example.com", "'*' may only be the whole first label");
    add_bad(SAN_RFC822, "u@*.example.com", "the domain is invalid");
}

static void test_ip(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    add_ok(names, SAN_IP4, "0.0.0.0");
    add_ok(names, SAN_IP4, "255.255.255.255");
    add_ok(names, SAN_IP6, "::1");
    add_ok(names, SAN_IP6, "::ffff:192.0.2.1");
    add_ok(names, SAN_IP6, "FE80:0000:0000:0000:0202:B3FF:FE1E:8329");
    char *text = san_entry_text(sk_GENERAL_NAME_value(names, 4));
    CU_ASSERT_STRING_EQUAL(text, "ip6:fe80::202:b3ff:fe1e:8329");
    free(text);
    text = san_entry_text(sk_GENERAL_NAME_value(names, 3));
    CU_ASSERT_STRING_EQUAL(text, "ip6:::ffff:192.0.2.1");
    free(text);
    GENERAL_NAMES_free(names);

    const char *why4 = "is not an IPv4 address";
    add_bad(SAN_IP4, "999.1.1.1", "\"999.1.1.1\" is not an IPv4 address");
    add_bad(SAN_IP4, "1.2.3", why4);
    add_bad(SAN_IP4, "1.2.3.4.5", why4);
    add_bad(SAN_IP4, "256.0.0.1", why4);
    add_bad(SAN_IP4, "1.2.3.4 ", why4);
    add_bad(SAN_IP4, " 1.2.3.4", why4);
    add_bad(SAN_IP4, "0x7f.0.0.1", why4);
    add_bad(SAN_IP4, "01.2.3.4", why4);
    add_bad(SAN_IP4, "::1", why4);
    add_bad(SAN_IP4, "a.example", why4);
    add_bad(SAN_IP4, "", "empty ip4 SAN");

    const char *why6 = "is not an IPv6 address";
    add_bad(SAN_IP6, "2001:db8::g", "\"2001:db8::g\" is not an IPv6 address");
    add_bad(SAN_IP6, "1:2:3:4:5:6:7:8:9", why6);
    add_bad(SAN_IP6, ":::1", why6);
    add_bad(SAN_IP6, "2001:db8::1::2", why6);
    add_bad(SAN_IP6, "12345::1", why6);
    add_bad(SAN_IP6, "10.0.0.1", why6);
    add_bad(SAN_IP6, "fe80::1%eth0", why6);
    add_bad(SAN_IP6, "[::1]", why6);
}

static void test_uri(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    add_ok(names, SAN_URI, "https://example.com/x?y=1#z");
    add_ok(names, SAN_URI, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    add_ok(names, SAN_URI, "spiffe://trust.example/ns/default/sa/web");
    add_ok(names, SAN_URI, "x-my+app.v2:thing%20one");
    check_ia5(sk_GENERAL_NAME_value(names, 1), GEN_URI,
              "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    GENERAL_NAMES_free(names);

    add_bad(SAN_URI, "example.com/path", "must start with a scheme");
    add_bad(SAN_URI, "//example.com/path", "must start with a scheme");
    add_bad(SAN_URI, "1http://x", "must start with a scheme");
    add_bad(SAN_URI, ":foo", "must start with a scheme");
    add_bad(SAN_URI, "ht_tp://x", "must start with a scheme");
    add_bad(SAN_URI, "http:", "nothing follows the scheme");
    add_bad(SAN_URI, "http://a b", "only printable ASCII without spaces");
    add_bad(SAN_URI,
            "http://b\xc3\xbc"
            "cher.example/",
            "only printable ASCII");
    add_bad(SAN_URI, "http://x/\t", "only printable ASCII");
}

static void test_rfc822(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    add_ok(names, SAN_RFC822, "first.last+tag@example.com");
    add_ok(names, SAN_RFC822, "x@localhost");
    check_ia5(sk_GENERAL_NAME_value(names, 0), GEN_EMAIL, "first.last+tag@example.com");
    GENERAL_NAMES_free(names);

    char local65[80];
    memset(local65, 'l', 65);
    snprintf(local65 + 65, sizeof local65 - 65, "@example.com");
    add_bad(SAN_RFC822, "user.example.com", "is not an e-mail address: no '@'");
    add_bad(SAN_RFC822, "@example.com", "nothing before '@'");
    add_bad(SAN_RFC822, "user@", "the domain is invalid: it is empty");
    add_bad(SAN_RFC822, "user@-bad.com", "the domain is invalid: label 1 (\"-bad\") starts");
    add_bad(SAN_RFC822, "user@a..com", "the domain is invalid: label 2 is empty");
    add_bad(SAN_RFC822, "\xc3\xbcser@example.com", "only printable ASCII");
    add_bad(SAN_RFC822, "a b@example.com", "only printable ASCII");
    add_bad(SAN_RFC822, local65, "longer than 64");
}

static void test_upn(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    add_ok(names, SAN_UPN, "j\xc3\xbcrgen@corp.example");
    add_ok(names, SAN_UPN, "svc-web@CORP");
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, 0);
    CU_ASSERT_EQUAL_FATAL(gn->type, GEN_OTHERNAME);
    const ASN1_UTF8STRING *s = gn->d.otherName->value->value.utf8string;
    CU_ASSERT_EQUAL(ASN1_STRING_type(s), V_ASN1_UTF8STRING);
    CU_ASSERT_EQUAL(ASN1_STRING_length(s), 20);
    char *text = san_entry_text(gn);
    CU_ASSERT_STRING_EQUAL(text, "ms_ntprincipalname:j\xc3\xbcrgen@corp.example");
    free(text);
    GENERAL_NAMES_free(names);

    add_bad(SAN_UPN, "", "empty ms_ntprincipalname SAN");
    add_bad(SAN_UPN, "user", "expected user@domain");
    add_bad(SAN_UPN, "@corp", "expected user@domain");
    add_bad(SAN_UPN, "user@", "expected user@domain");
    add_bad(SAN_UPN, "\xff@corp", "not valid UTF-8");
    add_bad(SAN_UPN, "\xc0\x80@corp", "not valid UTF-8");
}

static void test_registered_id(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    add_ok(names, SAN_REGISTERED_ID, "1.3.6.1.4.1.311.21.8.1");
    add_ok(names, SAN_REGISTERED_ID, "2.5.4.3");
    add_ok(names, SAN_REGISTERED_ID, "2.999.12345678901234567890");
    char *text = san_entry_text(sk_GENERAL_NAME_value(names, 2));
    CU_ASSERT_STRING_EQUAL(text, "registeredid:2.999.12345678901234567890");
    free(text);
    text = san_entry_text(sk_GENERAL_NAME_value(names, 1));
    CU_ASSERT_STRING_EQUAL(text, "registeredid:2.5.4.3");
    free(text);
    GENERAL_NAMES_free(names);

    const char *why = "is not a dotted numeric OID";
    add_bad(SAN_REGISTERED_ID, "1.2.a", "\"1.2.a\" is not a dotted numeric OID");
    add_bad(SAN_REGISTERED_ID, "abc", why);
    add_bad(SAN_REGISTERED_ID, "commonName", why);
    add_bad(SAN_REGISTERED_ID, "CN", why);
    add_bad(SAN_REGISTERED_ID, "1..2", why);
    add_bad(SAN_REGISTERED_ID, "1.2.", why);
    add_bad(SAN_REGISTERED_ID, ".1.2", why);
    add_bad(SAN_REGISTERED_ID, "1", why);
    add_bad(SAN_REGISTERED_ID, "3.1", why);
    add_bad(SAN_REGISTERED_ID, "1.40", why);
    add_bad(SAN_REGISTERED_ID, " 1.2.3", why);
    add_bad(SAN_REGISTERED_ID, "1.02.3", why); /* would print back as 1.2.3 */
}

static void test_unknown_kind(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    enroll_error err;
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(san_add(names, SAN_UNKNOWN, "a.example", "SANs.dnz[0]", &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "UNKNOWN_SAN_TYPE");
    CU_ASSERT_STRING_EQUAL(err.field, "SANs.dnz[0]");
    CU_ASSERT_STRING_EQUAL(err.message, "unknown SAN type");
    CU_ASSERT_EQUAL(san_add(names, (san_kind)42, "a.example", NULL, &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "UNKNOWN_SAN_TYPE");
    CU_ASSERT_STRING_EQUAL(err.field, "");
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(names), 0);
    /* err may be NULL. */
    CU_ASSERT_EQUAL(san_add(names, SAN_IP4, "nope", "f", NULL), -1);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(names), 0);
    GENERAL_NAMES_free(names);
}

static void test_has_dns(void)
{
    GENERAL_NAMES *names = all_kinds();
    add_ok(names, SAN_DNS, "Www.Example.COM");
    CU_ASSERT(san_has_dns(names, "a.example"));
    CU_ASSERT(san_has_dns(names, "A.EXAMPLE"));
    CU_ASSERT(san_has_dns(names, "www.example.com"));
    CU_ASSERT_FALSE(san_has_dns(names, "a.example.com"));
    CU_ASSERT_FALSE(san_has_dns(names, "a.exampl"));
    CU_ASSERT_FALSE(san_has_dns(names, "10.0.0.1"));         /* an iPAddress, not a dNSName */
    CU_ASSERT_FALSE(san_has_dns(names, "user@example.com")); /* an rfc822Name */
    CU_ASSERT_FALSE(san_has_dns(names, ""));
    CU_ASSERT_FALSE(san_has_dns(names, NULL));
    CU_ASSERT_FALSE(san_has_dns(NULL, "a.example"));
    GENERAL_NAMES_free(names);
}

static void test_merge(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAMES *extra = GENERAL_NAMES_new();
    CU_ASSERT_FATAL(names != NULL && extra != NULL);
    add_ok(names, SAN_DNS, "a.example");
    add_ok(names, SAN_IP4, "10.0.0.1");
    add_ok(extra, SAN_IP4, "10.0.0.1");  /* already there */
    add_ok(extra, SAN_DNS, "b.example"); /* new */
    add_ok(extra, SAN_DNS, "a.example"); /* already there */
    add_ok(extra, SAN_IP4, "10.0.0.2");  /* new */
    add_ok(extra, SAN_DNS, "b.example"); /* new, but twice in extra */
    add_ok(extra, SAN_URI, "dns:a.example");
    CU_ASSERT_EQUAL(san_merge(names, extra), 0);
    CU_ASSERT_EQUAL_FATAL(sk_GENERAL_NAME_num(names), 5);
    static const char *expect[] = {"dns:a.example", "ip4:10.0.0.1", "dns:b.example", "ip4:10.0.0.2",
                                   "uri:dns:a.example"};
    for (int i = 0; i < 5; i++) {
        char *text = san_entry_text(sk_GENERAL_NAME_value(names, i));
        CU_ASSERT_STRING_EQUAL(text, expect[i]);
        free(text);
    }
    /* extra is untouched, and the merged entries are copies. */
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(extra), 6);
    CU_ASSERT_PTR_NOT_EQUAL(sk_GENERAL_NAME_value(names, 2), sk_GENERAL_NAME_value(extra, 1));
    /* Merging again changes nothing; merging nothing is fine. */
    CU_ASSERT_EQUAL(san_merge(names, extra), 0);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(names), 5);
    CU_ASSERT_EQUAL(san_merge(names, NULL), 0);
    GENERAL_NAMES *empty = GENERAL_NAMES_new();
    CU_ASSERT_EQUAL(san_merge(empty, extra), 0);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(empty), 5);
    GENERAL_NAMES_free(empty);
    /* GENERAL_NAME_cmp is byte for byte: a dNSName differing only in case is another entry. */
    GENERAL_NAMES *upper = GENERAL_NAMES_new();
    add_ok(upper, SAN_DNS, "A.Example");
    CU_ASSERT_EQUAL(san_merge(names, upper), 0);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(names), 6);
    GENERAL_NAMES_free(upper);
    GENERAL_NAMES_free(extra);
    GENERAL_NAMES_free(names);
}

/* san_merge at scale: 30,000 names, and 30,000 more of which every third is already there, every
 * fifth repeats the one before, and some differ only in case: the result holds each name once,
 * in order (names first, then the new ones of extra in their order). */
static void test_merge_large(void)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new(), *extra = GENERAL_NAMES_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    CU_ASSERT_PTR_NOT_NULL_FATAL(extra);
    char value[64];
    for (int i = 0; i < 30000; i++) {
        snprintf(value, sizeof value, "n%d.example", i);
        add_ok(names, SAN_DNS, value);
    }
    int expected_new = 0;
    for (int i = 0; i < 30000; i++) {
        if (i % 3 == 0)
            snprintf(value, sizeof value, "n%d.example", i); /* already in names */
        else if (i % 5 == 0)
            snprintf(value, sizeof value, "x%d.example", i - 1); /* repeats the one before */
        else if (i % 7 == 0)
            snprintf(value, sizeof value, "N%d.example", i); /* case differs: another name */
        else
            snprintf(value, sizeof value, "x%d.example", i);
        bool fresh = i % 3 != 0 &&
                     !(i % 5 == 0 && (i - 1) % 3 != 0 && (i - 1) % 7 != 0 && ((i - 1) % 5 != 0));
        expected_new += fresh;
        add_ok(extra, SAN_DNS, value);
    }
    CU_ASSERT_EQUAL(san_merge(names, extra), 0);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(names), 30000 + expected_new);
    /* Order: names untouched at the front; then extra's new ones in order, each once. */
    char *first = san_entry_text(sk_GENERAL_NAME_value(names, 0));
    char *joined = san_entry_text(sk_GENERAL_NAME_value(names, 30000));
    CU_ASSERT_STRING_EQUAL(first, "dns:n0.example");
    CU_ASSERT_STRING_EQUAL(joined, "dns:x1.example");
    free(first);
    free(joined);
    for (int i = 1; i < sk_GENERAL_NAME_num(names); i++)
        CU_ASSERT_NOT_EQUAL_FATAL(
            GENERAL_NAME_cmp(sk_GENERAL_NAME_value(names, i - 1), sk_GENERAL_NAME_value(names, i)),
            0);
    /* A second merge adds nothing. */
    CU_ASSERT_EQUAL(san_merge(names, extra), 0);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(names), 30000 + expected_new);
    GENERAL_NAMES_free(extra);
    GENERAL_NAMES_free(names);
}

static void test_entry_text(void)
{
    GENERAL_NAMES *names = all_kinds();
    static const char *expect[] = {
        "dns:a.example",           "ip4:10.0.0.1",
        "ip6:2001:db8::1",         "uri:https://a.example/x?y=1",
        "rfc822:user@example.com", "ms_ntprincipalname:user@corp.example",
        "registeredid:1.2.3.4"};
    for (int i = 0; i < 7; i++) {
        char *text = san_entry_text(sk_GENERAL_NAME_value(names, i));
        CU_ASSERT_STRING_EQUAL(text, expect[i]);
        /* The text parses back, through its key, to an equal entry. */
        if (text != NULL) {
            char *colon = strchr(text, ':');
            CU_ASSERT_PTR_NOT_NULL_FATAL(colon);
            *colon = '\0';
            GENERAL_NAMES *again = GENERAL_NAMES_new();
            add_ok(again, san_kind_from_key(text), colon + 1);
            if (sk_GENERAL_NAME_num(again) == 1)
                CU_ASSERT_EQUAL(GENERAL_NAME_cmp(sk_GENERAL_NAME_value(again, 0),
                                                 sk_GENERAL_NAME_value(names, i)),
                                0);
            GENERAL_NAMES_free(again);
        }
        free(text);
    }
    GENERAL_NAMES_free(names);

    /* Kinds without a Keyfactor key, and malformed entries, have no text. */
    CU_ASSERT_PTR_NULL(san_entry_text(NULL));
    GENERAL_NAME *dir = GENERAL_NAME_new();
    X509_NAME *xn = X509_NAME_new();
    CU_ASSERT_FATAL(dir != NULL && xn != NULL);
    GENERAL_NAME_set0_value(dir, GEN_DIRNAME, xn);
    CU_ASSERT_PTR_NULL(san_entry_text(dir));
    GENERAL_NAME_free(dir);

    GENERAL_NAME *ip = GENERAL_NAME_new();
    ASN1_OCTET_STRING *eight = ASN1_OCTET_STRING_new();
    CU_ASSERT_FATAL(ip != NULL && eight != NULL);
    CU_ASSERT(ASN1_OCTET_STRING_set(eight, (const unsigned char *)"\x0a\0\0\0\xff\0\0\0", 8));
    GENERAL_NAME_set0_value(ip, GEN_IPADD, eight); /* a name-constraints address/mask */
    CU_ASSERT_PTR_NULL(san_entry_text(ip));
    GENERAL_NAME_free(ip);

    GENERAL_NAME *other = GENERAL_NAME_new();
    ASN1_OBJECT *oid = OBJ_txt2obj("1.2.3.4", 1);
    ASN1_TYPE *value = ASN1_TYPE_new();
    ASN1_UTF8STRING *s = ASN1_UTF8STRING_new();
    CU_ASSERT_FATAL(other != NULL && oid != NULL && value != NULL && s != NULL);
    CU_ASSERT(ASN1_STRING_set(s, "x", 1));
    ASN1_TYPE_set(value, V_ASN1_UTF8STRING, s);
    CU_ASSERT(GENERAL_NAME_set0_othername(other, oid, value));
    CU_ASSERT_PTR_NULL(san_entry_text(other)); /* an otherName that is not a UPN */
    GENERAL_NAME_free(other);

    GENERAL_NAME *nul = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    CU_ASSERT_FATAL(nul != NULL && ia5 != NULL);
    CU_ASSERT(ASN1_STRING_set(ia5, "a\0.example", 10));
    GENERAL_NAME_set0_value(nul, GEN_DNS, ia5);
    CU_ASSERT_PTR_NULL(san_entry_text(nul)); /* an embedded NUL is never cut short */
    GENERAL_NAME_free(nul);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_kind_keys),    TEST_CASE(test_encode_each_kind),
        TEST_CASE(test_der_bytes),    TEST_CASE(test_openssl_print),
        TEST_CASE(test_openssl_cli),  TEST_CASE(test_dns),
        TEST_CASE(test_wildcard),     TEST_CASE(test_ip),
        TEST_CASE(test_uri),          TEST_CASE(test_rfc822),
        TEST_CASE(test_upn),          TEST_CASE(test_registered_id),
        TEST_CASE(test_unknown_kind), TEST_CASE(test_has_dns),
        TEST_CASE(test_merge),        TEST_CASE(test_merge_large),
        TEST_CASE(test_entry_text),   TEST_END,
    };
    return test_main("san", cases, NULL, NULL);
}
