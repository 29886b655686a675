/* Subcommand set-up: configuration, engine home, SoftHSM2 configuration, tokens, login, CAs. */
#include "engine/setup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ca/hsm_signer.h"
#include "ca/local_ca.h"
#include "batch/log.h"
#include "engine/recovery.h"
#include "batch/secret.h"

/* The per-user default: ${XDG_DATA_HOME:-$HOME/.local/share}/hsmenroll (malloc'd), or NULL. */
static char *user_home(void)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    char *path = NULL;
    if (xdg != NULL && xdg[0] == '/')
        return asprintf(&path, "%s/hsmenroll", xdg) < 0 ? NULL : path;
    const char *home = getenv("HOME");
    if (home == NULL || home[0] != '/') {
        struct passwd *pw = getpwuid(getuid());
        home = pw != NULL ? pw->pw_dir : NULL;
    }
    if (home == NULL || home[0] != '/')
        return NULL;
    return asprintf(&path, "%s/.local/share/hsmenroll", home) < 0 ? NULL : path;
}

char *setup_home_path(const char *option)
{
    const char *home = option;
    if (home == NULL || *home == '\0')
        home = getenv("HSMENROLL_HOME");
    if (home == NULL || *home == '\0') {
        char *path = user_home();
        struct stat st;
        if (path != NULL && stat(".hsmenroll/softhsm2.conf", &st) == 0 && access(path, F_OK) != 0)
            log_warning("./.hsmenroll is the home of an earlier version and is not used (the "
                        "default is now %s): give --home .hsmenroll, or move it there",
                        path);
        return path != NULL ? path : strdup(".hsmenroll");
    }
    if (home[0] == '/')
        return strdup(home);
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL)
        return strdup(home);
    char *full = NULL;
    if (asprintf(&full, "%s/%s", cwd, home) < 0)
        return NULL;
    return full;
}

static int make_dir(const char *path, mode_t mode, enroll_error *err)
{
    if (mkdir(path, mode) != 0 && errno == ENOENT) {
        /* The per-user default's parents (~/.local/share) may not exist yet. */
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", path);
        char *slash = strrchr(parent, '/');
        if (slash != NULL && slash != parent) {
            *slash = '\0';
            if (make_dir(parent, 0700, err) != 0)
                return -1;
        }
    }
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        enroll_error_set(err, HSE_HOME_UNAVAILABLE, NULL, "cannot create %s: %s", path,
                         strerror(errno));
        return -1;
    }
    return 0;
}

/* The embedded default's SoftHSM2 store: <home>/tokens, configured by <home>/softhsm2.conf. */
static int prepare_home(const char *home, enroll_error *err)
{
    char tokens[PATH_MAX], conf[PATH_MAX];
    snprintf(tokens, sizeof tokens, "%s/tokens", home);
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", home);
    if (make_dir(home, 0700, err) != 0 || make_dir(tokens, 0700, err) != 0)
        return -1;
    /* Ours (its first line says so) is rewritten when the home has moved (a copy, a tmpfs home
     * copied to disk): its token directory is always the home's own. */
    static const char header[] =
        "# SoftHSM2 configuration of the hsmenroll embedded default (made by hsmenroll)\n";
    char want[PATH_MAX + 256];
    snprintf(want, sizeof want,
             "%sdirectories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
             "slots.removable = false\n",
             header, tokens);
    char have[PATH_MAX + 256] = "";
    FILE *f = fopen(conf, "re");
    if (f != NULL) {
        size_t n = fread(have, 1, sizeof have - 1, f);
        have[n] = '\0';
        fclose(f);
    }
    bool ours = strncmp(have, header, sizeof header - 1) == 0;
    if (f == NULL || (ours && strcmp(have, want) != 0)) {
        /* A name of this process's own: several engines may make a new home at once (shards),
         * and a shared name lets one rename the other's file away under it. */
        char tmp[PATH_MAX + 32];
        snprintf(tmp, sizeof tmp, "%s.new.%ld", conf, (long)getpid());
        FILE *w = fopen(tmp, "we");
        bool ok = w != NULL && fputs(want, w) >= 0;
        if (w != NULL && fclose(w) != 0)
            ok = false;
        if (!ok || rename(tmp, conf) != 0) {
            enroll_error_set(err, HSE_HOME_UNAVAILABLE, NULL, "cannot write %s: %s", conf,
                             strerror(errno));
            unlink(tmp);
            return -1;
        }
        if (f != NULL)
            log_info("the home moved: %s now points at %s", conf, tokens);
    }
    setenv("SOFTHSM2_CONF", conf, 1);
    return 0;
}

