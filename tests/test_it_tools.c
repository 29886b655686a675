/* The test tools for real: libp11fault.so in front of SoftHSM (a token on tmpfs) through dlopen
 * (fail at N, session-loss, failover, logout, hide-mechanism, latency, session-limit, reload, a bad
 * line) and under pkcs11-tool; dropproxy in front of an HTTP server thread of this test. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support.h"

#define PIN "1234"

static char *tmp;
static char conf_path[700], log_path[700];
static void *lib;
static CK_FUNCTION_LIST_PTR p11;

static int setup(void)
{
    tmp = test_tmpdir("hsmenroll-tools");
    if (tmp == NULL)
        return 1;
    char text[1500], softhsm_conf[700];
    snprintf(softhsm_conf, sizeof softhsm_conf, "%s/softhsm2.conf", tmp);
    snprintf(text, sizeof text,
             "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
             tmp);
    if (test_write_file(softhsm_conf, text) != 0)
        return 1;
    snprintf(text, sizeof text, "%s/tokens", tmp);
    if (mkdir(text, 0700) != 0)
        return 1;
    setenv("SOFTHSM2_CONF", softhsm_conf, 1);
    if (test_sh("softhsm2-util --init-token --free --label t --so-pin 12345678 --pin " PIN
                " >/dev/null") != 0)
        return 1;
    snprintf(conf_path, sizeof conf_path, "%s/p11fault.conf", tmp);
    snprintf(log_path, sizeof log_path, "%s/faults.log", tmp);
    setenv("P11FAULT_CONFIG", conf_path, 1);
    lib = dlopen(HSMENROLL_P11FAULT, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    return get == NULL || get(&p11) != CKR_OK;
}

static int teardown(void)
{
    /* The wrapper stays loaded: it keeps SoftHSM loaded, whose frames LeakSanitizer names. */
    test_rmtree(tmp);
    free(tmp);
    return 0;
}

/* Writes the wrapper's configuration (module and log lines first, then `faults`), clears the
 * log, and initializes the wrapper. Returns C_Initialize's CK_RV. */
static CK_RV start(const char *faults)
{
    char text[2048];
    snprintf(text, sizeof text, "# test configuration\nmodule %s\nlog %s\n%s",
             HSMENROLL_SOFTHSM_MODULE, log_path, faults);
    unlink(log_path);
    if (test_write_file(conf_path, text) != 0)
        return CKR_HOST_MEMORY;
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    return p11->C_Initialize(&args);
}

static void stop(void)
{
    CU_ASSERT_EQUAL(p11->C_Finalize(NULL), CKR_OK);
}

/* The slot of token "t". */
static CK_SLOT_ID token_slot(void)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    CU_ASSERT_EQUAL_FATAL(p11->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO info;
        if (p11->C_GetTokenInfo(slots[i], &info) == CKR_OK && info.label[0] == 't' &&
            info.label[1] == ' ')
            return slots[i];
    }
    CU_FAIL_FATAL("token t not found");
    return 0;
}

static CK_SESSION_HANDLE open_session(bool login)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CU_ASSERT_EQUAL_FATAL(
        p11->C_OpenSession(token_slot(), CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
        CKR_OK);
    if (login)
        CU_ASSERT_EQUAL_FATAL(p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN)), CKR_OK);
    return s;
}

/* An EC P-256 session key pair. */
static CK_RV generate(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *priv)
{
    static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[] = {{CKA_EC_PARAMS, (void *)p256, sizeof p256},
                          {CKA_TOKEN, &no, sizeof no},
                          {CKA_VERIFY, &yes, sizeof yes}};
    CK_ATTRIBUTE prv[] = {
        {CKA_TOKEN, &no, sizeof no}, {CKA_PRIVATE, &yes, sizeof yes}, {CKA_SIGN, &yes, sizeof yes}};
    CK_OBJECT_HANDLE pk, sk;
    CK_RV rv = p11->C_GenerateKeyPair(s, &mech, pub, 3, prv, 3, &pk, &sk);
    if (priv != NULL)
        *priv = sk;
    return rv;
}

static char *read_log(void)
{
    char *text = test_read_file(log_path, NULL);
    return text != NULL ? text : strdup("");
}

