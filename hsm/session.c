/* Logged-in tokens and per-worker sessions. One C_Login per token per process: PKCS#11 login
 * state is shared by all sessions of the application on that token. */
#include "hsm.h"

#include <string.h>

#include "ckr.h"

int hsm_token_open(hsm_module *module, const char *label, const char *pin, hsm_token *token,
                   hsm_error *err)
{
    memset(token, 0, sizeof *token);
    token->module = module;
    if (hsm_module_find_token(module, label, &token->desc, err) != 0)
        return -1;
    CK_FUNCTION_LIST *f = hsm_module_functions(module);
    CK_RV rv = f->C_OpenSession(token->desc.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                &token->login_session);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_OpenSession", rv, "C_OpenSession on token \"%s\" failed: %s", label,
                      ckr_name(rv));
        return -1;
    }
    rv = f->C_Login(token->login_session, CKU_USER, (CK_UTF8CHAR_PTR)pin, pin ? strlen(pin) : 0);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        hsm_error_set(err, "C_Login", rv, "C_Login on token \"%s\" failed: %s", label,
                      ckr_name(rv));
        f->C_CloseSession(token->login_session);
        token->login_session = CK_INVALID_HANDLE;
        return -1;
    }
    token->logged_in = true;
    return 0;
}

void hsm_token_close(hsm_token *token)
{
    if (token == NULL || token->module == NULL || token->login_session == CK_INVALID_HANDLE)
        return;
    CK_FUNCTION_LIST *f = hsm_module_functions(token->module);
    if (token->logged_in)
        f->C_Logout(token->login_session);
    f->C_CloseSession(token->login_session);
    token->login_session = CK_INVALID_HANDLE;
    token->logged_in = false;
}

int hsm_session_open(hsm_token *token, hsm_session *session, hsm_error *err)
{
    memset(session, 0, sizeof *session);
    session->token = token;
    session->f = hsm_module_functions(token->module);
    CK_RV rv = session->f->C_OpenSession(token->desc.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                         NULL, NULL, &session->handle);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_OpenSession", rv, "C_OpenSession on token \"%s\" failed: %s",
                      token->desc.label, ckr_name(rv));
        return -1;
    }
    return 0;
}

bool hsm_rv_session_lost(CK_RV rv)
{
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
           rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_DEVICE_REMOVED;
}

bool hsm_rv_busy(CK_RV rv)
{
    return rv == CKR_SESSION_COUNT || rv == CKR_DEVICE_MEMORY;
}

bool hsm_rv_transient(CK_RV rv)
{
    return hsm_rv_session_lost(rv) || hsm_rv_busy(rv) || rv == CKR_OBJECT_HANDLE_INVALID ||
           rv == CKR_KEY_HANDLE_INVALID || rv == CKR_WRAPPING_KEY_HANDLE_INVALID ||
           rv == CKR_FUNCTION_CANCELED || rv == CKR_TOKEN_NOT_PRESENT;
}

void hsm_session_note_key_use(hsm_session *session, CK_RV rv)
{
    hsm_session_note(session, rv);
    if (session != NULL && (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID ||
                            rv == CKR_WRAPPING_KEY_HANDLE_INVALID))
        session->lost = true;
}

void hsm_session_note(hsm_session *session, CK_RV rv)
{
    if (session != NULL && hsm_rv_session_lost(rv))
        session->lost = true;
    if (session != NULL && hsm_rv_busy(rv))
        session->busy = true;
}

int hsm_token_relogin(hsm_token *token, const char *pin, bool *relogged, hsm_error *err)
{
    *relogged = false;
    CK_FUNCTION_LIST *f = hsm_module_functions(token->module);
    CK_SESSION_INFO info;
    CK_RV rv = token->login_session != CK_INVALID_HANDLE
                   ? f->C_GetSessionInfo(token->login_session, &info)
                   : CKR_SESSION_HANDLE_INVALID;
    if (rv == CKR_OK &&
        (info.state == CKS_RW_USER_FUNCTIONS || info.state == CKS_RO_USER_FUNCTIONS))
        return 0;
    if (pin == NULL) {
        hsm_error_set(err, "C_Login", CKR_USER_NOT_LOGGED_IN,
                      "the login on token \"%s\" is gone and no PIN is kept to log in again",
                      token->desc.label);
        return -1;
    }
    /* No C_Logout: the login is gone already, and logging out would end it for every session. */
    if (rv == CKR_OK)
        f->C_CloseSession(token->login_session);
    token->login_session = CK_INVALID_HANDLE;
    token->logged_in = false;
    rv = f->C_OpenSession(token->desc.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                          &token->login_session);
    if (rv != CKR_OK) {
        token->login_session = CK_INVALID_HANDLE;
        hsm_error_set(err, "C_OpenSession", rv, "C_OpenSession on token \"%s\" failed: %s",
                      token->desc.label, ckr_name(rv));
        return -1;
    }
    rv = f->C_Login(token->login_session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        hsm_error_set(err, "C_Login", rv, "C_Login on token \"%s\" failed: %s", token->desc.label,
                      ckr_name(rv));
        return -1;
    }
    token->logged_in = true;
    *relogged = true;
    return 0;
}

void hsm_session_close(hsm_session *session)
{
    if (session == NULL || session->f == NULL || session->handle == CK_INVALID_HANDLE)
        return;
    session->f->C_CloseSession(session->handle);
    session->handle = CK_INVALID_HANDLE;
}
