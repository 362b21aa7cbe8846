/*
 * dist/epmd.h: the client side of the Erlang Port Mapper Daemon protocol.
 *
 * Pure encoders and decoders: the caller owns the socket. Every request is
 * written with its 2-byte big-endian length prefix, ready to send. Replies
 * are decoded from the bytes received so far:
 *
 *   ALIVE2_REQ (120)       -> ALIVE2_X_RESP (118, 32-bit creation)
 *                             or ALIVE2_RESP (121, 16-bit creation);
 *                             keep the socket open while registered.
 *   PORT_PLEASE2_REQ (122) -> PORT2_RESP (119); epmd then closes.
 *   NAMES_REQ (110)        -> EPMDPortNo(4) + "name N at port P\n" lines,
 *                             ended by epmd closing the socket.
 *
 * Decoders return 0 on a complete reply, TETHER_EAGAIN when more bytes are
 * needed (call again with the longer buffer), TETHER_EPROTO for bytes that
 * are not a reply; every length read from the wire is bounded.
 */
#ifndef TETHER_DIST_EPMD_H
#define TETHER_DIST_EPMD_H

#include <stddef.h>
#include <stdint.h>

#include "tether/error.h"

#define TETHER_EPMD_PORT 4369

#define TETHER_EPMD_ALIVE2_REQ       120
#define TETHER_EPMD_ALIVE2_X_RESP    118
#define TETHER_EPMD_ALIVE2_RESP      121
#define TETHER_EPMD_PORT_PLEASE2_REQ 122
#define TETHER_EPMD_PORT2_RESP       119
#define TETHER_EPMD_NAMES_REQ        110

#define TETHER_EPMD_NODE_NORMAL 77 /* 'M': a visible Erlang node */
#define TETHER_EPMD_NODE_HIDDEN 72 /* 'H': a hidden node (C-node) */
#define TETHER_EPMD_PROTO_TCP4  0
#define TETHER_EPMD_VERSION_HI  6
#define TETHER_EPMD_VERSION_LO  5

/* Longest node name (the part before '@') and extra field we accept. */
#define TETHER_EPMD_NAME_MAX  255
#define TETHER_EPMD_EXTRA_MAX 1024
/* Largest request any encoder here writes (ALIVE2_REQ with both maxima). */
#define TETHER_EPMD_REQ_MAX                                                    \
    (2 + 13 + TETHER_EPMD_NAME_MAX + TETHER_EPMD_EXTRA_MAX)

/* A decoded ALIVE2_RESP / ALIVE2_X_RESP. */
typedef struct {
    uint8_t result;    /* 0 = registered; anything else is epmd's refusal */
    uint32_t creation; /* 16 bits wide for ALIVE2_RESP, 32 for _X_ */
    int extended;      /* 1 when the reply was ALIVE2_X_RESP */
} tether_epmd_alive_t;

/* A decoded PORT2_RESP. Fields other than result are 0 when result != 0. */
typedef struct {
    uint8_t result; /* 0 = found; otherwise the node is not registered */
    uint16_t port;
    uint8_t node_type; /* TETHER_EPMD_NODE_NORMAL or _HIDDEN */
    uint8_t protocol;
    uint16_t highest_version;
    uint16_t lowest_version;
    char name[TETHER_EPMD_NAME_MAX + 1]; /* NUL-terminated */
    size_t name_len;
    size_t extra_len; /* the extra bytes are not kept; only their count */
} tether_epmd_port_t;

/* One line of a NAMES answer: "name <name> at port <port>". */
typedef struct {
    char name[TETHER_EPMD_NAME_MAX + 1]; /* NUL-terminated */
    uint16_t port;
} tether_epmd_name_t;

/*
 * Writes an ALIVE2_REQ (with its 2-byte length) into out (capacity cap)
 * and stores its size in *out_len. name is the alive part of the node
 * name (before '@'), name_len bytes, 1..TETHER_EPMD_NAME_MAX; extra may be
 * NULL when extra_len is 0. node_type is TETHER_EPMD_NODE_NORMAL or
 * TETHER_EPMD_NODE_HIDDEN; protocol 0, versions 6/5 are written.
 * Returns 0, TETHER_EINVAL for bad arguments, TETHER_ETOOBIG when cap is
 * too small.
 */
int tether__epmd_encode_alive2(uint8_t *out, size_t cap, size_t *out_len,
                               uint16_t port, uint8_t node_type,
                               const char *name, size_t name_len,
                               const uint8_t *extra, size_t extra_len);

/*
 * Decodes epmd's answer to ALIVE2_REQ from buf[0..len): accepts both
 * ALIVE2_X_RESP and ALIVE2_RESP. On 0, *consumed is the reply's size
 * (6 or 4 bytes). Returns 0, TETHER_EAGAIN or TETHER_EPROTO.
 */
TETHER_MUST_CHECK int tether__epmd_decode_alive2_resp(const uint8_t *buf,
                                                      size_t len,
                                                      tether_epmd_alive_t *out,
                                                      size_t *consumed);

/*
 * Writes a PORT_PLEASE2_REQ for the alive name (before '@') into out.
 * Returns 0, TETHER_EINVAL or TETHER_ETOOBIG like the ALIVE2 encoder.
 */
int tether__epmd_encode_port_please2(uint8_t *out, size_t cap, size_t *out_len,
                                     const char *name, size_t name_len);

/*
 * Decodes a PORT2_RESP from buf[0..len). A refusal (result != 0) is the
 * 2-byte form [119, Result] and decodes successfully with out->result set.
 * On 0, *consumed is the reply's size. Returns 0, TETHER_EAGAIN or
 * TETHER_EPROTO (wrong tag, name longer than TETHER_EPMD_NAME_MAX or
 * empty, extra longer than TETHER_EPMD_EXTRA_MAX).
 */
TETHER_MUST_CHECK int tether__epmd_decode_port2_resp(const uint8_t *buf,
                                                     size_t len,
                                                     tether_epmd_port_t *out,
                                                     size_t *consumed);

/* Writes a NAMES_REQ (3 bytes) into out. Returns 0 or TETHER_ETOOBIG. */
int tether__epmd_encode_names(uint8_t *out, size_t cap, size_t *out_len);

/*
 * Parses a complete NAMES answer (everything epmd sent before it closed
 * the socket): the 4-byte epmd port, then text lines. Stores up to
 * max_names entries in names (may be NULL when max_names is 0), the total
 * number of well-formed lines in *count (may exceed max_names), and the
 * epmd port in *epmd_port (may be NULL). Lines that do not match
 * "name <name> at port <port>" are skipped; a final line without '\n' is
 * accepted. Returns 0, TETHER_EAGAIN when len < 4, TETHER_EPROTO when a
 * line is longer than 4096 bytes.
 */
TETHER_MUST_CHECK int tether__epmd_parse_names(const uint8_t *buf, size_t len,
                                               uint32_t *epmd_port,
                                               tether_epmd_name_t *names,
                                               size_t max_names, size_t *count);

#endif /* TETHER_DIST_EPMD_H */
