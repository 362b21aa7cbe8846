/*
 * cnode/term.c: term validity, canonical form and printing (see
 * tether/term.h).
 *
 * The canonical form is what the kv example hashes keys by: a term is
 * first validated in bounds with tether__etf_skip(), then re-encoded
 * recursively (depth capped), each kind in one fixed encoding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist/control.h"
#include "tether/term.h"

#define ETF_VERSION 131
/* STRING_EXT holds at most this many bytes. */
#define STRING_EXT_MAX 65535

bool tether_term_valid(const char *buf, size_t len)
{
    size_t off = 0;
    if (buf == NULL || len < 2 || (unsigned char)buf[0] != ETF_VERSION)
        return false;
    if (tether__etf_skip((const uint8_t *)buf + 1, len - 1, &off) < 0)
        return false;
    return off == len - 1;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static int norm(const char *b, int *idx, ei_x_buff *x, int depth);

/* SMALL_BIG / LARGE_BIG at b[*idx]: smallest integer encoding. */
static int norm_big(const char *b, int *idx, ei_x_buff *x)
{
    const unsigned char *p = (const unsigned char *)b + *idx;
    size_t n, hdr;
    if (p[0] == ERL_SMALL_BIG_EXT) {
        n = p[1];
        hdr = 2;
    } else {
        n = get32(p + 1);
        hdr = 5;
    }
    int sign = p[hdr];
    const unsigned char *d = p + hdr + 1;
    *idx += (int)(hdr + 1 + n);
    size_t m = n;
    while (m > 0 && d[m - 1] == 0)
        m--;
    if (m <= 8) {
        unsigned long long mag = 0;
        for (size_t i = m; i > 0; i--)
            mag = mag << 8 | d[i - 1];
        if (mag == 0)
            return ei_x_encode_longlong(x, 0);
        if (!sign && mag <= (unsigned long long)INT64_MAX)
            return ei_x_encode_longlong(x, (long long)mag);
        if (sign && mag <= (unsigned long long)INT64_MAX + 1u)
            return ei_x_encode_longlong(x, (long long)(0 - mag));
    }
    unsigned char h[6];
    size_t hl;
    if (m <= 255) {
        h[0] = ERL_SMALL_BIG_EXT;
        h[1] = (unsigned char)m;
        h[2] = (unsigned char)(sign ? 1 : 0);
        hl = 3;
    } else {
        h[0] = ERL_LARGE_BIG_EXT;
        h[1] = (unsigned char)(m >> 24);
        h[2] = (unsigned char)(m >> 16);
        h[3] = (unsigned char)(m >> 8);
        h[4] = (unsigned char)m;
        h[5] = (unsigned char)(sign ? 1 : 0);
        hl = 6;
    }
    if (ei_x_append_buf(x, (const char *)h, (int)hl) < 0 ||
        ei_x_append_buf(x, (const char *)d, (int)m) < 0)
        return -1;
    return 0;
}

/* The index of the term at b[idx] past any empty LIST_EXT segments (a
 * LIST_EXT of 0 elements is just its tail: the same term). */
static int past_empty_segments(const char *b, int idx)
{
    for (;;) {
        int t = idx, type, size, n;
        if (ei_get_type(b, &t, &type, &size) < 0 || type != ERL_LIST_EXT ||
            ei_decode_list_header(b, &t, &n) < 0 || n != 0)
            return idx;
        idx = t;
    }
}

/* True if the element at b[idx] is an integer 0..255, however encoded (small,
 * 32-bit or bignum, behind empty list segments): it prints as a byte of a
 * string, so a canonical list of such elements is a STRING_EXT. */
static bool is_byte(const char *b, int idx)
{
    int t = past_empty_segments(b, idx), et, es;
    long v;
    if (ei_get_type(b, &t, &et, &es) < 0)
        return false;
    return (et == ERL_SMALL_INTEGER_EXT || et == ERL_INTEGER_EXT ||
            et == ERL_SMALL_BIG_EXT || et == ERL_LARGE_BIG_EXT) &&
           ei_decode_long(b, &t, &v) == 0 && v >= 0 && v <= 255;
}

/*
 * A list may arrive split into segments (LIST_EXT whose tail is another
 * LIST_EXT or a STRING_EXT). Walks the whole chain: counts the elements,
 * tells whether all are bytes (0..255), and leaves *tail at the final
 * tail term (NIL or an improper tail).
 */
static int list_scan(const char *b, int idx, long *count, bool *bytes,
                     int *tail)
{
    *count = 0;
    *bytes = true;
    for (;;) {
        int type, size;
        if (ei_get_type(b, &idx, &type, &size) < 0)
            return -1;
        if (type == ERL_STRING_EXT) {
            *count += size;
            idx += 3 + size;
            *tail = -1; /* proper: the string ends in NIL */
            return 0;
        }
        if (type != ERL_LIST_EXT) {
            *tail = idx;
            return 0;
        }
        int n;
        if (ei_decode_list_header(b, &idx, &n) < 0)
            return -1;
        for (int i = 0; i < n; i++) {
            if (!is_byte(b, idx))
                *bytes = false;
            if (ei_skip_term(b, &idx) < 0)
                return -1;
        }
        *count += n;
    }
}

static int norm_list(const char *b, int *idx, ei_x_buff *x, int depth)
{
    long count;
    bool bytes;
    int tail;
    if (list_scan(b, *idx, &count, &bytes, &tail) < 0)
        return -1;
    bool proper = tail < 0;
    if (proper == false) {
        int t = tail, type, size;
        if (ei_get_type(b, &t, &type, &size) < 0)
            return -1;
        proper = type == ERL_NIL_EXT;
    }
    if (proper && bytes && count > 0 && count <= STRING_EXT_MAX) {
        char *s = malloc((size_t)count);
        if (s == NULL)
            return -1;
        long k = 0;
        int i = *idx;
        for (;;) {
            int type, size, n;
            if (ei_get_type(b, &i, &type, &size) < 0)
                break;
            if (type == ERL_STRING_EXT) {
                memcpy(s + k, b + i + 3, (size_t)size);
                k += size;
                i += 3 + size;
                break;
            }
            if (type != ERL_LIST_EXT || ei_decode_list_header(b, &i, &n) < 0)
                break;
            for (int j = 0; j < n; j++) {
                long v = 0;
                i = past_empty_segments(b, i); /* as is_byte() saw it */
                if (ei_decode_long(b, &i, &v) < 0)
                    break;
                s[k++] = (char)v;
            }
        }
        if (!(k == count && ei_x_encode_string_len(x, s, (int)count) == 0)) {
            free(s);
            return -1;
        }
        free(s);
        if (tail >= 0) {
            *idx = tail;
            return ei_skip_term(b, idx);
        }
        *idx = i;
        return 0;
    }
    /* Only a non-empty list gets a header: with count == 0 every segment
     * is an empty LIST_EXT, which is no cons, so the term is its tail (NIL
     * or the improper tail) and the walk below writes just that. A header
     * of 0 would be a NIL_EXT followed by the tail: two terms. */
    if (count > INT32_MAX ||
        (count > 0 && ei_x_encode_list_header(x, count) < 0))
        return -1;
    int i = *idx;
    for (;;) {
        int type, size, n;
        if (ei_get_type(b, &i, &type, &size) < 0)
            return -1;
        if (type == ERL_STRING_EXT) {
            for (int j = 0; j < size; j++)
                if (ei_x_encode_long(x, (unsigned char)b[i + 3 + j]) < 0)
                    return -1;
            i += 3 + size;
            if (ei_x_encode_empty_list(x) < 0)
                return -1;
            break;
        }
        if (type != ERL_LIST_EXT) {
            int rc = norm(b, &i, x, depth + 1); /* the tail, NIL or not */
            if (rc < 0)
                return rc;
            break;
        }
        if (ei_decode_list_header(b, &i, &n) < 0)
            return -1;
        for (int j = 0; j < n; j++) {
            int rc = norm(b, &i, x, depth + 1);
            if (rc < 0)
                return rc;
        }
    }
    *idx = i;
    return 0;
}

typedef struct kv_pair {
    ei_x_buff k, v;
} kv_pair_t;

static int pair_cmp(const void *a, const void *b)
{
    const kv_pair_t *p = a, *q = b;
    int n = p->k.index < q->k.index ? p->k.index : q->k.index;
    int c = memcmp(p->k.buff, q->k.buff, (size_t)n);
    if (c)
        return c;
    return (p->k.index > q->k.index) - (p->k.index < q->k.index);
}

static int norm_map(const char *b, int *idx, ei_x_buff *x, int depth)
{
    int arity;
    if (ei_decode_map_header(b, idx, &arity) < 0)
        return -1;
    kv_pair_t *pairs = calloc(arity ? (size_t)arity : 1, sizeof *pairs);
    if (pairs == NULL)
        return -1;
    int rc = 0, made = 0;
    for (; made < arity; made++) {
        if (ei_x_new(&pairs[made].k) < 0)
            break;
        if (ei_x_new(&pairs[made].v) < 0) {
            ei_x_free(&pairs[made].k);
            break;
        }
        rc = norm(b, idx, &pairs[made].k, depth + 1);
        if (rc == 0)
            rc = norm(b, idx, &pairs[made].v, depth + 1);
        if (rc < 0) {
            made++;
            break;
        }
    }
    if (made < arity && rc == 0)
        rc = -1;
    if (rc == 0) {
        qsort(pairs, (size_t)arity, sizeof *pairs, pair_cmp);
        rc = ei_x_encode_map_header(x, arity);
        for (int i = 0; rc == 0 && i < arity; i++) {
            rc = ei_x_append_buf(x, pairs[i].k.buff, pairs[i].k.index);
            if (rc == 0)
                rc = ei_x_append_buf(x, pairs[i].v.buff, pairs[i].v.index);
        }
    }
    for (int i = 0; i < made; i++) {
        ei_x_free(&pairs[i].k);
        ei_x_free(&pairs[i].v);
    }
    free(pairs);
    return rc;
}

static int norm_atom(const char *b, int *idx, ei_x_buff *x)
{
    char a[MAXATOMLEN_UTF8];
    erlang_char_encoding from;
    if (ei_decode_atom_as(b, idx, a, sizeof a, ERLANG_UTF8, &from, NULL) < 0)
        return -1;
    return ei_x_encode_atom_as(x, a, ERLANG_UTF8, ERLANG_UTF8);
}

/* Appends the canonical form of the term at b[*idx]; advances *idx. */
static int norm(const char *b, int *idx, ei_x_buff *x, int depth)
{
    if (depth > TETHER_TERM_DEPTH_MAX)
        return -2;
    int type, size, start = *idx;
    if (ei_get_type(b, idx, &type, &size) < 0)
        return -1;
    switch (type) {
    case ERL_SMALL_INTEGER_EXT:
    case ERL_INTEGER_EXT: {
        long v;
        if (ei_decode_long(b, idx, &v) < 0)
            return -1;
        return ei_x_encode_long(x, v);
    }
    case ERL_SMALL_BIG_EXT:
    case ERL_LARGE_BIG_EXT:
        return norm_big(b, idx, x);
    case ERL_FLOAT_EXT:
    case NEW_FLOAT_EXT: {
        double d;
        if (ei_decode_double(b, idx, &d) < 0)
            return -1;
        /* 0.0 =:= -0.0 on OTP 25 (maps and ets agree): one key. */
        if (d == 0.0)
            d = 0.0;
        return ei_x_encode_double(x, d);
    }
    case ERL_ATOM_EXT:
    case ERL_SMALL_ATOM_EXT:
    case ERL_ATOM_UTF8_EXT:
    case ERL_SMALL_ATOM_UTF8_EXT:
        return norm_atom(b, idx, x);
    case ERL_PID_EXT:
    case ERL_NEW_PID_EXT: {
        erlang_pid p;
        if (ei_decode_pid(b, idx, &p) < 0)
            return -1;
        return ei_x_encode_pid(x, &p);
    }
    case ERL_PORT_EXT:
    case ERL_NEW_PORT_EXT:
    case ERL_V4_PORT_EXT: {
        erlang_port p;
        if (ei_decode_port(b, idx, &p) < 0)
            return -1;
        return ei_x_encode_port(x, &p);
    }
    case ERL_REFERENCE_EXT:
    case ERL_NEW_REFERENCE_EXT:
    case ERL_NEWER_REFERENCE_EXT: {
        erlang_ref r;
        if (ei_decode_ref(b, idx, &r) < 0)
            return -1;
        return ei_x_encode_ref(x, &r);
    }
    case ERL_SMALL_TUPLE_EXT:
    case ERL_LARGE_TUPLE_EXT: {
        int n;
        if (ei_decode_tuple_header(b, idx, &n) < 0 ||
            ei_x_encode_tuple_header(x, n) < 0)
            return -1;
        for (int i = 0; i < n; i++) {
            int rc = norm(b, idx, x, depth + 1);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    case ERL_NIL_EXT:
        *idx += 1;
        return ei_x_encode_empty_list(x);
    case ERL_STRING_EXT:
        *idx += 3 + size;
        if (size == 0) /* "" is [], which encoders write as NIL_EXT */
            return ei_x_encode_empty_list(x);
        return ei_x_append_buf(x, b + start, 3 + size);
    case ERL_LIST_EXT:
        return norm_list(b, idx, x, depth);
    case ERL_BINARY_EXT:
        *idx += 5 + size;
        return ei_x_append_buf(x, b + start, 5 + size);
    case ERL_BIT_BINARY_EXT: {
        const char *p;
        unsigned int bitoffs;
        size_t bits;
        if (ei_decode_bitstring(b, idx, &p, &bitoffs, &bits) < 0)
            return -1;
        if (bits % 8 == 0)
            return ei_x_encode_binary(x, p, (int)(bits / 8));
        return ei_x_encode_bitstring(x, p, bitoffs, bits);
    }
    case ERL_MAP_EXT:
        return norm_map(b, idx, x, depth);
    case ERL_EXPORT_EXT: {
        *idx += 1;
        int rc = ei_x_append_buf(x, "q", 1);
        if (rc == 0)
            rc = norm_atom(b, idx, x);
        if (rc == 0)
            rc = norm_atom(b, idx, x);
        long ar;
        if (rc == 0)
            rc = ei_decode_long(b, idx, &ar);
        if (rc < 0)
            return -1;
        return ei_x_encode_long(x, ar);
    }
    default: {
        /* Funs and anything else valid: kept as they came. */
        if (ei_skip_term(b, idx) < 0)
            return -1;
        return ei_x_append_buf(x, b + start, *idx - start);
    }
    }
}

int tether_term_normalize(const char *buf, size_t len, ei_x_buff *out)
{
    if (out == NULL || !tether_term_valid(buf, len))
        return TETHER_EINVAL;
    int saved = out->index;
    int idx = 1;
    int rc = ei_x_encode_version(out);
    if (rc == 0)
        rc = norm(buf, &idx, out, 0);
    if (rc < 0) {
        out->index = saved;
        return rc == -2 ? TETHER_ETOOBIG : TETHER_ENOMEM;
    }
    return 0;
}

/* Offsets in a NEW_FUN_EXT (from its tag byte) of Size and NumFree. */
#define NEW_FUN_SIZE_AT    1
#define NEW_FUN_NUMFREE_AT 26
/* Offset in a FUN_EXT of NumFree. */
#define FUN_NUMFREE_AT 1

static void put32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static int unenv_n(const char *b, int *idx, ei_x_buff *x, int *last, int depth,
                   long n);

/*
 * libei's ei_s_print_term() decodes every fun with ei_decode_fun() and never
 * calls free_fun(): a closure's copied free variables, and an export's
 * function name that did not fit beside the module name, leak. Walks the
 * term at b[*idx], appending to x the bytes since b[*last] with every
 * closure's environment cut out (NumFree 0, Size shrunk; it is not printed
 * anyway), so the copy prints the same without allocating. Returns 0, or -1
 * for an export that would still leak, a term nested deeper than
 * TETHER_TERM_DEPTH_MAX (ei's printer recurses too) or no memory.
 */
static int unenv(const char *b, int *idx, ei_x_buff *x, int *last, int depth)
{
    int type, size, n, start = *idx;
    erlang_fun f;

    if (depth > TETHER_TERM_DEPTH_MAX || ei_get_type(b, idx, &type, &size) < 0)
        return -1;
    switch (type) {
    case ERL_SMALL_TUPLE_EXT:
    case ERL_LARGE_TUPLE_EXT:
        if (ei_decode_tuple_header(b, idx, &n) < 0)
            return -1;
        return unenv_n(b, idx, x, last, depth, n);
    case ERL_MAP_EXT:
        if (ei_decode_map_header(b, idx, &n) < 0)
            return -1;
        return unenv_n(b, idx, x, last, depth, 2 * (long)n);
    case ERL_LIST_EXT:
        if (ei_decode_list_header(b, idx, &n) < 0)
            return -1;
        return unenv_n(b, idx, x, last, depth, (long)n + 1); /* and tail */
    case ERL_FUN_EXT:
    case ERL_NEW_FUN_EXT:
    case ERL_EXPORT_EXT: {
        memset(&f, 0, sizeof f);
        int rc = ei_decode_fun(b, idx, &f);
        bool leaks = f.type == EI_FUN_EXPORT && f.u.exprt.func_allocated;
        long env = f.type == EI_FUN_CLOSURE ? f.u.closure.free_var_len : 0;
        free_fun(&f);
        if (rc < 0 || leaks)
            return -1;
        if (env == 0)
            return 0;
        /* The environment is the closure's last env bytes. */
        int at = x->index + (start - *last);
        if (ei_x_append_buf(x, b + *last, *idx - (int)env - *last) < 0)
            return -1;
        if (type == ERL_NEW_FUN_EXT) {
            uint32_t sz =
                get32((const unsigned char *)b + start + NEW_FUN_SIZE_AT);
            put32(x->buff + at + NEW_FUN_SIZE_AT, sz - (uint32_t)env);
            put32(x->buff + at + NEW_FUN_NUMFREE_AT, 0);
        } else {
            put32(x->buff + at + FUN_NUMFREE_AT, 0);
        }
        *last = *idx;
        return 0;
    }
    default:
        return ei_skip_term(b, idx) < 0 ? -1 : 0;
    }
}

static int unenv_n(const char *b, int *idx, ei_x_buff *x, int *last, int depth,
                   long n)
{
    for (long i = 0; i < n; i++)
        if (unenv(b, idx, x, last, depth + 1) < 0)
            return -1;
    return 0;
}

int tether_term_format(const char *buf, size_t len, char *out, size_t cap)
{
    if (out == NULL || cap == 0)
        return TETHER_EINVAL;
    out[0] = '\0';
    if (!tether_term_valid(buf, len) || len > INT32_MAX)
        return TETHER_EINVAL;
    char *s = NULL;
    ei_x_buff copy;
    int idx = 1, last = 0;
    if (ei_x_new(&copy) < 0)
        return TETHER_EINVAL; /* the contract: 0 or TETHER_EINVAL */
    if (unenv(buf, &idx, &copy, &last, 0) < 0 ||
        ei_x_append_buf(&copy, buf + last, (int)len - last) < 0) {
        ei_x_free(&copy);
        return TETHER_EINVAL;
    }
    idx = 1;
    int rc = ei_s_print_term(&s, copy.buff, &idx);
    ei_x_free(&copy);
    if (rc < 0 || s == NULL) {
        free(s);
        return TETHER_EINVAL;
    }
    size_t n = strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, s, n);
    out[n] = '\0';
    free(s);
    return 0;
}
