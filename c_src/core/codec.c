/*
 * core/codec.c: bounded validation of external-term-format input and the
 * small decode/encode helpers engine modules share. See codec.h.
 */
#include <string.h>

#include "core/codec.h"

/* ETF tags accepted from peers (erts external.h). */
enum {
    TAG_NEW_FLOAT = 70,
    TAG_BIT_BINARY = 77,
    TAG_NEW_PID = 88,
    TAG_NEW_PORT = 89,
    TAG_NEWER_REF = 90,
    TAG_SMALL_INT = 97,
    TAG_INT = 98,
    TAG_FLOAT = 99,
    TAG_ATOM = 100,
    TAG_PORT = 102,
    TAG_PID = 103,
    TAG_SMALL_TUPLE = 104,
    TAG_LARGE_TUPLE = 105,
    TAG_NIL = 106,
    TAG_STRING = 107,
    TAG_LIST = 108,
    TAG_BINARY = 109,
    TAG_SMALL_BIG = 110,
    TAG_LARGE_BIG = 111,
    TAG_EXPORT = 113,
    TAG_NEW_REF = 114,
    TAG_SMALL_ATOM = 115,
    TAG_MAP = 116,
    TAG_ATOM_UTF8 = 118,
    TAG_SMALL_ATOM_UTF8 = 119,
    TAG_V4_PORT = 120,
};

/* BINARY_EXT's header: the tag byte and a 32-bit length. */
#define ETF_BINARY_HEADER 5

static uint32_t get_u16(const unsigned char *p)
{
    return ((uint32_t)p[0] << 8) | p[1];
}

static uint32_t get_u32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

/*
 * The walker keeps, per open container, how many terms it still owes.
 * `need` reserves bytes; `push` opens a container of n terms (each term
 * takes at least one byte, so n beyond the remaining input fails at once).
 */
typedef struct walk {
    const unsigned char *p;
    size_t len, pos;
    uint64_t owed[TETHER_ETF_DEPTH_MAX + 1];
    int depth;
} walk_t;

static int need(walk_t *w, size_t n)
{
    return (w->len - w->pos >= n) ? 0 : TETHER_EPROTO;
}

static int push(walk_t *w, uint64_t n)
{
    if (n == 0)
        return 0;
    if (n > w->len - w->pos || w->depth >= TETHER_ETF_DEPTH_MAX)
        return TETHER_EPROTO;
    w->owed[++w->depth] = n;
    return 0;
}

