/*
 * dist/handshake.h: the Erlang distribution handshake as a sans-IO state
 * machine, in both roles (ground truth: OTP 25 kernel/src/dist_util.erl).
 *
 * The caller owns the socket. It feeds received bytes with
 * tether__hs_input(), sends whatever tether__hs_output() holds (then
 * tether__hs_consume_output()), and stops when tether__hs_done() or
 * tether__hs_failed() says so. The machine never reads a clock or a random
 * source: the caller passes our 32-bit challenge in.
 *
 * Handshake messages carry a 2-byte big-endian length. The machine only
 * consumes whole messages and never consumes a byte past the last
 * handshake message, so bytes left over after tether__hs_done() are the
 * first 4-byte-length distribution frames (see dist/frame.h).
 *
 * Wire formats (after the 2-byte length):
 *   send_name v6   'N' Flags(8) Creation(4) NLen(2) Name
 *   send_name v5   'n' Version(2)=5 Flags(4) Name
 *   status         's' Text  (ok, ok_simultaneous, nok, not_allowed, alive,
 *                             named:...; after alive: true / false)
 *   challenge v6   'N' Flags(8) Challenge(4) Creation(4) NLen(2) Name
 *   challenge v5   'n' Version(2)=5 Flags(4) Challenge(4) Name
 *   complement     'c' FlagsHigh(4) Creation(4)
 *   challenge_reply 'r' Challenge(4) Digest(16)
 *   challenge_ack  'a' Digest(16)
 * Digest = MD5(Cookie ++ integer_to_list(Challenge)): the challenge as
 * unsigned decimal text appended to the cookie (dist_util:gen_digest/2).
 *
 * Initiator (we connected):
 *   SEND_NAME (written by init) -> WAIT_STATUS
 *   WAIT_STATUS: "ok"/"ok_simultaneous" -> WAIT_CHALLENGE;
 *                "alive" -> write "strue" -> WAIT_CHALLENGE (we only dial
 *                a node we have no connection to);
 *                "nok" -> fail TETHER_EEXIST; "not_allowed" -> fail
 *                TETHER_EAUTH; "named:..." or other -> fail TETHER_EPROTO
 *   WAIT_CHALLENGE: 'N' (or old 'n') -> check mandatory flags -> write
 *                'c' when we opened with 'n' and the peer has HANDSHAKE_23
 *                -> write 'r' -> WAIT_ACK
 *   WAIT_ACK: 'a' with the right digest -> DONE, else fail TETHER_EAUTH
 * Acceptor (the peer connected):
 *   WAIT_NAME: 'N' (v6) or 'n' (v5) -> check mandatory flags (missing ->
 *                write "snot_allowed", fail TETHER_EPROTO) -> status
 *                decision (callback, default ok): ok/ok_simultaneous ->
 *                write status + 'N' challenge -> WAIT_COMPLEMENT (v5 opener
 *                with HANDSHAKE_23) or WAIT_REPLY; alive -> write "salive"
 *                -> WAIT_ALIVE_REPLY; nok / not_allowed -> write it, fail
 *                TETHER_EEXIST / TETHER_EAUTH
 *   WAIT_ALIVE_REPLY: "strue" -> write challenge -> as above; "sfalse" ->
 *                fail TETHER_EEXIST
 *   WAIT_COMPLEMENT: 'c' -> merge high flags and creation -> WAIT_REPLY
 *   WAIT_REPLY: 'r' with the right digest -> write 'a' -> DONE; wrong
 *                digest -> fail TETHER_EAUTH (peer name is known: log
 *                "peer X: wrong cookie")
 * Any unexpected tag, wrong size or oversized message fails TETHER_EPROTO.
 * After a failure, output may still hold a status message worth sending
 * before closing.
 */
#ifndef TETHER_DIST_HANDSHAKE_H
#define TETHER_DIST_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "tether/error.h"

