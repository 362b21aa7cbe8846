/*
 * core/ring.c: the consistent-hash ring (see ring.h): the canonical key
 * encoding and hash, the rendezvous table, and the cluster ring module.
 *
 * The canonical encoder walks one term in external format with explicit
 * bounds (every length checked against what is left, nesting at most
 * TETHER_ETF_DEPTH_MAX) and writes its canonical form into a growable
 * buffer (on the stack for small keys). Map pairs are encoded aside,
 * then sorted by their encoded keys.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/codec.h"
#include "core/module.h"
#include "core/ring.h"

#define GOLDEN    UINT64_C(0x9e3779b97f4a7c15)
#define STACK_BUF 256

/* External term format tags (OTP's external.h). */
enum {
    T_NEW_FLOAT = 70,
    T_BIT_BINARY = 77,
    T_NEW_PID = 88,
    T_NEW_PORT = 89,
    T_NEWER_REFERENCE = 90,
    T_SMALL_INTEGER = 97,
    T_INTEGER = 98,
    T_FLOAT = 99,
    T_ATOM = 100,
    T_REFERENCE = 101,
    T_PORT = 102,
    T_PID = 103,
    T_SMALL_TUPLE = 104,
    T_LARGE_TUPLE = 105,
    T_NIL = 106,
    T_STRING = 107,
    T_LIST = 108,
    T_BINARY = 109,
    T_SMALL_BIG = 110,
    T_LARGE_BIG = 111,
    T_EXPORT = 113,
    T_NEW_REFERENCE = 114,
    T_SMALL_ATOM = 115,
    T_MAP = 116,
    T_ATOM_UTF8 = 118,
    T_SMALL_ATOM_UTF8 = 119,
    T_V4_PORT = 120,
};

/* ------------------------------------------------------------ buffers */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap, max;
    int heap;
    int err; /* why the first write failed: TETHER_ETOOBIG or _ENOMEM */
} wbuf_t;

static void wb_init(wbuf_t *w, uint8_t *stack, size_t cap, size_t max)
{
    w->p = stack;
    w->len = 0;
    w->cap = cap;
    w->max = max;
    w->heap = 0;
    w->err = 0;
}

static void wb_fini(wbuf_t *w)
{
    if (w->heap)
        free(w->p);
    w->heap = 0;
}

/* Room for n more bytes. Returns 0, TETHER_ETOOBIG or TETHER_ENOMEM. */
static int wb_room(wbuf_t *w, size_t n)
{
    size_t cap;
    uint8_t *v;

    if (n > w->max - w->len)
        return w->err = w->err ? w->err : TETHER_ETOOBIG;
    if (w->len + n <= w->cap)
        return 0;
    cap = w->cap ? w->cap : 64;
    while (cap < w->len + n)
        cap *= 2;
    if (cap > w->max)
        cap = w->max;
    v = w->heap ? realloc(w->p, cap) : malloc(cap);
    if (v == NULL)
        return w->err = w->err ? w->err : TETHER_ENOMEM;
    if (!w->heap && w->len)
        memcpy(v, w->p, w->len);
    w->p = v;
    w->cap = cap;
    w->heap = 1;
    return 0;
}

static int wb_put(wbuf_t *w, const void *b, size_t n)
{
    int rc = wb_room(w, n);

    if (rc == 0 && n) {
        memcpy(w->p + w->len, b, n);
        w->len += n;
    }
    return rc;
}

static int wb_byte(wbuf_t *w, uint8_t b)
{
    return wb_put(w, &b, 1);
}

static int wb_be(wbuf_t *w, uint64_t v, int bytes)
{
    uint8_t b[8];

    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    return wb_put(w, b, (size_t)bytes);
}

/* ------------------------------------------------------------ reading */

typedef struct rd {
    const uint8_t *p;
    size_t len, at;
} rd_t;

static int rd_need(const rd_t *r, size_t n)
{
    return n <= r->len - r->at ? 0 : TETHER_EPROTO;
}

static uint64_t rd_be(rd_t *r, int bytes)
{
    uint64_t v = 0;

    for (int i = 0; i < bytes; i++)
        v = (v << 8) | r->p[r->at++];
    return v;
}

/* ----------------------------------------------------------- encoding */

/* An atom's name as UTF-8 (latin1 bytes widened) in SMALL_ATOM_UTF8_EXT
 * (or ATOM_UTF8_EXT above 255 bytes). */
static int put_atom(wbuf_t *w, const uint8_t *name, size_t n, int latin1)
{
    uint8_t utf8[1024];
    size_t m = 0, chars = 0;
    int rc;

    if (n > 1020)
        return TETHER_EPROTO;
    for (size_t i = 0; i < n; i++)
        chars += latin1 || (name[i] & 0xC0) != 0x80;
    if (chars > 255)
        return TETHER_EPROTO; /* no atom is that long */
    for (size_t i = 0; i < n; i++) {
        if (latin1 && name[i] >= 0x80) {
            utf8[m++] = (uint8_t)(0xC0 | (name[i] >> 6));
            utf8[m++] = (uint8_t)(0x80 | (name[i] & 0x3F));
        } else {
            utf8[m++] = name[i];
        }
    }
    if (m > 1020)
        return TETHER_EPROTO;
    if (m < 256)
        rc = wb_byte(w, T_SMALL_ATOM_UTF8) || wb_byte(w, (uint8_t)m);
    else
        rc = wb_byte(w, T_ATOM_UTF8) || wb_be(w, m, 2);
    return rc ? TETHER_ENOMEM : wb_put(w, utf8, m);
}

