/* The dotted text of an OID of any length (see oid.h): OBJ_obj2txt sized by a first call. */
#include "oid.h"

#include <openssl/objects.h>
#include <stdlib.h>

char *oid_dotted_text(const ASN1_OBJECT *obj)
{
    int n = OBJ_obj2txt(NULL, 0, obj, 1);
    char *text = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (text != NULL && OBJ_obj2txt(text, n + 1, obj, 1) != n) {
        free(text);
        text = NULL;
    }
    return text;
}
