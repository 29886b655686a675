/* Template / pattern / CA resolution for a request, following the Keyfactor pages' precedence. */
#include "policy.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* A cheap thread-safe PRNG for picking among allowed CAs (not for anything secret). */
static uint64_t next_random(void)
{
    static _Atomic uint64_t state;
    uint64_t s = atomic_load(&state);
    if (s == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ 0x9e3779b97f4a7c15ULL;
    }
    uint64_t x;
    do {
        x = s;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    } while (!atomic_compare_exchange_weak(&state, &s, x));
    return x;
}

static bool ca_allowed(const long long *ids, size_t n, long long id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

int policy_apply(const config *cfg, const enroll_request *req, policy_decision *out,
                 enroll_error *err)
{
    memset(out, 0, sizeof *out);
    const config_template *named = NULL;
    if (req->template_name != NULL) {
        named = config_find_template_by_name(cfg, req->template_name);
        if (named == NULL) {
            enroll_error_set(err, "UNKNOWN_TEMPLATE", "Template",
                             "no template named \"%.80s\" in %s", req->template_name, cfg->source);
            return -1;
        }
    }
    if (req->pattern_id >= 0) {
        out->pattern = config_find_pattern(cfg, req->pattern_id);
        if (out->pattern == NULL) {
            enroll_error_set(err, "UNKNOWN_PATTERN", "EnrollmentPatternId",
                             "no enrollment pattern with Id %lld in %s", req->pattern_id,
                             cfg->source);
            return -1;
        }
        if (named != NULL && named != out->pattern->template_) {
            enroll_error_set(err, "TEMPLATE_MISMATCH", "Template",
                             "Template \"%.80s\" is not the template of enrollment pattern %lld "
                             "(\"%.80s\")",
                             req->template_name, req->pattern_id, out->pattern->template_->name);
            return -1;
        }
    } else {
        out->pattern = config_default_pattern(cfg, named);
        if (out->pattern == NULL) {
            enroll_error_set(err, "NO_DEFAULT_PATTERN", "Template",
                             "template \"%.80s\" has no enrollment pattern to enroll with",
                             named->name);
            return -1;
        }
    }
    out->template_ = out->pattern->template_;

    long long wanted = req->operation == OP_PFX ? 1 : req->operation == OP_CSR ? 2 : 1;
    if ((out->pattern->allowed_enrollment_types & wanted) == 0) {
        enroll_error_set(err, "ENROLLMENT_TYPE_NOT_ALLOWED", "Operation",
                         "enrollment pattern \"%.80s\" does not allow %s enrollment",
                         out->pattern->name, wanted == 1 ? "PFX" : "CSR");
        return -1;
    }

    const long long *ids = out->template_->ca_ids;
    size_t n = out->template_->ca_count;
    if (out->pattern->restrict_cas) {
        ids = out->pattern->ca_ids;
        n = out->pattern->ca_count;
    }
    if (req->ca_name != NULL) {
        const config_ca *ca = config_find_ca_by_name(cfg, req->ca_name);
        if (ca == NULL) {
            enroll_error_set(err, "UNKNOWN_CA", "CertificateAuthority",
                             "no certificate authority named \"%.80s\" in %s", req->ca_name,
                             cfg->source);
            return -1;
        }
        if (!ca_allowed(ids, n, ca->id)) {
            enroll_error_set(err, "CA_NOT_ALLOWED", "CertificateAuthority",
                             "certificate authority \"%.80s\" is not allowed for pattern "
                             "\"%.80s\" (template \"%.80s\")",
                             ca->name, out->pattern->name, out->template_->name);
            return -1;
        }
        out->ca = ca;
        return 0;
    }
    if (n == 0) {
        enroll_error_set(err, "CA_NOT_ALLOWED", "CertificateAuthority",
                         "no certificate authority is available for pattern \"%.80s\"",
                         out->pattern->name);
        return -1;
    }
    out->ca = config_find_ca_by_id(cfg, ids[n == 1 ? 0 : next_random() % n]);
    return 0;
}
