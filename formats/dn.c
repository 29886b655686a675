/* Subject DNs in the Keyfactor API text syntax: the parser (quotes, RFC 4514 escapes, '+'
 * multi-valued RDNs, strict UTF-8) into X509_NAME, the canonical printer back to text, and the
 * lookup of one attribute's value. */
#include "dn.h"

#include <limits.h>
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "oid.h"
#include "utf8.h"

#define DN_CODE HSE_INVALID_SUBJECT

typedef struct dn_keyword {
    const char *name;
    int nid;
} dn_keyword;

/* Keywords the parser accepts. The first entry of each NID is the one dn_format prints. */
static const dn_keyword keywords[] = {
    {"CN", NID_commonName},
    {"OU", NID_organizationalUnitName},
    {"O", NID_organizationName},
    {"L", NID_localityName},
    {"ST", NID_stateOrProvinceName},
    {"S", NID_stateOrProvinceName},
    {"C", NID_countryName},
    {"E", NID_pkcs9_emailAddress},
    {"EMAIL", NID_pkcs9_emailAddress},
    {"EMAILADDRESS", NID_pkcs9_emailAddress},
    {"STREET", NID_streetAddress},
    {"DC", NID_domainComponent},
    {"UID", NID_userId},
    {"SERIALNUMBER", NID_serialNumber},
    {"T", NID_title},
    {"TITLE", NID_title},
    {"G", NID_givenName},
    {"GN", NID_givenName},
    {"GIVENNAME", NID_givenName},
    {"SN", NID_surname},
    {"SURNAME", NID_surname},
    {"I", NID_initials},
    {"INITIALS", NID_initials},
    {"DNQUALIFIER", NID_dnQualifier},
    {"POSTALCODE", NID_postalCode},
};

#define N_KEYWORDS (sizeof keywords / sizeof keywords[0])

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_keyword_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '.' ||
           c == '-' || c == '_';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Digits in two or more dot-separated arcs, no arc with a leading zero (so that the OID prints
 * back as written). OBJ_txt2obj checks the rest (first arc 0-2, second below 40 under 0 and 1). */
static bool dotted_oid_syntax(const char *s, size_t len)
{
    size_t arcs = 0, i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == start || (s[start] == '0' && i - start > 1))
            return false;
        arcs++;
        if (i < len && (s[i] != '.' || ++i == len))
            return false;
    }
    return arcs >= 2;
}

/* One attribute as parsed, before it goes into the X509_NAME. */
typedef struct dn_ava {
    ASN1_OBJECT *obj;
    size_t keyword_offset, keyword_len; /* as written, for messages */
    size_t value_offset;                /* of the value's first character in the text */
    size_t value_start, value_len;      /* decoded bytes in parser.buf */
    bool new_rdn;                       /* first member of its RDN */
} dn_ava;

typedef struct parser {
    const char *text;
    size_t len, pos;
    const char *field;
    enroll_error *err;
    char *buf; /* decoded values, back to back; never longer than the text */
    size_t used;
    dn_ava *avas;
    size_t n_avas, cap_avas;
} parser;

static int fail(parser *p, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(parser *p, size_t offset, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    enroll_error_set(p->err, DN_CODE, p->field, "at offset %zu: %s", offset, why);
    return -1;
}

/* Describes a character for a message: 'x', or a hex byte when not printable. */
static const char *describe_char(char c, char out[8])
{
    unsigned char u = (unsigned char)c;
    if (u >= 0x21 && u < 0x7F)
        snprintf(out, 8, "'%c'", c);
    else if (u == ' ')
        snprintf(out, 8, "space");
    else
        snprintf(out, 8, "0x%02X", u);
    return out;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len && is_ws(p->text[p->pos]))
        p->pos++;
}

