/* `hsmenroll ca init|show`: creating the embedded CA (keys in the HSM) and describing it. */
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "formats/dn.h"
#include "formats/hex.h"
#include "ca/local_ca.h"
#include "batch/log.h"
#include "engine/setup.h"

static const char ca_usage[] =
    "usage: hsmenroll ca init [options]\n"
    "       hsmenroll ca show [options]\n"
    "\n"
    "The embedded CA: a root and an issuing CA whose private keys are generated in the HSM as\n"
    "persistent, sensitive, non-extractable objects. Certificates and state live in the CA's\n"
    "Home directory (HOME/ca for the embedded default): root.pem, issuing.pem, chain.pem,\n"
    "ca.json (key ids and RFC 7512 URIs) and issued.ndjson (one line per certificate issued).\n"
    "`run` creates the embedded default's CA on first use; `ca init` creates one explicitly.\n"
    "\n"
    "options:\n"
    "  -c, --config FILE       configuration (default: the embedded default)\n"
    "      --home DIR          engine home of the embedded default\n"
    "      --ca NAME           which local CA of the configuration (default: every local CA for\n"
    "                          init, the first for show)\n"
    "      --root-key SPEC     root key: ECC-P256, ECC-P384 (default), ECC-P521, RSA-2048,\n"
    "                          RSA-3072, RSA-4096\n"
    "      --issuing-key SPEC  issuing CA key (default ECC-P256: fast bulk signing)\n"
    "      --name STEM         name stem of the CA subjects (default hsmenroll)\n"
    "      --json              show: print JSON\n"
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

static json_t *describe_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    if (cert == NULL)
        return NULL;
    char *subject = dn_format(X509_get_subject_name(cert));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *serial = bn ? BN_bn2hex(bn) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    X509_digest(cert, EVP_sha256(), md, &n);
    char fp[EVP_MAX_MD_SIZE * 2 + 1];
    hex_encode(md, n, fp, sizeof fp, true);
    char nb[32] = "?", na[32] = "?";
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm))
        strftime(nb, sizeof nb, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm))
        strftime(na, sizeof na, "%Y-%m-%dT%H:%M:%SZ", &tm);
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    json_t *out = json_pack(
        "{s:s?, s:s?, s:s, s:s, s:s, s:s, s:i}", "Subject", subject, "SerialNumber", serial,
        "NotBefore", nb, "NotAfter", na, "SHA256Fingerprint", fp, "KeyType",
        pub ? EVP_PKEY_get0_type_name(pub) : "?", "KeyBits", pub ? EVP_PKEY_get_bits(pub) : 0);
    free(subject);
    OPENSSL_free(serial);
    BN_free(bn);
    X509_free(cert);
    return out;
}

static long count_issued(const char *home)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/issued.ndjson", home);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    long n = 0;
    int ch;
    while ((ch = getc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

static int show(const config_ca *ca, bool as_json)
{
    if (!local_ca_exists(ca->home)) {
        log_error("CA \"%s\": no embedded CA in %s (create it with `hsmenroll ca init`)", ca->name,
                  ca->home);
        return EXIT_NOTHING_DONE;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/root.pem", ca->home);
    json_t *root = describe_cert(path);
    snprintf(path, sizeof path, "%s/issuing.pem", ca->home);
    json_t *issuing = describe_cert(path);
    snprintf(path, sizeof path, "%s/ca.json", ca->home);
    json_t *state = json_load_file(path, 0, NULL);
    snprintf(path, sizeof path, "%s/chain.pem", ca->home);
    const char *token = json_string_value(json_object_get(state, "Token"));
    json_t *out =
        json_pack("{s:s, s:s, s:s, s:o*, s:o*, s:O*, s:O*, s:s, s:I}", "Name", ca->name, "Home",
                  ca->home, "Token", token ? token : "?", "Root", root, "IssuingCA", issuing,
                  "RootKeyUri", json_object_get(state, "RootKeyUri"), "IssuingKeyUri",
                  json_object_get(state, "IssuingKeyUri"), "ChainFile", path, "Issued",
                  (json_int_t)count_issued(ca->home));
    json_decref(state);
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
        printf("  chain:     %s\n", path);
        printf("  issued:    %lld certificates\n",
               (long long)json_integer_value(json_object_get(out, "Issued")));
    }
    json_decref(out);
    return 0;
}

int cli_ca(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"home", required_argument, NULL, 'H'},
        {"ca", required_argument, NULL, 'A'},
        {"root-key", required_argument, NULL, 'R'},
        {"issuing-key", required_argument, NULL, 'I'},
        {"name", required_argument, NULL, 'N'},
        {"json", no_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *ca_name = NULL;
    cli_common common = {0};
    local_ca_options opt;
    local_ca_default_options(&opt);
    bool as_json = false;
    int c, exit_code;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, ca_usage, &common, &exit_code);
        if (handled < 0)
            return exit_code;
        if (handled)
            continue;
        switch (c) {
        case 'A':
            ca_name = optarg;
            break;
        case 'R':
        case 'I':
            if (parse_key_spec(optarg, c == 'R' ? &opt.root_key : &opt.issuing_key) != 0) {
                fprintf(stderr, "hsmenroll ca: unknown key spec \"%s\"\n", optarg);
                return EXIT_NOTHING_DONE;
            }
            break;
        case 'N':
            opt.name = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        }
    }
    static const char *const words[] = {"init", "show", NULL};
    int operand = cli_operand(argc, argv, ca_usage, words);
    if (operand < 0)
        return EXIT_NOTHING_DONE;
    bool init = operand == 0;
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
    if (!init) {
        rc = show(chosen, as_json);
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
        if (local_ca_create(ca->home, &session, &opt, &err) != 0)
            goto done;
        log_info("created CA \"%s\" in %s", ca->name, ca->home);
        if (!common.quiet && show(ca, false) != 0)
            goto done;
    }
    rc = 0;
done:
    if (err.code[0] != '\0')
        log_error("%s", err.message);
    setup_free(&s);
    return rc;
}
