/* The credentials of `hsmenroll serve` (serve/auth): hashing, loading and refusing
 * credentials files, checking passwords (cache, unknown users, threads), HTTP Basic parsing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "serve/auth.h"
#include "serve/guard.h"
#include "tests/support.h"

/* A hash made by Python's hashlib.pbkdf2_hmac('sha256', b'correct horse battery staple',
 * bytes(range(1, 17)), 1000), to check the format against an independent implementation. */
static const char external_hash[] =
    "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=";
static const char external_password[] = "correct horse battery staple";

static char *tmpdir;

static int suite_setup(void)
{
    tmpdir = test_tmpdir("serve-auth");
    return tmpdir ? 0 : 1;
}

static int suite_teardown(void)
{
    test_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

/* Writes content to TMPDIR/creds.json with mode; returns the path (static buffer). */
static const char *write_creds(const char *content, mode_t mode)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/creds.json", tmpdir);
    remove(path);
    CU_ASSERT_EQUAL_FATAL(test_write_file(path, content), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(path, mode), 0);
    return path;
}

/* Writes the JSON document (stolen) with mode 0600 and loads it. */
static serve_credentials *load_doc(json_t *doc, enroll_error *err)
{
    char *text = json_dumps(doc, 0);
    json_decref(doc);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    const char *path = write_creds(text, 0600);
    free(text);
    enroll_error_clear(err);
    return serve_credentials_load(path, err);
}

/* Loads text written with mode 0600; expects a refusal whose field is json_path and whose
 * message holds "creds.json: JSON_PATH: " (or "creds.json: " for "") and not `secret`. */
static void expect_refused(const char *text, const char *json_path, const char *secret)
{
    enroll_error err;
    enroll_error_clear(&err);
    serve_credentials *creds = serve_credentials_load(write_creds(text, 0600), &err);
    CU_ASSERT_PTR_NULL(creds);
    serve_credentials_free(creds);
    CU_ASSERT_STRING_EQUAL(err.code, "SERVE_CREDENTIALS");
    CU_ASSERT_STRING_EQUAL(err.field, json_path);
    char expected[128];
    snprintf(expected, sizeof expected, "creds.json: %s%s", json_path, *json_path ? ": " : "");
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, expected));
    if (secret != NULL && *secret != '\0')
        CU_ASSERT_PTR_NULL(strstr(err.message, secret));
    if (strstr(err.message, expected) == NULL || (secret && *secret && strstr(err.message, secret)))
        fprintf(stderr, "  unexpected message: [%s] %s\n", err.field, err.message);
}

/* A user entry {"Name":name,"Password":hash(password)} (hash made with iterations). */
static json_t *user_entry(const char *name, const char *password, unsigned iterations)
{
    char *hash = serve_password_hash(password, iterations);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hash);
    json_t *entry = json_pack("{s:s, s:s}", "Name", name, "Password", hash);
    free(hash);
    return entry;
}