#define TETHER_HS_NAME_MAX   1020 /* longest node name, bytes (255 UTF-8) */
#define TETHER_HS_COOKIE_MAX 1020 /* longest cookie, bytes */
#define TETHER_HS_MSG_MAX    2048 /* longest handshake message we accept */
#define TETHER_HS_OUT_MAX    4096 /* output buffer capacity */
#define TETHER_HS_DIGEST_LEN 16
#define TETHER_HS_LEN_BYTES  2 /* handshake messages: 2-byte length */
#define TETHER_HS_LEN4_BYTES 4 /* ... 4-byte under TLS (inet_tls_dist) */
#define TETHER_HS_REASON_MAX 128

typedef enum {
    TETHER_HS_INITIATOR = 1, /* we connected to the peer */
    TETHER_HS_ACCEPTOR = 2,  /* the peer connected to us */
} tether_hs_role_t;

/* The acceptor's answer to a peer's name message. */
typedef enum {
    TETHER_HS_STATUS_OK = 0,
    TETHER_HS_STATUS_OK_SIMULTANEOUS,
    TETHER_HS_STATUS_NOK,
    TETHER_HS_STATUS_NOT_ALLOWED,
    TETHER_HS_STATUS_ALIVE,
} tether_hs_status_t;

/*
 * Called by an acceptor once the peer's name message has arrived and its
 * flags passed the mandatory check, to decide the status to answer
 * (simultaneous connects, an existing connection, an allow list). Runs
 * synchronously inside tether__hs_input(); must not free the machine.
 */
typedef tether_hs_status_t (*tether_hs_status_fn)(void *ctx,
                                                  const char *peer_name,
                                                  uint64_t peer_flags,
                                                  uint32_t peer_creation);

/*
 * One handshake. The fields are private (the struct is visible only so
 * it can be embedded without an allocation); use the functions below.
 */
typedef struct tether_hs {
    int role;
    int state;
    int error;
    int opener_version; /* version of the name message (5 or 6) */
    int v5_opener;      /* initiator: open with the old 'n' message */
    int len4;           /* 4-byte message lengths (tether__hs_set_len4) */
    uint64_t our_flags;
    uint32_t our_creation;
    uint32_t our_challenge;
    uint64_t peer_flags; /* as received (merged with the complement) */
    uint32_t peer_creation;
    uint32_t peer_challenge;
    tether_hs_status_fn status_fn;
    void *status_ctx;
    size_t our_name_len;
    size_t cookie_len;
    size_t peer_name_len;
    size_t out_len;
    size_t out_sent;
    char our_name[TETHER_HS_NAME_MAX + 1];
    char cookie[TETHER_HS_COOKIE_MAX + 1];
    char peer_name[TETHER_HS_NAME_MAX + 1];
    char reason[TETHER_HS_REASON_MAX];
    uint8_t out[TETHER_HS_OUT_MAX];
} tether_hs_t;

/*
 * Prepares hs for one handshake in the given role. our_node is our full
 * node name ("name@host"), cookie the shared secret (both NUL-terminated,
 * copied), our_flags the flags we advertise (normally
 * TETHER_DIST_FLAGS_ADVERTISED, plus TETHER_DFLAG_PUBLISHED for a visible
 * node), our_creation our creation from epmd, challenge a random 32-bit
 * value from the caller. An initiator's send_name ('N', version 6) is
 * written to the output right away. Returns 0 or TETHER_EINVAL (NULL
 * argument, bad role, empty or overlong name or cookie, name without '@').
 */
int tether__hs_init(tether_hs_t *hs, tether_hs_role_t role,
                    const char *our_node, const char *cookie,
                    uint64_t our_flags, uint32_t our_creation,
                    uint32_t challenge);

/*
 * Initiator only, before any input and before any output was consumed:
 * replaces the version-6 send_name with the old version-5 'n' opener (for
 * a peer whose epmd entry says highest version 5). A peer with
 * HANDSHAKE_23 then gets a complement 'c' before our challenge reply.
 * Returns 0 or TETHER_EINVAL.
 */