/* Resolves the keyword at [off, off+len) to an object (to be ASN1_OBJECT_free'd). */
static ASN1_OBJECT *resolve_keyword(parser *p, size_t off, size_t len)
{
    const char *kw = p->text + off;
    const char *oid = NULL;
    size_t oid_len = 0;
    if (len > 4 && strncasecmp(kw, "OID.", 4) == 0) {
        oid = kw + 4;
        oid_len = len - 4;
    } else if (is_digit(kw[0])) {
        oid = kw;
        oid_len = len;
    }
    if (oid == NULL) {
        for (size_t i = 0; i < N_KEYWORDS; i++)
            if (strlen(keywords[i].name) == len && strncasecmp(keywords[i].name, kw, len) == 0)
                return OBJ_nid2obj(keywords[i].nid);
        fail(p, off, "unknown attribute keyword \"%.*s\"", (int)len, kw);
        return NULL;
    }
    char *copy = dotted_oid_syntax(oid, oid_len) ? strndup(oid, oid_len) : NULL;
    ASN1_OBJECT *obj = copy != NULL ? OBJ_txt2obj(copy, 1) : NULL;
    free(copy);
    ERR_clear_error();
    if (obj == NULL)
        fail(p, off, "\"%.*s\" is not a valid dotted OID", (int)len, kw);
    return obj;
}

static void put(parser *p, char c)
{
    p->buf[p->used++] = c;
}

/* A value in double quotes, starting at the opening quote. */
static int parse_quoted(parser *p)
{
    size_t open = p->pos++;
    for (;;) {
        if (p->pos >= p->len)
            return fail(p, open, "unterminated quoted value");
        char c = p->text[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c == '\\') {
            if (p->pos + 1 >= p->len)
                return fail(p, open, "unterminated quoted value");
            char d = p->text[p->pos + 1];
            if (d != '"' && d != '\\') {
                char desc[8];
                return fail(p, p->pos,
                            "invalid escape \\ before %s inside quotes (only \\\" and \\\\ are "
                            "escapes there)",
                            describe_char(d, desc));
            }
            put(p, d);
            p->pos += 2;
            continue;
        }
        put(p, c);
        p->pos++;
    }
    skip_ws(p);
    if (p->pos < p->len && p->text[p->pos] != ',' && p->text[p->pos] != '+' &&
        p->text[p->pos] != ';') {
        char desc[8];
        return fail(p, p->pos, "unexpected %s after the closing quote (expected ',' or '+')",
                    describe_char(p->text[p->pos], desc));
    }
    return 0;
}

/* An unquoted value: up to an unescaped ',' or '+', RFC 4514 escapes, trailing blanks trimmed. */
static int parse_unquoted(parser *p)
{
    size_t start = p->pos;
    size_t keep = p->used; /* end of the value without trailing unescaped blanks */
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c == ',' || c == '+')
            break;
        if (c == ';')
            return fail(p, p->pos,
                        "';' is not a separator (use ','); write \\; or quote the value to put "
                        "';' in a value");
        if (c == '"')
            return fail(p, p->pos,
                        "unexpected '\"' inside an unquoted value (quote the whole value or "
                        "write \\\")");
        if (c == '#' && p->pos == start)
            return fail(p, p->pos,
                        "a value starting with '#' (hex-encoded BER) is not supported; write \\# "
                        "or quote the value");
        if (c == '\\') {
            if (p->pos + 1 >= p->len)
                return fail(p, p->pos, "backslash at the end of the input");
            char d = p->text[p->pos + 1];
            int hi = hex_value(d);
            int lo = p->pos + 2 < p->len ? hex_value(p->text[p->pos + 2]) : -1;
            if (strchr(",+\"\\<>;=# ", d) != NULL) {
                put(p, d);
                p->pos += 2;
            } else if (hi >= 0 && lo >= 0) {
                put(p, (char)(hi * 16 + lo));
                p->pos += 3;
            } else {
                char desc[8];
                return fail(p, p->pos,
                            "invalid escape \\ before %s (escape one of , + \" \\ < > ; = # "
                            "space, or give two hex digits)",
                            describe_char(d, desc));
            }
            keep = p->used;
            continue;
        }
        put(p, c);
        p->pos++;
        if (!is_ws(c))
            keep = p->used;
    }
    p->used = keep;
    return 0;
}