static void test_hash_format(void)
{
    char *a = serve_password_hash("secret", 1000);
    char *b = serve_password_hash("secret", 1000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(strncmp(a, "pbkdf2-sha256$1000$", 19), 0);
    /* 16-byte salt = 24 base64 characters, 32-byte hash = 44 */
    const char *salt = a + 19, *hash = strchr(salt, '$');
    CU_ASSERT_PTR_NOT_NULL_FATAL(hash);
    CU_ASSERT_EQUAL(hash - salt, 24);
    CU_ASSERT_EQUAL(strlen(hash + 1), 44);
    CU_ASSERT_EQUAL(hash[44], '=');
    CU_ASSERT_PTR_NULL(strchr(hash + 1, '$'));
    CU_ASSERT_STRING_NOT_EQUAL(a, b); /* random salt */
    CU_ASSERT_PTR_NULL(strstr(a, "secret"));
    free(a);
    free(b);
    CU_ASSERT_PTR_NULL(serve_password_hash("secret", 999));
    CU_ASSERT_PTR_NULL(serve_password_hash("secret", 10000001));
    CU_ASSERT_PTR_NULL(serve_password_hash(NULL, 1000));
}

static void test_load_and_check(void)
{
    char *fleet_hash = serve_password_hash("fleet-pass", 1000);
    char *viewer_hash = serve_password_hash("viewer-pass", 1000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fleet_hash);
    CU_ASSERT_PTR_NOT_NULL_FATAL(viewer_hash);
    json_t *doc =
        json_pack("{s:[{s:s, s:s, s:[s, s], s:[s]}, {s:s, s:s}]}", "users", "NAME", "fleet",
                  "password", fleet_hash, "Roles", "Fleet Operators", "Auditors", "permissions",
                  "enrollment_pattern/modify", "Name", "viewer", "Password", viewer_hash);
    free(fleet_hash);
    free(viewer_hash);
    enroll_error err;
    serve_credentials *creds = load_doc(doc, &err);
    if (creds == NULL)
        fprintf(stderr, "  %s: %s\n", err.code, err.message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(creds);

    const serve_user *fleet = serve_credentials_check(creds, "fleet", "fleet-pass");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fleet);
    CU_ASSERT_STRING_EQUAL(serve_user_name(fleet), "fleet");
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "fleet", "fleet-pasS"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "fleet", ""));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "fleet", "viewer-pass"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "nobody", "fleet-pass"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "FLEET", "fleet-pass"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "", ""));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, NULL, "fleet-pass"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "fleet", NULL));
    /* answered from the cache now; a wrong password still fails afterwards */
    CU_ASSERT_PTR_EQUAL(serve_credentials_check(creds, "fleet", "fleet-pass"), fleet);
    CU_ASSERT_PTR_EQUAL(serve_credentials_check(creds, "fleet", "fleet-pass"), fleet);
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "fleet", "fleet-pas"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "fleet", "fleet-pass "));
    CU_ASSERT_PTR_EQUAL(serve_credentials_check(creds, "fleet", "fleet-pass"), fleet);

    const serve_user *viewer = serve_credentials_check(creds, "viewer", "viewer-pass");
    CU_ASSERT_PTR_NOT_NULL_FATAL(viewer);
    CU_ASSERT_PTR_NOT_EQUAL(viewer, fleet);
    CU_ASSERT_STRING_EQUAL(serve_user_name(viewer), "viewer");
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "viewer", "fleet-pass"));

    CU_ASSERT_TRUE(serve_user_has_role(fleet, "Fleet Operators"));
    CU_ASSERT_TRUE(serve_user_has_role(fleet, "fleet operators"));
    CU_ASSERT_TRUE(serve_user_has_role(fleet, "AUDITORS"));
    CU_ASSERT_FALSE(serve_user_has_role(fleet, "Fleet Operator"));
    CU_ASSERT_FALSE(serve_user_has_role(fleet, NULL));
    CU_ASSERT_TRUE(serve_user_has_permission(fleet, "enrollment_pattern/modify"));
    CU_ASSERT_TRUE(serve_user_has_permission(fleet, "Enrollment_Pattern/MODIFY"));
    CU_ASSERT_FALSE(serve_user_has_permission(fleet, "enrollment_pattern/read"));
    CU_ASSERT_FALSE(serve_user_has_permission(fleet, "Fleet Operators"));
    CU_ASSERT_FALSE(serve_user_has_role(viewer, "Fleet Operators"));
    CU_ASSERT_FALSE(serve_user_has_permission(viewer, "enrollment_pattern/modify"));
    CU_ASSERT_FALSE(serve_user_has_role(NULL, "Fleet Operators"));
    CU_ASSERT_FALSE(serve_user_has_permission(NULL, "enrollment_pattern/modify"));
    CU_ASSERT_PTR_NULL(serve_user_name(NULL));
    serve_credentials_free(creds);
    serve_credentials_free(NULL);
}

static void test_external_hash_verifies(void)
{
    char text[512];
    snprintf(text, sizeof text, "{\"Users\":[{\"Name\":\"py\",\"Password\":\"%s\"}]}",
             external_hash);
    enroll_error err;
    enroll_error_clear(&err);
    serve_credentials *creds = serve_credentials_load(write_creds(text, 0600), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(creds);
    CU_ASSERT_PTR_NOT_NULL(serve_credentials_check(creds, "py", external_password));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "py", "correct horse battery stapler"));
    serve_credentials_free(creds);
}

