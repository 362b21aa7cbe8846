/*
 * dist/frame.c: frame splitting, distribution header parsing, fragment
 * reassembly and frame encoding (see frame.h for the formats and for what
 * erts sends when).
 */
#include <stdlib.h>
#include <string.h>

#include "dist/flags.h"
#include "dist/frame.h"

#define FRAG_HDR_IDS 16 /* SequenceId(8) FragmentId(8) */

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int tether__frame_split(const uint8_t *buf, size_t len, uint32_t max_len,
                        const uint8_t **payload, size_t *payload_len,
                        size_t *consumed)
{
    uint32_t n;

    if ((!buf && len) || !payload || !payload_len || !consumed)
        return TETHER_EINVAL;
    if (len < TETHER_FRAME_LEN_BYTES)
        return TETHER_EAGAIN;
    n = get32(buf);
    if (n > max_len)
        return TETHER_ETOOBIG;
    if (len - TETHER_FRAME_LEN_BYTES < n)
        return TETHER_EAGAIN;
    *payload = buf + TETHER_FRAME_LEN_BYTES;
    *payload_len = n;
    *consumed = TETHER_FRAME_LEN_BYTES + (size_t)n;
    return 0;
}

int tether__frame_parse(const uint8_t *payload, size_t len, tether_frame_t *out)
{
    size_t off;

    if (!out || (!payload && len))
        return TETHER_EINVAL;
    memset(out, 0, sizeof(*out));
    if (len < 2)
        return TETHER_EPROTO;
    if (payload[0] == TETHER_DIST_PASS_THROUGH) {
        if (payload[1] != TETHER_DIST_VERSION_MAGIC)
            return TETHER_EPROTO;
        out->kind = TETHER_FRAME_PASS_THROUGH;
        out->data = payload + 1;
        out->len = len - 1;
        out->versioned = 1;
        return 0;
    }
    if (payload[0] != TETHER_DIST_VERSION_MAGIC)
        return TETHER_EPROTO;
    switch (payload[1]) {
    case TETHER_DIST_HEADER:
        out->kind = TETHER_FRAME_NORMAL;
        off = 2;
        break;
    case TETHER_DIST_FRAG_HEADER:
    case TETHER_DIST_FRAG_CONT:
        if (len < 2 + FRAG_HDR_IDS)
            return TETHER_EPROTO;
        out->kind = payload[1] == TETHER_DIST_FRAG_HEADER
                        ? TETHER_FRAME_FRAG_FIRST
                        : TETHER_FRAME_FRAG_CONT;
        out->seq_id = get64(payload + 2);
        out->frag_id = get64(payload + 10);
        if (out->frag_id == 0)
            return TETHER_EPROTO;
        off = 2 + FRAG_HDR_IDS;
        if (out->kind == TETHER_FRAME_FRAG_CONT) {
            out->data = payload + off;
            out->len = len - off;
            return 0;
        }
        break;
    default:
        return TETHER_EPROTO;
    }
    /* NumberOfAtomCacheRefs: we advertise no atom cache, so it must be 0. */
    if (len < off + 1 || payload[off] != 0)
        return TETHER_EPROTO;
    off++;
    out->data = payload + off;
    out->len = len - off;
    return 0;
}

/* One sequence being reassembled. */
typedef struct {
    uint64_t seq_id;
    uint64_t next_frag; /* the FragmentId expected next */
    uint8_t *buf;
    size_t len;
    size_t cap;
} frag_seq_t;

struct tether_defrag {
    size_t max_total;
    size_t max_seqs;
    size_t total; /* bytes held by all sequences */
    size_t nseqs;
    frag_seq_t *seqs; /* max_seqs slots; the first nseqs are in use */
    uint8_t *done;    /* the last completed message, owned */
};

tether_defrag_t *tether__defrag_new(size_t max_total, size_t max_seqs)
{
    tether_defrag_t *d;

    if (max_total == 0 || max_seqs == 0 || max_seqs > SIZE_MAX / 64)
        return NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->seqs = calloc(max_seqs, sizeof(*d->seqs));
    if (!d->seqs) {
        free(d);
        return NULL;
    }
    d->max_total = max_total;
    d->max_seqs = max_seqs;
    return d;
}

void tether__defrag_free(tether_defrag_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nseqs; i++)
        free(d->seqs[i].buf);
    free(d->seqs);
    free(d->done);
    free(d);
}

