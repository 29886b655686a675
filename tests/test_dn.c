/* Unit tests of formats/dn.c: parsing the Keyfactor DN syntax into X509_NAME (entries, RDN sets,
 * DER order), the canonical printer and its round trips, every parse error, and interoperation
 * with the openssl command line (req -subj, x509 -nameopt RFC2253, asn1parse). */
#include "formats/dn.h"
#include "support.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED "CN=websrvr14.keyexample.com,OU=IT,O=\"Key Example, Inc.\",L=Independence,ST=OH,C=US"

static X509_NAME *parse_ok(const char *text)
{
    enroll_error err;
    enroll_error_clear(&err);
    X509_NAME *name = dn_parse(text, "Subject", &err);
    if (name == NULL)
        fprintf(stderr, "\n  dn_parse(%s) failed: %s %s\n", text, err.code, err.message);
    CU_ASSERT_PTR_NOT_NULL(name);
    return name;
}

/* Checks entry idx of name: its NID, its value (UTF-8) and its RDN set number. */
static void check_entry(const X509_NAME *name, int idx, int nid, const char *value, int set)
{
    const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, idx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)), nid);
    CU_ASSERT_EQUAL(X509_NAME_ENTRY_set(e), set);
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
    CU_ASSERT_FATAL(n >= 0);
    CU_ASSERT_EQUAL((size_t)n, strlen(value));
    CU_ASSERT_NSTRING_EQUAL(utf8, value, strlen(value));
    OPENSSL_free(utf8);
}

/* Re-encodes name to DER and decodes it again. */
static X509_NAME *der_round_trip(const X509_NAME *name, unsigned char **der_out, int *der_len)
{
    unsigned char *der = NULL;
    int len = i2d_X509_NAME(name, &der);
    CU_ASSERT_FATAL(len > 0);
    const unsigned char *p = der;
    X509_NAME *back = d2i_X509_NAME(NULL, &p, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_EQUAL(p - der, len);
    if (der_out != NULL) {
        *der_out = der;
        *der_len = len;
    } else {
        OPENSSL_free(der);
    }
    return back;
}

static void test_parse_seed(void)
{
    X509_NAME *name = parse_ok(SEED);
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    CU_ASSERT_EQUAL(X509_NAME_entry_count(name), 6);
    /* X509_NAME order is DER order: the reverse of the string, one RDN each. */
    check_entry(name, 0, NID_countryName, "US", 0);
    check_entry(name, 1, NID_stateOrProvinceName, "OH", 1);
    check_entry(name, 2, NID_localityName, "Independence", 2);
    check_entry(name, 3, NID_organizationName, "Key Example, Inc.", 3);
    check_entry(name, 4, NID_organizationalUnitName, "IT", 4);
    check_entry(name, 5, NID_commonName, "websrvr14.keyexample.com", 5);
    /* OpenSSL's string table: C is a PrintableString, the DirectoryStrings UTF8String. */
    CU_ASSERT_EQUAL(ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, 0))),
                    V_ASN1_PRINTABLESTRING);
    CU_ASSERT_EQUAL(ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, 5))),
                    V_ASN1_UTF8STRING);
    X509_NAME_free(name);
}

