/* Subject alternative names under the Keyfactor SAN keys: per-kind validation, encoding to
 * GENERAL_NAME (dNSName, iPAddress, URI, rfc822Name, the Microsoft UPN otherName, registeredID),
 * lookup, merging, and the "kind:value" text of one entry. */
#include "san.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "oid.h"
#include "utf8.h"

#define SAN_CODE HSE_INVALID_SAN
#define UPN_OID  "1.3.6.1.4.1.311.20.2.3"

static const struct {
    san_kind kind;
    const char *key;
} kinds[] = {
    {SAN_DNS, "dns"},
    {SAN_IP4, "ip4"},
    {SAN_IP6, "ip6"},
    {SAN_URI, "uri"},
    {SAN_RFC822, "rfc822"},
    {SAN_UPN, "ms_ntprincipalname"},
    {SAN_REGISTERED_ID, "registeredid"},
    {SAN_IP, "ip"},
};

#define N_KINDS (sizeof kinds / sizeof kinds[0])

san_kind san_kind_from_key(const char *key)
{
    if (key == NULL)
        return SAN_UNKNOWN;
    for (size_t i = 0; i < N_KINDS; i++)
        if (strcasecmp(kinds[i].key, key) == 0)
            return kinds[i].kind;
    return SAN_UNKNOWN;
}

const char *san_kind_key(san_kind kind)
{
    for (size_t i = 0; i < N_KINDS; i++)
        if (kinds[i].kind == kind)
            return kinds[i].key;
    return NULL;
}

static bool is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Checks a host name of LDH labels (1-63 bytes each, 253 in all, no leading or trailing hyphen,
 * '_' only as a label's first character, no trailing dot). On failure writes why into `why`. */
static bool hostname_valid(const char *s, char *why, size_t why_size)
{
    size_t len = strlen(s);
    if (len == 0) {
        snprintf(why, why_size, "it is empty");
        return false;
    }
    if (len > 253) {
        snprintf(why, why_size, "it is %zu characters long (at most 253)", len);
        return false;
    }
    size_t label = 1;
    const char *p = s;
    for (;;) {
        const char *end = strchr(p, '.');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n == 0) {
            if (end == NULL)
                snprintf(why, why_size, "it ends with a dot");
            else
                snprintf(why, why_size, "label %zu is empty", label);
            return false;
        }
        if (n > 63) {
            snprintf(why, why_size, "label %zu is %zu characters long (at most 63)", label, n);
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (is_alpha(c) || is_digit(c) || (c == '-' && i > 0 && i < n - 1) ||
                (c == '_' && i == 0))
                continue;
            if (c == '-')
                snprintf(why, why_size, "label %zu (\"%.*s\") %s with a hyphen", label, (int)n, p,
                         i == 0 ? "starts" : "ends");
            else if (c == '_')
                snprintf(why, why_size, "label %zu (\"%.*s\") has '_' after its first character",
                         label, (int)n, p);
            else if ((unsigned char)c >= 0x80)
                snprintf(why, why_size,
                         "label %zu has a non-ASCII character (use the xn-- A-label form)", label);
            else if ((unsigned char)c > 0x20 && (unsigned char)c < 0x7F)
                snprintf(why, why_size, "label %zu (\"%.*s\") has the character '%c'", label,
                         (int)n, p, c);
            else
                snprintf(why, why_size, "label %zu has the control or space character 0x%02X",
                         label, (unsigned char)c);
            return false;
        }
        if (end == NULL)
            return true;
        p = end + 1;
        label++;
    }
}

static bool printable_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7F)
            return false;
    return true;
}

