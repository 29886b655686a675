/* What the endpoint files share. Request bodies as a real Keyfactor server reads them: raw CR,
 * LF and tabs inside JSON strings (clients that build bodies by concatenation send PEM that way),
 * a backslash before a character JSON does not escape kept as a backslash ("host\CA"), content
 * after the first JSON value ignored. Query parameters by any of their spellings, list filtering
 * and paging, error lists, pattern roles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve/internal.h"
#include "serve/query.h"

/* The body with control characters inside strings escaped and lone backslashes doubled. */
static char *body_repaired(const char *in, size_t len, size_t *out_len)
{
    char *out = malloc(len * 6 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (!in_string) {
            if (c == '"')
                in_string = true;
            out[o++] = (char)c;
            continue;
        }
        if (c == '"') {
            in_string = false;
            out[o++] = '"';
        } else if (c == '\\') {
            unsigned char e = i + 1 < len ? (unsigned char)in[i + 1] : 0;
            if (e != 0 && strchr("\"\\/bfnrtu", e) != NULL) {
                out[o++] = '\\';
                out[o++] = (char)e;
                i++;
            } else { /* not an escape: the backslash itself */
                out[o++] = '\\';
                out[o++] = '\\';
            }
        } else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            out[o++] = '\\';
            if (c == '\n')
                out[o++] = 'n';
            else if (c == '\r')
                out[o++] = 'r';
            else if (c == '\t')
                out[o++] = 't';
            else {
                memcpy(out + o, "u00", 3);
                o += 3;
                out[o++] = hex[c >> 4];
                out[o++] = hex[c & 15];
            }
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

json_t *api_body_object(const api_call *call, api_answer *answer)
{
    size_t len = 0;
    char *text = body_repaired(call->body, call->body_len, &len);
    if (text == NULL) {
        api_error(answer, HSE_INTERNAL, "out of memory");
        return NULL;
    }
    json_error_t jerr;
    json_t *body = json_loadb(text, len, JSON_DISABLE_EOF_CHECK, &jerr);
    free(text);
    if (body == NULL) {
        api_error(answer, HSE_INVALID_JSON, "the body is not JSON: line %d, column %d: %s",
                  jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        api_error(answer, HSE_INVALID_JSON, "the body must be a JSON object");
        return NULL;
    }
    return body;
}

const char *api_query_value(const api_call *call, const char *name)
{
    for (size_t i = 0; i < call->query_count; i++)
        if (strcasecmp(call->query[i].name, name) == 0)
            return call->query[i].value;
    return NULL;
}

const char *api_query_param(const api_call *call, const char *name)
{
    /* QueryString, pq.queryString (v10), sq.queryString (templates): ASP.NET binds them all. */
    const char *v = api_query_value(call, name);
    char prefixed[80];
    for (const char *p = "pq\0sq\0"; v == NULL && *p; p += 3) {
        snprintf(prefixed, sizeof prefixed, "%s.%s", p, name);
        v = api_query_value(call, prefixed);
    }
    return v;
}

void api_answer_errors(api_answer *answer, const error_list *errors)
{
    api_error(answer, errors->items[0].code_id, "%s", errors->items[0].message);
    if (errors->items[0].field[0] != '\0')
        json_object_set_new(answer->body, "Field", json_string(errors->items[0].field));
    if (errors->count > 1) {
        json_t *all = json_array();
        for (size_t i = 0; i < errors->count; i++) {
            json_t *e = json_pack("{s:s, s:s}", "ErrorCode", errors->items[i].code, "Message",
                                  errors->items[i].message);
            if (errors->items[i].field[0] != '\0')
                json_object_set_new(e, "Field", json_string(errors->items[i].field));
            json_array_append_new(all, e);
        }
        json_object_set_new(answer->body, "Errors", all);
    }
}

bool api_caller_may_use(const api_call *call, const config_pattern *pattern)
{
    if (pattern->use_ad_permissions)
        return true;
    for (size_t i = 0; i < pattern->policy.role_count; i++)
        if (serve_user_has_role(call->caller.user, pattern->policy.roles[i]))
            return true;
    return false;
}

/* A non-negative integer query parameter; def when absent; -2 when not one. */
static long long int_param(const api_call *call, const char *name, long long def)
{
    const char *v = api_query_param(call, name);
    if (v == NULL || *v == '\0')
        return def;
    char *end;
    long long n = strtoll(v, &end, 10);
    return *end == '\0' && n >= 0 ? n : -2;
}

json_t *api_filter(const api_call *call, json_t *items, json_t *views, const char *const *fields,
                   api_answer *answer)
{
    char error[512];
    query *q = query_parse(api_query_param(call, "QueryString"), fields, error, sizeof error);
    long long limit = int_param(call, "ReturnLimit", 0), page = int_param(call, "PageReturned", 1);
    if (q == NULL || limit < 0 || page < 0) {
        if (q == NULL)
            api_error(answer, HSE_INVALID_QUERY, "QueryString: %s", error);
        else
            api_error(answer, HSE_INVALID_QUERY,
                      "ReturnLimit and PageReturned take non-negative integers");
        query_free(q);
        json_decref(items);
        json_decref(views);
        return NULL;
    }
    if (page == 0)
        page = 1;
    json_t *out = json_array();
    long long matched = 0, skip = limit > 0 ? (page - 1) * limit : 0;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        if (!query_match(q, json_array_get(views, i)))
            continue;
        if (matched++ < skip)
            continue;
        if (limit > 0 && (long long)json_array_size(out) >= limit)
            break;
        json_array_append(out, item);
    }
    query_free(q);
    json_decref(items);
    json_decref(views);
    return out;
}