static void test_der_order(void)
{
    X509_NAME *name = parse_ok(SEED);
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    unsigned char *der = NULL;
    int der_len = 0;
    X509_NAME *back = der_round_trip(name, &der, &der_len);
    CU_ASSERT_EQUAL(X509_NAME_entry_count(back), 6);
    check_entry(back, 0, NID_countryName, "US", 0);
    check_entry(back, 5, NID_commonName, "websrvr14.keyexample.com", 5);
    CU_ASSERT_EQUAL(X509_NAME_cmp(name, back), 0);
    char *text = dn_format(back);
    CU_ASSERT_STRING_EQUAL(text, SEED);
    free(text);

    /* The raw DER: SEQUENCE { SET { SEQUENCE { OID 2.5.4.6, PrintableString "US" } } ... }. */
    static const unsigned char first_rdn[] = {0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55,
                                              0x04, 0x06, 0x13, 0x02, 'U',  'S'};
    CU_ASSERT_EQUAL(der[0], 0x30);
    const unsigned char *rdn = der + 2;
    CU_ASSERT(der_len > 2 + (int)sizeof first_rdn);
    CU_ASSERT_EQUAL(memcmp(rdn, first_rdn, sizeof first_rdn), 0);

    /* And what openssl asn1parse sees, in order. */
    char *dir = test_tmpdir("test_dn");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/name.der", dir);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(der, 1, (size_t)der_len, f), (size_t)der_len);
    fclose(f);
    int status = -1;
    char *out = test_sh_output(&status, "openssl asn1parse -inform DER -in '%s'", path);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    const char *c = strstr(out, "countryName");
    const char *us = strstr(out, "PRINTABLESTRING   :US");
    const char *st = strstr(out, "stateOrProvinceName");
    const char *o = strstr(out, "UTF8STRING        :Key Example, Inc.");
    const char *cn = strstr(out, "commonName");
    CU_ASSERT(c != NULL && us != NULL && st != NULL && o != NULL && cn != NULL);
    CU_ASSERT(c < us && us < st && st < o && o < cn);
    CU_ASSERT_EQUAL(test_count(out, "cons: SET"), 6);
    free(out);
    test_rmtree(dir);
    free(dir);
    OPENSSL_free(der);
    X509_NAME_free(back);
    X509_NAME_free(name);
}

/* Parses a canonical string, formats it back (identical), and again after DER re-encoding. */
static void check_canonical(const char *text)
{
    X509_NAME *name = parse_ok(text);
    if (name == NULL)
        return;
    char *out = dn_format(name);
    CU_ASSERT_PTR_NOT_NULL(out);
    if (out != NULL && strcmp(out, text) != 0)
        fprintf(stderr, "\n  canonical %s printed as %s\n", text, out);
    CU_ASSERT_STRING_EQUAL(out, text);
    free(out);
    X509_NAME *back = der_round_trip(name, NULL, NULL);
    CU_ASSERT_EQUAL(X509_NAME_cmp(name, back), 0);
    out = dn_format(back);
    CU_ASSERT_STRING_EQUAL(out, text);
    free(out);
    X509_NAME_free(back);
    X509_NAME_free(name);
}

static void test_round_trip_canonical(void)
{
    check_canonical(SEED);
    check_canonical("CN=websrvr14.keyexample.com,E=admin@keyexample.com,OU=IT,"
                    "O=\"Key Example, Inc.\",L=Independence,ST=OH,C=US");
    check_canonical("CN=Zürich Gerät,O=Société Générale,C=FR");
    check_canonical("CN=dev-1+UID=42,O=Fleet");
    check_canonical("CN=host.example.com,DC=example,DC=com");
    check_canonical("CN=\"say \\\"hi\\\" \\\\o/\",O=\" padded \"");
    check_canonical("CN=\"a=b;c<d>e#f+g\",OU=a,OU=b");
    check_canonical("SERIALNUMBER=0042,T=Engineer,G=Ann,SN=Lee,I=AL,STREET=1 Main St,"
                    "POSTALCODE=12345,DNQUALIFIER=q1,UID=ann,C=US");
    check_canonical("CN=x,1.2.3.4.5=custom value,2.5.4.97=VATDE-123");
    check_canonical("CN=\U0001F511 key,O=日本");
}

/* Parses a non-canonical spelling: same name as the canonical one, printed canonically. */
static void check_equivalent(const char *input, const char *canonical)
{
    X509_NAME *a = parse_ok(input);
    X509_NAME *b = parse_ok(canonical);
    if (a == NULL || b == NULL) {
        X509_NAME_free(a);
        X509_NAME_free(b);
        return;
    }
    CU_ASSERT_EQUAL(X509_NAME_cmp(a, b), 0);
    char *out = dn_format(a);
    if (out != NULL && strcmp(out, canonical) != 0)
        fprintf(stderr, "\n  %s printed as %s, expected %s\n", input, out, canonical);
    CU_ASSERT_STRING_EQUAL(out, canonical);
    free(out);
    X509_NAME_free(a);
    X509_NAME_free(b);
}

