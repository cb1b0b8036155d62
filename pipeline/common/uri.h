#ifndef APIARY_COMMON_URI_H
#define APIARY_COMMON_URI_H

/* The userinfo of a URI (scheme://user:password@host/path). A password there
 * would be repeated wherever the URI is stored or printed, so apiary rejects
 * such URIs and masks the userinfo of the URIs it prints. */

#include <stdbool.h>
#include <stddef.h>

/* The start of the message that rejects a URI with a password. The caller
 * adds where the credentials go instead. */
#define AP_URI_PASSWORD_MESSAGE "the URI contains a password (user:password@)"

/* True when the first URI in text (the one after the first "://") has a
 * password in its authority: scheme://user:password@host. A user name
 * alone, or an '@' after the authority, does not count. */
bool ap_uri_has_password(const char *text);

/* Copy text into out (size bytes, truncated to fit) with the userinfo and
 * the query string of the first URI replaced by "***", so that the URI can
 * be printed without a password, token or presigned URL's signature. Text
 * without either is copied unchanged. */
void ap_uri_redact(const char *text, char *out, size_t size);

#endif
