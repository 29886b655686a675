/* The query language of the list endpoints: a tokenizer (quoted strings, bare words, operators,
 * parentheses; AND/OR may be glued to the token before them, as clients write "x"AND), a
 * recursive-descent parser into a small tree, and its evaluation against one JSON object. */
#include "serve/query.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum op { OP_EQ, OP_NE, OP_CONTAINS, OP_STARTS, OP_ENDS, OP_GT, OP_GE, OP_LT, OP_LE } op;

typedef enum node_kind { NODE_CMP, NODE_AND, NODE_OR, NODE_ALL } node_kind;

struct query {
    node_kind kind;
    /* NODE_CMP */
    char *field; /* as the resource names it */
    op op;
    char *value; /* trimmed */
    /* NODE_AND, NODE_OR */
    struct query *left, *right;
};

static const struct {
    const char *name;
    op op;
} ops[] = {{"-eq", OP_EQ},
           {"-ne", OP_NE},
           {"-contains", OP_CONTAINS},
           {"-startswith", OP_STARTS},
           {"-endswith", OP_ENDS},
           {"-gt", OP_GT},
           {"-ge", OP_GE},
           {"-lt", OP_LT},
           {"-le", OP_LE}};

typedef enum tok_kind { T_END, T_WORD, T_STRING, T_LPAREN, T_RPAREN } tok_kind;

typedef struct parser {
    const char *p;
    tok_kind kind;
    char *text; /* T_WORD, T_STRING */
    const char *const *fields;
    char *error;
    size_t size;
    bool failed;
} parser;

static void fail(parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(parser *ps, const char *fmt, ...)
{
    if (ps->failed)
        return;
    ps->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->error, ps->size, fmt, ap);
    va_end(ap);
}

/* Reads the next token into ps. A bare word ends at a space, a parenthesis or a quote. */
static void next(parser *ps)
{
    free(ps->text);
    ps->text = NULL;
    while (isspace((unsigned char)*ps->p))
        ps->p++;
    if (*ps->p == '\0') {
        ps->kind = T_END;
        return;
    }
    if (*ps->p == '(' || *ps->p == ')') {
        ps->kind = *ps->p == '(' ? T_LPAREN : T_RPAREN;
        ps->p++;
        return;
    }
    if (*ps->p == '"' || *ps->p == '\'') {
        char quote = *ps->p++;
        const char *end = strchr(ps->p, quote);
        if (end == NULL) {
            fail(ps, "a quoted value is not closed");
            ps->kind = T_END;
            return;
        }
        ps->kind = T_STRING;
        ps->text = strndup(ps->p, (size_t)(end - ps->p));
        ps->p = end + 1;
        return;
    }
    const char *start = ps->p;
    while (*ps->p != '\0' && !isspace((unsigned char)*ps->p) && *ps->p != '(' && *ps->p != ')' &&
           *ps->p != '"' && *ps->p != '\'')
        ps->p++;
    ps->kind = T_WORD;
    ps->text = strndup(start, (size_t)(ps->p - start));
}

static bool word_is(const parser *ps, const char *w)
{
    return ps->kind == T_WORD && strcasecmp(ps->text, w) == 0;
}

static query *node(node_kind kind)
{
    query *q = calloc(1, sizeof *q);
    if (q != NULL)
        q->kind = kind;
    return q;
}

/* The value without the spaces around it (a client sends "Example CA "). */
static char *trimmed(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return strndup(s, n);
}

static query *parse_or(parser *ps);

static query *parse_primary(parser *ps)
{
    if (ps->kind == T_LPAREN) {
        next(ps);
        query *q = parse_or(ps);
        if (ps->kind != T_RPAREN)
            fail(ps, "a parenthesis is not closed");
        else
            next(ps);
        return q;
    }
    if (ps->kind != T_WORD) {
        fail(ps, "expected a field name");
        return NULL;
    }
    const char *canonical = NULL;
    for (size_t i = 0; ps->fields[i] != NULL && canonical == NULL; i++)
        if (strcasecmp(ps->fields[i], ps->text) == 0)
            canonical = ps->fields[i];
    if (canonical == NULL) {
        char known[400] = "";
        for (size_t i = 0; ps->fields[i] != NULL; i++) {
            if (i > 0)
                strncat(known, ", ", sizeof known - strlen(known) - 1);
            strncat(known, ps->fields[i], sizeof known - strlen(known) - 1);
        }
        fail(ps, "unknown field \"%.60s\" (fields: %s)", ps->text, known);
        return NULL;
    }
    next(ps);
    int which = -1;
    for (size_t i = 0; ps->kind == T_WORD && i < sizeof ops / sizeof *ops && which < 0; i++)
        if (strcasecmp(ops[i].name, ps->text) == 0)
            which = (int)i;
    if (which < 0) {
        fail(ps,
             "%s: expected an operator (-eq, -ne, -contains, -startswith, -endswith, -gt, "
             "-ge, -lt, -le)",
             canonical);
        return NULL;
    }
    next(ps);
    if (ps->kind != T_WORD && ps->kind != T_STRING) {
        fail(ps, "%s: expected a value (a quoted string, a number, true or false)", canonical);
        return NULL;
    }
    query *q = node(NODE_CMP);
    if (q == NULL) {
        fail(ps, "out of memory");
        return NULL;
    }
    q->field = strdup(canonical);
    q->op = ops[which].op;
    q->value = trimmed(ps->text);
    next(ps);
    /* "x"AND is one token after a quoted string: the glued keyword is the next word. */
    return q;
}

