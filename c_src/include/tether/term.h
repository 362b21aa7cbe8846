/*
 * tether/term.h: helpers for external-term-format terms, on top of ei.
 *
 * Build terms with ei (ei_x_new_with_version, ei_x_encode_*) and read them
 * with ei_decode_*; these helpers add what ei lacks: a bounded validity
 * check for untrusted bytes, a canonical form (equal terms, equal bytes),
 * and printing.
 */
#ifndef TETHER_TERM_H
#define TETHER_TERM_H

#include <stdbool.h>
#include <stddef.h>

#include <ei.h>

#include "tether/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Deepest nesting tether_term_normalize() accepts. */
#define TETHER_TERM_DEPTH_MAX 1024

/*
 * True if buf[0..len) is exactly one term with its 131 version byte,
 * every length in bounds (safe to hand to ei_decode_*).
 */
TETHER_MUST_CHECK bool tether_term_valid(const char *buf, size_t len);

/*
 * Appends to `out` (an ei_x_buff the caller set up with ei_x_new(); a
 * version byte is written first) the canonical encoding of the term
 * buf[0..len) (131-prefixed): two terms that compare equal (=:=) get the
 * same bytes whichever encoder produced them. Atoms become UTF-8 atoms,
 * integers take the smallest encoding, -0.0 becomes 0.0 (they are =:= on
 * OTP 25), lists of bytes become strings,
 * pids, ports and references take their newest forms, map entries are
 * sorted by their canonical key bytes. Returns 0, TETHER_EINVAL (not a
 * valid term), TETHER_ETOOBIG (nested deeper than TETHER_TERM_DEPTH_MAX)
 * or TETHER_ENOMEM; on error out->index is restored.
 */
TETHER_MUST_CHECK int tether_term_normalize(const char *buf, size_t len,
                                            ei_x_buff *out);

/*
 * Writes a printable form of the term (131-prefixed) into out (NUL
 * terminated, truncated to cap). Returns 0 or TETHER_EINVAL.
 */
int tether_term_format(const char *buf, size_t len, char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_TERM_H */