static int bad(enroll_error *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(enroll_error *err, const char *field, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    enroll_error_set(err, SAN_CODE, field, "%s", msg);
    return -1;
}

static int check_dns(const char *v, const char *field, enroll_error *err)
{
    char why[200];
    const char *host = strncmp(v, "*.", 2) == 0 ? v + 2 : v;
    if (host != v && host[0] == '\0')
        return bad(err, field, "\"*.\" is not a valid DNS name: nothing follows the wildcard");
    if (strchr(host, '*') != NULL)
        return bad(err, field,
                   "\"%.100s\" is not a valid DNS name: '*' may only be the whole first label "
                   "(\"*.\")",
                   v);
    if (strlen(v) > 253)
        return bad(err, field, "\"%.60s...\" is not a valid DNS name: %zu characters (at most 253)",
                   v, strlen(v));
    if (!hostname_valid(host, why, sizeof why))
        return bad(err, field, "\"%.100s\" is not a valid DNS name: %s", v, why);
    return 0;
}

static int check_uri(const char *v, const char *field, enroll_error *err)
{
    if (!is_alpha(v[0]))
        return bad(err, field, "\"%.100s\" is not a URI: it must start with a scheme (\"https:\")",
                   v);
    size_t i = 1;
    while (is_alpha(v[i]) || is_digit(v[i]) || v[i] == '+' || v[i] == '-' || v[i] == '.')
        i++;
    if (v[i] != ':')
        return bad(err, field, "\"%.100s\" is not a URI: it must start with a scheme (\"https:\")",
                   v);
    if (v[i + 1] == '\0')
        return bad(err, field, "\"%.100s\" is not a URI: nothing follows the scheme", v);
    if (!printable_ascii(v))
        return bad(err, field,
                   "\"%.100s\" is not a URI: only printable ASCII without spaces is allowed "
                   "(percent-encode the rest)",
                   v);
    return 0;
}

static int check_rfc822(const char *v, const char *field, enroll_error *err)
{
    const char *at = strrchr(v, '@');
    if (at == NULL)
        return bad(err, field, "\"%.100s\" is not an e-mail address: no '@'", v);
    if (at == v)
        return bad(err, field, "\"%.100s\" is not an e-mail address: nothing before '@'", v);
    if ((size_t)(at - v) > 64)
        return bad(err, field,
                   "\"%.100s\" is not an e-mail address: the part before '@' is longer than 64 "
                   "characters",
                   v);
    if (!printable_ascii(v))
        return bad(err, field,
                   "\"%.100s\" is not an e-mail address: only printable ASCII without spaces is "
                   "allowed",
                   v);
    char why[200];
    if (!hostname_valid(at + 1, why, sizeof why))
        return bad(err, field, "\"%.100s\" is not an e-mail address: the domain is invalid: %s", v,
                   why);
    return 0;
}

static int check_upn(const char *v, const char *field, enroll_error *err)
{
    if (!utf8_valid((const unsigned char *)v, strlen(v)))
        return bad(err, field, "the user principal name is not valid UTF-8");
    const char *at = strrchr(v, '@');
    if (at == NULL || at == v || at[1] == '\0')
        return bad(err, field,
                   "\"%.100s\" is not a user principal name: expected user@domain with both parts "
                   "non-empty",
                   v);
    return 0;
}

/* Digits in two or more dot-separated arcs, no arc with a leading zero (so that the OID prints
 * back as written). OBJ_txt2obj checks the rest (first arc 0-2, second below 40 under 0 and 1). */
static bool dotted_oid_syntax(const char *s)
{
    size_t arcs = 0;
    while (*s != '\0') {
        const char *start = s;
        while (is_digit(*s))
            s++;
        if (s == start || (*start == '0' && s - start > 1))
            return false;
        arcs++;
        if (*s != '\0' && (*s != '.' || *++s == '\0'))
            return false;
    }
    return arcs >= 2;
}

static ASN1_OBJECT *parse_oid(const char *v)
{
    ASN1_OBJECT *obj = dotted_oid_syntax(v) ? OBJ_txt2obj(v, 1) : NULL;
    ERR_clear_error();
    return obj;
}

/* A GENERAL_NAME holding an IA5String (dNSName, URI, rfc822Name). */
static GENERAL_NAME *ia5_name(int type, const char *v)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    if (gn == NULL || s == NULL || !ASN1_STRING_set(s, v, (int)strlen(v))) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, type, s);
    return gn;
}

static GENERAL_NAME *ip_name(const unsigned char *addr, int len)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_OCTET_STRING *s = ASN1_OCTET_STRING_new();
    if (gn == NULL || s == NULL || !ASN1_OCTET_STRING_set(s, addr, len)) {
        GENERAL_NAME_free(gn);
        ASN1_OCTET_STRING_free(s);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, GEN_IPADD, s);
    return gn;
}

static GENERAL_NAME *upn_name(const char *v)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_OBJECT *oid = OBJ_txt2obj(UPN_OID, 1);
    ASN1_TYPE *value = ASN1_TYPE_new();
    ASN1_UTF8STRING *s = ASN1_UTF8STRING_new();
    if (gn == NULL || oid == NULL || value == NULL || s == NULL ||
        !ASN1_STRING_set(s, v, (int)strlen(v))) {
        GENERAL_NAME_free(gn);
        ASN1_OBJECT_free(oid);
        ASN1_TYPE_free(value);
        ASN1_UTF8STRING_free(s);
        return NULL;
    }
    ASN1_TYPE_set(value, V_ASN1_UTF8STRING, s);
    if (!GENERAL_NAME_set0_othername(gn, oid, value)) {
        GENERAL_NAME_free(gn);
        ASN1_OBJECT_free(oid);
        ASN1_TYPE_free(value);
        return NULL;
    }
    return gn;
}