static void test_long_password(void)
{
    char password[1501];
    for (size_t i = 0; i < sizeof password - 1; i++)
        password[i] = (char)('!' + i % 90);
    password[sizeof password - 1] = '\0';
    json_t *doc = json_pack("{s:[o]}", "Users", user_entry("long", password, 1000));
    enroll_error err;
    serve_credentials *creds = load_doc(doc, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(creds);
    const serve_user *user = serve_credentials_check(creds, "long", password);
    CU_ASSERT_PTR_NOT_NULL(user);
    CU_ASSERT_PTR_EQUAL(serve_credentials_check(creds, "long", password), user); /* cached */
    password[1499] ^= 1;
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "long", password));
    password[1499] ^= 1;
    password[1499] = '\0';
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "long", password));
    serve_credentials_free(creds);

    /* and through an Authorization header */
    password[1499] = 'x';
    char plain[1600], header[2200];
    int n = snprintf(plain, sizeof plain, "long:%s", password);
    strcpy(header, "Basic ");
    EVP_EncodeBlock((unsigned char *)header + 6, (const unsigned char *)plain, n);
    char *name = NULL, *parsed = NULL;
    CU_ASSERT_EQUAL_FATAL(basic_auth_parse(header, &name, &parsed), 0);
    CU_ASSERT_STRING_EQUAL(name, "long");
    CU_ASSERT_STRING_EQUAL(parsed, password);
    free(name);
    free(parsed);
}

static void test_file_mode(void)
{
    char text[512];
    snprintf(text, sizeof text, "{\"Users\":[{\"Name\":\"py\",\"Password\":\"%s\"}]}",
             external_hash);
    static const mode_t refused[] = {0644, 0604, 0602, 0601, 0666};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        enroll_error err;
        enroll_error_clear(&err);
        serve_credentials *creds = serve_credentials_load(write_creds(text, refused[i]), &err);
        CU_ASSERT_PTR_NULL(creds);
        serve_credentials_free(creds);
        CU_ASSERT_STRING_EQUAL(err.code, "SERVE_CREDENTIALS");
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "creds.json"));
        char mode[8];
        snprintf(mode, sizeof mode, "%04o", (unsigned)refused[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, mode));
    }
    static const mode_t accepted[] = {0600, 0640, 0400};
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        enroll_error err;
        serve_credentials *creds = serve_credentials_load(write_creds(text, accepted[i]), &err);
        CU_ASSERT_PTR_NOT_NULL(creds);
        serve_credentials_free(creds);
    }

    enroll_error err;
    enroll_error_clear(&err);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/absent.json", tmpdir);
    CU_ASSERT_PTR_NULL(serve_credentials_load(missing, &err));
    CU_ASSERT_STRING_EQUAL(err.code, "SERVE_CREDENTIALS");
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "absent.json"));
    enroll_error_clear(&err);
    CU_ASSERT_PTR_NULL(serve_credentials_load(tmpdir, &err)); /* a directory */
    CU_ASSERT_STRING_EQUAL(err.code, "SERVE_CREDENTIALS");
}

static void test_malformed_hash_refused(void)
{
    static const char *const bad[] = {
        "hunter2-plaintext",
        "sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        "PBKDF2-SHA256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        "pbkdf2-sha256$999$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        "pbkdf2-sha256$10000001$AQIDBAUGBwgJCgsMDQ4PEA==$"
        "m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        "pbkdf2-sha256$01000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        "pbkdf2-sha256$1e3$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        "pbkdf2-sha256$$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        /* unpadded, URL-safe, bad character, 31 bytes, 34 bytes, non-canonical last char */
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8",
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g-=",
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5!8=",
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g==",
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$"
        "m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8AAA==",
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g9=",
        /* salt: bad base64, too short (4 bytes), empty */
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsM!Q4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        "pbkdf2-sha256$1000$AQIDBA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        "pbkdf2-sha256$1000$$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=",
        /* parts missing or extra */
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==",
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$m33AcPJmtZT4BCk55kw6VMWgiuKxPOc9CEFW8cSB5g8=$",
        "pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "{\"Users\":[{\"Name\":\"good\",\"Password\":\"%s\"},"
                 "{\"Name\":\"bad\",\"Password\":\"%s\"}]}",
                 external_hash, bad[i]);
        expect_refused(text, "Users[1].Password", bad[i]);
        const char *last = strrchr(bad[i], '$');
        if (last != NULL && strlen(last + 1) >= 8)
            expect_refused(text, "Users[1].Password", last + 1);
        /* and the message says what was expected */
        enroll_error err;
        enroll_error_clear(&err);
        CU_ASSERT_PTR_NULL(serve_credentials_load(write_creds(text, 0600), &err));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "not a pbkdf2-sha256$"));
    }
    /* not a string */
    expect_refused("{\"Users\":[{\"Name\":\"a\",\"Password\":12345678}]}", "Users[0].Password",
                   "12345678");
}

