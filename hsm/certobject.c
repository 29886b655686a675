/* Certificate objects in a token: an X.509 certificate installed next to its key (same CKA_ID,
 * same CKA_LABEL), as certificate stores hold them. The caller hands the DER pieces over; this
 * layer does not parse certificates. */
#include <string.h>

#include "ckr.h"
#include "hsm.h"
#include "internal.h"

int hsm_create_certificate(hsm_session *session, const hsm_certificate_der *cert, const char *label,
                           const unsigned char *id, size_t id_len, CK_OBJECT_HANDLE *out,
                           hsm_error *err)
{
    if (session == NULL || cert == NULL || cert->value == NULL || cert->subject == NULL ||
        label == NULL || id == NULL || id_len == 0) {
        hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "hsm_create_certificate: missing argument");
        return -1;
    }
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE type = CKC_X_509;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_CERTIFICATE_TYPE, &type, sizeof type},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &no, sizeof no},
        {CKA_MODIFIABLE, &yes, sizeof yes},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)id, id_len},
        {CKA_VALUE, (void *)cert->value, cert->value_len},
        {CKA_SUBJECT, (void *)cert->subject, cert->subject_len},
        {CKA_ISSUER, (void *)cert->issuer, cert->issuer_len},
        {CKA_SERIAL_NUMBER, (void *)cert->serial, cert->serial_len},
    };
    CK_ULONG n = sizeof tmpl / sizeof tmpl[0];
    if (cert->issuer == NULL || cert->serial == NULL) /* optional: they go last */
        n -= 2;
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    hsm_token_write_begin(session);
    CK_RV rv = session->f->C_CreateObject(session->handle, tmpl, n, &handle);
    hsm_token_write_end(session);
    if (rv != CKR_OK) {
        hsm_session_note(session, rv);
        hsm_error_set(err, "C_CreateObject", rv,
                      "cannot install the certificate in token \"%s\": %s",
                      session->token ? session->token->desc.label : "?", ckr_name(rv));
        return -1;
    }
    if (out != NULL)
        *out = handle;
    return 0;
}
