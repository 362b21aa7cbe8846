/*
 * cnode/tls.c: TLS distribution over OpenSSL (see tls.h).
 *
 * Each connection's SSL object reads and writes through one BIO of ours
 * (bio_read / bio_write below) over two byte buffers the runtime fills
 * from and drains to its socket, so OpenSSL never blocks and never
 * touches a descriptor. The client's host name check runs inside
 * OpenSSL's verification (verify_cb, at depth 0), so a mismatch fails
 * the handshake with a bad_certificate alert, as OTP's client does.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cnode/resolve.h"
#include "cnode/tls.h"

#define BUF_MIN ((size_t)16 << 10)

struct tether__tls_ctx {
    SSL_CTX *server, *client;
    bool client_verify;
    tether__sni_t sni;
    char sni_name[TETHER_HOST_MAX];
};

/* A byte buffer: data in [off, len) of cap. */
typedef struct buf {
    uint8_t *p;
    size_t off, len, cap;
} buf_t;

struct tether__tls {
    SSL *ssl;
    buf_t in, out;
    bool check_host;
    char host[TETHER_HOST_MAX];
    char reason[TETHER_TLS_REASON_MAX];
};

static BIO_METHOD *bio_method;
static int ex_index = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* ---- buffers ------------------------------------------------------------ */

/* Room for want more bytes at the end of b (data moved to the front). */
static uint8_t *buf_space(buf_t *b, size_t want, size_t *cap)
{
    if (b->off == b->len) {
        b->off = b->len = 0;
    } else if (b->off > 0 && b->cap - b->len < want) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len < want) {
        size_t ncap = b->cap ? b->cap : BUF_MIN;
        while (ncap - b->len < want)
            ncap *= 2;
        uint8_t *p = realloc(b->p, ncap);
        if (p == NULL)
            return NULL;
        b->p = p;
        b->cap = ncap;
    }
    *cap = b->cap - b->len;
    return b->p + b->len;
}

/* ---- the BIO ------------------------------------------------------------ */

static int bio_read(BIO *bio, char *dst, int len)
{
    tether__tls_t *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    size_t avail = t->in.len - t->in.off;
    if (avail == 0) {
        BIO_set_retry_read(bio);
        return -1;
    }
    size_t n = avail < (size_t)len ? avail : (size_t)len;
    memcpy(dst, t->in.p + t->in.off, n);
    t->in.off += n;
    return (int)n;
}

static int bio_write(BIO *bio, const char *src, int len)
{
    tether__tls_t *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    size_t cap;
    uint8_t *p = buf_space(&t->out, (size_t)len, &cap);
    if (p == NULL)
        return -1;
    memcpy(p, src, (size_t)len);
    t->out.len += (size_t)len;
    return len;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    tether__tls_t *t = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t ? (long)(t->in.len - t->in.off) : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static void init_once(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                              "tether connection");
    if (bio_method) {
        BIO_meth_set_read(bio_method, bio_read);
        BIO_meth_set_write(bio_method, bio_write);
        BIO_meth_set_ctrl(bio_method, bio_ctrl);
        BIO_meth_set_create(bio_method, bio_create);
    }
    ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- the host name check ---------------------------------------------------
 */

static bool is_ip_literal(const char *h)
{
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, h, &a4) == 1 || inet_pton(AF_INET6, h, &a6) == 1;
}

/* One label against a pattern with at most one '*' (match_wild/2). */
static bool wild_label(const char *h, size_t hl, const char *p, size_t pl)
{
    const char *star = memchr(p, '*', pl);
    if (star == NULL)
        return hl == pl && strncasecmp(h, p, hl) == 0;
    size_t pre = (size_t)(star - p), suf = pl - pre - 1;
    if (memchr(star + 1, '*', suf) || memchr(h, '*', hl) || hl < pre + suf)
        return false;
    return strncasecmp(h, p, pre) == 0 &&
           strncasecmp(h + hl - suf, star + 1, suf) == 0;
}

/* host against a common name (verify_hostname_match_wildcard/2). */
static bool cn_matches(const char *host, const char *cn, size_t cnl)
{
    const char *hd = strchr(host, '.');
    const char *cd = memchr(cn, '.', cnl);
    size_t h1 = hd ? (size_t)(hd - host) : strlen(host);
    size_t c1 = cd ? (size_t)(cd - cn) : cnl;
    const char *hrest = host + h1, *crest = cn + c1;
    size_t hrl = strlen(hrest), crl = cnl - c1;
    return hrl == crl && strncasecmp(hrest, crest, hrl) == 0 &&
           wild_label(host, h1, cn, c1);
}