int san_add(GENERAL_NAMES *names, san_kind kind, const char *value, const char *field,
            enroll_error *err)
{
    if (san_kind_key(kind) == NULL) {
        enroll_error_set(err, HSE_UNKNOWN_SAN_TYPE, field, "unknown SAN type");
        return -1;
    }
    if (names == NULL)
        return bad(err, field, "no list to add the %s SAN to", san_kind_key(kind));
    if (value == NULL || value[0] == '\0')
        return bad(err, field, "empty %s SAN", san_kind_key(kind));

    GENERAL_NAME *gn = NULL;
    unsigned char addr[16];
    ASN1_OBJECT *oid;
    switch (kind) {
    case SAN_DNS:
        if (check_dns(value, field, err) != 0)
            return -1;
        gn = ia5_name(GEN_DNS, value);
        break;
    case SAN_IP4:
        if (inet_pton(AF_INET, value, addr) != 1)
            return bad(err, field,
                       "\"%.100s\" is not an IPv4 address (expected four decimal numbers 0-255 "
                       "separated by dots)",
                       value);
        gn = ip_name(addr, 4);
        break;
    case SAN_IP:
        if (inet_pton(AF_INET, value, addr) == 1) {
            gn = ip_name(addr, 4);
            break;
        }
        if (inet_pton(AF_INET6, value, addr) != 1)
            return bad(err, field, "\"%.100s\" is not an IPv4 or IPv6 address", value);
        gn = ip_name(addr, 16);
        break;
    case SAN_IP6:
        if (inet_pton(AF_INET6, value, addr) != 1)
            return bad(err, field, "\"%.100s\" is not an IPv6 address", value);
        gn = ip_name(addr, 16);
        break;
    case SAN_URI:
        if (check_uri(value, field, err) != 0)
            return -1;
        gn = ia5_name(GEN_URI, value);
        break;
    case SAN_RFC822:
        if (check_rfc822(value, field, err) != 0)
            return -1;
        gn = ia5_name(GEN_EMAIL, value);
        break;
    case SAN_UPN:
        if (check_upn(value, field, err) != 0)
            return -1;
        gn = upn_name(value);
        break;
    case SAN_REGISTERED_ID:
        oid = parse_oid(value);
        if (oid == NULL)
            return bad(err, field,
                       "\"%.100s\" is not a dotted numeric OID (such as 1.3.6.1.4.1.311)", value);
        gn = GENERAL_NAME_new();
        if (gn == NULL)
            ASN1_OBJECT_free(oid);
        else
            GENERAL_NAME_set0_value(gn, GEN_RID, oid);
        break;
    case SAN_UNKNOWN:
        break;
    }
    if (gn == NULL || !sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        ERR_clear_error();
        return bad(err, field, "out of memory");
    }
    return 0;
}

bool san_has_dns(const GENERAL_NAMES *names, const char *dns)
{
    if (names == NULL || dns == NULL)
        return false;
    size_t len = strlen(dns);
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_DNS)
            continue;
        const unsigned char *d = ASN1_STRING_get0_data(gn->d.dNSName);
        if ((size_t)ASN1_STRING_length(gn->d.dNSName) != len)
            continue;
        size_t k = 0;
        while (k < len && ascii_lower((char)d[k]) == ascii_lower(dns[k]))
            k++;
        if (k == len)
            return true;
    }
    return false;
}

/* One entry of san_merge's sort: the DER of a name, which list it is in (0: names, 1: extra)
 * and its index there. */
typedef struct san_key {
    unsigned char *der;
    int len;
    int origin, index;
} san_key;

static int san_key_cmp(const void *a, const void *b)
{
    const san_key *x = a, *y = b;
    int common = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->der, y->der, (size_t)common);
    if (c != 0)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if (x->origin != y->origin)
        return x->origin - y->origin;
    return x->index - y->index;
}

/* Equal names have equal DER (GENERAL_NAME_cmp compares the same type, OID and value bytes), so
 * duplicates are found by sorting the DER encodings: O(n log n) whatever the input, where a pair
 * by pair comparison was quadratic (a line of 50,000 SANs took many seconds). */