static void test_non_canonical(void)
{
    check_equivalent("CN=websrvr14.keyexample.com,OU=IT,O=Key Example\\, Inc.,L=Independence,"
                     "ST=OH,C=US",
                     SEED);
    check_equivalent("  cn = websrvr14.keyexample.com , ou=IT,\to = \"Key Example, Inc.\" ,"
                     "l=Independence,  st=OH ,c=US  ",
                     SEED);
    check_equivalent("CN=websrvr14.keyexample.com,OU=IT,O=\"Key Example, Inc.\",L=Independence,"
                     "S=OH,C=US",
                     SEED);
    check_equivalent("Cn=\"websrvr14.keyexample.com\",oU=\"IT\",O=Key Example\\2C Inc.,"
                     "L=Independence,sT=OH,c=\"US\"",
                     SEED);
    check_equivalent("EMAIL=a@b.example", "E=a@b.example");
    check_equivalent("emailAddress=a@b.example", "E=a@b.example");
    check_equivalent("OID.2.5.4.3=x,oid.2.5.4.10=y", "CN=x,O=y");
    check_equivalent("2.5.4.3=x,2.5.4.6=DE", "CN=x,C=DE");
    check_equivalent("TITLE=t,GN=g,GIVENNAME=g2,SURNAME=s,INITIALS=i", "T=t,G=g,G=g2,SN=s,I=i");
    check_equivalent("CN=\\5A\\c3\\bcrich", "CN=Zürich");
    check_equivalent("CN=a\\+b", "CN=\"a+b\"");
    check_equivalent("CN=\\ lead and trail\\ ", "CN=\" lead and trail \"");
    check_equivalent("CN=\\#1", "CN=\"#1\"");
    check_equivalent("CN=a\\<b\\>c\\;d\\=e\\\"f\\\\g", "CN=\"a<b>c;d=e\\\"f\\\\g\"");
    check_equivalent("CN=a=b", "CN=\"a=b\"");
    check_equivalent("CN = dev-1 + UID = 42 , O = Fleet", "CN=dev-1+UID=42,O=Fleet");
    check_equivalent("CN=inner  spaces kept", "CN=inner  spaces kept");
}

static void test_multi_valued(void)
{
    X509_NAME *name = parse_ok("CN=dev-1+UID=42,O=Fleet");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    CU_ASSERT_EQUAL(X509_NAME_entry_count(name), 3);
    check_entry(name, 0, NID_organizationName, "Fleet", 0);
    check_entry(name, 1, NID_commonName, "dev-1", 1);
    check_entry(name, 2, NID_userId, "42", 1);
    X509_NAME *back = der_round_trip(name, NULL, NULL);
    CU_ASSERT_EQUAL(X509_NAME_entry_count(back), 3);
    CU_ASSERT_EQUAL(X509_NAME_ENTRY_set(X509_NAME_get_entry(back, 0)), 0);
    CU_ASSERT_EQUAL(X509_NAME_ENTRY_set(X509_NAME_get_entry(back, 1)), 1);
    CU_ASSERT_EQUAL(X509_NAME_ENTRY_set(X509_NAME_get_entry(back, 2)), 1);
    CU_ASSERT_EQUAL(X509_NAME_cmp(name, back), 0);
    X509_NAME_free(back);
    X509_NAME_free(name);

    /* Members stay in written order in memory; DER sorts a SET OF by encoding, so after a DER
     * round trip this RDN reads CN first (30 0c ... sorts before 30 0f ...). */
    name = parse_ok("UID=42+CN=dev-1,O=Fleet");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    check_entry(name, 1, NID_userId, "42", 1);
    check_entry(name, 2, NID_commonName, "dev-1", 1);
    char *out = dn_format(name);
    CU_ASSERT_STRING_EQUAL(out, "UID=42+CN=dev-1,O=Fleet");
    free(out);
    back = der_round_trip(name, NULL, NULL);
    check_entry(back, 1, NID_commonName, "dev-1", 1);
    check_entry(back, 2, NID_userId, "42", 1);
    CU_ASSERT_EQUAL(X509_NAME_cmp(name, back), 0);
    out = dn_format(back);
    CU_ASSERT_STRING_EQUAL(out, "CN=dev-1+UID=42,O=Fleet");
    free(out);
    X509_NAME_free(back);
    X509_NAME_free(name);

    /* Three members, then two single RDNs; and a multi-valued RDN at the DER end. */
    name = parse_ok("CN=a+OU=b+O=c,L=d,C=US+ST=OH");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    CU_ASSERT_EQUAL(X509_NAME_entry_count(name), 6);
    check_entry(name, 0, NID_countryName, "US", 0);
    check_entry(name, 1, NID_stateOrProvinceName, "OH", 0);
    check_entry(name, 2, NID_localityName, "d", 1);
    check_entry(name, 3, NID_commonName, "a", 2);
    check_entry(name, 4, NID_organizationalUnitName, "b", 2);
    check_entry(name, 5, NID_organizationName, "c", 2);
    out = dn_format(name);
    CU_ASSERT_STRING_EQUAL(out, "CN=a+OU=b+O=c,L=d,C=US+ST=OH");
    free(out);
    X509_NAME_free(name);
}