static int push_ava(parser *p, const dn_ava *ava)
{
    if (p->n_avas == p->cap_avas) {
        size_t cap = p->cap_avas ? p->cap_avas * 2 : 8;
        dn_ava *bigger = realloc(p->avas, cap * sizeof *bigger);
        if (bigger == NULL)
            return -1;
        p->avas = bigger;
        p->cap_avas = cap;
    }
    p->avas[p->n_avas++] = *ava;
    return 0;
}

/* Reads the whole text into p->avas. */
static int parse_avas(parser *p)
{
    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, 0, "empty subject");
    bool new_rdn = true;
    char sep = 0;
    for (;;) {
        skip_ws(p);
        dn_ava ava = {.new_rdn = new_rdn};
        ava.keyword_offset = p->pos;
        while (p->pos < p->len && is_keyword_char(p->text[p->pos]))
            p->pos++;
        ava.keyword_len = p->pos - ava.keyword_offset;
        if (ava.keyword_len == 0) {
            char desc[8];
            if (p->pos >= p->len)
                return fail(p, p->pos, "expected an attribute after '%c'", sep);
            return fail(p, p->pos, "expected an attribute keyword, found %s",
                        describe_char(p->text[p->pos], desc));
        }
        const char *kw = p->text + ava.keyword_offset;
        int kw_len = (int)ava.keyword_len;
        skip_ws(p);
        if (p->pos >= p->len || p->text[p->pos] != '=')
            return fail(p, p->pos, "expected '=' after \"%.*s\"", kw_len, kw);
        ava.obj = resolve_keyword(p, ava.keyword_offset, ava.keyword_len);
        if (ava.obj == NULL)
            return -1;
        p->pos++;
        skip_ws(p);
        ava.value_offset = p->pos;
        ava.value_start = p->used;
        int rc = (p->pos < p->len && p->text[p->pos] == '"') ? parse_quoted(p) : parse_unquoted(p);
        ava.value_len = p->used - ava.value_start;
        if (rc == 0 && ava.value_len == 0)
            rc = fail(p, ava.value_offset, "empty value for %.*s", kw_len, kw);
        if (rc == 0 && memchr(p->buf + ava.value_start, '\0', ava.value_len) != NULL)
            rc = fail(p, ava.value_offset, "the value of %.*s holds a NUL byte", kw_len, kw);
        if (rc == 0 && !utf8_valid((const unsigned char *)p->buf + ava.value_start, ava.value_len))
            rc = fail(p, ava.value_offset, "the value of %.*s is not valid UTF-8", kw_len, kw);
        if (rc == 0 && ava.value_len > INT_MAX)
            rc = fail(p, ava.value_offset, "the value of %.*s is too long", kw_len, kw);
        if (rc == 0 && push_ava(p, &ava) != 0)
            rc = fail(p, ava.value_offset, "out of memory");
        if (rc != 0) {
            ASN1_OBJECT_free(ava.obj);
            return -1;
        }
        skip_ws(p);
        if (p->pos >= p->len)
            return 0;
        sep = p->text[p->pos];
        if (sep == ';')
            return fail(p, p->pos, "';' is not a separator (use ',')");
        /* parse_unquoted and parse_quoted stop only at ',', '+', ';' or the end. */
        new_rdn = sep == ',';
        p->pos++;
    }
}