static void test_fail_at(void)
{
    CU_ASSERT_EQUAL_FATAL(start("fail C_GenerateKeyPair CKR_DEVICE_ERROR at 2\n"), CKR_OK);
    CK_SESSION_HANDLE s = open_session(true);
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_OK);
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_DEVICE_ERROR);
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_OK);
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_OK);
    char *log = read_log();
    CU_ASSERT_STRING_EQUAL(log, "C_GenerateKeyPair CKR_DEVICE_ERROR 2\n");
    free(log);
    stop();
}

static void test_fail_every_count(void)
{
    CU_ASSERT_EQUAL_FATAL(start("fail C_GenerateRandom 0x30 every 3\n"
                                "fail C_SeedRandom CKR_FUNCTION_FAILED at 2 count 2\n"),
                          CKR_OK);
    CK_SESSION_HANDLE s = open_session(false);
    CK_BYTE buf[8];
    for (int i = 1; i <= 7; i++) {
        CU_ASSERT_EQUAL(p11->C_GenerateRandom(s, buf, sizeof buf),
                        i % 3 == 0 ? CKR_DEVICE_ERROR : CKR_OK);
        CK_RV rv = p11->C_SeedRandom(s, buf, sizeof buf);
        CU_ASSERT_EQUAL(rv == CKR_FUNCTION_FAILED, i == 2 || i == 3);
    }
    char *log = read_log();
    CU_ASSERT_EQUAL(test_count(log, "\n"), 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "C_GenerateRandom CKR_DEVICE_ERROR 6\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "C_SeedRandom CKR_FUNCTION_FAILED 3\n"));
    free(log);
    stop();
}

/* The wrapper started with directives, a logged-in session, and a P-256 key made in it. */
static CK_SESSION_HANDLE session_with_key(const char *directives, CK_OBJECT_HANDLE *key)
{
    CU_ASSERT_EQUAL_FATAL(start(directives), CKR_OK);
    CK_SESSION_HANDLE s = open_session(true);
    CU_ASSERT_EQUAL_FATAL(generate(s, key), CKR_OK);
    return s;
}

static void test_session_loss(void)
{
    CK_OBJECT_HANDLE key;
    CK_SESSION_HANDLE s = session_with_key("session-loss C_Sign at 1\n", &key);
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    CK_BYTE digest[32] = {1}, sig[128];
    CK_ULONG sig_len = sizeof sig;
    CU_ASSERT_EQUAL(p11->C_SignInit(s, &mech, key), CKR_OK);
    CU_ASSERT_EQUAL(p11->C_Sign(s, digest, sizeof digest, sig, &sig_len),
                    CKR_SESSION_HANDLE_INVALID);
    CK_SESSION_INFO info;
    CU_ASSERT_EQUAL(p11->C_GetSessionInfo(s, &info), CKR_SESSION_HANDLE_INVALID);
    CU_ASSERT_EQUAL(p11->C_SignInit(s, &mech, key), CKR_SESSION_HANDLE_INVALID);
    char *log = read_log();
    CU_ASSERT_STRING_EQUAL(log, "C_Sign session-loss 1\n");
    free(log);
    stop();
}

/* logout: the call goes on, on a session that stays open but is no longer logged in; the key
 * made before (a private session object) is gone with the login. */
static void test_logout(void)
{
    CK_OBJECT_HANDLE key;
    CK_SESSION_HANDLE s = session_with_key("logout C_SignInit at 2\n", &key);
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    CK_BYTE digest[32] = {1}, sig[128];
    CK_ULONG sig_len = sizeof sig;
    CU_ASSERT_EQUAL(p11->C_SignInit(s, &mech, key), CKR_OK);
    CU_ASSERT_EQUAL(p11->C_Sign(s, digest, sizeof digest, sig, &sig_len), CKR_OK);
    CK_RV rv = p11->C_SignInit(s, &mech, key);
    CU_ASSERT(rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID);
    CK_SESSION_INFO info;
    CU_ASSERT_EQUAL(p11->C_GetSessionInfo(s, &info), CKR_OK);
    CU_ASSERT_EQUAL(info.state, CKS_RW_PUBLIC_SESSION);
    char *log = read_log();
    CU_ASSERT_STRING_EQUAL(log, "C_SignInit logout 2\n");
    free(log);
    stop();
}

static void test_failover(void)
{
    CU_ASSERT_EQUAL_FATAL(start("failover C_GenerateKeyPair at 2\n"), CKR_OK);
    CK_SESSION_HANDLE s = open_session(true);
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_OK);
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_SESSION_HANDLE_INVALID);
    CK_SESSION_INFO info;
    CU_ASSERT_EQUAL(p11->C_GetSessionInfo(s, &info), CKR_SESSION_HANDLE_INVALID);
    /* A new session without C_Login: the login state went with the sessions. */
    CK_SESSION_HANDLE fresh = open_session(false);
    CU_ASSERT_EQUAL(p11->C_GetSessionInfo(fresh, &info), CKR_OK);
    CU_ASSERT_EQUAL(info.state, CKS_RW_PUBLIC_SESSION);
    CK_RV rv = generate(fresh, NULL);
    CU_ASSERT(rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_SESSION_HANDLE_INVALID);
    char *log = read_log();
    CU_ASSERT_STRING_EQUAL(log, "C_GenerateKeyPair failover 2\n");
    free(log);
    stop();
}