/*
 * An integer given as sign and magnitude (n little-endian bytes) in the
 * smallest of SMALL_INTEGER_EXT, INTEGER_EXT, SMALL_BIG_EXT and
 * LARGE_BIG_EXT, as term_to_binary writes it.
 */
static int put_int(wbuf_t *w, int negative, const uint8_t *mag, size_t n)
{
    uint64_t v = 0;

    while (n > 0 && mag[n - 1] == 0)
        n--;
    if (n == 0)
        negative = 0;
    if (n <= 4) {
        for (size_t i = n; i > 0; i--)
            v = (v << 8) | mag[i - 1];
        if (!negative && v <= 255)
            return wb_byte(w, T_SMALL_INTEGER) || wb_byte(w, (uint8_t)v)
                       ? TETHER_ENOMEM
                       : 0;
        if ((!negative && v <= INT32_MAX) ||
            (negative && v <= (uint64_t)INT32_MAX + 1)) {
            uint32_t u = negative ? (uint32_t)(0u - (uint32_t)v) : (uint32_t)v;
            return wb_byte(w, T_INTEGER) || wb_be(w, u, 4) ? TETHER_ENOMEM : 0;
        }
    }
    if (n <= 255) {
        if (wb_byte(w, T_SMALL_BIG) || wb_byte(w, (uint8_t)n))
            return TETHER_ENOMEM;
    } else if (wb_byte(w, T_LARGE_BIG) || wb_be(w, n, 4)) {
        return TETHER_ENOMEM;
    }
    return wb_byte(w, (uint8_t)negative) ? TETHER_ENOMEM : wb_put(w, mag, n);
}

static int put_int64(wbuf_t *w, int64_t v)
{
    uint64_t m = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
    uint8_t mag[8];

    for (int i = 0; i < 8; i++)
        mag[i] = (uint8_t)(m >> (8 * i));
    return put_int(w, v < 0, mag, 8);
}

static int canon(rd_t *r, wbuf_t *w, int depth);

/* An atom at r (any of the four atom tags) into w. */
static int canon_atom(rd_t *r, wbuf_t *w)
{
    uint8_t tag;
    size_t n;

    if (rd_need(r, 1) < 0)
        return TETHER_EPROTO;
    tag = r->p[r->at++];
    if (tag == T_ATOM || tag == T_ATOM_UTF8) {
        if (rd_need(r, 2) < 0)
            return TETHER_EPROTO;
        n = (size_t)rd_be(r, 2);
    } else if (tag == T_SMALL_ATOM || tag == T_SMALL_ATOM_UTF8) {
        if (rd_need(r, 1) < 0)
            return TETHER_EPROTO;
        n = r->p[r->at++];
    } else {
        return TETHER_EPROTO;
    }
    if (rd_need(r, n) < 0)
        return TETHER_EPROTO;
    r->at += n;
    return put_atom(w, r->p + r->at - n, n,
                    tag == T_ATOM || tag == T_SMALL_ATOM);
}

/* A big integer's n magnitude bytes at r, after its sign byte. */
static int canon_big(rd_t *r, wbuf_t *w, size_t n)
{
    int negative;

    if (rd_need(r, 1 + n) < 0)
        return TETHER_EPROTO;
    negative = r->p[r->at++] != 0;
    r->at += n;
    return put_int(w, negative, r->p + r->at - n, n);
}

/* n elements at r, each canonical. */
static int canon_seq(rd_t *r, wbuf_t *w, uint64_t n, int depth)
{
    for (uint64_t i = 0; i < n; i++) {
        int rc = canon(r, w, depth);
        if (rc < 0)
            return rc;
    }
    return 0;
}

typedef struct pair {
    size_t k, klen, vlen; /* offsets into the pairs buffer */
} pair_t;