/* Adds p->avas to name: RDNs in reverse string order, members of an RDN in string order. */
static int build_name(parser *p, X509_NAME *name)
{
    size_t end = p->n_avas;
    while (end > 0) {
        size_t start = end - 1;
        while (!p->avas[start].new_rdn)
            start--;
        for (size_t i = start; i < end; i++) {
            const dn_ava *a = &p->avas[i];
            /* set 0: a new RDN after the last one; set -1: joins the RDN of the entry before. */
            if (!X509_NAME_add_entry_by_OBJ(name, a->obj, MBSTRING_UTF8,
                                            (const unsigned char *)p->buf + a->value_start,
                                            (int)a->value_len, -1, i == start ? 0 : -1)) {
                unsigned long e = ERR_peek_last_error();
                const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
                ERR_clear_error();
                return fail(p, a->value_offset, "invalid value for %.*s: %s", (int)a->keyword_len,
                            p->text + a->keyword_offset, reason != NULL ? reason : "rejected");
            }
        }
        end = start;
    }
    return 0;
}

X509_NAME *dn_parse(const char *text, const char *field_name, enroll_error *err)
{
    parser p = {.text = text != NULL ? text : "", .field = field_name, .err = err};
    p.len = strlen(p.text);
    p.buf = malloc(p.len + 1);
    X509_NAME *name = NULL;
    if (p.buf == NULL) {
        fail(&p, 0, "out of memory");
    } else if (parse_avas(&p) == 0) {
        name = X509_NAME_new();
        if (name == NULL)
            fail(&p, 0, "out of memory");
        else if (build_name(&p, name) != 0) {
            X509_NAME_free(name);
            name = NULL;
        }
    }
    for (size_t i = 0; i < p.n_avas; i++)
        ASN1_OBJECT_free(p.avas[i].obj);
    free(p.avas);
    free(p.buf);
    return name;
}

/* A growing NUL-terminated string; `failed` sticks after the first allocation failure. */
typedef struct strbuf {
    char *s;
    size_t len, cap;
    bool failed;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *bigger = realloc(b->s, cap);
        if (bigger == NULL) {
            b->failed = true;
            return;
        }
        b->s = bigger;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static bool needs_quotes(const unsigned char *v, size_t n)
{
    if (n == 0 || is_ws((char)v[0]) || is_ws((char)v[n - 1]))
        return true;
    for (size_t i = 0; i < n; i++)
        if (strchr(",+=;<>#\"\\", v[i]) != NULL && v[i] != '\0')
            return true;
    return false;
}

/* Appends "KEYWORD=value" for one entry; -1 when the value has no UTF-8 text form. */
static int format_entry(strbuf *b, const X509_NAME_ENTRY *e)
{
    const ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(e);
    int nid = OBJ_obj2nid(obj);
    const char *kw = NULL;
    for (size_t i = 0; i < N_KEYWORDS && kw == NULL && nid != NID_undef; i++)
        if (keywords[i].nid == nid)
            kw = keywords[i].name;
    if (kw != NULL) {
        sb_str(b, kw);
    } else {
        char *oid = oid_dotted_text(obj); /* as long as the parser took it */
        if (oid == NULL)
            return -1;
        sb_str(b, oid);
        free(oid);
    }
    sb_str(b, "=");

    unsigned char *v = NULL;
    int n = ASN1_STRING_to_UTF8(&v, X509_NAME_ENTRY_get_data(e));
    if (n < 0) {
        ERR_clear_error();
        return -1;
    }
    size_t len = (size_t)n;
    if (memchr(v, '\0', len) != NULL) {
        OPENSSL_free(v);
        return -1;
    }
    if (!needs_quotes(v, len)) {
        sb_add(b, (const char *)v, len);
    } else {
        sb_str(b, "\"");
        for (size_t i = 0; i < len; i++) {
            if (v[i] == '"' || v[i] == '\\')
                sb_str(b, "\\");
            sb_add(b, (const char *)v + i, 1);
        }
        sb_str(b, "\"");
    }
    OPENSSL_free(v);
    return 0;
}

char *dn_format(const X509_NAME *name)
{
    if (name == NULL)
        return NULL;
    strbuf b = {0};
    sb_str(&b, "");
    int end = X509_NAME_entry_count(name);
    /* RDNs from the last (most specific) to the first; members of one RDN in entry order. */
    while (end > 0 && !b.failed) {
        int set = X509_NAME_ENTRY_set(X509_NAME_get_entry(name, end - 1));
        int start = end - 1;
        while (start > 0 && X509_NAME_ENTRY_set(X509_NAME_get_entry(name, start - 1)) == set)
            start--;
        if (b.len > 0)
            sb_str(&b, ",");
        for (int i = start; i < end; i++) {
            if (i > start)
                sb_str(&b, "+");
            if (format_entry(&b, X509_NAME_get_entry(name, i)) != 0) {
                free(b.s);
                return NULL;
            }
        }
        end = start;
    }
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

char *dn_get_text(const X509_NAME *name, int nid)
{
    if (name == NULL)
        return NULL;
    int last = -1;
    for (int i = X509_NAME_get_index_by_NID(name, nid, -1); i >= 0;
         i = X509_NAME_get_index_by_NID(name, nid, i))
        last = i;
    if (last < 0)
        return NULL;
    unsigned char *v = NULL;
    int n = ASN1_STRING_to_UTF8(&v, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, last)));
    if (n < 0) {
        ERR_clear_error();
        return NULL;
    }
    char *copy = NULL;
    if (memchr(v, '\0', (size_t)n) == NULL) {
        copy = malloc((size_t)n + 1);
        if (copy != NULL) {
            memcpy(copy, v, (size_t)n);
            copy[n] = '\0';
        }
    }
    OPENSSL_free(v);
    return copy;
}