/* Whether the token's mechanism list holds m. */
static bool listed(CK_MECHANISM_TYPE m)
{
    CK_ULONG n = 0;
    CU_ASSERT_EQUAL_FATAL(p11->C_GetMechanismList(token_slot(), NULL, &n), CKR_OK);
    CK_MECHANISM_TYPE *list = calloc(n, sizeof *list);
    CU_ASSERT_EQUAL_FATAL(p11->C_GetMechanismList(token_slot(), list, &n), CKR_OK);
    bool found = false;
    for (CK_ULONG i = 0; i < n; i++)
        found |= list[i] == m;
    free(list);
    return found;
}

static void test_hide_mechanism(void)
{
    CK_MECHANISM_INFO mi;
    CU_ASSERT_EQUAL_FATAL(start(""), CKR_OK);
    CU_ASSERT_TRUE(listed(CKM_AES_KEY_WRAP_PAD)); /* SoftHSM has it */
    CU_ASSERT_EQUAL(p11->C_GetMechanismInfo(token_slot(), CKM_AES_KEY_WRAP_PAD, &mi), CKR_OK);
    stop();

    CU_ASSERT_EQUAL_FATAL(start("hide-mechanism CKM_AES_KEY_WRAP_PAD\n"), CKR_OK);
    CU_ASSERT_FALSE(listed(CKM_AES_KEY_WRAP_PAD));
    CU_ASSERT_TRUE(listed(CKM_EC_KEY_PAIR_GEN));
    CU_ASSERT_EQUAL(p11->C_GetMechanismInfo(token_slot(), CKM_AES_KEY_WRAP_PAD, &mi),
                    CKR_MECHANISM_INVALID);
    CU_ASSERT_EQUAL(p11->C_GetMechanismInfo(token_slot(), CKM_EC_KEY_PAIR_GEN, &mi), CKR_OK);
    CK_SESSION_HANDLE s = open_session(true);
    CK_MECHANISM wrap = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_BYTE out[256];
    CK_ULONG out_len = sizeof out;
    CU_ASSERT_EQUAL(p11->C_WrapKey(s, &wrap, 1, 2, out, &out_len), CKR_MECHANISM_INVALID);
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_OK);
    stop();
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_latency(void)
{
    /* '*' covers C_FindObjects; C_GenerateRandom is named. Lower bounds only. */
    CU_ASSERT_EQUAL_FATAL(start("latency * 5\nlatency C_GenerateRandom 2.5\n"), CKR_OK);
    CK_SESSION_HANDLE s = open_session(false);
    CU_ASSERT_EQUAL(p11->C_FindObjectsInit(s, NULL, 0), CKR_OK);
    double t0 = seconds();
    for (int i = 0; i < 20; i++) {
        CK_OBJECT_HANDLE objs[4];
        CK_ULONG n;
        CU_ASSERT_EQUAL(p11->C_FindObjects(s, objs, 4, &n), CKR_OK);
    }
    double t1 = seconds();
    CU_ASSERT(t1 - t0 >= 20 * 0.005);
    CU_ASSERT_EQUAL(p11->C_FindObjectsFinal(s), CKR_OK);
    CK_BYTE buf[4];
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(p11->C_GenerateRandom(s, buf, sizeof buf), CKR_OK);
    CU_ASSERT(seconds() - t1 >= 20 * 0.0025);
    char *log = read_log();
    CU_ASSERT_STRING_EQUAL(log, ""); /* latency is no fault */
    free(log);
    stop();
}