static void test_keywords_and_oids(void)
{
    static const struct {
        const char *keyword;
        int nid;
    } table[] = {
        {"CN", NID_commonName},
        {"ou", NID_organizationalUnitName},
        {"O", NID_organizationName},
        {"l", NID_localityName},
        {"ST", NID_stateOrProvinceName},
        {"s", NID_stateOrProvinceName},
        {"E", NID_pkcs9_emailAddress},
        {"Email", NID_pkcs9_emailAddress},
        {"EMAILADDRESS", NID_pkcs9_emailAddress},
        {"street", NID_streetAddress},
        {"DC", NID_domainComponent},
        {"uid", NID_userId},
        {"SerialNumber", NID_serialNumber},
        {"T", NID_title},
        {"title", NID_title},
        {"G", NID_givenName},
        {"gn", NID_givenName},
        {"GivenName", NID_givenName},
        {"SN", NID_surname},
        {"Surname", NID_surname},
        {"I", NID_initials},
        {"initials", NID_initials},
        {"DNQualifier", NID_dnQualifier},
        {"postalCode", NID_postalCode},
        {"2.5.4.3", NID_commonName},
        {"OID.2.5.4.11", NID_organizationalUnitName},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "%s=v1", table[i].keyword);
        X509_NAME *name = parse_ok(text);
        if (name == NULL)
            continue;
        CU_ASSERT_EQUAL(X509_NAME_entry_count(name), 1);
        check_entry(name, 0, table[i].nid, "v1", 0);
        X509_NAME_free(name);
    }
    static const struct {
        const char *keyword;
        int nid;
    } country[] = {{"C", NID_countryName}, {"c", NID_countryName}};
    for (size_t i = 0; i < 2; i++) {
        char text[16];
        snprintf(text, sizeof text, "%s=FR", country[i].keyword);
        X509_NAME *name = parse_ok(text);
        if (name != NULL)
            check_entry(name, 0, country[i].nid, "FR", 0);
        X509_NAME_free(name);
    }

    /* An OID OpenSSL has no name for stays an OID, UTF8String, and prints dotted. */
    X509_NAME *name = parse_ok("OID.1.3.6.1.4.1.99999.1=custom");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, 0);
    char oid[64];
    OBJ_obj2txt(oid, sizeof oid, X509_NAME_ENTRY_get_object(e), 1);
    CU_ASSERT_STRING_EQUAL(oid, "1.3.6.1.4.1.99999.1");
    CU_ASSERT_EQUAL(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)), NID_undef);
    CU_ASSERT_EQUAL(ASN1_STRING_type(X509_NAME_ENTRY_get_data(e)), V_ASN1_UTF8STRING);
    char *out = dn_format(name);
    CU_ASSERT_STRING_EQUAL(out, "1.3.6.1.4.1.99999.1=custom");
    free(out);
    X509_NAME_free(name);

    /* A known OID outside the keyword table (organizationIdentifier) also prints dotted. */
    enroll_error err;
    CU_ASSERT_PTR_NULL(dn_parse("organizationIdentifier=x", "Subject", &err));
    CU_ASSERT_STRING_EQUAL(err.message,
                           "at offset 0: unknown attribute keyword \"organizationIdentifier\"");
    name = parse_ok("2.5.4.97=VATDE-1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    check_entry(name, 0, NID_organizationIdentifier, "VATDE-1", 0);
    out = dn_format(name);
    CU_ASSERT_STRING_EQUAL(out, "2.5.4.97=VATDE-1");
    free(out);
    X509_NAME_free(name);
}