int dn_keyword_nid(const char *keyword)
{
    for (size_t i = 0; i < N_KEYWORDS; i++)
        if (strcasecmp(keywords[i].name, keyword) == 0)
            return keywords[i].nid;
    return NID_undef;
}

const char *dn_keyword_for_nid(int nid)
{
    for (size_t i = 0; i < N_KEYWORDS; i++)
        if (keywords[i].nid == nid)
            return keywords[i].name;
    return NULL;
}

/* Place of an attribute type in the customary string order (most specific first). */
static int string_rank(int nid)
{
    static const int order[] = {NID_pkcs9_emailAddress,
                                NID_commonName,
                                NID_surname,
                                NID_givenName,
                                NID_initials,
                                NID_title,
                                NID_userId,
                                NID_serialNumber,
                                NID_organizationalUnitName,
                                NID_organizationName,
                                NID_streetAddress,
                                NID_localityName,
                                NID_stateOrProvinceName,
                                NID_postalCode,
                                NID_countryName,
                                NID_domainComponent};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (order[i] == nid)
            return (int)i;
    return (int)(sizeof order / sizeof order[0]); /* others go last */
}

int dn_add_default(X509_NAME *name, int nid, const char *value, enroll_error *err)
{
    if (!utf8_valid((const unsigned char *)value, strlen(value)) || *value == '\0') {
        enroll_error_set(err, DN_CODE, "Subject", "default %s value is empty or not UTF-8",
                         OBJ_nid2sn(nid));
        return -1;
    }
    /* Walk the string order (DER order backwards) to the first entry that customarily comes
     * after this one; the new RDN goes just before it in the string, after it in DER. */
    int rank = string_rank(nid), count = X509_NAME_entry_count(name), loc = 0;
    for (int i = count - 1; i >= 0; i--) {
        int other = OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(name, i)));
        if (string_rank(other) > rank) {
            loc = i + 1;
            break;
        }
    }
    if (!X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8, (const unsigned char *)value, -1, loc,
                                    0)) {
        enroll_error_set(err, DN_CODE, "Subject", "invalid default value for %s", OBJ_nid2sn(nid));
        enroll_error_add_openssl(err);
        return -1;
    }
    return 0;
}