size_t tether__defrag_open(const tether_defrag_t *d)
{
    return d ? d->nseqs : 0;
}

size_t tether__defrag_bytes(const tether_defrag_t *d)
{
    return d ? d->total : 0;
}

static frag_seq_t *find_seq(tether_defrag_t *d, uint64_t seq_id)
{
    for (size_t i = 0; i < d->nseqs; i++)
        if (d->seqs[i].seq_id == seq_id)
            return &d->seqs[i];
    return NULL;
}

/* Drops sequence s (its buffer is freed or already handed over). */
static void drop_seq(tether_defrag_t *d, frag_seq_t *s)
{
    d->total -= s->len;
    free(s->buf);
    *s = d->seqs[d->nseqs - 1];
    memset(&d->seqs[d->nseqs - 1], 0, sizeof(*s));
    d->nseqs--;
}

/* Appends data to s within the total cap. */
static int seq_append(tether_defrag_t *d, frag_seq_t *s, const uint8_t *data,
                      size_t n)
{
    if (n > d->max_total - d->total)
        return TETHER_ETOOBIG;
    if (n > s->cap - s->len) {
        size_t want = s->cap ? s->cap : 4096;
        uint8_t *nb;
        while (want - s->len < n)
            want = want > d->max_total / 2 ? d->max_total : want * 2;
        if (want < s->len + n)
            want = s->len + n;
        nb = realloc(s->buf, want);
        if (!nb)
            return TETHER_ENOMEM;
        s->buf = nb;
        s->cap = want;
    }
    if (n)
        memcpy(s->buf + s->len, data, n);
    s->len += n;
    d->total += n;
    return 0;
}

/* Hands sequence s over as a complete message. */
static void complete_seq(tether_defrag_t *d, frag_seq_t *s,
                         tether_dist_msg_t *out)
{
    free(d->done);
    d->done = s->buf;
    out->data = s->buf;
    out->len = s->len;
    out->versioned = 0;
    s->buf = NULL;
    drop_seq(d, s);
}

int tether__defrag_push(tether_defrag_t *d, const tether_frame_t *f,
                        tether_dist_msg_t *out)
{
    frag_seq_t *s;
    int rc;

    if (!d || !f || !out)
        return TETHER_EINVAL;
    /* The previous completed message is released at the next push. */
    free(d->done);
    d->done = NULL;
    switch (f->kind) {
    case TETHER_FRAME_PASS_THROUGH:
    case TETHER_FRAME_NORMAL:
        out->data = f->data;
        out->len = f->len;
        out->versioned = f->versioned;
        return 0;
    case TETHER_FRAME_FRAG_FIRST:
        if (find_seq(d, f->seq_id))
            return TETHER_EPROTO;
        if (f->frag_id == 1) {
            out->data = f->data;
            out->len = f->len;
            out->versioned = 0;
            return 0;
        }
        if (d->nseqs == d->max_seqs)
            return TETHER_ETOOBIG;
        if (f->len > d->max_total - d->total)
            return TETHER_ETOOBIG;
        s = &d->seqs[d->nseqs++];
        memset(s, 0, sizeof(*s));
        s->seq_id = f->seq_id;
        s->next_frag = f->frag_id - 1;
        rc = seq_append(d, s, f->data, f->len);
        if (rc) {
            drop_seq(d, s);
            return rc;
        }
        return TETHER_EAGAIN;
    case TETHER_FRAME_FRAG_CONT:
        s = find_seq(d, f->seq_id);
        if (!s || f->frag_id != s->next_frag)
            return TETHER_EPROTO;
        rc = seq_append(d, s, f->data, f->len);
        if (rc)
            return rc;
        s->next_frag--;
        if (s->next_frag == 0) {
            complete_seq(d, s, out);
            return 0;
        }
        return TETHER_EAGAIN;
    default:
        return TETHER_EINVAL;
    }
}

struct tether_dist_reader {
    uint32_t max_frame;
    tether_defrag_t *defrag;
};

tether_dist_reader_t *tether__reader_new(uint32_t max_frame, size_t max_total,
                                         size_t max_seqs)
{
    tether_dist_reader_t *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->max_frame = max_frame ? max_frame : TETHER_FRAME_DEFAULT_MAX;
    r->defrag = tether__defrag_new(
        max_total ? max_total : TETHER_FRAG_DEFAULT_MAX_TOTAL,
        max_seqs ? max_seqs : TETHER_FRAG_DEFAULT_MAX_SEQS);
    if (!r->defrag) {
        free(r);
        return NULL;
    }
    return r;
}

