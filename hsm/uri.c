/* RFC 7512 pkcs11: URIs for the objects the engine creates, formatted by p11-kit. */
#include "hsm.h"

#include <p11-kit/uri.h>
#include <stdlib.h>
#include <string.h>

static void pad_copy(CK_UTF8CHAR *dst, size_t size, const char *src)
{
    memset(dst, ' ', size);
    size_t n = strlen(src);
    memcpy(dst, src, n < size ? n : size);
}

char *hsm_object_uri(const hsm_token_desc *token, const unsigned char *id, size_t id_len,
                     const char *label, CK_OBJECT_CLASS cls)
{
    P11KitUri *uri = p11_kit_uri_new();
    if (uri == NULL)
        return NULL;
    CK_TOKEN_INFO *info = p11_kit_uri_get_token_info(uri);
    pad_copy(info->label, sizeof info->label, token->label);
    pad_copy(info->manufacturerID, sizeof info->manufacturerID, token->manufacturer);
    pad_copy(info->model, sizeof info->model, token->model);
    pad_copy(info->serialNumber, sizeof info->serialNumber, token->serial);
    CK_ATTRIBUTE attrs[3];
    int n = 0;
    attrs[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof cls};
    if (id != NULL && id_len > 0)
        attrs[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)id, id_len};
    if (label != NULL)
        attrs[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
    char *text = NULL;
    if (p11_kit_uri_set_attributes(uri, attrs, (CK_ULONG)n) == P11_KIT_URI_OK)
        p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &text);
    p11_kit_uri_free(uri);
    return text;
}