static void test_escapes_and_blanks(void)
{
    X509_NAME *name = parse_ok("CN=\\ a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h\\=i\\#j\\ ,O=x\\41\\42");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    check_entry(name, 1, NID_commonName, " a,b+c\"d\\e<f>g;h=i#j ", 1);
    check_entry(name, 0, NID_organizationName, "xAB", 0);
    X509_NAME_free(name);

    /* Blanks around separators and '=' go; inside a value they stay; quoted ones stay. */
    name = parse_ok(" CN =  a  b \t+ UID= \" c \" ,\tO=d");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    check_entry(name, 0, NID_organizationName, "d", 0);
    check_entry(name, 1, NID_commonName, "a  b", 1);
    check_entry(name, 2, NID_userId, " c ", 1);
    X509_NAME_free(name);

    /* In quotes, ',' '+' ';' '=' and a leading '#' are plain characters. */
    name = parse_ok("CN=\"#a,b+c;d=e\\\\\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    CU_ASSERT_EQUAL(X509_NAME_entry_count(name), 1);
    check_entry(name, 0, NID_commonName, "#a,b+c;d=e\\", 0);
    X509_NAME_free(name);
}

static void test_utf8(void)
{
    X509_NAME *name = parse_ok("CN=Zürich Gerät,O=Société Générale,C=FR");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    check_entry(name, 2, NID_commonName, "Z\xc3\xbcrich Ger\xc3\xa4t", 2);
    const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, 2));
    CU_ASSERT_EQUAL(ASN1_STRING_type(cn), V_ASN1_UTF8STRING);
    CU_ASSERT_EQUAL(ASN1_STRING_length(cn), 14);
    X509_NAME_free(name);

    /* Four-byte sequences are fine; overlong forms, surrogates and stray bytes are not. */
    name = parse_ok("CN=\xf0\x9f\x94\x91");
    CU_ASSERT_PTR_NOT_NULL(name);
    X509_NAME_free(name);
    static const char *bad[] = {"CN=\xc0\xaf", "CN=\xed\xa0\x80",     "CN=a\xe2\x82",
                                "CN=\x80",     "CN=\xf4\x90\x80\x80", "CN=\\e2\\82"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enroll_error err;
        enroll_error_clear(&err);
        name = dn_parse(bad[i], "Subject", &err);
        CU_ASSERT_PTR_NULL(name);
        X509_NAME_free(name);
        CU_ASSERT_STRING_EQUAL(err.code, "INVALID_SUBJECT");
        CU_ASSERT_STRING_EQUAL(err.message, "at offset 3: the value of CN is not valid UTF-8");
    }
}

