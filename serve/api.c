/* The Keyfactor endpoints of `serve`: one dispatch table (method, path, handler, whether the
 * x-keyfactor-requested-with header is required, the permission needed, the configuration lock
 * taken), and the Status endpoints. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve/internal.h"

#define PATTERN_MODIFY_PERMISSION "enrollment_pattern/modify"
#define PRODUCT_VERSION           "25.1.1.0"

typedef enum lock_kind { LOCK_NONE = 0, LOCK_READ, LOCK_WRITE } lock_kind;

static api_handler status_endpoints, status_healthcheck, certificates_revoke;

typedef struct route {
    const char *method;
    const char *path; /* "{id}" stands for one integer segment */
    api_handler *handler;
    bool requested_with; /* x-keyfactor-requested-with required */
    const char *permission;
    lock_kind lock;
} route;

static const route routes[] = {
    {"GET", "/Status/Endpoints", status_endpoints, true, NULL, LOCK_NONE},
    {"GET", "/Status/HealthCheck", status_healthcheck, false, NULL, LOCK_NONE},
    {"POST", "/Enrollment/CSR", api_enroll_csr, true, NULL, LOCK_READ},
    {"POST", "/Enrollment/PFX", api_enroll_pfx, true, NULL, LOCK_READ},
    {"GET", "/Enrollment/CSR/Context/My", api_enrollment_context, true, NULL, LOCK_READ},
    {"GET", "/Enrollment/PFX/Context/My", api_enrollment_context, true, NULL, LOCK_READ},
    {"POST", "/CertificateStores/Reenrollment", api_store_reenrollment, true, NULL, LOCK_READ},
    {"GET", "/EnrollmentPatterns", api_list_patterns, true, NULL, LOCK_READ},
    {"GET", "/EnrollmentPatterns/{id}", api_get_pattern, true, NULL, LOCK_READ},
    {"POST", "/EnrollmentPatterns", api_add_pattern, true, PATTERN_MODIFY_PERMISSION, LOCK_WRITE},
    {"GET", "/MetadataFields", api_list_metadata_fields, true, NULL, LOCK_READ},
    {"GET", "/Templates", api_list_templates, true, NULL, LOCK_READ},
    {"GET", "/CertificateAuthority", api_list_cas, true, NULL, LOCK_READ},
    {"GET", "/Certificates", api_list_certificates, true, NULL, LOCK_READ},
    {"GET", "/Certificates/{id}", api_get_certificate, true, NULL, LOCK_READ},
    {"POST", "/Certificates/Download", api_download_certificate, true, NULL, LOCK_READ},
    {"POST", "/Certificates/Revoke", certificates_revoke, false, NULL, LOCK_NONE},
};
#define ROUTE_COUNT (sizeof routes / sizeof routes[0])

/* path against a route's path, segment by segment, ignoring case and a trailing slash; the
 * {id} segment's value in *id. */
static bool path_matches(const char *pattern, const char *path, long long *id)
{
    *id = -1;
    while (*pattern != '\0') {
        if (*path != '/' || *pattern != '/')
            return false;
        pattern++, path++;
        size_t pn = strcspn(pattern, "/"), n = strcspn(path, "/");
        if (pn == 4 && strncmp(pattern, "{id}", 4) == 0) {
            if (n == 0 || n > 18 || strspn(path, "0123456789") != n)
                return false;
            *id = strtoll(path, NULL, 10);
        } else if (pn != n || strncasecmp(pattern, path, n) != 0) {
            return false;
        }
        pattern += pn, path += n;
    }
    return *path == '\0' || strcmp(path, "/") == 0;
}

static void status_endpoints(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)srv, (void)call, (void)id;
    json_t *list = json_array();
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        char text[128];
        snprintf(text, sizeof text, "%s %s", routes[i].method, routes[i].path);
        json_array_append_new(list, json_string(text));
    }
    answer->body = list;
    answer->product_version = PRODUCT_VERSION;
}

static void status_healthcheck(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)srv, (void)call, (void)id;
    answer->status = 204;
    answer->no_body = true;
}

/* serve/revocation.c (it takes the locks it needs itself). */
static void certificates_revoke(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)id;
    api_revoke(srv, call, answer);
}

void api_dispatch(server *srv, const api_call *call, api_answer *answer)
{
    const route *found = NULL;
    bool path_known = false;
    long long id = -1;
    for (size_t i = 0; i < ROUTE_COUNT && found == NULL; i++) {
        long long this_id;
        if (!path_matches(routes[i].path, call->path, &this_id))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, call->method) == 0)
            found = &routes[i], id = this_id;
    }
    if (found == NULL) {
        if (path_known)
            api_error(answer, HSE_METHOD_NOT_ALLOWED, "%.200s does not take %.10s", call->path,
                      call->method);
        else
            api_error(answer, HSE_NOT_FOUND, "no such resource: %.200s", call->path);
        return;
    }
    if (found->requested_with && call->requested_with == NULL) {
        api_error(answer, HSE_MISSING_HEADER,
                  "the x-keyfactor-requested-with header is required (APIClient)");
        return;
    }
    if (call->api_version != NULL) {
        char *end;
        double v = strtod(call->api_version, &end);
        if (*end != '\0' || (v != 1.0 && v != 2.0)) {
            api_error(answer, HSE_INVALID_HEADER,
                      "x-keyfactor-api-version: %.20s is not a version of this API (1 or 2)",
                      call->api_version);
            return;
        }
    }
    if (found->permission != NULL &&
        !serve_user_has_permission(call->caller.user, found->permission)) {
        api_error(answer, HSE_FORBIDDEN, "user \"%s\" lacks the permission %s",
                  serve_user_name(call->caller.user), found->permission);
        return;
    }
    if (found->lock == LOCK_READ)
        pthread_rwlock_rdlock(&srv->config_lock);
    else if (found->lock == LOCK_WRITE)
        pthread_rwlock_wrlock(&srv->config_lock);
    found->handler(srv, call, answer, id);
    if (found->lock != LOCK_NONE)
        pthread_rwlock_unlock(&srv->config_lock);
}
