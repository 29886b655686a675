/* `hsmenroll ca init|show|crl`: creating the embedded CA (keys in the HSM), describing it, and
 * making its CRL (signed in the HSM). */
#include <getopt.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "ca/crl.h"
#include "ca/local_ca.h"
#include "batch/log.h"
#include "engine/setup.h"

static const char ca_usage[] =
    "usage: hsmenroll ca init [options]\n"
    "       hsmenroll ca show [options]\n"
    "       hsmenroll ca crl [-o FILE] [--der] [options]\n"
    "\n"
    "The embedded CA: a root and an issuing CA whose private keys are generated in the HSM as\n"
    "persistent, sensitive, non-extractable objects. Certificates and state live in the CA's\n"
    "Home directory (HOME/ca for the embedded default): root.pem, issuing.pem, chain.pem,\n"
    "ca.json (key ids and RFC 7512 URIs) and issued.ndjson (one line per certificate issued).\n"
    "`run` creates the embedded default's CA on first use; `ca init` creates one explicitly.\n"
    "`ca crl` makes a CRL of the CA's revocations (revoked.ndjson, see `hsmenroll revoke`),\n"
    "signed in the HSM by the issuing CA, valid for the CA's CrlDays (default 7), numbered\n"
    "from HOME/crlnumber.\n"
    "\n"
    "options:\n"
    "  -c, --config FILE       configuration (default: the embedded default)\n"
    "      --home DIR          engine home of the embedded default\n"
    "      --ca NAME           which local CA of the configuration (default: every local CA for\n"
    "                          init, the first for show)\n"
    "      --key-type RSA|ECC  both CA keys of this type: ECC-P384 root and ECC-P256 issuing\n"
    "                          (the default), or RSA-3072 root and RSA-2048 issuing (the\n"
    "                          default on a module that cannot generate EC keys)\n"
    "      --root-key SPEC     root key: ECC-P256, ECC-P384, ECC-P521, RSA-2048, RSA-3072,\n"
    "                          RSA-4096\n"
    "      --issuing-key SPEC  issuing CA key (ECC-P256 by default: fast bulk signing)\n"
    "      --name STEM         name stem of the CA subjects (default hsmenroll)\n"
    "      --json              show: print JSON\n"
    "  -o, --output FILE       crl: write it there (default: standard output)\n"
    "      --der               crl: DER instead of PEM\n"
    "  -q, --quiet / -v, --verbose\n"
    "  -h, --help\n";

static int parse_key_spec(const char *s, hsm_key_spec *out)
{
    static const struct {
        const char *name;
        hsm_key_spec spec;
    } specs[] = {
        {"ECC-P256", {HSM_KEY_EC, 0, HSM_CURVE_P256}},
        {"ECC-P384", {HSM_KEY_EC, 0, HSM_CURVE_P384}},
        {"ECC-P521", {HSM_KEY_EC, 0, HSM_CURVE_P521}},
        {"RSA-2048", {HSM_KEY_RSA, 2048, 0}},
        {"RSA-3072", {HSM_KEY_RSA, 3072, 0}},
        {"RSA-4096", {HSM_KEY_RSA, 4096, 0}},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        if (strcasecmp(s, specs[i].name) == 0) {
            *out = specs[i].spec;
            return 0;
        }
    }
    return -1;
}