static void test_duplicate_user_refused(void)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"fleet\",\"Password\":\"%s\"},"
             "{\"Name\":\"other\",\"Password\":\"%s\"},"
             "{\"Name\":\"fleet\",\"Password\":\"%s\"}]}",
             external_hash, external_hash, external_hash);
    expect_refused(text, "Users[2].Name", external_hash);
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"fleet\",\"Password\":\"%s\"},"
             "{\"Name\":\"Fleet\",\"Password\":\"%s\"}]}",
             external_hash, external_hash);
    expect_refused(text, "Users[1].Name", external_hash);
}

static void test_structure_refused(void)
{
    char text[1024];
    expect_refused("{}", "Users", NULL);
    expect_refused("{\"Users\":[]}", "Users", NULL);
    expect_refused("{\"Users\":{}}", "Users", NULL);
    expect_refused("[]", "", NULL);
    expect_refused("", "", NULL);
    /* a syntax error must not quote the file: here the plaintext password */
    expect_refused("{\"Users\":[{\"Name\":\"a\",\"Password\":\"s3cretpass\\qword\"}]}", "",
                   "s3cretpass");
    expect_refused("{\"Users\":[{\"Name\":\"a\",\"Password\":\"s3cretpassword", "", "s3cretpass");
    expect_refused("{\"Users\":[{\"Name\":\"a\",\"Password\":s3cretpassword}]}", "", NULL);
    expect_refused("{\"Users\":[\"fleet\"]}", "Users[0]", NULL);
    expect_refused("{\"Users\":[{\"Name\":\"fleet\"}]}", "Users[0].Password", NULL);
    snprintf(text, sizeof text, "{\"Users\":[{\"Password\":\"%s\"}]}", external_hash);
    expect_refused(text, "Users[0].Name", external_hash);
    snprintf(text, sizeof text, "{\"Users\":[{\"Name\":\"\",\"Password\":\"%s\"}]}", external_hash);
    expect_refused(text, "Users[0].Name", external_hash);
    snprintf(text, sizeof text, "{\"Users\":[{\"Name\":\"a:b\",\"Password\":\"%s\"}]}",
             external_hash);
    expect_refused(text, "Users[0].Name", external_hash);
    snprintf(text, sizeof text, "{\"Users\":[{\"Name\":7,\"Password\":\"%s\"}]}", external_hash);
    expect_refused(text, "Users[0].Name", external_hash);
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"a\",\"Password\":\"%s\",\"Roles\":\"x\"}]}", external_hash);
    expect_refused(text, "Users[0].Roles", external_hash);
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"a\",\"Password\":\"%s\",\"Permissions\":[\"p\",1]}]}",
             external_hash);
    expect_refused(text, "Users[0].Permissions[1]", external_hash);
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"a\",\"Password\":\"%s\",\"Roles\":[\"\"]}]}", external_hash);
    expect_refused(text, "Users[0].Roles[0]", external_hash);
    /* unknown keys, and one key twice in different case */
    snprintf(text, sizeof text, "{\"Users\":[{\"Name\":\"a\",\"Password\":\"%s\",\"Role\":[]}]}",
             external_hash);
    expect_refused(text, "Users[0].Role", external_hash);
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"a\",\"Password\":\"%s\",\"password\":\"%s\"}]}",
             external_hash, external_hash);
    expect_refused(text, "Users[0].Password", external_hash);
    snprintf(text, sizeof text, "{\"Users\":[{\"Name\":\"a\",\"Password\":\"%s\"}],\"Extra\":1}",
             external_hash);
    expect_refused(text, "Extra", external_hash);
    /* an empty Roles/Permissions array is fine */
    snprintf(text, sizeof text,
             "{\"USERS\":[{\"name\":\"a\",\"PASSWORD\":\"%s\",\"roles\":[],\"Permissions\":[]}]}",
             external_hash);
    enroll_error err;
    serve_credentials *creds = serve_credentials_load(write_creds(text, 0600), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(creds);
    const serve_user *user = serve_credentials_check(creds, "a", external_password);
    CU_ASSERT_PTR_NOT_NULL(user);
    CU_ASSERT_FALSE(serve_user_has_role(user, ""));
    serve_credentials_free(creds);
}