static void test_errors(void)
{
    char cn65[80] = "CN=";
    memset(cn65 + 3, 'a', 65);
    cn65[68] = '\0';
    const struct {
        const char *text;
        size_t offset;
        const char *why;
    } cases[] = {
        {"", 0, "empty subject"},
        {"  \t ", 0, "empty subject"},
        {"CN=", 3, "empty value for CN"},
        {"CN=a,OU=  ,O=b", 10, "empty value for OU"},
        {"CN=\"\"", 3, "empty value for CN"},
        {"XX=a", 0, "unknown attribute keyword \"XX\""},
        {"CN=a,FOO=b", 5, "unknown attribute keyword \"FOO\""},
        {"CN=\"abc", 3, "unterminated quoted value"},
        {"CN=\"abc\\\"", 3, "unterminated quoted value"},
        {"O=\"Key\" Inc,C=US", 8, "unexpected 'I' after the closing quote"},
        {"CN", 2, "expected '=' after \"CN\""},
        {"CN=a,OU", 7, "expected '=' after \"OU\""},
        {"CN a", 3, "expected '=' after \"CN\""},
        {"CN=a;O=b", 4, "';' is not a separator"},
        {"O=\"x\";C=US", 5, "';' is not a separator"},
        {"CN=a\\", 4, "backslash at the end"},
        {"CN=a\\q", 4, "invalid escape \\ before 'q'"},
        {"CN=a\\4", 4, "invalid escape \\ before '4'"},
        {"CN=\"a\\nb\"", 5, "invalid escape \\ before 'n' inside quotes"},
        {"C=USA", 2, "invalid value for C: string too long"},
        {"c=U", 2, "invalid value for c: string too short"},
        {"E=j\xc3\xbcrgen@example.com", 2, "invalid value for E"},
        {cn65, 3, "invalid value for CN: string too long"},
        {"CN=a,", 5, "expected an attribute after ','"},
        {"CN=a+", 5, "expected an attribute after '+'"},
        {"CN=a,,O=b", 5, "expected an attribute keyword, found ','"},
        {"=a", 0, "expected an attribute keyword, found '='"},
        {"OID.2.5.4.x=a", 0, "\"OID.2.5.4.x\" is not a valid dotted OID"},
        {"1..2=a", 0, "is not a valid dotted OID"},
        {"2.5.4.03=a", 0, "\"2.5.4.03\" is not a valid dotted OID"},
        {"3.1=a", 0, "\"3.1\" is not a valid dotted OID"},
        {"CN=#abc", 3, "starting with '#'"},
        {"CN=a\"b\"", 4, "unexpected '\"' inside an unquoted value"},
        {"CN=a\\00b", 3, "the value of CN holds a NUL byte"},
        {"CN=x,O=\xff", 7, "the value of O is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enroll_error err;
        enroll_error_clear(&err);
        X509_NAME *name = dn_parse(cases[i].text, "Subject", &err);
        CU_ASSERT_PTR_NULL(name);
        X509_NAME_free(name);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "at offset %zu: ", cases[i].offset);
        bool ok = strcmp(err.code, "INVALID_SUBJECT") == 0 && strcmp(err.field, "Subject") == 0 &&
                  strncmp(err.message, prefix, strlen(prefix)) == 0 &&
                  strstr(err.message, cases[i].why) != NULL;
        if (!ok)
            fprintf(stderr, "\n  case %zu \"%s\": %s [%s] %s\n", i, cases[i].text, err.code,
                    err.field, err.message);
        CU_ASSERT(ok);
    }

    /* NULL text is an empty subject; a NULL field name leaves the field empty; NULL err is ok. */
    enroll_error err;
    enroll_error_clear(&err);
    CU_ASSERT_PTR_NULL(dn_parse(NULL, NULL, &err));
    CU_ASSERT_STRING_EQUAL(err.code, "INVALID_SUBJECT");
    CU_ASSERT_STRING_EQUAL(err.field, "");
    CU_ASSERT_STRING_EQUAL(err.message, "at offset 0: empty subject");
    CU_ASSERT_PTR_NULL(dn_parse("CN=", "Subject", NULL));
    /* The OpenSSL error queue is left empty. */
    CU_ASSERT_PTR_NULL(dn_parse("C=USA", "Subject", &err));
    CU_ASSERT_EQUAL(ERR_peek_error(), 0UL);
}

