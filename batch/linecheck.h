/* Everything that is checked of a batch line before any HSM or CA work, in one place so that
 * `run` and `validate` cannot disagree: parsing and policy (independent of other lines, so they
 * may run on several threads), then, in line order, duplicate Ids and key reuse. */
#ifndef HSMENROLL_BATCH_LINECHECK_H
#define HSMENROLL_BATCH_LINECHECK_H

#include "config.h"
#include "idset.h"
#include "keyhistory.h"
#include "policy.h"
#include "request.h"

typedef struct line_checker {
    const config *cfg;
    request_defaults defaults;
    const char *default_ca; /* run --ca: for lines that name no CA */
    idset seen_ids;
    idset store_aliases; /* "store GUID \x1f alias" taken by the lines so far */
    key_history history;
    bool history_loaded; /* the history is read on the first CSR line */
    const char *run_id;
} line_checker;

/* Prepares a checker. The issuance logs of the configuration's local CAs make the key history
 * (for AllowKeyReuse), read when the first CSR line comes. run_id names the run being resumed (its
 * own issuances are not reuse by the requests they were for), NULL for none. */
void line_checker_init(line_checker *lc, const config *cfg, const request_defaults *defaults,
                       const char *default_ca, const char *run_id);
void line_checker_free(line_checker *lc);

/* The part that depends on this line only: parsing and policy. Thread-safe. Returns the request
 * (NULL when the line is not a JSON object); the raw line is wiped when it carried a PrivateKey. */
enroll_request *line_check_alone(const line_checker *lc, char *text, size_t len, long line,
                                 policy_decision *decision, error_list *errors);
/* The part that depends on the lines before, called in line order: a duplicate Id, a CSR key
 * already certified (AllowKeyReuse false), an alias another line already reenrolls; a good CSR
 * line's key joins the history. */
void line_check_in_order(line_checker *lc, const enroll_request *req,
                         const policy_decision *decision, error_list *errors);
/* Both, for one line. *id gets the Id to report the line under (owned by the request, or NULL). */
enroll_request *line_check(line_checker *lc, char *text, size_t len, long line,
                           policy_decision *decision, error_list *errors, const char **id);

#endif