/* Expects header to parse into want_user/want_password. */
static void expect_parsed(const char *header, const char *want_user, const char *want_password)
{
    char *user = NULL, *password = NULL;
    int rc = basic_auth_parse(header, &user, &password);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  not parsed: \"%s\"\n", header);
        return;
    }
    CU_ASSERT_STRING_EQUAL(user, want_user);
    CU_ASSERT_STRING_EQUAL(password, want_password);
    free(user);
    free(password);
}

/* Expects header to be refused, with both outputs NULL. */
static void expect_unparsed(const char *header)
{
    char *user = (char *)"sentinel", *password = (char *)"sentinel";
    int rc = basic_auth_parse(header, &user, &password);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NULL(user);
    CU_ASSERT_PTR_NULL(password);
    if (rc != -1) {
        fprintf(stderr, "  parsed: \"%s\"\n", header ? header : "(null)");
        if (rc == 0) {
            free(user);
            free(password);
        }
    }
}

static void test_basic_auth_parse(void)
{
    expect_parsed("Basic dXNlcjpwYXNz", "user", "pass");
    expect_parsed("basic  dXNlcjpwYXNz", "user", "pass");
    expect_parsed("  BASIC\tdXNlcjpwYXNz  ", "user", "pass");
    expect_parsed("Basic dTpwOnE=", "u", "p:q"); /* the first colon separates */
    expect_parsed("Basic Og==", "", "");

    expect_unparsed(NULL);
    expect_unparsed("");
    expect_unparsed("Basic");
    expect_unparsed("Basic ");
    expect_unparsed("Basic    ");
    expect_unparsed("BasicdXNlcjpwYXNz");
    expect_unparsed("Bearer dXNlcjpwYXNz");
    expect_unparsed("Digest dXNlcjpwYXNz");
    expect_unparsed("Basic bm9jb2xvbg=="); /* "nocolon" */
    expect_unparsed("Basic dXNlcjpwYXNz!");
    expect_unparsed("Basic dXNlcjpwYXN");
    expect_unparsed("Basic dXNl cjpwYXNz");
    expect_unparsed("Basic dXNlcjpwYXNz extra");
    expect_unparsed("Basic dXNlcjpwYX=z");
    expect_unparsed("Basic Oh=="); /* non-zero unused bits */
    expect_unparsed("Basic ====");
    expect_unparsed("Basic YQBiOmM="); /* "a\0b:c" */
    expect_unparsed("Basic dXNlcjpwYXNz\n");

    char *user = NULL;
    CU_ASSERT_EQUAL(basic_auth_parse("Basic dXNlcjpwYXNz", &user, NULL), -1);
    CU_ASSERT_PTR_NULL(user);
}

typedef struct check_thread {
    serve_credentials *creds;
    int failures;
} check_thread;

static void *check_many(void *arg)
{
    check_thread *t = arg;
    for (int i = 0; i < 40; i++) {
        if (serve_credentials_check(t->creds, "a", "a-pass") == NULL)
            t->failures++;
        if (serve_credentials_check(t->creds, "b", "b-pass") == NULL)
            t->failures++;
        if (i % 8 == 0 && serve_credentials_check(t->creds, "a", "b-pass") != NULL)
            t->failures++;
        if (i % 8 == 4 && serve_credentials_check(t->creds, "c", "a-pass") != NULL)
            t->failures++;
    }
    return NULL;
}