/* A home made before the CA token had a PIN of its own (and the keys token was "hsmenroll"):
 * no layout mark, and a user PIN file or a token already (a PIN given by HSMENROLL_PIN leaves
 * no file). It keeps its labels and its one PIN. */
static bool home_is_legacy(const char *home)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/layout", home);
    if (access(path, F_OK) == 0)
        return false;
    snprintf(path, sizeof path, "%s/pin", home);
    if (access(path, F_OK) == 0)
        return true;
    snprintf(path, sizeof path, "%s/tokens", home);
    DIR *d = opendir(path);
    bool tokens = false;
    for (struct dirent *e; d != NULL && !tokens && (e = readdir(d)) != NULL;)
        tokens = e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    return tokens;
}

/* HOME/layout says which default the home was made with (2: hsmenroll-keys and hsmenroll-ca,
 * each with its PIN), before any token is made in it. */
static int mark_home_layout(const char *home, enroll_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/layout", home);
    if (access(path, F_OK) == 0)
        return 0;
    FILE *f = fopen(path, "we");
    bool ok = f != NULL && fputs("2\n", f) >= 0;
    if (f != NULL && fclose(f) != 0)
        ok = false;
    if (!ok) {
        enroll_error_set(err, HSE_HOME_UNAVAILABLE, NULL, "cannot write %s: %s", path,
                         strerror(errno));
        return -1;
    }
    return 0;
}

static int load_config(engine_setup *s, const char *config_path, const char *home_option,
                       bool prepare, enroll_error *err)
{
    memset(s, 0, sizeof *s);
    s->config_option = config_path;
    s->home_option = home_option;
    error_list errors = {0};
    if (config_path != NULL) {
        /* A local CA without Home keeps its state in the hsmenroll home, not beside the file. */
        char *home = setup_home_path(home_option);
        s->cfg = config_load_file_in(config_path, home, &errors);
        log_set_notice_home(home);
        free(home);
    } else {
        s->embedded = true;
        s->home = setup_home_path(home_option);
        if (s->home == NULL || (prepare && prepare_home(s->home, err) != 0))
            return -1;
        log_set_notice_home(s->home);
        bool legacy = home_is_legacy(s->home);
        if (prepare && !legacy && mark_home_layout(s->home, err) != 0)
            return -1;
        json_t *doc = config_default_document(s->home, legacy);
        s->cfg = config_load_json(doc, s->home, "(embedded default)", &errors);
        json_decref(doc);
    }
    if (s->cfg == NULL) {
        for (size_t i = 0; i < errors.count; i++)
            if (config_path != NULL && strstr(errors.items[i].message, config_path) != NULL)
                log_error("%s", errors.items[i].message); /* names the file already */
            else
                log_error("%s: %s", config_path ? config_path : "(embedded default)",
                          errors.items[i].message);
        enroll_error_set(err, HSE_CONFIG_INVALID, NULL, "%s: %zu error%s in the configuration",
                         config_path ? config_path : "(embedded default)", errors.count,
                         errors.count == 1 ? "" : "s");
        error_list_free(&errors);
        return -1;
    }
    error_list_free(&errors);
    return 0;
}

