/*
 * core/codec.h: shared helpers over ei's external term format for engine
 * messages.
 *
 * ei's decoders do not take a buffer length, so untrusted bytes must never
 * reach them unchecked. tether__etf_validate() walks a whole term with
 * explicit bounds (no recursion, bounded nesting) first; only a buffer it
 * accepted is then handed to ei_decode_*. The name helpers decode a node
 * name atom into a fixed buffer with a length check.
 */
#ifndef TETHER_CORE_CODEC_H
#define TETHER_CORE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "core/keys.h"
#include "tether/error.h"

/* Deepest nesting of tuples, lists and maps accepted from a peer. */
#define TETHER_ETF_DEPTH_MAX 32
/* The external term format's version byte. */
#define TETHER_ETF_VERSION 131

/*
 * Checks that buf[0..len) is exactly one term in external format, version
 * byte first, every length within bounds, nesting at most
 * TETHER_ETF_DEPTH_MAX, no trailing bytes. Funs and unknown tags are
 * refused. Returns 0 or TETHER_EPROTO.
 */
TETHER_MUST_CHECK int tether__etf_validate(const char *buf, size_t len);

/*
 * Decodes an atom at *index into out (NUL-terminated, at most
 * TETHER_NODE_NAME_MAX bytes) and advances *index. The buffer must have
 * passed tether__etf_validate(). Returns 0 or TETHER_EPROTO (not an atom,
 * empty or too long).
 */
TETHER_MUST_CHECK int
tether__etf_decode_name(const char *buf, int *index,
                        char out[TETHER_NODE_NAME_MAX + 1]);

/* Decodes an unsigned integer (any integer encoding) into *out. Returns 0
 * or TETHER_EPROTO. The buffer must have been validated. */
TETHER_MUST_CHECK int tether__etf_decode_u64(const char *buf, int *index,
                                             uint64_t *out);

/* Decodes a tuple header and requires the given arity. Returns 0 or
 * TETHER_EPROTO. */
TETHER_MUST_CHECK int tether__etf_expect_tuple(const char *buf, int *index,
                                               int arity);

/* Decodes a proper-list header into *count (0 for []); the caller decodes
 * the elements and then calls tether__etf_list_end(). Returns 0 or
 * TETHER_EPROTO. */
TETHER_MUST_CHECK int tether__etf_list(const char *buf, int *index, int *count);
TETHER_MUST_CHECK int tether__etf_list_end(const char *buf, int *index,
                                           int count);

/* Longest {Tag, ...} tag atom a module message may carry, plus its NUL. */
#define TETHER_ETF_TAG_MAX 16

/*
 * Decodes the head of a module message: the version byte and the header
 * of a {Tag, ...} tuple of arity >= 1 whose Tag is an atom of fewer than
 * TETHER_ETF_TAG_MAX bytes. Fills tag (NUL-terminated) and *arity and
 * leaves *index after the tag. The buffer must have been validated.
 * Returns 0 or TETHER_EPROTO.
 */
TETHER_MUST_CHECK int tether__etf_decode_head(const char *buf, int *index,
                                              char tag[TETHER_ETF_TAG_MAX],
                                              int *arity);

/*
 * Reads a binary in place: *p points into buf (valid as long as buf) and
 * *len is its size (0 allowed). Advances *index. The buffer must have been
 * validated. Returns 0 or TETHER_EPROTO (not a binary; bitstrings are
 * not binaries).
 */
TETHER_MUST_CHECK int tether__etf_decode_bin_ref(const char *buf, int *index,
                                                 const uint8_t **p,
                                                 size_t *len);

/*
 * Starts an engine message {Tag, ...}: a fresh buffer with the version
 * byte, a tuple header of `arity` and the Tag atom. The caller encodes the
 * other arity - 1 elements and frees x with ei_x_free(). Returns 0 or
 * TETHER_ENOMEM; on failure x holds no buffer (ei_x_free() on it is a
 * harmless no-op).
 */
TETHER_MUST_CHECK int tether__etf_begin(ei_x_buff *x, int arity,
                                        const char *tag);

/* Encodes a node name as an UTF-8 atom. Returns 0 or TETHER_ENOMEM. */
TETHER_MUST_CHECK int tether__etf_encode_name(ei_x_buff *x, const char *name);

/* 64-bit FNV-1a, for table digests (not a security boundary). */
#define TETHER_FNV_OFFSET UINT64_C(0xcbf29ce484222325)
uint64_t tether__fnv1a(uint64_t h, const void *data, size_t len);

#endif /* TETHER_CORE_CODEC_H */
