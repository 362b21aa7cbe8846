/*
 * dist/handshake.c: the distribution handshake state machine (see
 * handshake.h for the states and the wire formats).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "dist/flags.h"
#include "dist/handshake.h"

enum {
    ST_INIT = 0,
    ST_I_WAIT_STATUS,
    ST_I_WAIT_CHALLENGE,
    ST_I_WAIT_ACK,
    ST_A_WAIT_NAME,
    ST_A_WAIT_ALIVE_REPLY,
    ST_A_WAIT_COMPLEMENT,
    ST_A_WAIT_REPLY,
    ST_DONE,
    ST_FAILED,
};

#define TAG_NAME_V6    'N'
#define TAG_NAME_V5    'n'
#define TAG_STATUS     's'
#define TAG_COMPLEMENT 'c'
#define TAG_REPLY      'r'
#define TAG_ACK        'a'

/* Fixed parts of the messages, tag included. */
#define NAME_V6_FIXED      (1 + 8 + 4 + 2)
#define NAME_V5_FIXED      (1 + 2 + 4)
#define CHALLENGE_V6_FIXED (1 + 8 + 4 + 4 + 2)
#define CHALLENGE_V5_FIXED (1 + 2 + 4 + 4)
#define COMPLEMENT_LEN     (1 + 4 + 4)
#define REPLY_LEN          (1 + 4 + TETHER_HS_DIGEST_LEN)
#define ACK_LEN            (1 + TETHER_HS_DIGEST_LEN)

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

/* Records a failure with a reason; returns code for tail calls. */
static int fail(tether_hs_t *hs, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(tether_hs_t *hs, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(hs->reason, sizeof(hs->reason), fmt, ap);
    va_end(ap);
    hs->state = ST_FAILED;
    hs->error = code;
    return code;
}

/* Bytes of a message's length: 2, or 4 under TLS. */
static size_t len_bytes(const tether_hs_t *hs)
{
    return hs->len4 ? TETHER_HS_LEN4_BYTES : TETHER_HS_LEN_BYTES;
}

/*
 * Reserves room for one message of body length n in the output buffer,
 * writes its length and returns a pointer to the body, or NULL when the
 * buffer is full (the caller did not drain it).
 */
static uint8_t *out_msg(tether_hs_t *hs, size_t n)
{
    uint8_t *p;
    size_t lb = len_bytes(hs);

    if (hs->out_sent == hs->out_len)
        hs->out_sent = hs->out_len = 0;
    if (n > UINT16_MAX || TETHER_HS_OUT_MAX - hs->out_len < lb + n)
        return NULL;
    p = hs->out + hs->out_len;
    if (hs->len4)
        put32(p, (uint32_t)n);
    else
        put16(p, (uint16_t)n);
    hs->out_len += lb + n;
    return p + lb;
}

static int out_status(tether_hs_t *hs, const char *text)
{
    size_t n = strlen(text);
    uint8_t *p = out_msg(hs, 1 + n);

    if (!p)
        return TETHER_ETOOBIG;
    p[0] = TAG_STATUS;
    memcpy(p + 1, text, n);
    return 0;
}

int tether__hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge,
                      uint8_t out[TETHER_HS_DIGEST_LEN])
{
    char num[16];
    int numlen = snprintf(num, sizeof(num), "%u", (unsigned)challenge);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int dlen = 0;
    int rc = TETHER_EIO;

    if (!ctx)
        return TETHER_ENOMEM;
    if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1)
        goto fail;
    if (cookie_len && EVP_DigestUpdate(ctx, cookie, cookie_len) != 1)
        goto fail;
    if (EVP_DigestUpdate(ctx, num, (size_t)numlen) != 1)
        goto fail;
    if (EVP_DigestFinal_ex(ctx, out, &dlen) != 1 ||
        dlen != TETHER_HS_DIGEST_LEN)
        goto fail;
    rc = 0;
