/*
 * dist/frame.h: distribution framing after the handshake.
 *
 * The stream is a sequence of frames, each a 4-byte big-endian length and
 * that many bytes; a zero length is a tick (keep-alive: answer nothing,
 * just make sure we send something at least every net_ticktime/4). A frame
 * payload is one of:
 *
 *   'p'(112) 131 Control [131 Message]         pass-through
 *   131 'D'(68) NumberOfAtomCacheRefs(1) ... Control [Message]
 *   131 'E'(69) SequenceId(8) FragmentId(8) NumberOfAtomCacheRefs(1) ...
 *              Control [first part of Message]
 *   131 'F'(70) SequenceId(8) FragmentId(8) next part of the message
 *
 * Which form a peer uses (erts external.c, erts_encode_ext_dist_header_
 * setup and erts_prepare_dist_ext, OTP 22..27): when the negotiated flags
 * contain neither DIST_HDR_ATOM_CACHE nor FRAGMENTS, every message is
 * 'p' + terms each with their 131. As soon as FRAGMENTS is negotiated --
 * even without DIST_HDR_ATOM_CACHE -- erts writes the distribution header
 * form for every message ('D' with NumberOfAtomCacheRefs = 0, or 'E'/'F'
 * when a message is larger than a fragment, 64 KiB of payload in OTP 25)
 * with the terms WITHOUT their 131 version byte, and it *requires* that
 * form on input: it then rejects a 'p' frame as a message "from
 * incompatible erlang" and kills the connection. tether advertises
 * FRAGMENTS, so against OTP 25 both directions use 'D'/'E'/'F': the
 * encoders here choose the form from the negotiated flags
 * (tether__frame_header_mode()), and the decoders accept every form.
 * Checked against OTP 25 (erts 13.1.5) on loopback: with FRAGMENTS
 * negotiated it sent every message as 131 'D' 0, a 200 kB message as one
 * 'E' and four 'F' frames of 64 KiB, accepted our 'D' frames, and killed
 * the connection ("Got message from incompatible erlang") on a 'p' frame.
 *
 * The SequenceId is the sending process's pid word and the FragmentId
 * counts down: the 'E' frame carries the total number of fragments N, the
 * 'F' frames N-1 ... 1. Fragments of different sequences may interleave;
 * one sequence's fragments arrive in order. Since tether advertises no
 * atom cache, NumberOfAtomCacheRefs must be 0; a header that announces
 * atom cache references is rejected with TETHER_EPROTO.
 *
 * Term data is handed out as "versioned" (each term starts with 131, the
 * 'p' form) or not (the header forms); control.h decodes both.
 */
#ifndef TETHER_DIST_FRAME_H
#define TETHER_DIST_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "tether/error.h"

#define TETHER_FRAME_LEN_BYTES        4
#define TETHER_FRAME_DEFAULT_MAX      (UINT32_C(128) << 20) /* 128 MiB */
#define TETHER_FRAG_DEFAULT_MAX_TOTAL ((size_t)128 << 20)
#define TETHER_FRAG_DEFAULT_MAX_SEQS  64

#define TETHER_DIST_VERSION_MAGIC 131
#define TETHER_DIST_PASS_THROUGH  112 /* 'p' */
#define TETHER_DIST_HEADER        68  /* 'D' */
#define TETHER_DIST_FRAG_HEADER   69  /* 'E' */
#define TETHER_DIST_FRAG_CONT     70  /* 'F' */

typedef enum {
    TETHER_FRAME_PASS_THROUGH = 1, /* 'p': terms carry 131 */
    TETHER_FRAME_NORMAL,           /* 131 'D' */
    TETHER_FRAME_FRAG_FIRST,       /* 131 'E' */
    TETHER_FRAME_FRAG_CONT,        /* 131 'F' */
} tether_frame_kind_t;

/* A parsed frame payload. Pointers point into the caller's payload. */
typedef struct {
    tether_frame_kind_t kind;
    uint64_t seq_id;     /* 'E' and 'F' only */
    uint64_t frag_id;    /* 'E' and 'F' only; the last fragment is 1 */
    const uint8_t *data; /* bytes after the header */
    size_t len;
    int versioned; /* 1 when each term starts with 131 ('p' form) */
} tether_frame_t;

/* A complete distribution message: the control term, then the message. */
typedef struct {
    const uint8_t *data;
    size_t len;
    int versioned; /* 1 when each term starts with 131 */
} tether_dist_msg_t;

/*
 * Splits one frame off the front of buf[0..len). On 0, *payload and
 * *payload_len describe the frame's bytes (length 0 = a tick; *payload
 * then points at buf + 4) and *consumed is 4 + payload_len. Returns
 * TETHER_EAGAIN when the frame is incomplete, TETHER_ETOOBIG as soon as
 * the 4-byte prefix exceeds max_len (no allocation, nothing consumed).
 */
TETHER_MUST_CHECK int tether__frame_split(const uint8_t *buf, size_t len,
                                          uint32_t max_len,
                                          const uint8_t **payload,
                                          size_t *payload_len,
                                          size_t *consumed);