/* 1 if p[0..n) is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF): the VM refuses any other UTF-8 atom text. */
static int utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint32_t c = p[i];
        size_t len;
        uint32_t min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            c = c << 6 | (p[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* Skips an atom (used inside pids, ports, refs, exports); the text of a
 * UTF-8 atom must be well-formed UTF-8. */
static int skip_atom(walk_t *w)
{
    unsigned tag;
    size_t n;

    if (need(w, 1) < 0)
        return TETHER_EPROTO;
    tag = w->p[w->pos++];
    if (tag == TAG_ATOM || tag == TAG_ATOM_UTF8) {
        if (need(w, 2) < 0)
            return TETHER_EPROTO;
        n = get_u16(w->p + w->pos);
        w->pos += 2;
    } else if (tag == TAG_SMALL_ATOM || tag == TAG_SMALL_ATOM_UTF8) {
        if (need(w, 1) < 0)
            return TETHER_EPROTO;
        n = w->p[w->pos++];
    } else {
        return TETHER_EPROTO;
    }
    if (n > 255 * 4 || need(w, n) < 0)
        return TETHER_EPROTO;
    if ((tag == TAG_ATOM_UTF8 || tag == TAG_SMALL_ATOM_UTF8) &&
        !utf8_valid(w->p + w->pos, n))
        return TETHER_EPROTO;
    w->pos += n;
    return 0;
}

/* Consumes one term header (and the body of leaf terms). */
static int step(walk_t *w)
{
    unsigned tag;
    uint64_t n;

    if (need(w, 1) < 0)
        return TETHER_EPROTO;
    tag = w->p[w->pos++];
    switch (tag) {
    case TAG_SMALL_INT:
        return need(w, 1) < 0 ? TETHER_EPROTO : (w->pos += 1, 0);
    case TAG_INT:
        return need(w, 4) < 0 ? TETHER_EPROTO : (w->pos += 4, 0);
    case TAG_NEW_FLOAT:
        return need(w, 8) < 0 ? TETHER_EPROTO : (w->pos += 8, 0);
    case TAG_FLOAT:
        return need(w, 31) < 0 ? TETHER_EPROTO : (w->pos += 31, 0);
    case TAG_ATOM:
    case TAG_ATOM_UTF8:
    case TAG_SMALL_ATOM:
    case TAG_SMALL_ATOM_UTF8:
        w->pos--;
        return skip_atom(w);
    case TAG_NIL:
        return 0;
    case TAG_STRING:
        if (need(w, 2) < 0)
            return TETHER_EPROTO;
        n = get_u16(w->p + w->pos);
        w->pos += 2;
        return need(w, n) < 0 ? TETHER_EPROTO : (w->pos += n, 0);
    case TAG_BINARY:
        if (need(w, 4) < 0)
            return TETHER_EPROTO;
        n = get_u32(w->p + w->pos);
        w->pos += 4;
        return need(w, n) < 0 ? TETHER_EPROTO : (w->pos += n, 0);
    case TAG_BIT_BINARY:
        if (need(w, 5) < 0)
            return TETHER_EPROTO;
        n = get_u32(w->p + w->pos);
        w->pos += 5;
        return need(w, n) < 0 ? TETHER_EPROTO : (w->pos += n, 0);
    case TAG_SMALL_BIG:
        if (need(w, 2) < 0)
            return TETHER_EPROTO;
        n = w->p[w->pos];
        w->pos += 2;
        return need(w, n) < 0 ? TETHER_EPROTO : (w->pos += n, 0);
    case TAG_LARGE_BIG:
        if (need(w, 5) < 0)
            return TETHER_EPROTO;
        n = get_u32(w->p + w->pos);
        w->pos += 5;
        return need(w, n) < 0 ? TETHER_EPROTO : (w->pos += n, 0);
    case TAG_SMALL_TUPLE:
        if (need(w, 1) < 0)
            return TETHER_EPROTO;
        n = w->p[w->pos++];
        return push(w, n);
    case TAG_LARGE_TUPLE:
        if (need(w, 4) < 0)
            return TETHER_EPROTO;
        n = get_u32(w->p + w->pos);
        w->pos += 4;
        return push(w, n);
    case TAG_LIST:
        if (need(w, 4) < 0)
            return TETHER_EPROTO;
        n = get_u32(w->p + w->pos);
        w->pos += 4;
        return push(w, n + 1); /* elements and the tail */
    case TAG_MAP:
        if (need(w, 4) < 0)
            return TETHER_EPROTO;
        n = get_u32(w->p + w->pos);
        w->pos += 4;
        return push(w, n * 2);
    case TAG_PID:
        if (skip_atom(w) < 0 || need(w, 9) < 0)
            return TETHER_EPROTO;
        w->pos += 9;
        return 0;
    case TAG_NEW_PID:
        if (skip_atom(w) < 0 || need(w, 12) < 0)
            return TETHER_EPROTO;
        w->pos += 12;
        return 0;
    case TAG_PORT:
        if (skip_atom(w) < 0 || need(w, 5) < 0)
            return TETHER_EPROTO;
        w->pos += 5;
        return 0;
    case TAG_NEW_PORT:
        if (skip_atom(w) < 0 || need(w, 8) < 0)
            return TETHER_EPROTO;
        w->pos += 8;
        return 0;
    case TAG_V4_PORT:
        if (skip_atom(w) < 0 || need(w, 12) < 0)
            return TETHER_EPROTO;
        w->pos += 12;
        return 0;
    case TAG_NEW_REF:
    case TAG_NEWER_REF:
        if (need(w, 2) < 0)
            return TETHER_EPROTO;
        n = get_u16(w->p + w->pos);
        w->pos += 2;
        if (n > 5 || skip_atom(w) < 0)
            return TETHER_EPROTO;
        n = n * 4 + (tag == TAG_NEW_REF ? 1 : 4);
        return need(w, n) < 0 ? TETHER_EPROTO : (w->pos += n, 0);
    case TAG_EXPORT:
        return push(w, 3);
    default:
        return TETHER_EPROTO;
    }
}

int tether__etf_validate(const char *buf, size_t len)
{
    walk_t w;

    if (buf == NULL || len < 2 || (unsigned char)buf[0] != TETHER_ETF_VERSION)
        return TETHER_EPROTO;
    if (len > INT32_MAX) /* ei indexes with int */
        return TETHER_ETOOBIG;
    w.p = (const unsigned char *)buf;
    w.len = len;
    w.pos = 1;
    w.depth = 0;
    w.owed[0] = 1;
    while (w.depth > 0 || w.owed[0] > 0) {
        w.owed[w.depth]--;
        if (step(&w) < 0)
            return TETHER_EPROTO;
        while (w.depth > 0 && w.owed[w.depth] == 0)
            w.depth--;
    }
    return w.pos == w.len ? 0 : TETHER_EPROTO;
}

int tether__etf_decode_name(const char *buf, int *index,
                            char out[TETHER_NODE_NAME_MAX + 1])
{
    char tmp[MAXATOMLEN_UTF8];
    size_t n;

    if (ei_decode_atom_as(buf, index, tmp, sizeof tmp, ERLANG_UTF8, NULL,
                          NULL) < 0)
        return TETHER_EPROTO;
    n = strlen(tmp);
    if (n == 0 || n > TETHER_NODE_NAME_MAX)
        return TETHER_EPROTO;
    memcpy(out, tmp, n + 1);
    return 0;
}

int tether__etf_decode_u64(const char *buf, int *index, uint64_t *out)
{
    EI_ULONGLONG v;

    if (ei_decode_ulonglong(buf, index, &v) < 0)
        return TETHER_EPROTO;
    *out = (uint64_t)v;
    return 0;
}

int tether__etf_expect_tuple(const char *buf, int *index, int arity)
{
    int a;

    if (ei_decode_tuple_header(buf, index, &a) < 0 || a != arity)
        return TETHER_EPROTO;
    return 0;
}

int tether__etf_list(const char *buf, int *index, int *count)
{
    int type, size;

    if (ei_get_type(buf, index, &type, &size) < 0)
        return TETHER_EPROTO;
    if (type == ERL_NIL_EXT || type == ERL_LIST_EXT) {
        if (ei_decode_list_header(buf, index, count) < 0)
            return TETHER_EPROTO;
        return 0;
    }
    return TETHER_EPROTO; /* STRING_EXT lists of small ints are not ours */
}

int tether__etf_list_end(const char *buf, int *index, int count)
{
    int n;

    if (count == 0)
        return 0;
    if (ei_decode_list_header(buf, index, &n) < 0 || n != 0)
        return TETHER_EPROTO; /* improper list */
    return 0;
}

int tether__etf_decode_head(const char *buf, int *index,
                            char tag[TETHER_ETF_TAG_MAX], int *arity)
{
    char atom[MAXATOMLEN_UTF8];
    int version, type, size;

    if (ei_decode_version(buf, index, &version) < 0 ||
        ei_decode_tuple_header(buf, index, arity) < 0 || *arity < 1 ||
        ei_get_type(buf, index, &type, &size) < 0 ||
        (type != ERL_ATOM_EXT && type != ERL_SMALL_ATOM_EXT &&
         type != ERL_ATOM_UTF8_EXT && type != ERL_SMALL_ATOM_UTF8_EXT) ||
        size <= 0 || size >= TETHER_ETF_TAG_MAX)
        return TETHER_EPROTO;
    if (ei_decode_atom(buf, index, atom) < 0)
        return TETHER_EPROTO;
    memcpy(tag, atom, (size_t)size);
    tag[size] = '\0';
    return 0;
}

int tether__etf_decode_bin_ref(const char *buf, int *index, const uint8_t **p,
                               size_t *len)
{
    int type, size;

    if (ei_get_type(buf, index, &type, &size) < 0 || type != ERL_BINARY_EXT ||
        size < 0)
        return TETHER_EPROTO;
    *p = (const uint8_t *)buf + *index + ETF_BINARY_HEADER;
    *len = (size_t)size;
    if (ei_skip_term(buf, index) < 0)
        return TETHER_EPROTO;
    return 0;
}

int tether__etf_begin(ei_x_buff *x, int arity, const char *tag)
{
    if (ei_x_new_with_version(x) < 0 ||
        ei_x_encode_tuple_header(x, arity) < 0 ||
        ei_x_encode_atom(x, tag) < 0) {
        ei_x_free(x); /* leaves x->buff NULL (a failed new left it so) */
        return TETHER_ENOMEM;
    }
    return 0;
}

int tether__etf_encode_name(ei_x_buff *x, const char *name)
{
    if (ei_x_encode_atom_len_as(x, name, (int)strlen(name), ERLANG_UTF8,
                                ERLANG_UTF8) < 0)
        return TETHER_ENOMEM;
    return 0;
}

uint64_t tether__fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}
