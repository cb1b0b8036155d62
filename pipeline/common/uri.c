#include "pipeline/common/uri.h"

#include <stdio.h>
#include <string.h>

/* The userinfo of the first URI in text: its start and the '@' that ends
 * it, or NULL when the authority has no '@'. */
static const char *find_userinfo(const char *text, const char **at)
{
    *at = NULL;
    const char *scheme_end = strstr(text, "://");
    if (scheme_end == NULL)
        return NULL;
    const char *authority = scheme_end + 3;
    size_t length = strcspn(authority, "/?#");
    for (size_t i = 0; i < length; i++)
        if (authority[i] == '@')
            *at = authority + i;
    return *at != NULL ? authority : NULL;
}

bool ap_uri_has_password(const char *text)
{
    const char *at;
    const char *userinfo = find_userinfo(text, &at);
    return userinfo != NULL && memchr(userinfo, ':', (size_t)(at - userinfo)) != NULL;
}

void ap_uri_redact(const char *text, char *out, size_t size)
{
    if (size == 0)
        return;
    const char *at;
    const char *userinfo = find_userinfo(text, &at);
    char masked[4096];
    if (userinfo == NULL)
        snprintf(masked, sizeof(masked), "%s", text);
    else
        snprintf(masked, sizeof(masked), "%.*s***%s", (int)(userinfo - text), text, at);
    /* A query string may carry a token or a presigned URL's signature. */
    const char *scheme_end = strstr(masked, "://");
    char *query = scheme_end != NULL ? strchr(scheme_end, '?') : NULL;
    if (query == NULL || query[1] == '\0' || query[1] == '#') {
        snprintf(out, size, "%s", masked);
        return;
    }
    const char *fragment = strchr(query, '#');
    snprintf(out, size, "%.*s?***%s", (int)(query - masked), masked, fragment ? fragment : "");
}