static void test_session_limit(void)
{
    CU_ASSERT_EQUAL_FATAL(start("session-limit 4\n"), CKR_OK);
    CK_SESSION_HANDLE s[5];
    for (int i = 0; i < 4; i++)
        s[i] = open_session(false);
    CU_ASSERT_EQUAL(p11->C_OpenSession(token_slot(), CKF_SERIAL_SESSION, NULL, NULL, &s[4]),
                    CKR_SESSION_COUNT);
    CU_ASSERT_EQUAL(p11->C_CloseSession(s[0]), CKR_OK);
    CU_ASSERT_EQUAL(p11->C_OpenSession(token_slot(), CKF_SERIAL_SESSION, NULL, NULL, &s[0]),
                    CKR_OK);
    CU_ASSERT_EQUAL(p11->C_CloseAllSessions(token_slot()), CKR_OK);
    for (int i = 0; i < 4; i++)
        s[i] = open_session(false);
    stop();
}

static void test_reload(void)
{
    setenv("P11FAULT_RELOAD", "1", 1);
    CU_ASSERT_EQUAL_FATAL(start(""), CKR_OK);
    CK_SESSION_HANDLE s = open_session(true);
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_OK);
    char text[1500];
    snprintf(text, sizeof text,
             "module %s\nlog %s\nfail C_GenerateKeyPair CKR_DEVICE_MEMORY at 3\n",
             HSMENROLL_SOFTHSM_MODULE, log_path);
    CU_ASSERT_EQUAL(test_write_file(conf_path, text), 0);
    /* A later mtime even on a coarse clock, and past the 50 ms between checks. */
    struct timespec later[2] = {{time(NULL) + 5, 0}, {time(NULL) + 5, 0}};
    CU_ASSERT_EQUAL(utimensat(AT_FDCWD, conf_path, later, 0), 0);
    usleep(120 * 1000);
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_OK);            /* call 2 */
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_DEVICE_MEMORY); /* call 3: counters kept counting */
    CU_ASSERT_EQUAL(generate(s, NULL), CKR_OK);
    stop();
    unsetenv("P11FAULT_RELOAD");
}

static void *random_calls(void *arg)
{
    CK_SESSION_HANDLE s = *(CK_SESSION_HANDLE *)arg;
    long failed = 0;
    CK_BYTE buf[4];
    for (int i = 0; i < 50; i++)
        failed += p11->C_GenerateRandom(s, buf, sizeof buf) == CKR_DEVICE_ERROR;
    return (void *)failed;
}

/* Counting is process-wide and exact under concurrent calls. */
static void test_threads(void)
{
    CU_ASSERT_EQUAL_FATAL(start("fail C_GenerateRandom CKR_DEVICE_ERROR every 10\n"), CKR_OK);
    pthread_t t[4];
    CK_SESSION_HANDLE s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = open_session(false);
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, random_calls, &s[i]), 0);
    }
    long failed = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        failed += (long)r;
    }
    CU_ASSERT_EQUAL(failed, 20);
    char *log = read_log();
    CU_ASSERT_EQUAL(test_count(log, "C_GenerateRandom CKR_DEVICE_ERROR "), 20);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "C_GenerateRandom CKR_DEVICE_ERROR 200\n"));
    free(log);
    stop();
}

static void test_bad_line(void)
{
    CU_ASSERT_EQUAL(start("fail C_Sign CKR_NO_SUCH_THING at 1\n"), CKR_GENERAL_ERROR);
    CU_ASSERT_EQUAL(start("fail C_Sign CKR_DEVICE_ERROR\n"), CKR_GENERAL_ERROR);
    CU_ASSERT_EQUAL(start("latency C_NoSuchCall 3\n"), CKR_GENERAL_ERROR);
    CU_ASSERT_EQUAL(start("frobnicate\n"), CKR_GENERAL_ERROR);
    /* The wrapper is usable again with a good file. */
    CU_ASSERT_EQUAL_FATAL(start(""), CKR_OK);
    stop();
}