static int show(const engine_setup *s, const config_ca *ca, bool as_json)
{
    if (!local_ca_exists(ca->home)) {
        char hint[4200];
        log_error("CA \"%s\": no embedded CA in %s (create it with `hsmenroll ca init%s`)",
                  ca->name, ca->home, setup_hint_options(s, hint, sizeof hint));
        return EXIT_NOTHING_DONE;
    }
    json_t *out = local_ca_describe(ca->home, ca->name);
    if (out == NULL) {
        log_error("CA \"%s\": cannot read its files in %s", ca->name, ca->home);
        return EXIT_NOTHING_DONE;
    }
    if (as_json) {
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else {
        printf("CA %s (local), home %s, keys in token \"%s\"\n", ca->name, ca->home,
               json_string_value(json_object_get(out, "Token")));
        const char *which[] = {"Root", "IssuingCA"};
        for (int i = 0; i < 2; i++) {
            json_t *c = json_object_get(out, which[i]);
            printf("  %-10s %s\n",
                   i ? "issuing:" : "root:", json_string_value(json_object_get(c, "Subject")));
            printf("             serial %s, %s %d, valid %s to %s\n",
                   json_string_value(json_object_get(c, "SerialNumber")),
                   json_string_value(json_object_get(c, "KeyType")),
                   (int)json_integer_value(json_object_get(c, "KeyBits")),
                   json_string_value(json_object_get(c, "NotBefore")),
                   json_string_value(json_object_get(c, "NotAfter")));
            printf("             SHA-256 %s\n",
                   json_string_value(json_object_get(c, "SHA256Fingerprint")));
        }
        printf("  key:       %s\n", json_string_value(json_object_get(out, "IssuingKeyUri")));
        printf("  chain:     %s\n", json_string_value(json_object_get(out, "ChainFile")));
        printf("  issued:    %lld certificates\n",
               (long long)json_integer_value(json_object_get(out, "Issued")));
    }
    json_decref(out);
    return 0;
}

/* `ca crl`: the CA's CRL, signed in the HSM, to output (or standard output). */
static int make_crl(engine_setup *s, const config_ca *cfg, const char *output, bool der,
                    enroll_error *err)
{
    if (!local_ca_exists(cfg->home)) {
        char hint[4200];
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                         "CA \"%s\": no embedded CA in %s (create it with `hsmenroll ca init%s`)",
                         cfg->name, cfg->home, setup_hint_options(s, hint, sizeof hint));
        return EXIT_NOTHING_DONE;
    }
    if (setup_module(s, false, err) != 0 || setup_login(s, err) != 0)
        return EXIT_NOTHING_DONE;
    int t = hsm_context_token_index(&s->hsm, cfg->token ? cfg->token : "");
    if (t < 0) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "CA \"%s\": its token is not open",
                         cfg->name);
        return EXIT_NOTHING_DONE;
    }
    hsm_session session;
    hsm_context_login_session(&s->hsm, (size_t)t, &session);
    local_ca *ca = NULL;
    int rc = EXIT_NOTHING_DONE;
    revocation_list *list = NULL;
    X509_CRL *crl = NULL;
    FILE *out = NULL;
    if ((ca = local_ca_open(cfg->home, &session, err)) == NULL ||
        (list = revocation_open(cfg->home, err)) == NULL)
        goto done;
    signer sg;
    hsm_signer_ctx ctx;
    local_ca_signer(ca, &session, &sg, &ctx);
    crl = crl_make(cfg->home, local_ca_issuing(ca), &sg, list, (long)cfg->crl_days * 86400, err);
    if (crl == NULL)
        goto done;
    out = output ? fopen(output, "w") : stdout;
    if (out == NULL || (der ? i2d_X509_CRL_fp(out, crl) : PEM_write_X509_CRL(out, crl)) != 1 ||
        fflush(out) != 0) {
        enroll_error_set(err, HSE_WRITE_FAILED, NULL, "cannot write the CRL to %s",
                         output ? output : "standard output");
        goto done;
    }
    ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    log_info("CRL number %lld of CA \"%s\": %d revoked certificates%s%s",
             (long long)ASN1_INTEGER_get(number), cfg->name,
             sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), output ? ", written to " : "",
             output ? output : "");
    ASN1_INTEGER_free(number);
    rc = 0;
done:
    if (out != NULL && out != stdout)
        fclose(out);
    X509_CRL_free(crl);
    revocation_close(list);
    local_ca_close(ca);
    return rc;
}