int san_merge(GENERAL_NAMES *names, const GENERAL_NAMES *extra)
{
    if (extra == NULL || sk_GENERAL_NAME_num(extra) <= 0)
        return 0;
    if (names == NULL)
        return -1;
    int have = sk_GENERAL_NAME_num(names), more = sk_GENERAL_NAME_num(extra);
    size_t total = (size_t)have + (size_t)more;
    san_key *keys = calloc(total, sizeof *keys);
    bool *keep = calloc((size_t)more, sizeof *keep);
    int rc = keys != NULL && keep != NULL ? 0 : -1;
    for (size_t k = 0; k < total && rc == 0; k++) {
        int origin = k < (size_t)have ? 0 : 1;
        int index = origin ? (int)(k - (size_t)have) : (int)k;
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(origin ? extra : names, index);
        keys[k].origin = origin;
        keys[k].index = index;
        keys[k].len = i2d_GENERAL_NAME((GENERAL_NAME *)gn, &keys[k].der);
        if (keys[k].len <= 0) {
            keys[k].der = NULL;
            rc = -1;
        }
    }
    if (rc == 0) {
        qsort(keys, total, sizeof *keys, san_key_cmp);
        /* In each run of equal names, sorted by origin then index: an extra entry is kept when
         * it opens the run (names holds no equal entry, and it is the first of extra). */
        for (size_t k = 0; k < total; k++) {
            bool opens = k == 0 || keys[k - 1].len != keys[k].len ||
                         memcmp(keys[k - 1].der, keys[k].der, (size_t)keys[k].len) != 0;
            if (opens && keys[k].origin == 1)
                keep[keys[k].index] = true;
        }
    }
    /* Copies first, then one reservation, so that names is either fully extended or unchanged. */
    GENERAL_NAMES *add = rc == 0 ? sk_GENERAL_NAME_new_null() : NULL;
    if (add == NULL)
        rc = -1;
    for (int i = 0; i < more && rc == 0; i++) {
        if (!keep[i])
            continue;
        GENERAL_NAME *copy = GENERAL_NAME_dup(sk_GENERAL_NAME_value(extra, i));
        if (copy == NULL || !sk_GENERAL_NAME_push(add, copy)) {
            GENERAL_NAME_free(copy);
            rc = -1;
        }
    }
    for (size_t k = 0; keys != NULL && k < total; k++)
        OPENSSL_free(keys[k].der);
    free(keys);
    free(keep);
    int n = add != NULL ? sk_GENERAL_NAME_num(add) : 0;
    if (rc == 0 && n > 0 && !sk_GENERAL_NAME_reserve(names, have + n))
        rc = -1;
    if (rc == 0) {
        for (int i = 0; i < n; i++)
            sk_GENERAL_NAME_push(names, sk_GENERAL_NAME_value(add, i));
        sk_GENERAL_NAME_free(add);
    } else {
        sk_GENERAL_NAME_pop_free(add, GENERAL_NAME_free);
        ERR_clear_error();
    }
    return rc;
}

/* "prefix" followed by the bytes of s; NULL if s holds a NUL byte. */
static char *prefixed(const char *prefix, const unsigned char *s, int len)
{
    if (len < 0 || memchr(s, '\0', (size_t)len) != NULL)
        return NULL;
    size_t plen = strlen(prefix);
    char *out = malloc(plen + (size_t)len + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, prefix, plen);
    memcpy(out + plen, s, (size_t)len);
    out[plen + (size_t)len] = '\0';
    return out;
}

static char *prefixed_str(const char *prefix, const ASN1_STRING *s)
{
    return prefixed(prefix, ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
}

char *san_entry_text(const GENERAL_NAME *name)
{
    if (name == NULL)
        return NULL;
    char text[128];
    switch (name->type) {
    case GEN_DNS:
        return prefixed_str("dns:", name->d.dNSName);
    case GEN_URI:
        return prefixed_str("uri:", name->d.uniformResourceIdentifier);
    case GEN_EMAIL:
        return prefixed_str("rfc822:", name->d.rfc822Name);
    case GEN_IPADD: {
        const ASN1_OCTET_STRING *ip = name->d.iPAddress;
        int len = ASN1_STRING_length(ip);
        int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : -1;
        if (af < 0 || inet_ntop(af, ASN1_STRING_get0_data(ip), text, sizeof text) == NULL)
            return NULL;
        return prefixed(af == AF_INET ? "ip4:" : "ip6:", (const unsigned char *)text,
                        (int)strlen(text));
    }
    case GEN_OTHERNAME: {
        const OTHERNAME *on = name->d.otherName;
        if (OBJ_obj2nid(on->type_id) != NID_ms_upn || on->value == NULL ||
            on->value->type != V_ASN1_UTF8STRING)
            return NULL;
        return prefixed_str("ms_ntprincipalname:", on->value->value.utf8string);
    }
    case GEN_RID: {
        char *oid = oid_dotted_text(name->d.registeredID); /* as long as san_add took it */
        char *out =
            oid ? prefixed("registeredid:", (const unsigned char *)oid, (int)strlen(oid)) : NULL;
        free(oid);
        return out;
    }
    default:
        return NULL;
    }
}