static void test_pkcs11_tool(void)
{
#ifdef HSMENROLL_SANITIZE_BUILD
    /* An ASan-built module cannot load into pkcs11-tool (no ASan runtime): normal build only. */
    CU_PASS("skipped in the sanitizer build");
#else
    int status;
    char *out = test_sh_output(&status,
                               "env -u P11FAULT_CONFIG P11FAULT_MODULE='%s' pkcs11-tool --module "
                               "'%s' -L 2>&1",
                               HSMENROLL_SOFTHSM_MODULE, HSMENROLL_P11FAULT);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL(out != NULL ? strstr(out, "token label        : t") : NULL);
    if (status != 0 && out != NULL)
        fprintf(stderr, "%s\n", out);
    free(out);
    /* With a configuration: the mechanism list goes through the filter. */
    CU_ASSERT_EQUAL(test_write_file(conf_path, "module " HSMENROLL_SOFTHSM_MODULE
                                               "\nhide-mechanism CKM_EC_KEY_PAIR_GEN\n"),
                    0);
    out = test_sh_output(&status, "pkcs11-tool --module '%s' --token-label t -M 2>&1",
                         HSMENROLL_P11FAULT);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL(out != NULL ? strstr(out, "EC-EDWARDS-KEY-PAIR-GEN") : NULL);
    CU_ASSERT_PTR_NULL(out != NULL ? strstr(out, "ECDSA-KEY-PAIR-GEN") : "");
    free(out);
#endif
}

/* ---- dropproxy in front of an HTTP server thread ---------------------------------------- */

static int server_fd;
static atomic_long body_bytes_seen;

/* Reads one request (head + Content-Length body); answers 100 Continue when asked. Returns the
 * body length, -1 at the end of the connection. path gets the request path. */
static long read_request(int fd, char *path, size_t path_cap)
{
    char head[8192];
    size_t len = 0;
    while (len < sizeof head - 1) {
        ssize_t n = recv(fd, head + len, 1, 0);
        if (n <= 0)
            return -1;
        len++;
        head[len] = '\0';
        if (len >= 4 && strcmp(head + len - 4, "\r\n\r\n") == 0)
            break;
    }
    char fmt[32];
    snprintf(fmt, sizeof fmt, "%%*s %%%zus", path_cap - 1);
    if (sscanf(head, fmt, path) != 1)
        return -1;
    long body = 0;
    const char *cl = strcasestr(head, "\r\nContent-Length:");
    if (cl != NULL)
        body = strtol(cl + 17, NULL, 10);
    if (strcasestr(head, "\r\nExpect: 100-continue") != NULL &&
        send(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, MSG_NOSIGNAL) != 25)
        return -1;
    char buf[4096];
    for (long left = body; left > 0;) {
        ssize_t n = recv(fd, buf, left < (long)sizeof buf ? (size_t)left : sizeof buf, 0);
        if (n <= 0)
            return -1;
        left -= n;
    }
    atomic_fetch_add(&body_bytes_seen, body);
    return body;
}

static void *connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char path[256], answer[512];
    long body;
    while ((body = read_request(fd, path, sizeof path)) >= 0) {
        int n;
        if (strcmp(path, "/chunked") == 0)
            n = snprintf(answer, sizeof answer,
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "6\r\nchunk-\r\n3\r\ned\n\r\n0\r\n\r\n");
        else
            n = snprintf(answer, sizeof answer,
                         "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nlen=%ld\n",
                         snprintf(NULL, 0, "len=%ld\n", body), body);
        if (send(fd, answer, (size_t)n, MSG_NOSIGNAL) != n)
            break;
    }
    close(fd);
    return NULL;
}

