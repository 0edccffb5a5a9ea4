// Typed wrappers around libcurl's variadic setopt/getinfo, which Swift cannot call directly.
#ifndef MCPFLEET_CCURL_SHIM_H
#define MCPFLEET_CCURL_SHIM_H
#include <curl/curl.h>

static inline CURLcode mcpf_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode mcpf_easy_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode mcpf_easy_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode mcpf_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode mcpf_easy_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode mcpf_easy_setopt_blob(CURL *h, CURLoption o, struct curl_blob *v) { return curl_easy_setopt(h, o, v); }
typedef size_t (*mcpf_data_callback)(char *ptr, size_t size, size_t nmemb, void *userdata);
static inline CURLcode mcpf_easy_setopt_data_callback(CURL *h, CURLoption o, mcpf_data_callback cb) { return curl_easy_setopt(h, o, cb); }
typedef int (*mcpf_xferinfo_callback)(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
static inline CURLcode mcpf_easy_setopt_xferinfo_callback(CURL *h, mcpf_xferinfo_callback cb) { return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cb); }
static inline CURLcode mcpf_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode mcpf_easy_getinfo_double(CURL *h, CURLINFO i, double *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode mcpf_easy_getinfo_string(CURL *h, CURLINFO i, char **v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode mcpf_easy_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode mcpf_easy_getinfo_private(CURL *h, void **v) { return curl_easy_getinfo(h, CURLINFO_PRIVATE, v); }
static inline CURLMcode mcpf_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }

/* ---- Additions for FleetHTTP ---------------------------------------------------------------- */
#include <pthread.h>
#include <stdlib.h>

/* Macro constants that Swift cannot import reliably. */
static const long mcpf_global_all = CURL_GLOBAL_ALL;
static const size_t mcpf_writefunc_pause = CURL_WRITEFUNC_PAUSE;
static const int mcpf_pause_cont = CURLPAUSE_CONT;
static const unsigned int mcpf_blob_copy = CURL_BLOB_COPY;
static const int mcpf_error_size = CURL_ERROR_SIZE;
static const unsigned int mcpf_url_default_port = CURLU_DEFAULT_PORT;

/* A CURLSH share (DNS cache + TLS session cache) with pthread locks, usable from many threads. */
typedef struct mcpf_share {
    CURLSH *share;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
} mcpf_share;

static inline void mcpf_share_lock_cb(CURL *h, curl_lock_data d, curl_lock_access a, void *u) {
    (void)h; (void)a;
    mcpf_share *s = (mcpf_share *)u;
    if (d >= 0 && d < CURL_LOCK_DATA_LAST) pthread_mutex_lock(&s->locks[d]);
}
static inline void mcpf_share_unlock_cb(CURL *h, curl_lock_data d, void *u) {
    (void)h;
    mcpf_share *s = (mcpf_share *)u;
    if (d >= 0 && d < CURL_LOCK_DATA_LAST) pthread_mutex_unlock(&s->locks[d]);
}
/* Returns NULL on failure. */
static inline mcpf_share *mcpf_share_new(void) {
    mcpf_share *s = (mcpf_share *)calloc(1, sizeof(mcpf_share));
    if (!s) return NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&s->locks[i], NULL);
    s->share = curl_share_init();
    if (!s->share) { free(s); return NULL; }
    curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, mcpf_share_lock_cb);
    curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, mcpf_share_unlock_cb);
    curl_share_setopt(s->share, CURLSHOPT_USERDATA, (void *)s);
    curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return s;
}
/* Call only once no easy handle uses the share any more. */
static inline void mcpf_share_free(mcpf_share *s) {
    if (!s) return;
    curl_share_cleanup(s->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&s->locks[i]);
    free(s);
}
static inline CURLcode mcpf_easy_setopt_share(CURL *h, mcpf_share *s) {
    return curl_easy_setopt(h, CURLOPT_SHARE, s ? s->share : NULL);
}
#endif