const char *setup_hint_options(const engine_setup *s, char *buf, size_t size)
{
    const char *option = s->config_option ? "--config" : s->home_option ? "--home" : NULL;
    const char *value = s->config_option ? s->config_option : s->home_option;
    if (option == NULL) {
        snprintf(buf, size, "%s", "");
        return buf;
    }
    bool plain = value[strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789-_./+,:@")] == '\0';
    snprintf(buf, size, plain ? " %s %s" : " %s '%s'", option, value);
    return buf;
}

static int setup_ensure_token_if(engine_setup *s, const char *label, bool create_missing,
                                 bool *created, enroll_error *err);
static int create_token(engine_setup *s, const char *label, bool *created, enroll_error *err);

int setup_config(engine_setup *s, const char *config_path, const char *home_option,
                 enroll_error *err)
{
    return load_config(s, config_path, home_option, true, err);
}

int setup_config_readonly(engine_setup *s, const char *config_path, const char *home_option,
                          enroll_error *err)
{
    return load_config(s, config_path, home_option, false, err);
}

/* The PIN (or SO PIN) of the configuration; generated into its file when allowed and absent. */
static char *get_pin(const char *env, const char *file, const char *what, bool generate,
                     size_t length, enroll_error *err)
{
    const char *value = env ? getenv(env) : NULL;
    if ((value == NULL || *value == '\0') && file != NULL && access(file, F_OK) != 0 && generate) {
        char *pin = secret_random(length);
        if (pin == NULL || secret_write_file(file, pin, err) != 0) {
            secret_free(pin);
            return NULL;
        }
        log_info("generated a %s for the new token into %s (mode 0600)", what, file);
        return pin;
    }
    return secret_read(env, file, what, err);
}

static int ensure_token(engine_setup *s, const char *label, bool create_missing, enroll_error *err)
{
    bool created;
    return setup_ensure_token_if(s, label, create_missing, &created, err);
}

/* The SoftHSM token directory (directories.tokendir of $SOFTHSM2_CONF, else of the system's
 * configuration) into dir, or "" when there is none to read. */
static void softhsm_tokendir(char *dir, size_t size)
{
    dir[0] = '\0';
    const char *conf = getenv("SOFTHSM2_CONF");
    FILE *f = fopen(conf != NULL && *conf != '\0' ? conf : "/etc/softhsm/softhsm2.conf", "re");
    if (f == NULL)
        return;
    char line[PATH_MAX + 64];
    while (fgets(line, sizeof line, f) != NULL) {
        char *p = line + strspn(line, " \t");
        if (strncmp(p, "directories.tokendir", 20) != 0)
            continue;
        p += 20 + strspn(p + 20, " \t");
        if (*p != '=')
            continue;
        p++;
        p += strspn(p, " \t");
        size_t n = strcspn(p, "\r\n");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0 && n < size) {
            memcpy(dir, p, n);
            dir[n] = '\0';
        }
    }
    fclose(f);
}

/* Token creation is one process at a time: several engines started together (shards on one
 * machine) would otherwise each find a token missing and each make one, or one would look while
 * another is half way. The lock is an flock on the SoftHSM token directory when there is one (the
 * store every process of the machine shares), else on the configuration's directory (the home
 * for the embedded default). An fd to close, or -1 (no lock to take: go on without). */
static int creation_lock(const engine_setup *s)
{
    char dir[PATH_MAX];
    softhsm_tokendir(dir, sizeof dir);
    struct stat st;
    if (dir[0] == '\0' || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (s->embedded && s->home != NULL) {
            snprintf(dir, sizeof dir, "%s", s->home);
        } else if (s->config_option != NULL) {
            snprintf(dir, sizeof dir, "%s", s->config_option);
            char *slash = strrchr(dir, '/');
            if (slash == NULL)
                snprintf(dir, sizeof dir, ".");
            else if (slash == dir)
                dir[1] = '\0';
            else
                *slash = '\0';
        } else {
            return -1;
        }
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        close(fd);
        return -1;
    }
    log_debug("token creation: holding the lock on %s", dir);
    return fd;
}

/* Looks for label, reading the module's token store again before saying it is missing: a
 * module restart (C_Finalize, C_Initialize) makes SoftHSM read its token directory again, which
 * finds a token another process made since this one started, and one this process's first
 * read missed (SoftHSM 2.6.1 skips a token whose token.object another process is rewriting at
 * that moment: it does so at each C_Login). Only while no session is open: at set-up. */
static int find_token_rescanning(engine_setup *s, const char *label, int rescans,
                                 hsm_token_desc *desc, hsm_error *herr)
{
    for (int attempt = 0;; attempt++) {
        if (hsm_module_find_token(s->module, label, desc, herr) == 0)
            return 0;
        if (herr->rv != CKR_TOKEN_NOT_PRESENT || attempt == rescans)
            return -1;
        struct timespec pause = {0, 20000000L << attempt};
        nanosleep(&pause, NULL);
        hsm_error rerr;
        if (hsm_module_restart(s->module, &rerr) != 0) {
            log_debug("token \"%s\": no second look: %s", label, rerr.message);
            return -1;
        }
    }
}