static query *parse_and(parser *ps)
{
    query *left = parse_primary(ps);
    while (!ps->failed && word_is(ps, "AND")) {
        next(ps);
        query *q = node(NODE_AND);
        if (q == NULL) {
            fail(ps, "out of memory");
            break;
        }
        q->left = left;
        q->right = parse_primary(ps);
        left = q;
    }
    return left;
}

static query *parse_or(parser *ps)
{
    query *left = parse_and(ps);
    while (!ps->failed && word_is(ps, "OR")) {
        next(ps);
        query *q = node(NODE_OR);
        if (q == NULL) {
            fail(ps, "out of memory");
            break;
        }
        q->left = left;
        q->right = parse_and(ps);
        left = q;
    }
    return left;
}

query *query_parse(const char *text, const char *const *fields, char *error, size_t size)
{
    parser ps = {.p = text ? text : "", .fields = fields, .error = error, .size = size};
    next(&ps);
    if (ps.kind == T_END && !ps.failed)
        return node(NODE_ALL);
    query *q = parse_or(&ps);
    if (!ps.failed && ps.kind != T_END)
        fail(&ps, "unexpected \"%.40s\" (expected AND, OR or the end)",
             ps.text               ? ps.text
             : ps.kind == T_LPAREN ? "("
                                   : ")");
    free(ps.text);
    if (ps.failed) {
        query_free(q);
        return NULL;
    }
    return q;
}

void query_free(query *q)
{
    if (q == NULL)
        return;
    query_free(q->left);
    query_free(q->right);
    free(q->field);
    free(q->value);
    free(q);
}

static bool as_number(const char *s, double *out)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno == 0 && *end == '\0';
}

/* A string that contains needle, ignoring case. */
static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay != '\0'; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return n == 0;
}

static bool compare(const query *q, const json_t *v)
{
    char buf[64];
    const char *text = NULL;
    if (json_is_string(v))
        text = json_string_value(v);
    else if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v)), text = buf;
    else if (json_is_real(v))
        snprintf(buf, sizeof buf, "%g", json_real_value(v)), text = buf;
    else if (json_is_boolean(v))
        text = json_is_true(v) ? "true" : "false";
    if (text == NULL) /* null or absent: only -ne holds */
        return q->op == OP_NE;
    double a, b;
    bool numeric = json_is_number(v) && as_number(q->value, &b);
    if (numeric)
        a = json_number_value(v);
    int cmp = numeric ? (a > b) - (a < b) : strcasecmp(text, q->value);
    size_t tl = strlen(text), vl = strlen(q->value);
    switch (q->op) {
    case OP_EQ:
        return cmp == 0;
    case OP_NE:
        return cmp != 0;
    case OP_CONTAINS:
        return contains_ci(text, q->value);
    case OP_STARTS:
        return strncasecmp(text, q->value, vl) == 0;
    case OP_ENDS:
        return tl >= vl && strcasecmp(text + tl - vl, q->value) == 0;
    case OP_GT:
        return cmp > 0;
    case OP_GE:
        return cmp >= 0;
    case OP_LT:
        return cmp < 0;
    case OP_LE:
        return cmp <= 0;
    }
    return false;
}

static const json_t *member_ci(const json_t *obj, const char *name)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value)
    {
        if (strcasecmp(key, name) == 0)
            return value;
    }
    return NULL;
}

bool query_match(const query *q, const json_t *item)
{
    switch (q->kind) {
    case NODE_ALL:
        return true;
    case NODE_AND:
        return query_match(q->left, item) && query_match(q->right, item);
    case NODE_OR:
        return query_match(q->left, item) || query_match(q->right, item);
    case NODE_CMP: {
        const json_t *v = member_ci(item, q->field);
        if (json_is_array(v)) { /* a field with several values matches when one does */
            size_t i;
            json_t *e;
            json_array_foreach((json_t *)v, i, e)
            {
                if (compare(q, e))
                    return q->op != OP_NE || json_array_size(v) == 1;
            }
            return q->op == OP_NE;
        }
        return compare(q, v);
    }
    }
    return false;
}
