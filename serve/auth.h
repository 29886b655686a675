/* The credentials of `hsmenroll serve`: the users file (PBKDF2-SHA256 password hashes, roles,
 * permissions), checking a name and password against it, and HTTP Basic authentication headers.
 * Nothing here prints; no error message ever carries a password or a hash. */
#ifndef HSMENROLL_SERVE_AUTH_H
#define HSMENROLL_SERVE_AUTH_H

#include <stdbool.h>

#include "formats/error.h"

typedef struct serve_user serve_user;               /* opaque */
typedef struct serve_credentials serve_credentials; /* opaque */

/* Loads a credentials file: JSON
 * {"Users":[{"Name":"fleet","Password":"pbkdf2-sha256$ITER$SALT$HASH", "Roles":["Fleet
 * Operators"],"Permissions":["enrollment_pattern/modify"]}]}. Key names matched case-insensitively;
 * Roles and Permissions optional (arrays of strings); Name and Password required; duplicate names
 * refused; SALT and HASH are base64 (standard alphabet, with padding), HASH 32 bytes
 * (PBKDF2-HMAC-SHA256), ITER 1000..10000000. The file must not be readable or writable by "other"
 * (mode & 007 == 0), else refused. Every error: code "SERVE_CREDENTIALS", message naming the file
 * and the JSON path (e.g. "creds.json: Users[2].Password: not a pbkdf2-sha256$... hash") and never
 * containing a password or hash. Returns NULL with err filled on error.
 *
 * Also refused: unknown keys, the same key twice in one object (in any case), an empty Users
 * array, a SALT shorter than 8 or longer than 64 bytes, a Name that is empty or holds a colon or
 * a control character (HTTP Basic cannot carry it), an empty Role or Permission. Names that differ
 * only in case count as duplicates; err->field holds the JSON path ("" for file-level errors). */
serve_credentials *serve_credentials_load(const char *path, enroll_error *err);
/* Wipes the hashes and the cache, and frees. NULL is accepted. */
void serve_credentials_free(serve_credentials *creds);

/* The user with this name and password, or NULL. Thread-safe (called from many threads at once).
 * Comparison is constant-time (CRYPTO_memcmp); a unknown user still costs one PBKDF2 against a
 * dummy hash so timing does not reveal which names exist. To avoid one PBKDF2 per HTTP request, a
 * successful check caches SHA-256(salt || password) per user (under a mutex), and a later check
 * with the same password is answered from the cache (still constant-time compare). Names are
 * matched exactly (case-sensitive). The dummy hash uses the highest iteration count of the file,
 * and a known name whose count is lower is padded with PBKDF2 iterations up to it: a failed login
 * costs the same whether the name exists or not, whatever the counts in the file. */
/* PBKDF2 iterations serve_credentials_check has computed so far (cache hits cost none). */
unsigned long long serve_credentials_work(const serve_credentials *creds);
const serve_user *serve_credentials_check(serve_credentials *creds, const char *name,
                                          const char *password);
/* The user's name as written in the file. */
/* The user named name (exactly), or NULL: for a caller authenticated otherwise (a verified client
 * certificate whose CN is the name). */
const serve_user *serve_credentials_find(const serve_credentials *creds, const char *name);
const char *serve_user_name(const serve_user *user);
/* Whether the user has this role / permission (case-insensitive); false for a NULL user. */
bool serve_user_has_role(const serve_user *user, const char *role);
bool serve_user_has_permission(const serve_user *user, const char *permission);

/* A new "pbkdf2-sha256$ITER$SALT$HASH" string (malloc'd) for password, with a random 16-byte salt
 * (RAND_bytes). NULL on failure, including iterations outside 1000..10000000. */
char *serve_password_hash(const char *password, unsigned iterations);

/* Parses an Authorization header value "Basic <base64(user:password)>" (scheme case-insensitive,
 * extra spaces tolerated). On success 0 with *user and *password malloc'd (the password wiped with
 * OPENSSL_cleanse before any free of temporaries); -1 when absent/malformed/not Basic/no colon.
 * The user is what precedes the first colon. A decoded value holding a NUL byte is malformed.
 * On -1, *user and *password are NULL. The caller wipes the password before freeing it. */
int basic_auth_parse(const char *header_value, char **user, char **password);

#endif
