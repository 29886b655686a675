/* Enrollment-pattern policy for one request: which template, pattern and CA it enrolls under
 * (the seeds' precedence: pattern wins, a mismatching Template fails, a template's default
 * pattern when only the Template is given, a random allowed CA when none is named). */
#ifndef HSMENROLL_BATCH_POLICY_H
#define HSMENROLL_BATCH_POLICY_H

#include "config.h"
#include "request.h"

typedef struct policy_decision {
    const config_template *template_;
    const config_pattern *pattern;
    const config_ca *ca;
} policy_decision;

/* Resolves and checks req against cfg. Codes: UNKNOWN_TEMPLATE, UNKNOWN_PATTERN,
 * TEMPLATE_MISMATCH, NO_DEFAULT_PATTERN, ENROLLMENT_TYPE_NOT_ALLOWED, UNKNOWN_CA,
 * CA_NOT_ALLOWED. 0, or -1 with err. */
int policy_apply(const config *cfg, const enroll_request *req, policy_decision *out,
                 enroll_error *err);

#endif