int tether__hs_set_v5_opener(tether_hs_t *hs);

/*
 * Before any input and before any output was consumed: frames handshake
 * messages with a 4-byte length instead of 2, both ways, as OTP's TLS
 * distribution does (inet_tls_dist runs dist_util's handshake on a
 * {packet, 4} socket); what was already written is re-framed. Returns 0
 * or TETHER_EINVAL.
 */
int tether__hs_set_len4(tether_hs_t *hs);

/*
 * Acceptor only: sets the status decision callback (NULL restores the
 * default, which always answers ok).
 */
void tether__hs_set_status_fn(tether_hs_t *hs, tether_hs_status_fn fn,
                              void *ctx);

/*
 * Feeds received bytes buf[0..len). Consumes complete handshake messages
 * only, stops at the first incomplete one (its bytes are not consumed:
 * call again with them and more), and never consumes past the final
 * message. *consumed receives the number of bytes used (possibly 0).
 * Returns 0 (check done/failed and the output), or the negative error the
 * machine failed with (also returned by tether__hs_failed()); calling it
 * after done or failure consumes nothing and returns the same result.
 */
TETHER_MUST_CHECK int tether__hs_input(tether_hs_t *hs, const uint8_t *buf,
                                       size_t len, size_t *consumed);

/*
 * Returns the bytes waiting to be sent (not yet consumed) and stores their
 * count in *len; the pointer stays valid until the next call on hs.
 */
const uint8_t *tether__hs_output(const tether_hs_t *hs, size_t *len);

/* Marks the first n pending output bytes as sent (n is clamped). */
void tether__hs_consume_output(tether_hs_t *hs, size_t n);

/* Returns 1 once the handshake has completed successfully, else 0. */
int tether__hs_done(const tether_hs_t *hs);

/* Returns the negative TETHER_E* code the handshake failed with, or 0. */
int tether__hs_failed(const tether_hs_t *hs);

/*
 * Returns a short, NUL-terminated sentence about the failure ("wrong
 * cookie", "peer lacks mandatory flags 0x...", ...), "" when none.
 */
const char *tether__hs_reason(const tether_hs_t *hs);

/*
 * Returns the peer's full node name as it introduced itself (acceptor:
 * from its name message; initiator: from its challenge), "" before it is
 * known. Stays valid for the lifetime of hs.
 */
const char *tether__hs_peer_name(const tether_hs_t *hs);

/* Returns the peer's flags as received (expanded, see flags.h). */
uint64_t tether__hs_peer_flags(const tether_hs_t *hs);

/*
 * Returns the flags in effect on the connection: ours AND the peer's
 * (expanded), as dist_util:adjust_flags/2 computes them. Pass these to
 * the frame and control encoders.
 */
uint64_t tether__hs_flags(const tether_hs_t *hs);

/* Returns the peer's creation (0 until known). */
uint32_t tether__hs_peer_creation(const tether_hs_t *hs);

/* Returns the version of the name message (6, or 5 for the 'n' opener). */
int tether__hs_opener_version(const tether_hs_t *hs);

/*
 * 1 when the initiator has sent its challenge reply and waits for the
 * peer's acknowledgement: a peer that closes the connection now (as OTP
 * does) found our digest wrong, which almost always means the cookies
 * differ. 0 otherwise.
 */
int tether__hs_awaiting_ack(const tether_hs_t *hs);

/* Wipes the cookie and all state. hs may be reused with init. */
void tether__hs_fini(tether_hs_t *hs);

/*
 * Computes the handshake digest MD5(cookie ++ decimal(challenge)) into
 * out. Returns 0, or TETHER_EIO if libcrypto fails.
 */
int tether__hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge,
                      uint8_t out[TETHER_HS_DIGEST_LEN]);

#endif /* TETHER_DIST_HANDSHAKE_H */