static void test_concurrent_checks(void)
{
    json_t *doc = json_pack("{s:[o, o]}", "Users", user_entry("a", "a-pass", 1000),
                            user_entry("b", "b-pass", 1000));
    enroll_error err;
    serve_credentials *creds = load_doc(doc, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(creds);
    enum { THREADS = 8 };
    pthread_t threads[THREADS];
    check_thread state[THREADS];
    for (int i = 0; i < THREADS; i++) {
        state[i] = (check_thread){creds, 0};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&threads[i], NULL, check_many, &state[i]), 0);
    }
    int failures = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        failures += state[i].failures;
    }
    CU_ASSERT_EQUAL(failures, 0);
    serve_credentials_free(creds);
}

/* Basic names with a domain: "DOMAIN\user" (Go clients) and "user@domain" (Python SDK). */
static void test_domain_names(void)
{
    json_t *doc = json_pack("{s:[o, o, o]}", "Users", user_entry("fleet", "fleet-pass", 1000),
                            user_entry("KF\\admin", "admin-pass", 1000),
                            user_entry("ops@corp.example", "ops-pass", 1000));
    enroll_error err;
    serve_credentials *creds = load_doc(doc, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(creds);
    const serve_user *fleet = serve_credentials_check(creds, "fleet", "fleet-pass");
    const serve_user *admin = serve_credentials_check(creds, "KF\\admin", "admin-pass");
    const serve_user *ops = serve_credentials_check(creds, "ops@corp.example", "ops-pass");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fleet);
    CU_ASSERT_PTR_NOT_NULL_FATAL(admin);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ops);
    /* A bare entry stands for the user in any domain. */
    CU_ASSERT_PTR_EQUAL(serve_credentials_check(creds, "KF\\fleet", "fleet-pass"), fleet);
    CU_ASSERT_PTR_EQUAL(serve_credentials_check(creds, "fleet@kf.example", "fleet-pass"), fleet);
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "KF\\fleet", "fleet-pasS"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "KF\\FLEET", "fleet-pass"));
    /* An entry with a domain: that domain only, in either form, the domain in any case. */
    CU_ASSERT_PTR_EQUAL(serve_credentials_check(creds, "admin@kf", "admin-pass"), admin);
    CU_ASSERT_PTR_EQUAL(serve_credentials_check(creds, "kf\\admin", "admin-pass"), admin);
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "OTHER\\admin", "admin-pass"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "admin", "admin-pass"));
    CU_ASSERT_PTR_EQUAL(serve_credentials_check(creds, "CORP.EXAMPLE\\ops", "ops-pass"), ops);
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "ops", "ops-pass"));
    CU_ASSERT_STRING_EQUAL(serve_user_name(ops), "ops@corp.example");
    /* Not a domain name form. */
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "\\fleet", "fleet-pass"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "fleet@", "fleet-pass"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "A\\B\\fleet", "fleet-pass"));
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "KF\\fleet@x", "fleet-pass"));
    serve_credentials_free(creds);
}

/* Issue 17, item 11: users hashed at different iteration counts (1000 and 20000). A wrong
 * password for the cheap user, one for the dear user and an unknown name each cost the same
 * PBKDF2 work (20000 iterations), so the time of a failed login tells no name apart; the right
 * password of the cheap user also costs 20000 the first time and nothing once cached. */