static void *server(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(server_fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_t t;
        if (pthread_create(&t, NULL, connection, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
}

static int start_server(void)
{
    server_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (server_fd < 0 || bind(server_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(server_fd, 16) != 0 || getsockname(server_fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    pthread_t t;
    if (pthread_create(&t, NULL, server, NULL) != 0)
        return -1;
    pthread_detach(t);
    return ntohs(a.sin_port);
}

/* Starts dropproxy in front of upstream_port; returns its pid and puts its port in *port. */
static pid_t start_proxy(int upstream_port, const char *extra, int *port)
{
    char up[64], port_file[800], drop_log[800];
    snprintf(up, sizeof up, "127.0.0.1:%d", upstream_port);
    snprintf(port_file, sizeof port_file, "%s/proxy.port", tmp);
    snprintf(drop_log, sizeof drop_log, "%s/proxy.log", tmp);
    unlink(port_file);
    unlink(drop_log);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl(HSMENROLL_DROPPROXY, HSMENROLL_DROPPROXY, "--listen", "127.0.0.1:0", "--upstream", up,
              "--port-file", port_file, "--log", drop_log, "--drop-first", extra, (char *)NULL);
        _exit(127);
    }
    *port = 0;
    for (int i = 0; i < 200 && pid > 0 && *port == 0; i++) {
        char *text = test_read_file(port_file, NULL);
        if (text != NULL)
            *port = atoi(text);
        free(text);
        if (*port == 0)
            usleep(50 * 1000);
    }
    return pid;
}

static void test_dropproxy(void)
{
    int upstream = start_server();
    CU_ASSERT_FATAL(upstream > 0);
    int port;
    pid_t pid = start_proxy(upstream, "1", &port);
    CU_ASSERT_FATAL(pid > 0);
    CU_ASSERT_FATAL(port > 0);
    char body_file[800], drop_log[800];
    snprintf(body_file, sizeof body_file, "%s/body.bin", tmp);
    snprintf(drop_log, sizeof drop_log, "%s/proxy.log", tmp);

    /* The first answer is dropped: curl sees an empty reply (52) though the upstream answered. */
    CU_ASSERT_EQUAL(test_sh("curl -s -o /dev/null http://127.0.0.1:%d/enroll", port), 52);
    int status;
    char *out = test_sh_output(&status, "curl -sS http://127.0.0.1:%d/enroll", port);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_STRING_EQUAL(out != NULL ? out : "", "len=0\n");
    free(out);

    /* A POST body reaches the upstream whole (curl sends Expect: 100-continue for it). */
    long before = atomic_load(&body_bytes_seen);
    CU_ASSERT_EQUAL(test_sh("head -c 200000 /dev/zero | tr '\\0' x > '%s'", body_file), 0);
    out = test_sh_output(&status, "curl -sS --data-binary @'%s' http://127.0.0.1:%d/enroll",
                         body_file, port);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_STRING_EQUAL(out != NULL ? out : "", "len=200000\n");
    free(out);
    CU_ASSERT_EQUAL(atomic_load(&body_bytes_seen) - before, 200000);

    /* A chunked answer, and two requests on one kept-alive connection. */
    out = test_sh_output(&status, "curl -sS http://127.0.0.1:%d/chunked http://127.0.0.1:%d/x",
                         port, port);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_STRING_EQUAL(out != NULL ? out : "", "chunk-ed\nlen=0\n");
    free(out);

    char *log = test_read_file(drop_log, NULL);
    CU_ASSERT_STRING_EQUAL(log != NULL ? log : "",
                           "dropped GET /enroll 200\npassed GET /enroll 200\n"
                           "passed POST /enroll 200\npassed GET /chunked 200\n"
                           "passed GET /x 200\n");
    free(log);

    CU_ASSERT_EQUAL(kill(pid, SIGTERM), 0);
    int ws = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &ws, 0), pid);
    CU_ASSERT(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    shutdown(server_fd, SHUT_RDWR);
    close(server_fd);
}

int main(void)
{
    static const test_case cases[] = {
        TEST_CASE(test_fail_at),      TEST_CASE(test_fail_every_count),
        TEST_CASE(test_session_loss), TEST_CASE(test_failover),
        TEST_CASE(test_logout),       TEST_CASE(test_hide_mechanism),
        TEST_CASE(test_latency),      TEST_CASE(test_session_limit),
        TEST_CASE(test_reload),       TEST_CASE(test_threads),
        TEST_CASE(test_bad_line),     TEST_CASE(test_pkcs11_tool),
        TEST_CASE(test_dropproxy),    TEST_END};
    return test_main("tools", cases, setup, teardown);
}
