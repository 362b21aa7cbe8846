/*
 * Criterion suite for dist/frame.c: splitting, headers, fragment
 * reassembly and encoding.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dist/flags.h"
#include "dist/frame.h"

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Builds an 'E' (first) or 'F' frame payload into out; returns its size. */
static size_t frag(uint8_t *out, int first, uint64_t seq, uint64_t id,
                   const char *data)
{
    size_t n = 0, dl = strlen(data);

    out[n++] = 131;
    out[n++] = first ? 'E' : 'F';
    put64(out + n, seq);
    n += 8;
    put64(out + n, id);
    n += 8;
    if (first)
        out[n++] = 0; /* no atom cache refs */
    memcpy(out + n, data, dl);
    return n + dl;
}

static int push(tether_defrag_t *d, const uint8_t *p, size_t n,
                tether_dist_msg_t *m)
{
    tether_frame_t f;
    int rc = tether__frame_parse(p, n, &f);

    if (rc)
        return rc;
    return tether__defrag_push(d, &f, m);
}

Test(frame, split_tick_and_frame)
{
    const uint8_t buf[] = {0, 0, 0, 0, 0, 0, 0, 2, 'p', 131, 9};
    const uint8_t *p;
    size_t n, used;

    cr_assert_eq(tether__frame_split(buf, sizeof(buf), 100, &p, &n, &used), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(used, 4);
    cr_assert_eq(
        tether__frame_split(buf + 4, sizeof(buf) - 4, 100, &p, &n, &used), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(used, 6);
    cr_assert_eq(p, buf + 8);
}

Test(frame, split_partial_at_every_length_is_eagain)
{
    const uint8_t buf[] = {0, 0, 0, 5, 1, 2, 3, 4, 5};
    const uint8_t *p;
    size_t n, used;

    for (size_t k = 0; k < sizeof(buf); k++)
        cr_assert_eq(tether__frame_split(buf, k, 100, &p, &n, &used),
                     TETHER_EAGAIN, "len %zu", k);
    cr_assert_eq(tether__frame_split(buf, sizeof(buf), 100, &p, &n, &used), 0);
}

Test(frame, split_rejects_oversized_prefix_immediately)
{
    const uint8_t huge[] = {0x80, 0, 0, 0}; /* 2 GiB */
    const uint8_t over[] = {0, 0, 1, 1};    /* 257 */
    const uint8_t *p;
    size_t n, used = 99;

    cr_assert_eq(
        tether__frame_split(huge, 4, TETHER_FRAME_DEFAULT_MAX, &p, &n, &used),
        TETHER_ETOOBIG);
    cr_assert_eq(used, 99);
    cr_assert_eq(tether__frame_split(over, 4, 256, &p, &n, &used),
                 TETHER_ETOOBIG);
    cr_assert_eq(tether__frame_split(over, 4, 257, &p, &n, &used),
                 TETHER_EAGAIN);
}

Test(frame, parse_pass_through_and_normal_header)
{
    const uint8_t pt[] = {'p', 131, 104, 0};
    const uint8_t dh[] = {131, 'D', 0, 104, 0};
    tether_frame_t f;

    cr_assert_eq(tether__frame_parse(pt, sizeof(pt), &f), 0);
    cr_assert_eq(f.kind, TETHER_FRAME_PASS_THROUGH);
    cr_assert_eq(f.versioned, 1);
    cr_assert_eq(f.data, pt + 1);
    cr_assert_eq(f.len, 3);
    cr_assert_eq(tether__frame_parse(dh, sizeof(dh), &f), 0);
    cr_assert_eq(f.kind, TETHER_FRAME_NORMAL);
    cr_assert_eq(f.versioned, 0);
    cr_assert_eq(f.data, dh + 3);
    cr_assert_eq(f.len, 2);
}

Test(frame, parse_rejects_atom_cache_refs_and_garbage)
{
    const uint8_t refs[] = {131, 'D', 1, 0x08, 0, 1, 'a', 104, 0};
    const uint8_t bad_p[] = {'p', 104, 0};
    const uint8_t bad_tag[] = {131, 'Q', 0};
    const uint8_t zero_frag[] = {131, 'F', 0, 0, 0, 0, 0, 0, 0,  1,
                                 0,   0,   0, 0, 0, 0, 0, 0, 'x'};
    tether_frame_t f;

    cr_assert_eq(tether__frame_parse(refs, sizeof(refs), &f), TETHER_EPROTO);
    cr_assert_eq(tether__frame_parse(bad_p, sizeof(bad_p), &f), TETHER_EPROTO);
    cr_assert_eq(tether__frame_parse(bad_tag, sizeof(bad_tag), &f),
                 TETHER_EPROTO);
    cr_assert_eq(tether__frame_parse(zero_frag, sizeof(zero_frag), &f),
                 TETHER_EPROTO);
    for (int b = 0; b < 256; b++) {
        uint8_t g[4] = {(uint8_t)b, 1, 2, 3};
        if (b == 'p' || b == 131)
            continue;
        cr_assert_eq(tether__frame_parse(g, sizeof(g), &f), TETHER_EPROTO);
    }
}

Test(frame, parse_fragment_headers_and_truncations)
{
    uint8_t e[64], fr[64];
    size_t ne = frag(e, 1, 0x0102030405060708u, 3, "ab");
    size_t nf = frag(fr, 0, 7, 2, "cd");
    tether_frame_t f;

    cr_assert_eq(tether__frame_parse(e, ne, &f), 0);
    cr_assert_eq(f.kind, TETHER_FRAME_FRAG_FIRST);
    cr_assert_eq(f.seq_id, 0x0102030405060708u);
    cr_assert_eq(f.frag_id, 3);
    cr_assert_eq(f.len, 2);
    cr_assert_eq(memcmp(f.data, "ab", 2), 0);
    cr_assert_eq(tether__frame_parse(fr, nf, &f), 0);
    cr_assert_eq(f.kind, TETHER_FRAME_FRAG_CONT);
    cr_assert_eq(f.seq_id, 7);
    cr_assert_eq(f.frag_id, 2);
    /* Every cut inside the headers is a protocol error, never a read
       past the end. */
    for (size_t k = 0; k < 19; k++)
        cr_assert_eq(tether__frame_parse(e, k, &f), TETHER_EPROTO, "E %zu", k);
    for (size_t k = 0; k < 18; k++)
        cr_assert_eq(tether__frame_parse(fr, k, &f), TETHER_EPROTO, "F %zu", k);
}

Test(frame, defrag_in_order)
{
    tether_defrag_t *d = tether__defrag_new(1024, 4);
    uint8_t b[64];
    tether_dist_msg_t m;
    size_t n;

    cr_assert_not_null(d);
    n = frag(b, 1, 42, 3, "hello ");
    cr_assert_eq(push(d, b, n, &m), TETHER_EAGAIN);
    cr_assert_eq(tether__defrag_open(d), 1);
    n = frag(b, 0, 42, 2, "frag");
    cr_assert_eq(push(d, b, n, &m), TETHER_EAGAIN);
    cr_assert_eq(tether__defrag_bytes(d), 10);
    n = frag(b, 0, 42, 1, "ments");
    cr_assert_eq(push(d, b, n, &m), 0);
    cr_assert_eq(m.len, 15);
    cr_assert_eq(memcmp(m.data, "hello fragments", 15), 0);
    cr_assert_eq(m.versioned, 0);
    cr_assert_eq(tether__defrag_open(d), 0);
    cr_assert_eq(tether__defrag_bytes(d), 0);
    tether__defrag_free(d);
}

Test(frame, defrag_interleaved_sequences)
{
    tether_defrag_t *d = tether__defrag_new(1024, 4);
    uint8_t b[64];
    tether_dist_msg_t m;
    const uint8_t dh[] = {131, 'D', 0, 'z'};

    cr_assert_eq(push(d, b, frag(b, 1, 1, 2, "A1"), &m), TETHER_EAGAIN);
    cr_assert_eq(push(d, b, frag(b, 1, 2, 3, "B1"), &m), TETHER_EAGAIN);
    /* An ordinary message passes between fragments. */
    cr_assert_eq(push(d, dh, sizeof(dh), &m), 0);
    cr_assert_eq(m.len, 1);
    cr_assert_eq(push(d, b, frag(b, 0, 2, 2, "B2"), &m), TETHER_EAGAIN);
    cr_assert_eq(push(d, b, frag(b, 0, 1, 1, "A2"), &m), 0);
    cr_assert_eq(m.len, 4);
    cr_assert_eq(memcmp(m.data, "A1A2", 4), 0);
    cr_assert_eq(push(d, b, frag(b, 0, 2, 1, "B3"), &m), 0);
    cr_assert_eq(memcmp(m.data, "B1B2B3", 6), 0);
    cr_assert_eq(tether__defrag_open(d), 0);
    tether__defrag_free(d);
}

Test(frame, defrag_single_fragment_sequence)
{
    tether_defrag_t *d = tether__defrag_new(1024, 1);
    uint8_t b[64];
    tether_dist_msg_t m;

    cr_assert_eq(push(d, b, frag(b, 1, 5, 1, "all"), &m), 0);
    cr_assert_eq(m.len, 3);
    cr_assert_eq(tether__defrag_open(d), 0);
    tether__defrag_free(d);
}

Test(frame, defrag_protocol_errors)
{
    tether_defrag_t *d = tether__defrag_new(1024, 4);
    uint8_t b[64];
    tether_dist_msg_t m;

    /* Continuation of an unknown sequence. */
    cr_assert_eq(push(d, b, frag(b, 0, 9, 1, "x"), &m), TETHER_EPROTO);
    /* Out of order: expected 2, got 1. */
    cr_assert_eq(push(d, b, frag(b, 1, 9, 3, "x"), &m), TETHER_EAGAIN);
    cr_assert_eq(push(d, b, frag(b, 0, 9, 1, "x"), &m), TETHER_EPROTO);
    /* A second start of an open sequence. */
    cr_assert_eq(push(d, b, frag(b, 1, 9, 3, "x"), &m), TETHER_EPROTO);
    tether__defrag_free(d);
}

Test(frame, defrag_caps)
{
    tether_defrag_t *d = tether__defrag_new(10, 2);
    uint8_t b[64];
    tether_dist_msg_t m;

    cr_assert_eq(push(d, b, frag(b, 1, 1, 5, "12345"), &m), TETHER_EAGAIN);
    cr_assert_eq(push(d, b, frag(b, 1, 2, 5, "1234"), &m), TETHER_EAGAIN);
    /* A third sequence: too many open. */
    cr_assert_eq(push(d, b, frag(b, 1, 3, 5, "1"), &m), TETHER_ETOOBIG);
    /* Total bytes: 9 held, 2 more is over 10. */
    cr_assert_eq(push(d, b, frag(b, 0, 1, 4, "ab"), &m), TETHER_ETOOBIG);
    cr_assert_eq(push(d, b, frag(b, 0, 1, 4, "a"), &m), TETHER_EAGAIN);
    cr_assert_eq(tether__defrag_bytes(d), 10);
    tether__defrag_free(d);
    cr_assert_null(tether__defrag_new(0, 1));
    cr_assert_null(tether__defrag_new(1, 0));
}

/* Appends a frame with the given payload to buf; returns new length. */
static size_t add_frame(uint8_t *buf, size_t at, const uint8_t *p, size_t n)
{
    buf[at] = (uint8_t)(n >> 24);
    buf[at + 1] = (uint8_t)(n >> 16);
    buf[at + 2] = (uint8_t)(n >> 8);
    buf[at + 3] = (uint8_t)n;
    if (n)
        memcpy(buf + at + 4, p, n);
    return at + 4 + n;
}

Test(frame, reader_stream_of_ticks_messages_fragments)
{
    tether_dist_reader_t *r = tether__reader_new(0, 0, 0);
    uint8_t buf[256], f[64];
    size_t len = 0, off, used, n;
    tether_dist_ev_t ev;
    int ticks = 0, msgs = 0, none = 0, rc;
    const uint8_t pt[] = {'p', 131, 106};

    len = add_frame(buf, len, NULL, 0);
    len = add_frame(buf, len, pt, sizeof(pt));
    n = frag(f, 1, 3, 2, "xy");
    len = add_frame(buf, len, f, n);
    len = add_frame(buf, len, NULL, 0);
    n = frag(f, 0, 3, 1, "z");
    len = add_frame(buf, len, f, n);

    /* Deliver byte by byte the way a socket might. */
    for (size_t have = 0, start = 0; have <= len; have++) {
        off = start;
        while (off < have) {
            rc = tether__reader_next(r, buf + off, have - off, &used, &ev);
            if (rc == TETHER_EAGAIN)
                break;
            cr_assert_eq(rc, 0);
            off += used;
            if (ev.kind == TETHER_DIST_EV_TICK)
                ticks++;
            else if (ev.kind == TETHER_DIST_EV_MSG) {
                msgs++;
                if (msgs == 2)
                    cr_assert_eq(memcmp(ev.msg.data, "xyz", 3), 0);
            } else
                none++;
        }
        start = off;
    }
    cr_assert_eq(ticks, 2);
    cr_assert_eq(msgs, 2);
    cr_assert_eq(none, 1);
    tether__reader_free(r);
}

Test(frame, reader_reports_errors)
{
    tether_dist_reader_t *r = tether__reader_new(16, 0, 0);
    const uint8_t big[] = {0, 0, 0, 17};
    const uint8_t junk[] = {0, 0, 0, 2, 'Z', 'Z'};
    size_t used;
    tether_dist_ev_t ev;

    cr_assert_eq(tether__reader_next(r, big, sizeof(big), &used, &ev),
                 TETHER_ETOOBIG);
    cr_assert_eq(tether__reader_next(r, junk, sizeof(junk), &used, &ev),
                 TETHER_EPROTO);
    tether__reader_free(r);
}

Test(frame, encode_tick)
{
    ei_x_buff x;
    ei_x_new(&x);
    cr_assert_eq(tether__frame_encode_tick(&x), 0);
    cr_assert_eq(x.index, 4);
    cr_assert_arr_eq(x.buff, "\0\0\0\0", 4);
    ei_x_free(&x);
}

Test(frame, encode_pass_through_and_header_forms)
{
    const uint8_t ctl[] = {104, 1, 97, 5};       /* {5} */
    const uint8_t ctlv[] = {131, 104, 1, 97, 5}; /* same, versioned */
    const uint8_t msg[] = {131, 106};            /* [] */
    const uint8_t want_p[] = {0, 0, 0, 8, 'p', 131, 104, 1, 97, 5, 131, 106};
    const uint8_t want_d[] = {0, 0, 0, 8, 131, 'D', 0, 104, 1, 97, 5, 106};
    const uint8_t want_d1[] = {0, 0, 0, 7, 131, 'D', 0, 104, 1, 97, 5};
    ei_x_buff x;

    ei_x_new(&x);
    cr_assert_eq(
        tether__frame_encode(&x, 0, ctl, sizeof(ctl), msg, sizeof(msg)), 0);
    cr_assert_eq((size_t)x.index, sizeof(want_p));
    cr_assert_arr_eq(x.buff, want_p, sizeof(want_p));
    x.index = 0;
    cr_assert_eq(tether__frame_encode(&x, TETHER_DFLAG_FRAGMENTS, ctlv,
                                      sizeof(ctlv), msg, sizeof(msg)),
                 0);
    cr_assert_eq((size_t)x.index, sizeof(want_d));
    cr_assert_arr_eq(x.buff, want_d, sizeof(want_d));
    x.index = 0;
    cr_assert_eq(tether__frame_encode(&x, TETHER_DIST_FLAGS_ADVERTISED, ctl,
                                      sizeof(ctl), NULL, 0),
                 0);
    cr_assert_arr_eq(x.buff, want_d1, sizeof(want_d1));
    /* Bad arguments leave x untouched. */
    x.index = 0;
    cr_assert_eq(tether__frame_encode(&x, 0, ctl, 0, NULL, 0), TETHER_EINVAL);
    cr_assert_eq(tether__frame_encode(&x, 0, ctlv, 1, NULL, 0), TETHER_EINVAL);
    cr_assert_eq(x.index, 0);
    ei_x_free(&x);
}

Test(frame, encoded_frames_read_back)
{
    const uint8_t ctl[] = {104, 1, 97, 5};
    const uint8_t msg[] = {107, 0, 2, 'h', 'i'};
    uint64_t modes[] = {0, TETHER_DFLAG_FRAGMENTS};
    tether_dist_reader_t *r = tether__reader_new(0, 0, 0);

    for (size_t i = 0; i < 2; i++) {
        ei_x_buff x;
        tether_dist_ev_t ev;
        size_t used;
        size_t skip;

        ei_x_new(&x);
        cr_assert_eq(tether__frame_encode(&x, modes[i], ctl, sizeof(ctl), msg,
                                          sizeof(msg)),
                     0);
        cr_assert_eq(tether__reader_next(r, (uint8_t *)x.buff, (size_t)x.index,
                                         &used, &ev),
                     0);
        cr_assert_eq(used, (size_t)x.index);
        cr_assert_eq(ev.kind, TETHER_DIST_EV_MSG);
        cr_assert_eq(ev.msg.versioned, modes[i] == 0);
        skip = ev.msg.versioned ? 1 : 0;
        cr_assert_eq(memcmp(ev.msg.data + skip, ctl, sizeof(ctl)), 0);
        cr_assert_eq(
            memcmp(ev.msg.data + skip + sizeof(ctl) + skip, msg, sizeof(msg)),
            0);
        ei_x_free(&x);
    }
    tether__reader_free(r);
    cr_assert_eq(tether__frame_header_mode(0), 0);
    cr_assert_eq(tether__frame_header_mode(TETHER_DIST_FLAGS_ADVERTISED), 1);
}

/*
 * Splits one header-mode message (ctl ++ msg, no 131s) into an 'E' frame
 * and 'F' frames of at most chunk data bytes each, the way erts does.
 */
static size_t fragment(uint8_t *out, uint64_t seq, const uint8_t *data,
                       size_t len, size_t chunk)
{
    size_t frags = (len + chunk - 1) / chunk, n = 0;

    for (size_t i = 0; i < frags; i++) {
        size_t k = len - i * chunk < chunk ? len - i * chunk : chunk;
        size_t plen = 2 + 16 + (i == 0 ? 1 : 0) + k;
        out[n++] = (uint8_t)(plen >> 24);
        out[n++] = (uint8_t)(plen >> 16);
        out[n++] = (uint8_t)(plen >> 8);
        out[n++] = (uint8_t)plen;
        out[n++] = 131;
        out[n++] = i == 0 ? 'E' : 'F';
        put64(out + n, seq);
        n += 8;
        put64(out + n, frags - i);
        n += 8;
        if (i == 0)
            out[n++] = 0;
        memcpy(out + n, data + i * chunk, k);
        n += k;
    }
    return n;
}

Test(frame, fragmented_message_reassembles_to_the_original)
{
    size_t big = 100000, n, off = 0, used;
    uint8_t *data = malloc(big), *stream = malloc(big * 2);
    tether_dist_reader_t *r = tether__reader_new(0, 0, 0);
    tether_dist_ev_t ev;
    int msgs = 0;

    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 7);
    n = fragment(stream, 0xfeed, data, big, 1000);
    while (off < n) {
        cr_assert_eq(tether__reader_next(r, stream + off, n - off, &used, &ev),
                     0);
        off += used;
        if (ev.kind == TETHER_DIST_EV_MSG) {
            msgs++;
            cr_assert_eq(ev.msg.len, big);
            cr_assert_eq(memcmp(ev.msg.data, data, big), 0);
        }
    }
    cr_assert_eq(msgs, 1);
    /* The same stream with a 50 000-byte cap fails with ETOOBIG. */
    tether__reader_free(r);
    r = tether__reader_new(0, 50000, 0);
    off = 0;
    for (;;) {
        int rc = tether__reader_next(r, stream + off, n - off, &used, &ev);
        if (rc) {
            cr_assert_eq(rc, TETHER_ETOOBIG);
            break;
        }
        off += used;
        cr_assert_lt(off, n, "cap never hit");
    }
    tether__reader_free(r);
    free(data);
    free(stream);
}