fail:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Constant-time comparison of two digests; returns 1 when equal. */
static int digest_eq(const uint8_t *a, const uint8_t *b)
{
    uint8_t d = 0;
    for (size_t i = 0; i < TETHER_HS_DIGEST_LEN; i++)
        d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

static int write_name(tether_hs_t *hs)
{
    uint8_t *p;

    if (hs->v5_opener) {
        p = out_msg(hs, NAME_V5_FIXED + hs->our_name_len);
        if (!p)
            return TETHER_ETOOBIG;
        p[0] = TAG_NAME_V5;
        put16(p + 1, 5);
        put32(p + 3, (uint32_t)hs->our_flags);
        memcpy(p + NAME_V5_FIXED, hs->our_name, hs->our_name_len);
        return 0;
    }
    p = out_msg(hs, NAME_V6_FIXED + hs->our_name_len);
    if (!p)
        return TETHER_ETOOBIG;
    p[0] = TAG_NAME_V6;
    put64(p + 1, hs->our_flags);
    put32(p + 9, hs->our_creation);
    put16(p + 13, (uint16_t)hs->our_name_len);
    memcpy(p + NAME_V6_FIXED, hs->our_name, hs->our_name_len);
    return 0;
}

int tether__hs_init(tether_hs_t *hs, tether_hs_role_t role,
                    const char *our_node, const char *cookie,
                    uint64_t our_flags, uint32_t our_creation,
                    uint32_t challenge)
{
    size_t nlen, clen;

    if (!hs)
        return TETHER_EINVAL;
    memset(hs, 0, sizeof(*hs));
    hs->state = ST_FAILED;
    hs->error = TETHER_EINVAL;
    if (!our_node || !cookie ||
        (role != TETHER_HS_INITIATOR && role != TETHER_HS_ACCEPTOR))
        return TETHER_EINVAL;
    nlen = strnlen(our_node, TETHER_HS_NAME_MAX + 1);
    clen = strnlen(cookie, TETHER_HS_COOKIE_MAX + 1);
    if (nlen == 0 || nlen > TETHER_HS_NAME_MAX || clen == 0 ||
        clen > TETHER_HS_COOKIE_MAX || !memchr(our_node, '@', nlen))
        return TETHER_EINVAL;
    hs->role = role;
    hs->error = 0;
    hs->opener_version = 6;
    hs->our_flags = our_flags;
    hs->our_creation = our_creation;
    hs->our_challenge = challenge;
    memcpy(hs->our_name, our_node, nlen);
    hs->our_name_len = nlen;
    memcpy(hs->cookie, cookie, clen);
    hs->cookie_len = clen;
    if (role == TETHER_HS_INITIATOR) {
        hs->state = ST_I_WAIT_STATUS;
        return write_name(hs);
    }
    hs->state = ST_A_WAIT_NAME;
    return 0;
}

int tether__hs_set_v5_opener(tether_hs_t *hs)
{
    if (!hs || hs->role != TETHER_HS_INITIATOR ||
        hs->state != ST_I_WAIT_STATUS || hs->out_sent != 0 ||
        hs->out_len == 0 || hs->v5_opener)
        return TETHER_EINVAL;
    hs->v5_opener = 1;
    hs->opener_version = 5;
    hs->out_len = 0;
    return write_name(hs);
}

int tether__hs_set_len4(tether_hs_t *hs)
{
    uint8_t old[TETHER_HS_OUT_MAX];
    size_t n, off = 0;

    if (!hs || hs->len4 || hs->out_sent != 0)
        return TETHER_EINVAL;
    n = hs->out_len;
    memcpy(old, hs->out, n);
    hs->out_len = 0;
    hs->len4 = 1;
    while (off + TETHER_HS_LEN_BYTES <= n) {
        size_t m = get16(old + off);
        uint8_t *p = out_msg(hs, m);
        if (!p)
            return TETHER_EINVAL;
        memcpy(p, old + off + TETHER_HS_LEN_BYTES, m);
        off += TETHER_HS_LEN_BYTES + m;
    }
    return 0;
}

void tether__hs_set_status_fn(tether_hs_t *hs, tether_hs_status_fn fn,
                              void *ctx)
{
    if (!hs)
        return;
    hs->status_fn = fn;
    hs->status_ctx = ctx;
}

/* Checks a peer's flags; on a missing mandatory flag fails the machine. */
static int check_flags(tether_hs_t *hs, uint64_t flags)
{
    uint64_t missing = tether__dflags_missing(flags);

    if (missing)
        return fail(hs, TETHER_EPROTO, "peer %s lacks mandatory flags 0x%llx",
                    hs->peer_name, (unsigned long long)missing);
    return 0;
}

/*
 * Checks a node name from the wire (length n) and stores it as the peer's
 * name. Returns 0 or fails the machine with TETHER_EPROTO.
 */
static int take_peer_name(tether_hs_t *hs, const uint8_t *name, size_t n)
{
    const uint8_t *at;

    if (n == 0 || n > TETHER_HS_NAME_MAX || memchr(name, '\0', n))
        return fail(hs, TETHER_EPROTO, "bad peer node name");
    at = memchr(name, '@', n);
    if (!at || at == name || at == name + n - 1 ||
        memchr(at + 1, '@', (size_t)(name + n - (at + 1))))
        return fail(hs, TETHER_EPROTO, "bad peer node name");
    memcpy(hs->peer_name, name, n);
    hs->peer_name[n] = '\0';
    hs->peer_name_len = n;
    return 0;
}

/* Writes our challenge ('N' form) to the output. */
static int write_challenge(tether_hs_t *hs)
{
    uint8_t *p = out_msg(hs, CHALLENGE_V6_FIXED + hs->our_name_len);

    if (!p)
        return fail(hs, TETHER_ETOOBIG, "output buffer full");
    p[0] = TAG_NAME_V6;
    put64(p + 1, hs->our_flags);
    put32(p + 9, hs->our_challenge);
    put32(p + 13, hs->our_creation);
    put16(p + 17, (uint16_t)hs->our_name_len);
    memcpy(p + CHALLENGE_V6_FIXED, hs->our_name, hs->our_name_len);
    if (hs->opener_version == 5 && (hs->peer_flags & TETHER_DFLAG_HANDSHAKE_23))
        hs->state = ST_A_WAIT_COMPLEMENT;
    else
        hs->state = ST_A_WAIT_REPLY;
    return 0;
}

/* Acceptor: the peer's name message. */
static int on_name(tether_hs_t *hs, const uint8_t *m, size_t n)
{
    tether_hs_status_t st = TETHER_HS_STATUS_OK;
    int rc;

    if (n >= 1 && m[0] == TAG_NAME_V6) {
        size_t nlen;
        if (n < NAME_V6_FIXED)
            return fail(hs, TETHER_EPROTO, "short name message");
        nlen = get16(m + 13);
        if (nlen != n - NAME_V6_FIXED)
            return fail(hs, TETHER_EPROTO, "name length mismatch");
        hs->peer_flags = get64(m + 1);
        hs->peer_creation = get32(m + 9);
        hs->opener_version = 6;
        if ((rc = take_peer_name(hs, m + NAME_V6_FIXED, nlen)))
            return rc;
    } else if (n >= 1 && m[0] == TAG_NAME_V5) {
        if (n < NAME_V5_FIXED + 1)
            return fail(hs, TETHER_EPROTO, "short name message");
        if (get16(m + 1) != 5)
            return fail(hs, TETHER_EPROTO, "unsupported version %u",
                        (unsigned)get16(m + 1));
        hs->peer_flags = get32(m + 3);
        hs->opener_version = 5;
        if ((rc = take_peer_name(hs, m + NAME_V5_FIXED, n - NAME_V5_FIXED)))
            return rc;
    } else {
        return fail(hs, TETHER_EPROTO, "expected name message");
    }
    if (hs->peer_flags & TETHER_DFLAG_NAME_ME)
        return fail(hs, TETHER_EPROTO, "peer %s asks for a dynamic name",
                    hs->peer_name);
    if (tether__dflags_missing(hs->peer_flags)) {
        (void)out_status(hs, "not_allowed");
        return check_flags(hs, hs->peer_flags);
    }
    if (hs->status_fn)
        st = hs->status_fn(hs->status_ctx, hs->peer_name,
                           tether__dflags_expand(hs->peer_flags),
                           hs->peer_creation);
    switch (st) {
    case TETHER_HS_STATUS_OK:
    case TETHER_HS_STATUS_OK_SIMULTANEOUS:
        if (out_status(hs,
                       st == TETHER_HS_STATUS_OK ? "ok" : "ok_simultaneous"))
            return fail(hs, TETHER_ETOOBIG, "output buffer full");
        return write_challenge(hs);
    case TETHER_HS_STATUS_ALIVE:
        if (out_status(hs, "alive"))
            return fail(hs, TETHER_ETOOBIG, "output buffer full");
        hs->state = ST_A_WAIT_ALIVE_REPLY;
        return 0;
    case TETHER_HS_STATUS_NOK:
        (void)out_status(hs, "nok");
        return fail(hs, TETHER_EEXIST,
                    "peer %s: simultaneous connect, ours "
                    "wins",
                    hs->peer_name);
    case TETHER_HS_STATUS_NOT_ALLOWED:
    default:
        (void)out_status(hs, "not_allowed");
        return fail(hs, TETHER_EAUTH, "peer %s: not allowed", hs->peer_name);
    }
}

/* Returns 1 when the status message m[0..n) is 's' followed by text. */
static int is_status(const uint8_t *m, size_t n, const char *text)
{
    size_t t = strlen(text);
    return n == 1 + t && m[0] == TAG_STATUS && memcmp(m + 1, text, t) == 0;
}

static int on_alive_reply(tether_hs_t *hs, const uint8_t *m, size_t n)
{
    if (is_status(m, n, "true"))
        return write_challenge(hs);
    if (is_status(m, n, "false"))
        return fail(hs, TETHER_EEXIST, "peer %s: keeps its old connection",
                    hs->peer_name);
    return fail(hs, TETHER_EPROTO, "expected alive reply");
}

static int on_complement(tether_hs_t *hs, const uint8_t *m, size_t n)
{
    if (n != COMPLEMENT_LEN || m[0] != TAG_COMPLEMENT)
        return fail(hs, TETHER_EPROTO, "expected complement message");
    hs->peer_flags |= (uint64_t)get32(m + 1) << 32;
    hs->peer_creation = get32(m + 5);
    hs->state = ST_A_WAIT_REPLY;
    return 0;
}

static int on_reply(tether_hs_t *hs, const uint8_t *m, size_t n)
{
    uint8_t want[TETHER_HS_DIGEST_LEN];
    uint8_t *p;
    int rc;

    if (n != REPLY_LEN || m[0] != TAG_REPLY)
        return fail(hs, TETHER_EPROTO, "expected challenge reply");
    rc = tether__hs_digest(hs->cookie, hs->cookie_len, hs->our_challenge, want);
    if (rc)
        return fail(hs, rc, "digest failed");
    if (!digest_eq(want, m + 5))
        return fail(hs, TETHER_EAUTH, "peer %s: wrong cookie", hs->peer_name);
    hs->peer_challenge = get32(m + 1);
    rc =
        tether__hs_digest(hs->cookie, hs->cookie_len, hs->peer_challenge, want);
    if (rc)
        return fail(hs, rc, "digest failed");
    p = out_msg(hs, ACK_LEN);
    if (!p)
        return fail(hs, TETHER_ETOOBIG, "output buffer full");
    p[0] = TAG_ACK;
    memcpy(p + 1, want, TETHER_HS_DIGEST_LEN);
    hs->state = ST_DONE;
    return 0;
}

/* Initiator: the status message. */
static int on_status(tether_hs_t *hs, const uint8_t *m, size_t n)
{
    if (n < 1 || m[0] != TAG_STATUS)
        return fail(hs, TETHER_EPROTO, "expected status message");
    if (is_status(m, n, "ok") || is_status(m, n, "ok_simultaneous")) {
        hs->state = ST_I_WAIT_CHALLENGE;
        return 0;
    }
    if (is_status(m, n, "alive")) {
        if (out_status(hs, "true"))
            return fail(hs, TETHER_ETOOBIG, "output buffer full");
        hs->state = ST_I_WAIT_CHALLENGE;
        return 0;
    }
    if (is_status(m, n, "nok"))
        return fail(hs, TETHER_EEXIST, "status nok: simultaneous connect");
    if (is_status(m, n, "not_allowed"))
        return fail(hs, TETHER_EAUTH, "status not_allowed");
    if (n >= 7 && memcmp(m + 1, "named:", 6) == 0)
        return fail(hs, TETHER_EPROTO, "unexpected status named");
    return fail(hs, TETHER_EPROTO, "unknown status");
}

/* Initiator: the challenge message. */
static int on_challenge(tether_hs_t *hs, const uint8_t *m, size_t n)
{
    uint8_t digest[TETHER_HS_DIGEST_LEN];
    uint8_t *p;
    int rc;

    if (n >= 1 && m[0] == TAG_NAME_V6) {
        size_t nlen;
        if (n < CHALLENGE_V6_FIXED)
            return fail(hs, TETHER_EPROTO, "short challenge message");
        nlen = get16(m + 17);
        if (nlen != n - CHALLENGE_V6_FIXED)
            return fail(hs, TETHER_EPROTO, "challenge name length mismatch");
        hs->peer_flags = get64(m + 1);
        hs->peer_challenge = get32(m + 9);
        hs->peer_creation = get32(m + 13);
        if ((rc = take_peer_name(hs, m + CHALLENGE_V6_FIXED, nlen)))
            return rc;
    } else if (n >= 1 && m[0] == TAG_NAME_V5) {
        if (n < CHALLENGE_V5_FIXED + 1)
            return fail(hs, TETHER_EPROTO, "short challenge message");
        if (get16(m + 1) != 5)
            return fail(hs, TETHER_EPROTO, "unsupported version %u",
                        (unsigned)get16(m + 1));
        hs->peer_flags = get32(m + 3);
        hs->peer_challenge = get32(m + 7);
        if ((rc = take_peer_name(hs, m + CHALLENGE_V5_FIXED,
                                 n - CHALLENGE_V5_FIXED)))
            return rc;
    } else {
        return fail(hs, TETHER_EPROTO, "expected challenge message");
    }
    if ((rc = check_flags(hs, hs->peer_flags)))
        return rc;
    if (hs->v5_opener && (hs->peer_flags & TETHER_DFLAG_HANDSHAKE_23)) {
        p = out_msg(hs, COMPLEMENT_LEN);
        if (!p)
            return fail(hs, TETHER_ETOOBIG, "output buffer full");
        p[0] = TAG_COMPLEMENT;
        put32(p + 1, (uint32_t)(hs->our_flags >> 32));
        put32(p + 5, hs->our_creation);
    }
    rc = tether__hs_digest(hs->cookie, hs->cookie_len, hs->peer_challenge,
                           digest);
    if (rc)
        return fail(hs, rc, "digest failed");
    p = out_msg(hs, REPLY_LEN);
    if (!p)
        return fail(hs, TETHER_ETOOBIG, "output buffer full");
    p[0] = TAG_REPLY;
    put32(p + 1, hs->our_challenge);
    memcpy(p + 5, digest, TETHER_HS_DIGEST_LEN);
    hs->state = ST_I_WAIT_ACK;
    return 0;
}

/* Initiator: the challenge ack. */
static int on_ack(tether_hs_t *hs, const uint8_t *m, size_t n)
{
    uint8_t want[TETHER_HS_DIGEST_LEN];
    int rc;

    if (n != ACK_LEN || m[0] != TAG_ACK)
        return fail(hs, TETHER_EPROTO, "expected challenge ack");
    rc = tether__hs_digest(hs->cookie, hs->cookie_len, hs->our_challenge, want);
    if (rc)
        return fail(hs, rc, "digest failed");
    if (!digest_eq(want, m + 1))
        return fail(hs, TETHER_EAUTH, "peer %s: wrong cookie", hs->peer_name);
    hs->state = ST_DONE;
    return 0;
}

static int dispatch(tether_hs_t *hs, const uint8_t *m, size_t n)
{
    switch (hs->state) {
    case ST_I_WAIT_STATUS:
        return on_status(hs, m, n);
    case ST_I_WAIT_CHALLENGE:
        return on_challenge(hs, m, n);
    case ST_I_WAIT_ACK:
        return on_ack(hs, m, n);
    case ST_A_WAIT_NAME:
        return on_name(hs, m, n);
    case ST_A_WAIT_ALIVE_REPLY:
        return on_alive_reply(hs, m, n);
    case ST_A_WAIT_COMPLEMENT:
        return on_complement(hs, m, n);
    case ST_A_WAIT_REPLY:
        return on_reply(hs, m, n);
    default:
        return fail(hs, TETHER_EPROTO, "bad state");
    }
}

int tether__hs_input(tether_hs_t *hs, const uint8_t *buf, size_t len,
                     size_t *consumed)
{
    size_t off = 0;
    int rc = 0;

    if (consumed)
        *consumed = 0;
    if (!hs || !consumed || (!buf && len))
        return TETHER_EINVAL;
    while (hs->state != ST_DONE && hs->state != ST_FAILED) {
        size_t n, lb = len_bytes(hs);
        if (len - off < lb)
            break;
        n = hs->len4 ? get32(buf + off) : get16(buf + off);
        if (n == 0)
            return fail(hs, TETHER_EPROTO, "empty handshake message");
        if (n > TETHER_HS_MSG_MAX)
            return fail(hs, TETHER_ETOOBIG, "handshake message too long");
        if (len - off - lb < n)
            break;
        rc = dispatch(hs, buf + off + lb, n);
        off += lb + n;
        *consumed = off;
        if (rc)
            return rc;
    }
    return hs->state == ST_FAILED ? hs->error : 0;
}

const uint8_t *tether__hs_output(const tether_hs_t *hs, size_t *len)
{
    if (!hs) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = hs->out_len - hs->out_sent;
    return hs->out + hs->out_sent;
}

void tether__hs_consume_output(tether_hs_t *hs, size_t n)
{
    if (!hs)
        return;
    if (n > hs->out_len - hs->out_sent)
        n = hs->out_len - hs->out_sent;
    hs->out_sent += n;
    if (hs->out_sent == hs->out_len)
        hs->out_sent = hs->out_len = 0;
}

int tether__hs_awaiting_ack(const tether_hs_t *hs)
{
    return hs->state == ST_I_WAIT_ACK;
}

int tether__hs_done(const tether_hs_t *hs)
{
    return hs && hs->state == ST_DONE;
}

int tether__hs_failed(const tether_hs_t *hs)
{
    if (!hs)
        return TETHER_EINVAL;
    return hs->state == ST_FAILED ? hs->error : 0;
}

const char *tether__hs_reason(const tether_hs_t *hs)
{
    return hs ? hs->reason : "";
}

const char *tether__hs_peer_name(const tether_hs_t *hs)
{
    return hs ? hs->peer_name : "";
}

uint64_t tether__hs_peer_flags(const tether_hs_t *hs)
{
    return hs ? tether__dflags_expand(hs->peer_flags) : 0;
}

uint64_t tether__hs_flags(const tether_hs_t *hs)
{
    return hs ? hs->our_flags & tether__dflags_expand(hs->peer_flags) : 0;
}

uint32_t tether__hs_peer_creation(const tether_hs_t *hs)
{
    return hs ? hs->peer_creation : 0;
}

int tether__hs_opener_version(const tether_hs_t *hs)
{
    return hs ? hs->opener_version : 0;
}

void tether__hs_fini(tether_hs_t *hs)
{
    if (!hs)
        return;
    /* A volatile pointer keeps the wipe of the cookie from being elided. */
    volatile uint8_t *p = (volatile uint8_t *)hs;
    for (size_t i = 0; i < sizeof(*hs); i++)
        p[i] = 0;
}
