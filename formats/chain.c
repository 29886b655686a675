/* Chain ordering for the output bundles: puts a leaf and the certificates a CA returned in
 * issuing order (leaf, its issuer, ..., root) or the reverse, keeping strays at the end. */
#include "bundle.h"

#include <openssl/x509v3.h>
#include <stdlib.h>

/* True when cert is already in out (same DER, X509_cmp). */
static bool already_taken(STACK_OF(X509) * out, X509 *cert)
{
    for (int i = 0; i < sk_X509_num(out); i++)
        if (X509_cmp(sk_X509_value(out, i), cert) == 0)
            return true;
    return false;
}

static bool push_ref(STACK_OF(X509) * out, X509 *cert)
{
    if (!X509_up_ref(cert))
        return false;
    if (sk_X509_push(out, cert) <= 0) {
        X509_free(cert);
        return false;
    }
    return true;
}

/* Index in chain of an unused certificate that issued cur (issuer name equal to its subject,
 * and X509_check_issued agreeing: key identifiers, key usage), or -1. */
static int find_issuer(STACK_OF(X509) * chain, const bool *used, X509 *cur)
{
    const X509_NAME *want = X509_get_issuer_name(cur);
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        if (used[i] || X509_NAME_cmp(X509_get_subject_name(c), want) != 0)
            continue;
        if (X509_check_issued(c, cur) == X509_V_OK)
            return i;
    }
    return -1;
}

static void reverse(STACK_OF(X509) * sk)
{
    for (int i = 0, j = sk_X509_num(sk) - 1; i < j; i++, j--) {
        X509 *a = sk_X509_value(sk, i);
        sk_X509_set(sk, i, sk_X509_value(sk, j));
        sk_X509_set(sk, j, a);
    }
}

STACK_OF(X509) *
    chain_arrange(X509 *leaf, STACK_OF(X509) * chain, bool include_chain, chain_order order)
{
    if (leaf == NULL)
        return NULL;
    STACK_OF(X509) *out = sk_X509_new_null();
    bool *used = NULL;
    int n = include_chain ? sk_X509_num(chain) : 0;
    if (out == NULL || !push_ref(out, leaf))
        goto fail;
    if (n <= 0)
        return out;
    if ((used = calloc((size_t)n, sizeof *used)) == NULL)
        goto fail;

    /* Copies of the leaf (some CAs repeat it in the chain) are dropped. */
    for (int i = 0; i < n; i++)
        used[i] = X509_cmp(sk_X509_value(chain, i), leaf) == 0;

    /* The path: from the leaf, each next issuer, until a self-signed certificate (the root) or
     * one whose issuer is not in chain. used[] also stops a cross-certified loop. */
    X509 *cur = leaf;
    while (X509_check_issued(cur, cur) != X509_V_OK) {
        int i = find_issuer(chain, used, cur);
        if (i < 0)
            break;
        used[i] = true;
        cur = sk_X509_value(chain, i);
        if (!push_ref(out, cur))
            goto fail;
    }

    /* Strays, in their given order, without repeating one already present. */
    for (int i = 0; i < n; i++) {
        X509 *c = sk_X509_value(chain, i);
        if (used[i] || already_taken(out, c))
            continue;
        if (!push_ref(out, c))
            goto fail;
    }
    free(used);
    if (order == CHAIN_ROOT_FIRST)
        reverse(out);
    return out;

fail:
    free(used);
    sk_X509_pop_free(out, X509_free);
    return NULL;
}