static void test_unknown_name_costs_a_known_one(void)
{
    char *cheap = serve_password_hash("cheap-pass", 1000);
    char *dear = serve_password_hash("dear-pass", 20000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cheap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dear);
    json_t *doc = json_pack("{s:[{s:s, s:s}, {s:s, s:s}]}", "Users", "Name", "cheap", "Password",
                            cheap, "Name", "dear", "Password", dear);
    free(cheap);
    free(dear);
    enroll_error err;
    serve_credentials *creds = load_doc(doc, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(creds);
    unsigned long long before = serve_credentials_work(creds);
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "cheap", "wrong"));
    unsigned long long known_cheap = serve_credentials_work(creds) - before;
    before = serve_credentials_work(creds);
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "dear", "wrong"));
    unsigned long long known_dear = serve_credentials_work(creds) - before;
    before = serve_credentials_work(creds);
    CU_ASSERT_PTR_NULL(serve_credentials_check(creds, "nobody", "wrong"));
    unsigned long long unknown = serve_credentials_work(creds) - before;
    CU_ASSERT_EQUAL(known_cheap, 20000);
    CU_ASSERT_EQUAL(known_dear, 20000);
    CU_ASSERT_EQUAL(unknown, 20000);
    before = serve_credentials_work(creds);
    CU_ASSERT_PTR_NOT_NULL(serve_credentials_check(creds, "cheap", "cheap-pass"));
    CU_ASSERT_EQUAL(serve_credentials_work(creds) - before, 20000);
    before = serve_credentials_work(creds);
    CU_ASSERT_PTR_NOT_NULL(serve_credentials_check(creds, "cheap", "cheap-pass"));
    CU_ASSERT_EQUAL(serve_credentials_work(creds) - before, 0);
    serve_credentials_free(creds);
}

/* Issue 17, item 10: with a lockout after 5 failures, an attacker who owns an account ("mine")
 * and logs in with it between guesses at "victim" is still locked out after the fifth guess; the
 * success of "mine" clears only the failures of "mine" (two typos of the owner are forgiven). */
static void test_success_clears_only_its_name(void)
{
    serve_guard *g = serve_guard_new(0, 5, true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    struct sockaddr_in a = {.sin_family = AF_INET}, b = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.7", &a.sin_addr);
    inet_pton(AF_INET, "192.0.2.8", &b.sin_addr);
    const struct sockaddr *addr = (const struct sockaddr *)&a;
    int guesses = 0;
    while (guesses < 100 && serve_guard_login_wait(g, addr) == 0) {
        serve_guard_login_result(g, addr, "victim", false);
        serve_guard_login_result(g, addr, "mine", true);
        guesses++;
    }
    CU_ASSERT_EQUAL(guesses, 5);
    CU_ASSERT_TRUE(serve_guard_login_wait(g, addr) > 0);
    /* Another address is not concerned. */
    CU_ASSERT_EQUAL(serve_guard_login_wait(g, (const struct sockaddr *)&b), 0);
    /* At b: two typos of "mine", a success of "mine", then four failures of others: the typos
     * are forgiven, so no lockout yet; the fifth failure locks. */
    addr = (const struct sockaddr *)&b;
    serve_guard_login_result(g, addr, "mine", false);
    serve_guard_login_result(g, addr, "mine", false);
    serve_guard_login_result(g, addr, "mine", true);
    for (int i = 0; i < 4; i++)
        serve_guard_login_result(g, addr, i % 2 ? "victim" : NULL, false);
    CU_ASSERT_EQUAL(serve_guard_login_wait(g, addr), 0);
    serve_guard_login_result(g, addr, "victim", false);
    CU_ASSERT_TRUE(serve_guard_login_wait(g, addr) > 0);
    /* Successes of names that never failed there clear nothing. */
    struct sockaddr_in c = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.9", &c.sin_addr);
    addr = (const struct sockaddr *)&c;
    char name[32];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "user-%d", i);
        serve_guard_login_result(g, addr, name, false);
    }
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "other-%d", i);
        serve_guard_login_result(g, addr, name, true);
    }
    CU_ASSERT_EQUAL(serve_guard_login_wait(g, addr), 0);
    serve_guard_login_result(g, addr, "user-9", false);
    CU_ASSERT_TRUE(serve_guard_login_wait(g, addr) > 0);
    serve_guard_free(g);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_hash_format),
        TEST_CASE(test_load_and_check),
        TEST_CASE(test_external_hash_verifies),
        TEST_CASE(test_long_password),
        TEST_CASE(test_file_mode),
        TEST_CASE(test_malformed_hash_refused),
        TEST_CASE(test_duplicate_user_refused),
        TEST_CASE(test_structure_refused),
        TEST_CASE(test_basic_auth_parse),
        TEST_CASE(test_concurrent_checks),
        TEST_CASE(test_domain_names),
        TEST_CASE(test_unknown_name_costs_a_known_one),
        TEST_CASE(test_success_clears_only_its_name),
        TEST_END,
    };
    return test_main("serve_auth", cases, suite_setup, suite_teardown);
}