void tether__reader_free(tether_dist_reader_t *r)
{
    if (!r)
        return;
    tether__defrag_free(r->defrag);
    free(r);
}

int tether__reader_next(tether_dist_reader_t *r, const uint8_t *buf, size_t len,
                        size_t *consumed, tether_dist_ev_t *ev)
{
    const uint8_t *payload;
    size_t plen, used;
    tether_frame_t f;
    int rc;

    if (!r || !consumed || !ev)
        return TETHER_EINVAL;
    *consumed = 0;
    memset(ev, 0, sizeof(*ev));
    rc = tether__frame_split(buf, len, r->max_frame, &payload, &plen, &used);
    if (rc)
        return rc;
    if (plen == 0) {
        *consumed = used;
        ev->kind = TETHER_DIST_EV_TICK;
        return 0;
    }
    rc = tether__frame_parse(payload, plen, &f);
    if (rc)
        return rc;
    rc = tether__defrag_push(r->defrag, &f, &ev->msg);
    if (rc == TETHER_EAGAIN) {
        *consumed = used;
        ev->kind = TETHER_DIST_EV_NONE;
        return 0;
    }
    if (rc)
        return rc;
    *consumed = used;
    ev->kind = TETHER_DIST_EV_MSG;
    return 0;
}

int tether__frame_header_mode(uint64_t dflags)
{
    return (dflags &
            (TETHER_DFLAG_FRAGMENTS | TETHER_DFLAG_DIST_HDR_ATOM_CACHE)) != 0;
}

int tether__frame_encode_tick(ei_x_buff *x)
{
    static const char zero[TETHER_FRAME_LEN_BYTES];

    if (!x)
        return TETHER_EINVAL;
    return ei_x_append_buf(x, zero, TETHER_FRAME_LEN_BYTES) ? TETHER_ENOMEM : 0;
}

/* Appends term t (n bytes, 131 optional) with or without its 131. */
static int append_term(ei_x_buff *x, const uint8_t *t, size_t n, int versioned)
{
    static const char magic = (char)TETHER_DIST_VERSION_MAGIC;

    if (n && t[0] == TETHER_DIST_VERSION_MAGIC) {
        t++;
        n--;
    }
    if (n == 0 || n > INT32_MAX)
        return n == 0 ? TETHER_EINVAL : TETHER_ETOOBIG;
    if (versioned && ei_x_append_buf(x, &magic, 1))
        return TETHER_ENOMEM;
    if (ei_x_append_buf(x, (const char *)t, (int)n))
        return TETHER_ENOMEM;
    return 0;
}

int tether__frame_encode(ei_x_buff *x, uint64_t dflags, const uint8_t *ctl,
                         size_t ctl_len, const uint8_t *msg, size_t msg_len)
{
    static const char hdr_p[] = {(char)TETHER_DIST_PASS_THROUGH};
    static const char hdr_d[] = {(char)TETHER_DIST_VERSION_MAGIC,
                                 (char)TETHER_DIST_HEADER, 0};
    static const char zero[TETHER_FRAME_LEN_BYTES];
    int header = tether__frame_header_mode(dflags);
    int start, rc;
    size_t flen;

    if (!x || !ctl || !ctl_len || (msg && !msg_len))
        return TETHER_EINVAL;
    start = x->index;
    if (ei_x_append_buf(x, zero, TETHER_FRAME_LEN_BYTES))
        return TETHER_ENOMEM;
    if (header ? ei_x_append_buf(x, hdr_d, sizeof(hdr_d))
               : ei_x_append_buf(x, hdr_p, sizeof(hdr_p)))
        goto nomem;
    rc = append_term(x, ctl, ctl_len, !header);
    if (rc)
        goto fail;
    if (msg) {
        rc = append_term(x, msg, msg_len, !header);
        if (rc)
            goto fail;
    }
    flen = (size_t)(x->index - start) - TETHER_FRAME_LEN_BYTES;
    if (flen > UINT32_MAX) {
        rc = TETHER_ETOOBIG;
        goto fail;
    }
    put32((uint8_t *)x->buff + start, (uint32_t)flen);
    return 0;
nomem:
    rc = TETHER_ENOMEM;
fail:
    x->index = start;
    return rc;
}
