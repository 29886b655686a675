/* Enrollment-pattern policy for one request, in the order of the Keyfactor pages: template and
 * pattern resolution (the pattern wins, a mismatching Template fails, a template's default
 * pattern when only the Template is given), CA selection, AllowedEnrollmentTypes, subject
 * Defaults, CommonNameRegex and Regexes, RFC 2818 enforcement, wildcards, key policy, key reuse,
 * certificate owner, metadata, enrollment fields and application settings. Runs before any key is
 * made; every violation is reported, not just the first. Defaults the pattern supplies (subject
 * parts, the CN as a DNS SAN, the owner, metadata values) are applied to the request. */
#ifndef HSMENROLL_BATCH_POLICY_H
#define HSMENROLL_BATCH_POLICY_H

#include "config.h"
#include "request.h"

typedef struct policy_decision {
    const config_template *template_;
    const config_pattern *pattern;
    const config_ca *ca;
    const config_store *store; /* Reenrollment: the store KeystoreId names */
} policy_decision;

/* Resolves and checks req against cfg, adding every violation to errors (codes: UNKNOWN_TEMPLATE,
 * UNKNOWN_PATTERN, TEMPLATE_MISMATCH, NO_DEFAULT_PATTERN, UNKNOWN_CA, CA_NOT_ALLOWED,
 * STORE_UNKNOWN, STORE_AGENT_MISMATCH and the
 * POLICY_* codes of the README). Key reuse depends on the lines before this one and is checked
 * by batch/linecheck.h. Thread-safe for distinct requests. Returns 0 when nothing was added to
 * errors. */
int policy_apply(const config *cfg, enroll_request *req, policy_decision *out, error_list *errors);

#endif