static void test_duplicates_and_get_text(void)
{
    X509_NAME *name = parse_ok("CN=first,OU=a,OU=b,O=x");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    CU_ASSERT_EQUAL(X509_NAME_entry_count(name), 4);
    check_entry(name, 1, NID_organizationalUnitName, "b", 1);
    check_entry(name, 2, NID_organizationalUnitName, "a", 2);
    /* The last entry, that is the most specific: the OU written first. */
    char *ou = dn_get_text(name, NID_organizationalUnitName);
    CU_ASSERT_STRING_EQUAL(ou, "a");
    free(ou);
    char *cn = dn_get_text(name, NID_commonName);
    CU_ASSERT_STRING_EQUAL(cn, "first");
    free(cn);
    CU_ASSERT_PTR_NULL(dn_get_text(name, NID_countryName));
    CU_ASSERT_PTR_NULL(dn_get_text(NULL, NID_commonName));
    X509_NAME_free(name);

    name = parse_ok("CN=Gerät \xf0\x9f\x94\x91");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    cn = dn_get_text(name, NID_commonName);
    CU_ASSERT_STRING_EQUAL(cn, "Ger\xc3\xa4t \xf0\x9f\x94\x91");
    free(cn);
    X509_NAME_free(name);

    /* A BMPString value (as some CAs write) comes back as UTF-8. */
    name = X509_NAME_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    static const unsigned char bmp[] = {0x00, 'G', 0x00, 'e', 0x00, 'r', 0x00, 0xe4, 0x00, 't'};
    CU_ASSERT(
        X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_BMPSTRING, bmp, sizeof bmp, -1, 0));
    cn = dn_get_text(name, NID_commonName);
    CU_ASSERT_STRING_EQUAL(cn, "Ger\xc3\xa4t");
    free(cn);
    char *text = dn_format(name);
    CU_ASSERT_STRING_EQUAL(text, "CN=Ger\xc3\xa4t");
    free(text);
    X509_NAME_free(name);
}

static void test_format_quoting(void)
{
    static const struct {
        const char *value;
        const char *printed;
    } cases[] = {
        {"plain", "CN=plain"},     {"a,b", "CN=\"a,b\""}, {"a+b", "CN=\"a+b\""},
        {"a=b", "CN=\"a=b\""},     {"a;b", "CN=\"a;b\""}, {"a<b", "CN=\"a<b\""},
        {"a>b", "CN=\"a>b\""},     {"#a", "CN=\"#a\""},   {"a\"b", "CN=\"a\\\"b\""},
        {"a\\b", "CN=\"a\\\\b\""}, {" a", "CN=\" a\""},   {"a ", "CN=\"a \""},
        {"a\tb", "CN=a\tb"},       {"\ta", "CN=\"\ta\""}, {"in ner", "CN=in ner"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509_NAME *name = X509_NAME_new();
        CU_ASSERT_PTR_NOT_NULL_FATAL(name);
        CU_ASSERT(X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                             (const unsigned char *)cases[i].value, -1, -1, 0));
        char *out = dn_format(name);
        CU_ASSERT_STRING_EQUAL(out, cases[i].printed);
        /* And the printed form parses back to the same value. */
        X509_NAME *back = out != NULL ? parse_ok(out) : NULL;
        if (back != NULL)
            check_entry(back, 0, NID_commonName, cases[i].value, 0);
        X509_NAME_free(back);
        free(out);
        X509_NAME_free(name);
    }

    /* An empty name prints as "", NULL as NULL, and a NUL byte in a value is refused. */
    X509_NAME *name = X509_NAME_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    char *out = dn_format(name);
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    CU_ASSERT_PTR_NULL(dn_format(NULL));
    CU_ASSERT(X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
                                         (const unsigned char *)"a\0b", 3, -1, 0));
    CU_ASSERT_PTR_NULL(dn_format(name));
    CU_ASSERT_PTR_NULL(dn_get_text(name, NID_commonName));
    X509_NAME_free(name);
}

/* openssl req -subj builds the same name as dn_parse; x509 -nameopt RFC2253 prints it back in
 * our string order. */