static int pair_cmp(const void *a, const void *b, void *base)
{
    const pair_t *x = a, *y = b;
    const uint8_t *p = base;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(p + x->k, p + y->k, n);

    if (c != 0)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

/* A map's n pairs at r, sorted by their encoded keys. */
static int canon_map(rd_t *r, wbuf_t *w, uint64_t n, int depth)
{
    wbuf_t tmp;
    pair_t *pairs;
    int rc = 0;

    if (n > r->len - r->at) /* every pair takes 2 bytes at least */
        return TETHER_EPROTO;
    pairs = malloc((n ? n : 1) * sizeof *pairs);
    if (pairs == NULL)
        return TETHER_ENOMEM;
    wb_init(&tmp, NULL, 0, w->max);
    for (uint64_t i = 0; rc == 0 && i < n; i++) {
        pairs[i].k = tmp.len;
        rc = canon(r, &tmp, depth);
        pairs[i].klen = tmp.len - pairs[i].k;
        if (rc == 0)
            rc = canon(r, &tmp, depth);
        pairs[i].vlen = tmp.len - pairs[i].k - pairs[i].klen;
    }
    if (rc == TETHER_ENOMEM && tmp.err)
        rc = tmp.err; /* the pairs outgrew the key, most likely */
    if (rc == 0) {
        qsort_r(pairs, (size_t)n, sizeof *pairs, pair_cmp, tmp.p);
        rc = wb_byte(w, T_MAP) || wb_be(w, n, 4) ? TETHER_ENOMEM : 0;
        for (uint64_t i = 0; rc == 0 && i < n; i++)
            rc = wb_put(w, tmp.p + pairs[i].k, pairs[i].klen + pairs[i].vlen);
    }
    wb_fini(&tmp);
    free(pairs);
    return rc;
}

/* A node atom, then `ids` 32-bit (or one 64-bit) numbers and a creation
 * of `cbytes` bytes widened to 32 bits. */
static int canon_ident(rd_t *r, wbuf_t *w, int ids, int idbytes, int cbytes)
{
    int rc = canon_atom(r, w);

    if (rc < 0)
        return rc;
    if (rd_need(r, (size_t)(ids * idbytes + cbytes)) < 0)
        return TETHER_EPROTO;
    for (int i = 0; i < ids; i++)
        if (wb_be(w, rd_be(r, idbytes), idbytes))
            return TETHER_ENOMEM;
    return wb_be(w, rd_be(r, cbytes), 4) ? TETHER_ENOMEM : 0;
}

/* References: NEWER_REFERENCE_EXT with the node, creation and ids. */
static int canon_ref(rd_t *r, wbuf_t *w, uint8_t tag)
{
    size_t n = 1, at;
    int rc;

    if (tag != T_REFERENCE) {
        if (rd_need(r, 2) < 0)
            return TETHER_EPROTO;
        n = (size_t)rd_be(r, 2);
        if (n == 0 || n > 5)
            return TETHER_EPROTO;
    }
    if (wb_byte(w, T_NEWER_REFERENCE) || wb_be(w, n, 2))
        return TETHER_ENOMEM;
    rc = canon_atom(r, w);
    if (rc < 0)
        return rc;
    if (tag == T_REFERENCE) { /* node, id, creation */
        if (rd_need(r, 5) < 0)
            return TETHER_EPROTO;
        at = r->at;
        r->at += 4;
        if (wb_be(w, rd_be(r, 1), 4))
            return TETHER_ENOMEM;
        return wb_put(w, r->p + at, 4);
    }
    if (rd_need(r, (tag == T_NEW_REFERENCE ? 1 : 4) + 4 * n) < 0)
        return TETHER_EPROTO;
    if (wb_be(w, rd_be(r, tag == T_NEW_REFERENCE ? 1 : 4), 4))
        return TETHER_ENOMEM;
    at = r->at;
    r->at += 4 * n;
    return wb_put(w, r->p + at, 4 * n);
}

/* One term at r into w (see ring.h for the canonical choices). */
static int canon(rd_t *r, wbuf_t *w, int depth)
{
    uint8_t tag;
    uint64_t n;
    int rc;

    if (depth > TETHER_ETF_DEPTH_MAX || rd_need(r, 1) < 0)
        return TETHER_EPROTO;
    tag = r->p[r->at];
    switch (tag) {
    case T_ATOM:
    case T_SMALL_ATOM:
    case T_ATOM_UTF8:
    case T_SMALL_ATOM_UTF8:
        return canon_atom(r, w);
    case T_SMALL_INTEGER:
        if (rd_need(r, 2) < 0)
            return TETHER_EPROTO;
        r->at++;
        return put_int64(w, r->p[r->at++]);
    case T_INTEGER:
        if (rd_need(r, 5) < 0)
            return TETHER_EPROTO;
        r->at++;
        return put_int64(w, (int32_t)(uint32_t)rd_be(r, 4));
    case T_SMALL_BIG:
        if (rd_need(r, 2) < 0)
            return TETHER_EPROTO;
        r->at++;
        return canon_big(r, w, r->p[r->at++]);
    case T_LARGE_BIG:
        if (rd_need(r, 5) < 0)
            return TETHER_EPROTO;
        r->at++;
        return canon_big(r, w, (size_t)rd_be(r, 4));
    case T_NEW_FLOAT:
        if (rd_need(r, 9) < 0)
            return TETHER_EPROTO;
        rc = wb_put(w, r->p + r->at, 9);
        r->at += 9;
        return rc;
    case T_FLOAT: {
        char text[32];
        double d;
        uint64_t bits;
        if (rd_need(r, 32) < 0)
            return TETHER_EPROTO;
        memcpy(text, r->p + r->at + 1, 31);
        text[31] = '\0';
        r->at += 32;
        d = strtod(text, NULL);
        memcpy(&bits, &d, sizeof bits);
        return wb_byte(w, T_NEW_FLOAT) || wb_be(w, bits, 8) ? TETHER_ENOMEM : 0;
    }
    case T_BINARY:
        if (rd_need(r, 5) < 0)
            return TETHER_EPROTO;
        r->at++;
        n = rd_be(r, 4);
        if (rd_need(r, (size_t)n) < 0)
            return TETHER_EPROTO;
        rc = wb_byte(w, T_BINARY) || wb_be(w, n, 4) ? TETHER_ENOMEM : 0;
        if (rc == 0)
            rc = wb_put(w, r->p + r->at, (size_t)n);
        r->at += n;
        return rc;
    case T_BIT_BINARY: {
        uint8_t bits, last;
        if (rd_need(r, 6) < 0)
            return TETHER_EPROTO;
        r->at++;
        n = rd_be(r, 4);
        bits = r->p[r->at++];
        if (n == 0 || bits == 0 || bits > 8 || rd_need(r, (size_t)n) < 0)
            return TETHER_EPROTO;
        last = (uint8_t)(r->p[r->at + n - 1] & (0xFF << (8 - bits)));
        if (bits == 8)
            rc = wb_byte(w, T_BINARY) || wb_be(w, n, 4);
        else
            rc = wb_byte(w, T_BIT_BINARY) || wb_be(w, n, 4) || wb_byte(w, bits);
        if (rc == 0)
            rc = wb_put(w, r->p + r->at, (size_t)n - 1) || wb_byte(w, last);
        r->at += n;
        return rc ? TETHER_ENOMEM : 0;
    }
    case T_NIL:
        r->at++;
        return wb_byte(w, T_NIL) ? TETHER_ENOMEM : 0;
    case T_STRING: /* a list of small integers, then nil */
        if (rd_need(r, 3) < 0)
            return TETHER_EPROTO;
        r->at++;
        n = rd_be(r, 2);
        if (rd_need(r, (size_t)n) < 0)
            return TETHER_EPROTO;
        if (n == 0)
            return wb_byte(w, T_NIL) ? TETHER_ENOMEM : 0;
        if (wb_byte(w, T_LIST) || wb_be(w, n, 4))
            return TETHER_ENOMEM;
        for (uint64_t i = 0; i < n; i++)
            if (put_int64(w, r->p[r->at++]))
                return TETHER_ENOMEM;
        return wb_byte(w, T_NIL) ? TETHER_ENOMEM : 0;
    case T_LIST:
        if (rd_need(r, 5) < 0)
            return TETHER_EPROTO;
        r->at++;
        n = rd_be(r, 4);
        if (n > r->len - r->at)
            return TETHER_EPROTO;
        if (wb_byte(w, T_LIST) || wb_be(w, n, 4))
            return TETHER_ENOMEM;
        return canon_seq(r, w, n + 1, depth + 1); /* the tail too */
    case T_SMALL_TUPLE:
    case T_LARGE_TUPLE:
        if (rd_need(r, tag == T_SMALL_TUPLE ? 2 : 5) < 0)
            return TETHER_EPROTO;
        r->at++;
        n = rd_be(r, tag == T_SMALL_TUPLE ? 1 : 4);
        if (n > r->len - r->at)
            return TETHER_EPROTO;
        if (n <= 255)
            rc = wb_byte(w, T_SMALL_TUPLE) || wb_byte(w, (uint8_t)n);
        else
            rc = wb_byte(w, T_LARGE_TUPLE) || wb_be(w, n, 4);
        return rc ? TETHER_ENOMEM : canon_seq(r, w, n, depth + 1);
    case T_MAP:
        if (rd_need(r, 5) < 0)
            return TETHER_EPROTO;
        r->at++;
        return canon_map(r, w, rd_be(r, 4), depth + 1);
    case T_PID:
    case T_NEW_PID:
        r->at++;
        if (wb_byte(w, T_NEW_PID))
            return TETHER_ENOMEM;
        return canon_ident(r, w, 2, 4, tag == T_PID ? 1 : 4);
    case T_PORT:
    case T_NEW_PORT:
    case T_V4_PORT: {
        /* V4_PORT_EXT: node, a 64-bit id, a 32-bit creation. */
        int rc2;
        uint64_t id, cr;
        r->at++;
        if (wb_byte(w, T_V4_PORT))
            return TETHER_ENOMEM;
        rc2 = canon_atom(r, w);
        if (rc2 < 0)
            return rc2;
        if (rd_need(r, tag == T_V4_PORT ? 12 : tag == T_NEW_PORT ? 8 : 5) < 0)
            return TETHER_EPROTO;
        id = rd_be(r, tag == T_V4_PORT ? 8 : 4);
        cr = rd_be(r, tag == T_PORT ? 1 : 4);
        return wb_be(w, id, 8) || wb_be(w, cr, 4) ? TETHER_ENOMEM : 0;
    }
    case T_REFERENCE:
    case T_NEW_REFERENCE:
    case T_NEWER_REFERENCE:
        r->at++;
        return canon_ref(r, w, tag);
    case T_EXPORT:
        r->at++;
        if (wb_byte(w, T_EXPORT))
            return TETHER_ENOMEM;
        rc = canon_atom(r, w);
        if (rc == 0)
            rc = canon_atom(r, w);
        if (rc == 0) {
            if (rd_need(r, 2) < 0 || r->p[r->at] != T_SMALL_INTEGER)
                return TETHER_EPROTO;
            rc = wb_put(w, r->p + r->at, 2);
            r->at += 2;
        }
        return rc;
    default: /* closures, atom cache references, unknown tags */
        return TETHER_EPROTO;
    }
}

/* Canonical bytes of etf into w (version byte first). */
static int canon_term(const uint8_t *etf, size_t len, wbuf_t *w)
{
    rd_t r = {etf, len, 1};
    int rc;

    if (etf == NULL || len < 2 || etf[0] != TETHER_ETF_VERSION)
        return TETHER_EPROTO;
    if (wb_byte(w, TETHER_ETF_VERSION))
        return TETHER_ENOMEM;
    rc = canon(&r, w, 0);
    if (rc == 0 && r.at != len)
        rc = TETHER_EPROTO; /* trailing bytes */
    /* A failed write reports itself as ENOMEM through the encoders: say
     * why it failed. */
    return rc == TETHER_ENOMEM && w->err ? w->err : rc;
}

int tether_ring_canon(const uint8_t *etf, size_t len, uint8_t *out, size_t cap,
                      size_t *out_len)
{
    wbuf_t w;
    int rc;

    if (out == NULL || out_len == NULL)
        return TETHER_EINVAL;
    wb_init(&w, out, cap,
            cap < TETHER_RING_KEY_MAX ? cap : TETHER_RING_KEY_MAX);
    rc = canon_term(etf, len, &w);
    if (rc == 0)
        *out_len = w.len;
    /* w never grew past out: max is at most cap. */
    return rc;
}

/* ---------------------------------------------------------------- hash */

static uint64_t siphash(const uint8_t *b, size_t len)
{
    static const uint8_t key[crypto_shorthash_KEYBYTES] = TETHER_RING_HASH_KEY;
    uint8_t out[crypto_shorthash_BYTES];
    uint64_t h = 0;

    crypto_shorthash(out, b, len, key);
    for (int i = 7; i >= 0; i--)
        h = (h << 8) | out[i];
    return h;
}

uint64_t tether_ring_hash_canon(const uint8_t *canon, size_t len)
{
    return siphash(canon, len);
}

int tether_ring_hash_term(const uint8_t *etf, size_t len, uint64_t *hash)
{
    uint8_t stack[STACK_BUF];
    wbuf_t w;
    int rc;

    if (hash == NULL)
        return TETHER_EINVAL;
    wb_init(&w, stack, sizeof stack, TETHER_RING_KEY_MAX);
    rc = canon_term(etf, len, &w);
    if (rc == 0)
        *hash = siphash(w.p, w.len);
    wb_fini(&w);
    return rc;
}

uint64_t tether_ring_hash_binary(const uint8_t *bytes, size_t len)
{
    uint8_t stack[STACK_BUF], *b = stack;
    uint64_t h;

    if (len + 6 > sizeof stack && (b = malloc(len + 6)) == NULL)
        return 0; /* out of memory: a fixed shard rather than a crash */
    b[0] = TETHER_ETF_VERSION;
    b[1] = T_BINARY;
    for (int i = 0; i < 4; i++)
        b[2 + i] = (uint8_t)((uint64_t)len >> (8 * (3 - i)));
    if (len)
        memcpy(b + 6, bytes, len);
    h = siphash(b, len + 6);
    if (b != stack)
        free(b);
    return h;
}

int tether_ring_hash_atom(const char *name, size_t len, int latin1,
                          uint64_t *hash)
{
    uint8_t stack[1100];
    wbuf_t w;
    int rc;

    wb_init(&w, stack, sizeof stack, sizeof stack);
    rc = wb_byte(&w, TETHER_ETF_VERSION)
             ? TETHER_ENOMEM
             : put_atom(&w, (const uint8_t *)name, len, latin1);
    if (rc == 0)
        *hash = siphash(w.p, w.len);
    return rc;
}

uint64_t tether_ring_hash_int(int64_t v)
{
    uint8_t stack[16];
    wbuf_t w;

    wb_init(&w, stack, sizeof stack, sizeof stack);
    if (wb_byte(&w, TETHER_ETF_VERSION) || put_int64(&w, v))
        return 0; /* not reached: 10 bytes at most */
    return siphash(w.p, w.len);
}

uint32_t tether_ring_shard_of_hash(uint64_t hash, uint32_t shards)
{
    return (uint32_t)(hash & (uint64_t)(shards - 1));
}

/* ------------------------------------------------ keys piece by piece */

/* A writer over k's buffer, bounded by it, from k->len on. */
static void key_wb(tether_ring_key_t *k, wbuf_t *w)
{
    wb_init(w, k->b, sizeof k->b, sizeof k->b);
    w->len = k->len;
}

/* Keeps what w wrote, or k->len stays. In a bounded buffer every failure
 * but a bad atom means the key outgrew it. */
static int key_done(tether_ring_key_t *k, const wbuf_t *w, int rc)
{
    if (rc == 0) {
        k->len = w->len;
        return 0;
    }
    return rc == TETHER_EPROTO ? TETHER_EPROTO : TETHER_ETOOBIG;
}

void tether_ring_key_init(tether_ring_key_t *k)
{
    k->b[0] = TETHER_ETF_VERSION;
    k->len = 1;
}

int tether_ring_key_atom(tether_ring_key_t *k, const char *name, size_t len,
                         int latin1)
{
    wbuf_t w;

    key_wb(k, &w);
    return key_done(k, &w, put_atom(&w, (const uint8_t *)name, len, latin1));
}

int tether_ring_key_int(tether_ring_key_t *k, int64_t v)
{
    wbuf_t w;

    key_wb(k, &w);
    return key_done(k, &w, put_int64(&w, v));
}

int tether_ring_key_binary(tether_ring_key_t *k, const uint8_t *bytes,
                           size_t len)
{
    wbuf_t w;

    if (len > sizeof k->b)
        return TETHER_ETOOBIG;
    key_wb(k, &w);
    return key_done(k, &w,
                    wb_byte(&w, T_BINARY) || wb_be(&w, len, 4) ||
                        wb_put(&w, bytes, len));
}

int tether_ring_key_tuple(tether_ring_key_t *k, size_t arity)
{
    wbuf_t w;

    key_wb(k, &w);
    if (arity <= 255)
        return key_done(k, &w,
                        wb_byte(&w, T_SMALL_TUPLE) ||
                            wb_byte(&w, (uint8_t)arity));
    return key_done(k, &w, wb_byte(&w, T_LARGE_TUPLE) || wb_be(&w, arity, 4));
}

int tether_ring_key_list(tether_ring_key_t *k, size_t n)
{
    wbuf_t w;

    if (n == 0)
        return 0; /* [] is the nil alone */
    key_wb(k, &w);
    return key_done(k, &w, wb_byte(&w, T_LIST) || wb_be(&w, n, 4));
}

int tether_ring_key_nil(tether_ring_key_t *k)
{
    wbuf_t w;

    key_wb(k, &w);
    return key_done(k, &w, wb_byte(&w, T_NIL));
}

uint64_t tether_ring_key_hash(const tether_ring_key_t *k)
{
    return siphash(k->b, k->len);
}

/* ---------------------------------------------------------------- table */

typedef char name_t[TETHER_NODE_NAME_MAX + 1];

struct tether_ring {
    uint32_t shards;
    size_t n, k;   /* members; owners kept per shard (min(n, TOP)) */
    name_t *names; /* sorted */
    uint64_t *nh;  /* each name's hash */
    uint16_t *top; /* shards x k member indexes, best first */
};

static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + GOLDEN;

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t weight(uint64_t nh, uint32_t shard)
{
    return splitmix64(nh + ((uint64_t)shard + 1) * GOLDEN);
}

/* 1 if member a (weight wa) ranks before member b (weight wb): the higher
 * weight, then the name that sorts first (the lower index). */
static int before(uint64_t wa, size_t a, uint64_t wb, size_t b)
{
    return wa > wb || (wa == wb && a < b);
}

/* Fills the top-k table from names and nh. */
static void build_top(tether_ring_t *r)
{
    uint64_t w[TETHER_RING_TOP];

    for (uint32_t s = 0; s < r->shards; s++) {
        uint16_t *t = r->top + (size_t)s * r->k;
        size_t have = 0;
        for (size_t i = 0; i < r->n; i++) {
            uint64_t wi = weight(r->nh[i], s);
            size_t at;
            if (have == r->k && !before(wi, i, w[have - 1], t[have - 1]))
                continue;
            at = have < r->k ? have++ : have - 1;
            while (at > 0 && before(wi, i, w[at - 1], t[at - 1])) {
                w[at] = w[at - 1];
                t[at] = t[at - 1];
                at--;
            }
            w[at] = wi;
            t[at] = (uint16_t)i;
        }
    }
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

int tether_ring_new(uint32_t shards, tether_ring_t **out)
{
    tether_ring_t *r;

    if (out == NULL || shards == 0 || shards > TETHER_RING_SHARDS_MAX ||
        (shards & (shards - 1)) != 0)
        return TETHER_EINVAL;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return TETHER_ENOMEM;
    r->shards = shards;
    *out = r;
    return 0;
}

void tether_ring_free(tether_ring_t *r)
{
    if (r == NULL)
        return;
    free(r->names);
    free(r->nh);
    free(r->top);
    free(r);
}

/* Replaces r's members by the n sorted, distinct names (taking the
 * arrays) and rebuilds. Returns 0 or TETHER_ENOMEM (r unchanged, the
 * arrays freed). */
static int install(tether_ring_t *r, name_t *names, uint64_t *nh, size_t n)
{
    size_t k = n < TETHER_RING_TOP ? n : TETHER_RING_TOP;
    uint16_t *top = NULL;

    if (n > 0 && (top = malloc((size_t)r->shards * k * sizeof *top)) == NULL) {
        free(names);
        free(nh);
        return TETHER_ENOMEM;
    }
    free(r->names);
    free(r->nh);
    free(r->top);
    r->names = names;
    r->nh = nh;
    r->top = top;
    r->n = n;
    r->k = k;
    build_top(r);
    return 0;
}

int tether_ring_set_members(tether_ring_t *r, const char *const *names,
                            size_t n)
{
    name_t *v = NULL;
    uint64_t *nh = NULL;

    if (r == NULL || (n > 0 && names == NULL))
        return TETHER_EINVAL;
    if (n > TETHER_RING_MEMBERS_MAX)
        return TETHER_ETOOBIG;
    if (n > 0) {
        v = malloc(n * sizeof *v);
        nh = malloc(n * sizeof *nh);
        if (v == NULL || nh == NULL) {
            free(v);
            free(nh);
            return TETHER_ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL || tether__node_name_len(names[i]) == 0) {
            free(v);
            free(nh);
            return TETHER_EINVAL;
        }
        memcpy(v[i], names[i], strlen(names[i]) + 1);
    }
    if (n > 1)
        qsort(v, n, sizeof *v, name_cmp);
    for (size_t i = 0; i < n; i++) {
        if ((i > 0 && strcmp(v[i - 1], v[i]) == 0) ||
            tether_ring_hash_atom(v[i], strlen(v[i]), 0, &nh[i]) < 0) {
            free(v);
            free(nh);
            return TETHER_EINVAL;
        }
    }
    return install(r, v, nh, n);
}

/* The index of name among r's members, or -1. */
static ssize_t member_index(const tether_ring_t *r, const char *name)
{
    size_t lo = 0, hi = r->n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->names[mid], name);
        if (c == 0)
            return (ssize_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* r's members but `skip` (-1: none), plus `extra` (NULL: none). */
static int rebuild_with(tether_ring_t *r, ssize_t skip, const char *extra)
{
    const char **v = malloc((r->n + 1) * sizeof *v);
    size_t n = 0;
    int rc;

    if (v == NULL)
        return TETHER_ENOMEM;
    for (size_t i = 0; i < r->n; i++)
        if ((ssize_t)i != skip)
            v[n++] = r->names[i];
    if (extra != NULL)
        v[n++] = extra;
    /* The names point into r: copy them before set_members frees them. */
    {
        name_t *copy = malloc((n ? n : 1) * sizeof *copy);
        if (copy == NULL) {
            free(v);
            return TETHER_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            memcpy(copy[i], v[i], strlen(v[i]) + 1);
            v[i] = copy[i];
        }
        rc = tether_ring_set_members(r, v, n);
        free(copy);
    }
    free(v);
    return rc;
}

int tether_ring_add(tether_ring_t *r, const char *name)
{
    if (r == NULL || name == NULL || tether__node_name_len(name) == 0)
        return TETHER_EINVAL;
    if (member_index(r, name) >= 0)
        return TETHER_EEXIST;
    if (r->n >= TETHER_RING_MEMBERS_MAX)
        return TETHER_ETOOBIG;
    return rebuild_with(r, -1, name);
}

int tether_ring_remove(tether_ring_t *r, const char *name)
{
    ssize_t i;

    if (r == NULL || name == NULL)
        return TETHER_EINVAL;
    i = member_index(r, name);
    if (i < 0)
        return TETHER_ENOTFOUND;
    return rebuild_with(r, i, NULL);
}

int tether_ring_copy(const tether_ring_t *r, tether_ring_t **out)
{
    const char **v;
    int rc;

    if (r == NULL || out == NULL)
        return TETHER_EINVAL;
    rc = tether_ring_new(r->shards, out);
    if (rc < 0 || r->n == 0)
        return rc;
    v = malloc(r->n * sizeof *v);
    if (v == NULL) {
        tether_ring_free(*out);
        return TETHER_ENOMEM;
    }
    for (size_t i = 0; i < r->n; i++)
        v[i] = r->names[i];
    rc = tether_ring_set_members(*out, v, r->n);
    free(v);
    if (rc < 0)
        tether_ring_free(*out);
    return rc;
}

uint32_t tether_ring_shards(const tether_ring_t *r)
{
    return r->shards;
}

size_t tether_ring_members(const tether_ring_t *r, const char **out, size_t cap)
{
    for (size_t i = 0; out != NULL && i < r->n && i < cap; i++)
        out[i] = r->names[i];
    return r->n;
}

const char *tether_ring_member(const tether_ring_t *r, size_t i)
{
    return i < r->n ? r->names[i] : NULL;
}

const char *tether_ring_primary(const tether_ring_t *r, uint32_t shard)
{
    if (r->n == 0 || shard >= r->shards)
        return NULL;
    return r->names[r->top[(size_t)shard * r->k]];
}

long tether_ring_primary_index(const tether_ring_t *r, uint32_t shard)
{
    if (r->n == 0 || shard >= r->shards)
        return -1;
    return (long)r->top[(size_t)shard * r->k];
}

/* Every member's weight for one shard, for owners beyond the table. */
typedef struct ranked {
    uint64_t w;
    size_t i;
} ranked_t;

static int ranked_cmp(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;

    if (before(x->w, x->i, y->w, y->i))
        return -1;
    return before(y->w, y->i, x->w, x->i);
}

size_t tether_ring_owner_indexes(const tether_ring_t *r, uint32_t shard,
                                 size_t n, size_t *out)
{
    ranked_t *all;

    if (shard >= r->shards || r->n == 0 || n == 0)
        return 0;
    if (n > r->n)
        n = r->n;
    if (n <= r->k) {
        for (size_t i = 0; i < n; i++)
            out[i] = r->top[(size_t)shard * r->k + i];
        return n;
    }
    all = malloc(r->n * sizeof *all);
    if (all == NULL) { /* the precomputed ones, rather than none */
        for (size_t i = 0; i < r->k; i++)
            out[i] = r->top[(size_t)shard * r->k + i];
        return r->k;
    }
    for (size_t i = 0; i < r->n; i++) {
        all[i].w = weight(r->nh[i], shard);
        all[i].i = i;
    }
    qsort(all, r->n, sizeof *all, ranked_cmp);
    for (size_t i = 0; i < n; i++)
        out[i] = all[i].i;
    free(all);
    return n;
}

size_t tether_ring_owners(const tether_ring_t *r, uint32_t shard, size_t n,
                          const char **out)
{
    size_t stack[TETHER_RING_TOP], *v = stack, got;

    if (n > r->n)
        n = r->n;
    if (n > TETHER_RING_TOP && (v = malloc(n * sizeof *v)) == NULL)
        n = TETHER_RING_TOP, v = stack; /* the precomputed ones */
    got = tether_ring_owner_indexes(r, shard, n, v);
    for (size_t i = 0; i < got; i++)
        out[i] = r->names[v[i]];
    if (v != stack)
        free(v);
    return got;
}

/* ---------------------------------------------- the cluster ring module */

struct tether_ring_module {
    tether_ring_config_t cfg;
    tether_engine_t *eng;
    tether_ring_t *table;
    uint64_t gen;
    uint8_t *mine; /* shards whose primary we are, one bit each */
};

TETHER__MODULE_LOCK_HOOKS(tether_ring_module_t)

static int bit(const uint8_t *v, uint32_t i)
{
    return (v[i / 8] >> (i % 8)) & 1;
}

/* Rebuilds the table from the engine's live members, swaps it and our
 * shards in (under the lock, together with the generation), and tells the
 * shell of every shard we gained or lost at the new generation. */
static void members_changed(tether_engine_t *eng, void *ctx)
{
    tether_ring_module_t *m = ctx;
    size_t n = tether_engine_members(eng, NULL, 0);
    size_t bytes = (m->cfg.shards + 7) / 8;
    const char *self = tether_engine_name(eng);
    const char **names = malloc((n ? n : 1) * sizeof *names);
    uint8_t *mine = calloc(1, bytes), *old_mine;
    tether_ring_t *fresh = NULL, *old;

    if (names == NULL || mine == NULL ||
        tether_ring_new(m->cfg.shards, &fresh) < 0)
        goto fail; /* out of memory: the old ring stands until the next */
    n = tether_engine_members(eng, names, n);
    if (tether_ring_set_members(fresh, names, n) < 0)
        goto fail;
    for (uint32_t s = 0; s < m->cfg.shards; s++) {
        const char *p = tether_ring_primary(fresh, s);
        if (p != NULL && strcmp(p, self) == 0)
            mine[s / 8] |= (uint8_t)(1u << (s % 8));
    }
    wlock(m);
    old = m->table;
    old_mine = m->mine;
    m->table = fresh;
    m->mine = mine;
    m->gen++;
    if (m->cfg.swapped)
        m->cfg.swapped(m->cfg.lock_ctx, fresh);
    wunlock(m);
    for (uint32_t s = 0; s < m->cfg.shards; s++) {
        if (bit(mine, s) != bit(old_mine, s)) {
            tether_action_t a = {.kind = TETHER_ACT_SHARD};
            a.u.shard.generation = m->gen;
            a.u.shard.shard = s;
            a.u.shard.acquired = bit(mine, s);
            (void)tether__engine_push(eng, &a);
        }
    }
    tether_ring_free(old);
    free(old_mine);
    free(names);
    return;
fail:
    free(names);
    free(mine);
    tether_ring_free(fresh);
}

static void module_free(void *ctx)
{
    tether_ring_module_t *m = ctx;

    tether_ring_free(m->table);
    free(m->mine);
    free(m);
}

int tether_ring_module_new(const tether_ring_config_t *cfg,
                           tether_engine_t *eng, tether_ring_module_t **out)
{
    tether_engine_module_t mod = {
        .name = "ring",
        .type = 0,
        .on_members_changed = members_changed,
        .free = module_free,
    };
    tether_ring_module_t *m;
    const char *self;
    int rc;

    if (!TETHER__MODULE_ARGS_OK(cfg, eng, out))
        return TETHER_EINVAL;
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return TETHER_ENOMEM;
    m->cfg = *cfg;
    if (m->cfg.shards == 0)
        m->cfg.shards = TETHER_RING_DEFAULT_SHARDS;
    m->eng = eng;
    self = tether_engine_name(eng);
    rc = tether_ring_new(m->cfg.shards, &m->table);
    if (rc == 0)
        rc = tether_ring_set_members(m->table, &self, 1);
    if (rc == 0 && (m->mine = malloc((m->cfg.shards + 7) / 8)) == NULL)
        rc = TETHER_ENOMEM;
    if (rc == 0) {
        /* Alone, we own every shard (generation 0). */
        memset(m->mine, 0xFF, (m->cfg.shards + 7) / 8);
        if (m->cfg.swapped)
            m->cfg.swapped(m->cfg.lock_ctx, m->table);
        rc = tether__engine_set_param(eng, "ring_size", m->cfg.shards);
    }
    rc = tether__module_register(eng, &mod, m, rc);
    if (rc == 0)
        *out = m;
    return rc;
}

const tether_ring_t *tether_ring_module_table(const tether_ring_module_t *m)
{
    return m->table;
}

uint64_t tether_ring_module_generation(const tether_ring_module_t *m)
{
    return m->gen;
}

int tether_ring_module_owns(const tether_ring_module_t *m, uint32_t shard)
{
    return shard < m->cfg.shards && bit(m->mine, shard);
}
