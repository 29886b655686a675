/* The pre-flight check of a batch line, shared by run and validate. */
#include "linecheck.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

void line_checker_init(line_checker *lc, const config *cfg, const request_defaults *defaults,
                       const char *default_ca, const char *run_id)
{
    memset(lc, 0, sizeof *lc);
    lc->cfg = cfg;
    lc->defaults = *defaults;
    lc->default_ca = default_ca;
    idset_init(&lc->seen_ids);
    idset_init(&lc->store_aliases);
    key_history_init(&lc->history);
    lc->run_id = run_id;
}

/* The local CAs' issuance logs, read when the first CSR line needs them: a batch without CSR
 * lines does not pay for a CA's whole history before its first certificate. */
static void load_history(line_checker *lc)
{
    lc->history_loaded = true;
    for (size_t i = 0; i < lc->cfg->ca_count; i++) {
        if (lc->cfg->cas[i].type != CA_TYPE_LOCAL || lc->cfg->cas[i].home == NULL)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/issued.ndjson", lc->cfg->cas[i].home);
        key_history_load_log(&lc->history, path, lc->run_id);
    }
}

void line_checker_free(line_checker *lc)
{
    idset_free(&lc->seen_ids);
    idset_free(&lc->store_aliases);
    key_history_free(&lc->history);
}

enroll_request *line_check_alone(const line_checker *lc, char *text, size_t len, long line,
                                 policy_decision *decision, error_list *errors)
{
    memset(decision, 0, sizeof *decision);
    enroll_request *req = request_parse(text, len, line, &lc->defaults, errors);
    if (req == NULL)
        return NULL;
    if (lc->default_ca != NULL && req->ca_name == NULL)
        req->ca_name = strdup(lc->default_ca);
    policy_apply(lc->cfg, req, decision, errors);
    if (req->private_key != NULL)
        OPENSSL_cleanse(text, len);
    return req;
}

/* One line per alias of a store in a batch: a second one would race the first's swap. */
static void claim_alias(line_checker *lc, const char *store_id, const char *alias,
                        const char *field, error_list *errors)
{
    char key[REQUEST_ALIAS_MAX + 64];
    snprintf(key, sizeof key, "%s\x1f%s", store_id, alias);
    for (char *p = key; *p != '\x1f' && *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p); /* GUIDs compare case-insensitively */
    if (idset_insert(&lc->store_aliases, key) == 0)
        error_list_add(errors, HSE_STORE_ALIAS_BUSY, field,
                       "alias \"%.80s\" of store %s is taken by an earlier line of the batch",
                       alias, store_id);
}

void line_check_in_order(line_checker *lc, const enroll_request *req,
                         const policy_decision *decision, error_list *errors)
{
    if (req == NULL)
        return;
    if (req->id != NULL && idset_insert(&lc->seen_ids, req->id) == 0)
        error_list_add(errors, HSE_DUPLICATE_ID, "Id",
                       "Id \"%.80s\" was already used earlier in the batch", req->id);
    if (req->operation == OP_REENROLLMENT && req->store_id != NULL && req->alias != NULL)
        claim_alias(lc, req->store_id, req->alias, "Alias", errors);
    for (size_t i = 0; i < req->store_count && req->id != NULL; i++)
        claim_alias(lc, req->stores[i].store_id,
                    req->stores[i].alias ? req->stores[i].alias : req->id, "Stores", errors);
    if (req->operation != OP_CSR || req->csr == NULL)
        return;
    bool reuse_allowed = decision->pattern != NULL && decision->pattern->policy.allow_key_reuse;
    if (!lc->history_loaded)
        load_history(lc);
    if (!reuse_allowed && key_history_reused(&lc->history, req->key_fingerprint, req->id))
        error_list_add(errors, HSE_POLICY_KEY_REUSE, "CSR",
                       "the CSR's public key was already certified, and this pattern does not "
                       "allow key reuse");
    else if (errors->count == 0)
        key_history_add(&lc->history, req->key_fingerprint);
}

enroll_request *line_check(line_checker *lc, char *text, size_t len, long line,
                           policy_decision *decision, error_list *errors, const char **id)
{
    enroll_request *req = line_check_alone(lc, text, len, line, decision, errors);
    line_check_in_order(lc, req, decision, errors);
    *id = req ? req->id : NULL;
    return req;
}