bool tether__tls_check_host(X509 *cert, const char *host)
{
    if (cert == NULL || host == NULL || *host == '\0')
        return false;
    size_t hl = strlen(host);
    GENERAL_NAMES *sans =
        X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (sans && sk_GENERAL_NAME_num(sans) > 0) {
        bool ok = false;
        for (int i = 0; i < sk_GENERAL_NAME_num(sans) && !ok; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
            if (g->type != GEN_DNS)
                continue;
            const ASN1_IA5STRING *d = g->d.dNSName;
            ok = (size_t)d->length == hl &&
                 strncasecmp((const char *)d->data, host, hl) == 0;
        }
        GENERAL_NAMES_free(sans);
        return ok;
    }
    GENERAL_NAMES_free(sans);
    if (is_ip_literal(host))
        return false;
    const X509_NAME *subj = X509_get_subject_name(cert);
    for (int i = -1;;) {
        i = X509_NAME_get_index_by_NID(subj, NID_commonName, i);
        if (i < 0)
            return false;
        const ASN1_STRING *s =
            X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
        unsigned char *u = NULL;
        int ul = ASN1_STRING_to_UTF8(&u, s);
        bool ok = ul > 0 && cn_matches(host, (const char *)u, (size_t)ul);
        OPENSSL_free(u);
        if (ok)
            return true;
    }
}

/* OpenSSL's verification callback: adds the host check at depth 0. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok || X509_STORE_CTX_get_error_depth(x) != 0)
        return ok;
    SSL *ssl =
        X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    tether__tls_t *t = ssl ? SSL_get_ex_data(ssl, ex_index) : NULL;
    if (t && t->check_host &&
        !tether__tls_check_host(X509_STORE_CTX_get_current_cert(x), t->host)) {
        X509_STORE_CTX_set_error(x, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return ok;
}

/* ---- contexts ------------------------------------------------------------ */

/* OpenSSL's first queued error as "what" or a fallback; clears the queue. */
static const char *ssl_error(char *buf, size_t cap, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, cap, "%s", r ? r : fallback);
    ERR_clear_error();
    return buf;
}

static int side_ctx(const tether__tls_side_t *s, bool server, SSL_CTX **out,
                    char *err, size_t errlen)
{
    const char *name = server ? "server" : "client";
    char why[TETHER_TLS_REASON_MAX];
    SSL_CTX *ctx =
        SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL)
        return TETHER_ENOMEM;
    const char *step = NULL, *file = NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, s->min_version) ||
        !SSL_CTX_set_max_proto_version(ctx, s->max_version))
        step = "versions";
    else if (s->ciphers && !SSL_CTX_set_cipher_list(ctx, s->ciphers))
        step = "ciphers";
    else if (s->ciphers13 && !SSL_CTX_set_ciphersuites(ctx, s->ciphers13))
        step = "ciphers";
    if (step == NULL && s->password)
        SSL_CTX_set_default_passwd_cb_userdata(ctx, s->password);
    if (step == NULL && s->certfile) {
        const char *key = s->keyfile ? s->keyfile : s->certfile;
        if (!SSL_CTX_use_certificate_chain_file(ctx, s->certfile))
            step = "certfile", file = s->certfile;
        else if (!SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM))
            step = "keyfile", file = key;
        else if (!SSL_CTX_check_private_key(ctx))
            step = "keyfile (does not match certfile)", file = key;
    }
    if (step == NULL && s->cacertfile) {
        if (!SSL_CTX_load_verify_locations(ctx, s->cacertfile, NULL)) {
            step = "cacertfile", file = s->cacertfile;
        } else if (server) {
            STACK_OF(X509_NAME) *cas = SSL_load_client_CA_file(s->cacertfile);
            if (cas)
                SSL_CTX_set_client_CA_list(ctx, cas);
        }
    }
    if (step == NULL && server && s->certfile == NULL)
        step = "certfile (the server side needs one)";
    if (step) {
        snprintf(err, errlen, "%s: %s%s%s%s: %s", name, step, file ? " '" : "",
                 file ? file : "", file ? "'" : "",
                 ssl_error(why, sizeof why, "refused"));
        SSL_CTX_free(ctx);
        return TETHER_EINVAL;
    }
    int mode = SSL_VERIFY_NONE;
    if (s->verify_peer)
        mode = SSL_VERIFY_PEER | (server && s->fail_if_no_peer_cert
                                      ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                      : 0);
    SSL_CTX_set_verify(ctx, mode, s->verify_peer ? verify_cb : NULL);
    SSL_CTX_set_verify_depth(ctx, s->depth);
    *out = ctx;
    return 0;
}

int tether__tls_ctx_new(const tether__tls_opts_t *opts,
                        tether__tls_ctx_t **ctxp, char *err, size_t errlen)
{
    pthread_once(&once, init_once);
    if (bio_method == NULL || ex_index < 0)
        return TETHER_ENOMEM;
    tether__tls_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return TETHER_ENOMEM;
    int rc = side_ctx(&opts->server, true, &ctx->server, err, errlen);
    if (rc == 0)
        rc = side_ctx(&opts->client, false, &ctx->client, err, errlen);
    if (rc < 0) {
        tether__tls_ctx_free(ctx);
        return rc;
    }
    ctx->client_verify = opts->client.verify_peer;
    ctx->sni = opts->client.sni;
    if (opts->client.sni_name)
        snprintf(ctx->sni_name, sizeof ctx->sni_name, "%s",
                 opts->client.sni_name);
    *ctxp = ctx;
    return 0;
}