static int setup_ensure_token_if(engine_setup *s, const char *label, bool create_missing,
                                 bool *created, enroll_error *err)
{
    hsm_token_desc desc;
    hsm_error herr;
    *created = false;
    if (find_token_rescanning(s, label, create_missing ? 0 : 3, &desc, &herr) == 0)
        return 0;
    if (herr.rv != CKR_TOKEN_NOT_PRESENT) { /* not a missing token: one label on two, or the
                                               module failing; nothing to create */
        enroll_error_set(err, HSE_HSM_TOKEN, NULL, "%s", herr.message);
        return -1;
    }
    if (create_missing) {
        /* Under the lock, a second look (after a rescan) decides: another process may have made
         * it meanwhile. */
        int lock = creation_lock(s);
        int rc = find_token_rescanning(s, label, 3, &desc, &herr);
        if (rc != 0 && herr.rv == CKR_TOKEN_NOT_PRESENT)
            rc = create_token(s, label, created, err);
        else if (rc != 0)
            enroll_error_set(err, HSE_HSM_TOKEN, NULL, "%s", herr.message);
        if (lock >= 0)
            close(lock);
        return rc;
    }
    char hint[4200];
    enroll_error_set(err, HSE_HSM_TOKEN, NULL,
                     "no token labelled \"%s\" in %s (create it with `hsmenroll token init%s`)",
                     label, hsm_module_path(s->module), setup_hint_options(s, hint, sizeof hint));
    return -1;
}

/* Initializes the missing token label (PINs from the configuration, generated when absent),
 * and makes its journal storage key. Called with the creation lock held. */
static int create_token(engine_setup *s, const char *label, bool *created, enroll_error *err)
{
    hsm_token_desc desc;
    hsm_error herr;
    const config_hsm *h = &s->cfg->hsm;
    /* Generated PINs fit the token's PIN length range (openCryptoki: 4 to 8). */
    size_t user_len = 16, so_len = 24;
    CK_SLOT_ID slot;
    hsm_caps caps;
    if (hsm_module_free_slot(s->module, &slot, &herr) == 0 &&
        hsm_caps_probe(s->module, slot, &caps, &herr) == 0) {
        user_len = hsm_caps_pin_length(&caps, user_len);
        so_len = hsm_caps_pin_length(&caps, so_len);
        hsm_caps_free(&caps);
    }
    const char *pin_env, *pin_file;
    config_token_pin(s->cfg, label, &pin_env, &pin_file);
    char *pin = get_pin(pin_env, pin_file, "user PIN", true, user_len, err);
    char *so_pin = pin ? get_pin(h->so_pin_env, h->so_pin_file, "SO PIN", true, so_len, err) : NULL;
    int rc = -1;
    if (pin != NULL && so_pin != NULL) {
        if (hsm_module_init_token(s->module, label, so_pin, pin, &desc, &herr) == 0) {
            log_info("initialized token \"%s\" (serial %s)", label, desc.serial);
            *created = true;
            rc = 0;
            /* Its journal storage key now: engines started together on a new token (shards on
             * one machine) would otherwise each make one. */
            hsm_token token;
            hsm_session session;
            CK_OBJECT_HANDLE key;
            if (hsm_token_open(s->module, label, pin, &token, &herr) == 0) {
                if (hsm_session_open(&token, &session, &herr) == 0) {
                    if (hsm_storage_key(&session, RECOVERY_STORAGE_KEY_LABEL, &key, &herr) != 0)
                        log_warning("token \"%s\": no storage key yet: %s", label, herr.message);
                    hsm_session_close(&session);
                }
                hsm_token_close(&token);
            }
        } else {
            hsm_error_to_enroll(&herr, HSE_HSM_TOKEN, err);
        }
    }
    secret_free(pin);
    secret_free(so_pin);
    return rc;
}

int setup_ensure_token(engine_setup *s, const char *label, bool *created, enroll_error *err)
{
    return setup_ensure_token_if(s, label, true, created, err);
}

/* The labels of the tokens a run uses beyond Hsm.Tokens: those of the local CAs. */
static size_t ca_tokens(const config *cfg, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->ca_count && n < max; i++)
        if (cfg->cas[i].type == CA_TYPE_LOCAL && cfg->cas[i].token != NULL)
            out[n++] = cfg->cas[i].token;
    return n;
}