static void test_openssl_cli(void)
{
    static const struct {
        const char *ours;
        const char *subj;    /* openssl -subj syntax: DER order, '/' separated */
        const char *rfc2253; /* what openssl x509 -nameopt RFC2253 prints */
        const char *oneline; /* what -nameopt oneline prints (DER order) */
    } cases[] = {
        {SEED, "/C=US/ST=OH/L=Independence/O=Key Example, Inc./OU=IT/CN=websrvr14.keyexample.com",
         "CN=websrvr14.keyexample.com,OU=IT,O=Key Example\\, Inc.,L=Independence,ST=OH,C=US",
         "C = US, ST = OH, L = Independence, O = \"Key Example, Inc.\", OU = IT, "
         "CN = websrvr14.keyexample.com"},
        {"CN=dev-1+UID=42,O=Fleet", "/O=Fleet/CN=dev-1+UID=42", "UID=42+CN=dev-1,O=Fleet",
         "O = Fleet, CN = dev-1 + UID = 42"},
        {"CN=Zürich Gerät,O=Société Générale,C=FR", "/C=FR/O=Société Générale/CN=Zürich Gerät",
         "CN=Zürich Gerät,O=Société Générale,C=FR",
         "C = FR, O = Société Générale, CN = Zürich Gerät"},
    };
    char *dir = test_tmpdir("test_dn");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509_NAME *ours = parse_ok(cases[i].ours);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ours);
        int status = -1;
        char *out = test_sh_output(
            &status,
            "cd '%s' && openssl req -new -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
            "-nodes -keyout key.pem -utf8 -multivalue-rdn -subj '%s' -days 1 -out cert.pem "
            ">/dev/null 2>&1 && openssl x509 -in cert.pem -noout -subject -nameopt "
            "RFC2253,-esc_msb "
            "&& openssl x509 -in cert.pem -noout -subject -nameopt oneline,-esc_msb",
            dir, cases[i].subj);
        CU_ASSERT_EQUAL(status, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(out);
        char expect[512];
        snprintf(expect, sizeof expect, "subject=%s\nsubject=%s\n", cases[i].rfc2253,
                 cases[i].oneline);
        if (strcmp(out, expect) != 0)
            fprintf(stderr, "\n  openssl printed:\n%s  expected:\n%s", out, expect);
        CU_ASSERT_STRING_EQUAL(out, expect);
        free(out);

        char path[512];
        snprintf(path, sizeof path, "%s/cert.pem", dir);
        FILE *f = fopen(path, "r");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cert);
        const X509_NAME *theirs = X509_get_subject_name(cert);
        CU_ASSERT_EQUAL(X509_NAME_cmp(ours, theirs), 0);
        /* Same attribute string types too: byte-identical DER. */
        unsigned char *a = NULL, *b = NULL;
        int alen = i2d_X509_NAME(ours, &a), blen = i2d_X509_NAME(theirs, &b);
        CU_ASSERT(alen > 0 && alen == blen && memcmp(a, b, (size_t)alen) == 0);
        OPENSSL_free(a);
        OPENSSL_free(b);
        char *text = dn_format(theirs);
        CU_ASSERT_STRING_EQUAL(text, cases[i].ours);
        free(text);
        X509_free(cert);
        X509_NAME_free(ours);
    }
    test_rmtree(dir);
    free(dir);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_parse_seed),
        TEST_CASE(test_der_order),
        TEST_CASE(test_round_trip_canonical),
        TEST_CASE(test_non_canonical),
        TEST_CASE(test_multi_valued),
        TEST_CASE(test_keywords_and_oids),
        TEST_CASE(test_escapes_and_blanks),
        TEST_CASE(test_utf8),
        TEST_CASE(test_errors),
        TEST_CASE(test_duplicates_and_get_text),
        TEST_CASE(test_format_quoting),
        TEST_CASE(test_openssl_cli),
        TEST_END,
    };
    return test_main("dn", cases, NULL, NULL);
}