/*
 * Parses a non-empty frame payload into out (which points into payload).
 * Returns 0, or TETHER_EPROTO for an unknown or truncated header, a
 * header announcing atom cache references (we advertise no atom cache)
 * or a fragment id of 0.
 */
TETHER_MUST_CHECK int tether__frame_parse(const uint8_t *payload, size_t len,
                                          tether_frame_t *out);

/*
 * Fragment reassembly, one per connection. Opaque; owns the partial
 * messages of at most max_seqs concurrent sequences holding at most
 * max_total bytes together.
 */
typedef struct tether_defrag tether_defrag_t;

/* Returns a new reassembler, or NULL when out of memory or a cap is 0. */
tether_defrag_t *tether__defrag_new(size_t max_total, size_t max_seqs);

/* Frees d and every partial message (NULL is ignored). */
void tether__defrag_free(tether_defrag_t *d);

/*
 * Feeds one parsed frame. Returns 0 with *out set when a message is
 * complete: for 'p' and 'D' frames out points into the frame itself; for
 * the last fragment of a sequence it points into memory owned by d, valid
 * until the next call on d. Returns TETHER_EAGAIN when a fragment was
 * stored and its message is not complete yet; TETHER_EPROTO for an 'F'
 * of an unknown sequence, a fragment id out of order, or an 'E' for a
 * sequence already open; TETHER_ETOOBIG when a sequence would exceed
 * max_total bytes or max_seqs sequences would be open. After an error the
 * connection should be closed.
 */
TETHER_MUST_CHECK int tether__defrag_push(tether_defrag_t *d,
                                          const tether_frame_t *f,
                                          tether_dist_msg_t *out);

/* Returns the number of sequences awaiting fragments. */
size_t tether__defrag_open(const tether_defrag_t *d);

/* Returns the bytes currently held by partial messages. */
size_t tether__defrag_bytes(const tether_defrag_t *d);

/* Kinds of event tether__reader_next() reports. */
typedef enum {
    TETHER_DIST_EV_NONE = 0, /* a fragment was stored; nothing to deliver */
    TETHER_DIST_EV_TICK,     /* an empty frame arrived */
    TETHER_DIST_EV_MSG,      /* ev->msg is a complete message */
} tether_dist_ev_kind_t;

typedef struct {
    tether_dist_ev_kind_t kind;
    tether_dist_msg_t msg; /* TETHER_DIST_EV_MSG only */
} tether_dist_ev_t;

/*
 * The whole receive path of a connection: splitter, header parser and
 * reassembler. Opaque.
 */
typedef struct tether_dist_reader tether_dist_reader_t;

/*
 * Returns a new reader with frame length cap max_frame (0 means
 * TETHER_FRAME_DEFAULT_MAX) and reassembly caps max_total / max_seqs (0
 * means the defaults), or NULL when out of memory.
 */
tether_dist_reader_t *tether__reader_new(uint32_t max_frame, size_t max_total,
                                         size_t max_seqs);

/* Frees r (NULL is ignored). */
void tether__reader_free(tether_dist_reader_t *r);

/*
 * Reads at most one frame from buf[0..len). On 0, *consumed is the size
 * of that frame and *ev says what it was; a message points into buf or
 * into the reader, valid until the next call on r or until buf changes.
 * Returns TETHER_EAGAIN (nothing consumed) when the next frame is
 * incomplete, or the error of the splitter, parser or reassembler.
 * Typical loop: while (off < len) { rc = next(r, buf+off, len-off, &n,
 * &ev); if (rc == TETHER_EAGAIN) break; if (rc) close; off += n; ... }
 */
TETHER_MUST_CHECK int tether__reader_next(tether_dist_reader_t *r,
                                          const uint8_t *buf, size_t len,
                                          size_t *consumed,
                                          tether_dist_ev_t *ev);

/*
 * Returns 1 when frames sent over a connection with these negotiated
 * flags must use the distribution header form (131 'D', terms without
 * 131), i.e. when FRAGMENTS or DIST_HDR_ATOM_CACHE is set; 0 for 'p'.
 */
int tether__frame_header_mode(uint64_t dflags);

/* Appends a tick (4 zero bytes) to x. Returns 0 or TETHER_ENOMEM. */
int tether__frame_encode_tick(ei_x_buff *x);

/*
 * Appends one complete frame (4-byte length included) to x carrying the
 * control term ctl[0..ctl_len) and, when msg is not NULL, the message
 * msg[0..msg_len), in the form the negotiated dflags require. Both terms
 * may be given with or without a leading 131 version byte (ei_x_new_with_
 * version output is fine); it is added or removed as the form needs.
 * Returns 0, TETHER_EINVAL (empty term), TETHER_ETOOBIG (frame over 4 GiB)
 * or TETHER_ENOMEM.
 */
int tether__frame_encode(ei_x_buff *x, uint64_t dflags, const uint8_t *ctl,
                         size_t ctl_len, const uint8_t *msg, size_t msg_len);

#endif /* TETHER_DIST_FRAME_H */