void tether__tls_ctx_free(tether__tls_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->server);
    SSL_CTX_free(ctx->client);
    free(ctx);
}

/* ---- connections -----------------------------------------------------------
 */

int tether__tls_new(tether__tls_ctx_t *ctx, bool server, const char *host,
                    tether__tls_t **tp)
{
    tether__tls_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return TETHER_ENOMEM;
    t->ssl = SSL_new(server ? ctx->server : ctx->client);
    BIO *bio = BIO_new(bio_method);
    if (t->ssl == NULL || bio == NULL) {
        BIO_free(bio);
        tether__tls_free(t);
        return TETHER_ENOMEM;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_ex_data(t->ssl, ex_index, t);
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        const char *name = ctx->sni == TETHER_SNI_NAME ? ctx->sni_name : host;
        if (name == NULL || strlen(name) >= sizeof t->host) {
            tether__tls_free(t);
            return TETHER_EINVAL;
        }
        snprintf(t->host, sizeof t->host, "%s", name);
        /* As ssl does: the name without a trailing dot, and sent only
         * when it is not an address. */
        size_t n = strlen(t->host);
        if (n > 1 && t->host[n - 1] == '.')
            t->host[n - 1] = '\0';
        t->check_host = ctx->client_verify && ctx->sni != TETHER_SNI_DISABLE;
        if (ctx->sni != TETHER_SNI_DISABLE && !is_ip_literal(t->host))
            SSL_set_tlsext_host_name(t->ssl, t->host);
        SSL_set_connect_state(t->ssl);
    }
    *tp = t;
    return 0;
}

void tether__tls_free(tether__tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t->in.p);
    free(t->out.p);
    free(t);
}

uint8_t *tether__tls_in_space(tether__tls_t *t, size_t want, size_t *cap)
{
    return buf_space(&t->in, want, cap);
}

void tether__tls_in_commit(tether__tls_t *t, size_t n)
{
    t->in.len += n;
}

/*
 * SSL_get_error() needs an empty error queue before the call it explains.
 * Every failure path here empties it (failure(), ssl_error()), so it is
 * only cleared when something else left an error: peeking costs less than
 * clearing the whole queue for every record.
 */
static void errors_clear(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Sets the reason of a failed call with SSL error `e'; returns the code. */
static int failure(tether__tls_t *t, int e)
{
    long vr = SSL_get_verify_result(t->ssl);
    char why[TETHER_TLS_REASON_MAX];
    if (e == SSL_ERROR_SSL && vr != X509_V_OK) {
        snprintf(t->reason, sizeof t->reason, "certificate refused: %s",
                 X509_verify_cert_error_string(vr));
        ERR_clear_error();
        return TETHER_EAUTH;
    }
    snprintf(t->reason, sizeof t->reason, "%s",
             ssl_error(why, sizeof why,
                       e == SSL_ERROR_ZERO_RETURN ? "closed by the peer"
                                                  : "TLS protocol error"));
    return e == SSL_ERROR_ZERO_RETURN ? TETHER_ECLOSED : TETHER_EPROTO;
}

int tether__tls_handshake(tether__tls_t *t)
{
    errors_clear();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 0;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return TETHER_EAGAIN;
    int rc = failure(t, e);
    return rc == TETHER_ECLOSED ? TETHER_EPROTO : rc;
}

long tether__tls_read(tether__tls_t *t, uint8_t *buf, size_t cap)
{
    /* No ciphertext left in the input and none buffered in OpenSSL (a
     * record read in part, or plaintext not yet returned): SSL_read could
     * only answer WANT_READ, so it is not called. */
    if (t->in.off == t->in.len && !SSL_has_pending(t->ssl))
        return TETHER_EAGAIN;
    errors_clear();
    int r = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return TETHER_EAGAIN;
    return failure(t, e);
}

int tether__tls_write(tether__tls_t *t, const uint8_t *p, size_t n)
{
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        errors_clear();
        int r = SSL_write(t->ssl, p, chunk);
        if (r <= 0) {
            (void)failure(t, SSL_get_error(t->ssl, r));
            return TETHER_EPROTO;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

const uint8_t *tether__tls_output(const tether__tls_t *t, size_t *n)
{
    *n = t->out.len - t->out.off;
    return t->out.p + t->out.off;
}

void tether__tls_consume_output(tether__tls_t *t, size_t n)
{
    t->out.off += n;
    if (t->out.off == t->out.len)
        t->out.off = t->out.len = 0;
}

const char *tether__tls_reason(const tether__tls_t *t)
{
    return t->reason;
}