int setup_module(engine_setup *s, bool create_missing, enroll_error *err)
{
    hsm_error herr;
    s->module = hsm_module_load_args(s->cfg->hsm.module, s->cfg->hsm.init_args, &herr);
    if (s->module == NULL) {
        hsm_error_to_enroll(&herr, HSE_HSM_MODULE, err);
        return -1;
    }
    for (size_t i = 0; i < s->cfg->hsm.token_count; i++)
        if (ensure_token(s, s->cfg->hsm.tokens[i], create_missing, err) != 0)
            return -1;
    if (s->cfg->hsm.eddsa_token != NULL &&
        ensure_token(s, s->cfg->hsm.eddsa_token, create_missing, err) != 0)
        return -1;
    const char *extra[16];
    size_t n = ca_tokens(s->cfg, extra, 16);
    for (size_t i = 0; i < n; i++)
        if (ensure_token(s, extra[i], create_missing, err) != 0)
            return -1;
    return 0;
}

int setup_login(engine_setup *s, enroll_error *err)
{
    const char *extra[16];
    size_t n = ca_tokens(s->cfg, extra, 16);
    if (hsm_context_open(&s->hsm, s->module, s->cfg, extra, n, err) != 0)
        return -1;
    s->module = NULL; /* owned by the context now */
    s->hsm_open = true;
    return 0;
}

static int create_local_ca(engine_setup *s, const config_ca *ca, size_t t, enroll_error *err);

int setup_local_cas(engine_setup *s, bool create_missing, enroll_error *err)
{
    for (size_t i = 0; i < s->cfg->ca_count; i++) {
        const config_ca *ca = &s->cfg->cas[i];
        if (ca->type != CA_TYPE_LOCAL || local_ca_exists(ca->home))
            continue;
        if (ca->home == NULL) {
            enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "CA \"%s\" has no Home directory",
                             ca->name);
            return -1;
        }
        if (!create_missing) {
            char hint[4200];
            enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                             "CA \"%s\": no embedded CA in %s (create it with `hsmenroll ca "
                             "init%s`)",
                             ca->name, ca->home, setup_hint_options(s, hint, sizeof hint));
            return -1;
        }
        int t = hsm_context_token_index(&s->hsm, ca->token);
        if (t < 0) {
            enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "CA \"%s\": token \"%s\" is not open",
                             ca->name, ca->token);
            return -1;
        }
        /* Engines started together on a new home would each make a CA: one at a time, and the
         * first one's is the CA. */
        int lock = creation_lock(s);
        if (local_ca_exists(ca->home)) {
            if (lock >= 0)
                close(lock);
            continue;
        }
        int rc = create_local_ca(s, ca, (size_t)t, err);
        if (lock >= 0)
            close(lock);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The embedded CA of ca, its keys in the context's token t. Called with the creation lock held. */
static int create_local_ca(engine_setup *s, const config_ca *ca, size_t t, enroll_error *err)
{
    hsm_session session;
    hsm_context_login_session(&s->hsm, t, &session);
    local_ca_options opt;
    local_ca_default_options(&opt);
    bool chosen_rsa = false;
    if (local_ca_fit_keys(&opt, &session, false, &chosen_rsa, err) != 0)
        return -1;
    if (chosen_rsa)
        log_info("token \"%s\" cannot generate the default ECC keys: CA \"%s\" gets "
                 "RSA-3072 (root) and RSA-2048 (issuing) keys",
                 ca->token, ca->name);
    if (local_ca_create(ca->home, &session, &opt, err) != 0)
        return -1;
    log_info("created the embedded CA \"%s\" in %s (keys in token \"%s\")", ca->name, ca->home,
             ca->token);
    return 0;
}

void setup_free(engine_setup *s)
{
    if (s->hsm_open)
        hsm_context_close(&s->hsm);
    hsm_module_unload(s->module);
    config_free(s->cfg);
    free(s->home);
    memset(s, 0, sizeof *s);
}

int setup_check_defaults(const config *cfg, const char *template_name, long long pattern_id,
                         enroll_error *err)
{
    char hint[700];
    if (template_name != NULL && config_find_template_by_name(cfg, template_name) == NULL) {
        config_template_hint(cfg, template_name, hint, sizeof hint);
        enroll_error_set(err, HSE_USAGE, NULL, "--template %.80s: no such template in %s; %s",
                         template_name, cfg->source, hint);
        return -1;
    }
    if (pattern_id >= 0 && config_find_pattern(cfg, pattern_id) == NULL) {
        config_pattern_hint(cfg, hint, sizeof hint);
        enroll_error_set(err, HSE_USAGE, NULL,
                         "--pattern %lld: no such enrollment pattern in %s; %s", pattern_id,
                         cfg->source, hint);
        return -1;
    }
    return 0;
}
