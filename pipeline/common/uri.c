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
    if (userinfo == NULL)
        snprintf(out, size, "%s", text);
    else
        snprintf(out, size, "%.*s***%s", (int)(userinfo - text), text, at);
}