int cli_ca(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},   {"home", required_argument, NULL, 'H'},
        {"ca", required_argument, NULL, 'A'},       {"key-type", required_argument, NULL, 'K'},
        {"root-key", required_argument, NULL, 'R'}, {"issuing-key", required_argument, NULL, 'I'},
        {"name", required_argument, NULL, 'N'},     {"json", no_argument, NULL, 'j'},
        {"output", required_argument, NULL, 'o'},   {"der", no_argument, NULL, 'D'},
        {"quiet", no_argument, NULL, 'q'},          {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *ca_name = NULL;
    cli_common common = {0};
    local_ca_options opt;
    local_ca_default_options(&opt);
    bool explicit_keys = false, root_given = false, issuing_given = false;
    hsm_key_spec root_spec = opt.root_key, issuing_spec = opt.issuing_key;
    bool as_json = false, der = false;
    const char *output = NULL;
    int c, exit_code;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "o:", options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, ca_usage, &common, &exit_code);
        if (handled < 0)
            return exit_code;
        if (handled)
            continue;
        switch (c) {
        case 'A':
            ca_name = optarg;
            break;
        case 'K':
            if (strcasecmp(optarg, "RSA") == 0) {
                opt.root_key = (hsm_key_spec){HSM_KEY_RSA, 3072, 0};
                opt.issuing_key = (hsm_key_spec){HSM_KEY_RSA, 2048, 0};
            } else if (strcasecmp(optarg, "ECC") == 0 || strcasecmp(optarg, "EC") == 0) {
                local_ca_options d;
                local_ca_default_options(&d);
                opt.root_key = d.root_key;
                opt.issuing_key = d.issuing_key;
            } else {
                cli_say("hsmenroll ca: --key-type is RSA or ECC, not \"%s\"\n", optarg);
                return EXIT_NOTHING_DONE;
            }
            explicit_keys = true;
            break;
        case 'R':
        case 'I':
            if (parse_key_spec(optarg, c == 'R' ? &root_spec : &issuing_spec) != 0) {
                cli_say("hsmenroll ca: unknown key spec \"%s\"\n", optarg);
                return EXIT_NOTHING_DONE;
            }
            *(c == 'R' ? &root_given : &issuing_given) = true;
            explicit_keys = true;
            break;
        case 'N':
            opt.name = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 'o':
            output = optarg;
            break;
        case 'D':
            der = true;
            break;
        }
    }
    /* --root-key and --issuing-key win over --key-type, whatever their order. */
    if (root_given)
        opt.root_key = root_spec;
    if (issuing_given)
        opt.issuing_key = issuing_spec;
    static const char *const words[] = {"init", "show", "crl", NULL};
    int operand = cli_operand(argc, argv, ca_usage, words);
    if (operand < 0)
        return EXIT_NOTHING_DONE;
    cli_set_verbosity(common.quiet, common.verbose);

    engine_setup s;
    enroll_error err;
    enroll_error_clear(&err);
    int rc = EXIT_NOTHING_DONE;
    if (setup_config(&s, common.config_path, common.home, &err) != 0)
        goto done;
    const config_ca *chosen = NULL;
    for (size_t i = 0; i < s.cfg->ca_count; i++) {
        const config_ca *ca = &s.cfg->cas[i];
        if (ca->type == CA_TYPE_LOCAL && (ca_name == NULL || strcasecmp(ca->name, ca_name) == 0)) {
            chosen = ca;
            break;
        }
    }
    if (chosen == NULL) {
        enroll_error_set(&err, HSE_CA_UNAVAILABLE, NULL, "%s has no local CA%s%s", s.cfg->source,
                         ca_name ? " named " : "", ca_name ? ca_name : "");
        goto done;
    }
    if (operand == 1) {
        rc = show(&s, chosen, as_json);
        goto done;
    }
    if (operand == 2) {
        rc = make_crl(&s, chosen, output, der, &err);
        goto done;
    }
    for (size_t i = 0; i < s.cfg->ca_count; i++) {
        const config_ca *ca = &s.cfg->cas[i];
        if (ca->type == CA_TYPE_LOCAL && (ca_name == NULL || ca == chosen) &&
            local_ca_exists(ca->home)) {
            enroll_error_set(&err, HSE_CA_EXISTS, NULL,
                             "CA \"%s\" already exists in %s; move that directory away to make "
                             "a new one",
                             ca->name, ca->home);
            goto done;
        }
    }
    if (setup_module(&s, s.embedded, &err) != 0 || setup_login(&s, &err) != 0)
        goto done;
    for (size_t i = 0; i < s.cfg->ca_count; i++) {
        const config_ca *ca = &s.cfg->cas[i];
        if (ca->type != CA_TYPE_LOCAL || (ca_name != NULL && ca != chosen))
            continue;
        int t = hsm_context_token_index(&s.hsm, ca->token);
        hsm_session session;
        hsm_context_login_session(&s.hsm, (size_t)t, &session);
        local_ca_options fitted = opt;
        bool chosen_rsa = false;
        if (local_ca_fit_keys(&fitted, &session, explicit_keys, &chosen_rsa, &err) != 0)
            goto done;
        if (chosen_rsa)
            log_info("token \"%s\" cannot generate the default ECC keys: CA \"%s\" gets "
                     "RSA-3072 (root) and RSA-2048 (issuing) keys",
                     ca->token, ca->name);
        if (local_ca_create(ca->home, &session, &fitted, &err) != 0)
            goto done;
        log_info("created CA \"%s\" in %s", ca->name, ca->home);
        if (!common.quiet && show(&s, ca, false) != 0)
            goto done;
    }
    rc = 0;
done:
    if (err.code[0] != '\0')
        log_error("%s", err.message);
    setup_free(&s);
    return rc;
}
