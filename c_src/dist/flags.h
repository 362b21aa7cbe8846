/*
 * dist/flags.h: Erlang distribution capability flags (DFLAG_*).
 *
 * The values are those of OTP's lib/kernel/include/dist.hrl (OTP 25). Flags
 * travel as a 64-bit big-endian field in the version-6 handshake ('N'
 * messages); the version-5 messages ('n') only carry the low 32 bits, and
 * the high 32 bits then follow in the complement message ('c').
 */
#ifndef TETHER_DIST_FLAGS_H
#define TETHER_DIST_FLAGS_H

#include <stdint.h>

#define TETHER_DFLAG_PUBLISHED           UINT64_C(0x01)
#define TETHER_DFLAG_ATOM_CACHE          UINT64_C(0x02)
#define TETHER_DFLAG_EXTENDED_REFERENCES UINT64_C(0x04)
#define TETHER_DFLAG_DIST_MONITOR        UINT64_C(0x08)
#define TETHER_DFLAG_FUN_TAGS            UINT64_C(0x10)
#define TETHER_DFLAG_DIST_MONITOR_NAME   UINT64_C(0x20)
#define TETHER_DFLAG_HIDDEN_ATOM_CACHE   UINT64_C(0x40)
#define TETHER_DFLAG_NEW_FUN_TAGS        UINT64_C(0x80)
#define TETHER_DFLAG_EXTENDED_PIDS_PORTS UINT64_C(0x100)
#define TETHER_DFLAG_EXPORT_PTR_TAG      UINT64_C(0x200)
#define TETHER_DFLAG_BIT_BINARIES        UINT64_C(0x400)
#define TETHER_DFLAG_NEW_FLOATS          UINT64_C(0x800)
#define TETHER_DFLAG_UNICODE_IO          UINT64_C(0x1000)
#define TETHER_DFLAG_DIST_HDR_ATOM_CACHE UINT64_C(0x2000)
#define TETHER_DFLAG_SMALL_ATOM_TAGS     UINT64_C(0x4000)
#define TETHER_DFLAG_UTF8_ATOMS          UINT64_C(0x10000)
#define TETHER_DFLAG_MAP_TAG             UINT64_C(0x20000)
#define TETHER_DFLAG_BIG_CREATION        UINT64_C(0x40000)
#define TETHER_DFLAG_SEND_SENDER         UINT64_C(0x80000)
#define TETHER_DFLAG_BIG_SEQTRACE_LABELS UINT64_C(0x100000)
#define TETHER_DFLAG_EXIT_PAYLOAD        UINT64_C(0x400000)
#define TETHER_DFLAG_FRAGMENTS           UINT64_C(0x800000)
#define TETHER_DFLAG_HANDSHAKE_23        UINT64_C(0x1000000)
#define TETHER_DFLAG_UNLINK_ID           UINT64_C(0x2000000)
#define TETHER_DFLAG_MANDATORY_25_DIGEST UINT64_C(0x4000000)
#define TETHER_DFLAG_RESERVED            UINT64_C(0xf8000000)
#define TETHER_DFLAG_SPAWN               (UINT64_C(0x01) << 32)
#define TETHER_DFLAG_NAME_ME             (UINT64_C(0x02) << 32)
#define TETHER_DFLAG_V4_NC               (UINT64_C(0x04) << 32)
#define TETHER_DFLAG_ALIAS               (UINT64_C(0x08) << 32)

/*
 * The flags OTP 25 requires of every peer (MANDATORY_DFLAGS_25 in
 * dist.hrl; erts refuses a connection that lacks one). A peer that sets
 * TETHER_DFLAG_MANDATORY_25_DIGEST implies all of them
 * (dist_util:expand_mandatory_25_flag/1); see tether__dflags_expand().
 */
#define TETHER_DIST_FLAGS_MANDATORY                                            \
    (TETHER_DFLAG_EXTENDED_REFERENCES | TETHER_DFLAG_FUN_TAGS |                \
     TETHER_DFLAG_EXTENDED_PIDS_PORTS | TETHER_DFLAG_NEW_FUN_TAGS |            \
     TETHER_DFLAG_EXPORT_PTR_TAG | TETHER_DFLAG_BIT_BINARIES |                 \
     TETHER_DFLAG_NEW_FLOATS | TETHER_DFLAG_UTF8_ATOMS |                       \
     TETHER_DFLAG_MAP_TAG | TETHER_DFLAG_BIG_CREATION |                        \
     TETHER_DFLAG_HANDSHAKE_23)

/*
 * The flags tether advertises in its handshake (hidden node). Add
 * TETHER_DFLAG_PUBLISHED for a visible node. The atom cache flags
 * (ATOM_CACHE, HIDDEN_ATOM_CACHE, DIST_HDR_ATOM_CACHE) are deliberately
 * absent: tether keeps no atom cache, so no atom cache references arrive.
 *
 * Note: advertising FRAGMENTS switches erts to the distribution-header
 * framing ('D'/'E'/'F', terms without the 131 version byte) for the whole
 * connection, in both directions; see dist/frame.h.
 */
#define TETHER_DIST_FLAGS_ADVERTISED                                           \
    (TETHER_DIST_FLAGS_MANDATORY | TETHER_DFLAG_MANDATORY_25_DIGEST |          \
     TETHER_DFLAG_V4_NC | TETHER_DFLAG_UNLINK_ID | TETHER_DFLAG_DIST_MONITOR | \
     TETHER_DFLAG_DIST_MONITOR_NAME | TETHER_DFLAG_SPAWN |                     \
     TETHER_DFLAG_ALIAS | TETHER_DFLAG_FRAGMENTS | TETHER_DFLAG_SEND_SENDER |  \
     TETHER_DFLAG_EXIT_PAYLOAD | TETHER_DFLAG_BIG_SEQTRACE_LABELS |            \
     TETHER_DFLAG_SMALL_ATOM_TAGS)

/*
 * Returns flags with the flags implied by TETHER_DFLAG_MANDATORY_25_DIGEST
 * added when that flag is set, as dist_util:expand_mandatory_25_flag/1
 * does; otherwise returns flags unchanged.
 */
static inline uint64_t tether__dflags_expand(uint64_t flags)
{
    if (flags & TETHER_DFLAG_MANDATORY_25_DIGEST)
        return flags | TETHER_DIST_FLAGS_MANDATORY;
    return flags;
}

/*
 * Returns the mandatory flags missing from a peer's (expanded) flags; 0
 * when the peer has them all.
 */
static inline uint64_t tether__dflags_missing(uint64_t peer_flags)
{
    return TETHER_DIST_FLAGS_MANDATORY & ~tether__dflags_expand(peer_flags);
}

#endif /* TETHER_DIST_FLAGS_H */
