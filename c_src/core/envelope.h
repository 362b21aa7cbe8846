/*
 * core/envelope.h: authenticated sessions between two named nodes.
 *
 * A session is set up by a pair of signed hellos and then carries sealed
 * envelopes: header + payload + MAC under a per-direction key, with a
 * sequence number checked against a sliding replay window. Sans-IO and
 * deterministic: nonces and key seeds come from the caller as bytes.
 *
 * Wire formats (all integers big-endian; every message starts with the
 * version byte so one byte tells a tether message from anything else):
 *
 *   hello (TETHER_ENV_TYPE_HELLO), 4 + from_len + to_len + 8 + 32 + 32 + 64
 *     0       u8   version  TETHER_ENVELOPE_VERSION
 *     1       u8   type     TETHER_ENV_TYPE_HELLO
 *     2       u8   from_len (1..255)   sender's node name length
 *     3       u8   to_len   (1..255)   addressee's node name length
 *     4       from_len bytes           sender's node name (no NUL)
 *     ..      to_len bytes             addressee's node name (no NUL)
 *     ..      u64  incarnation         sender's incarnation
 *     ..      32   nonce               from the caller: a u64 hello counter
 *                                      (increasing within the sender's
 *                                      incarnation) then 24 random bytes
 *     ..      32   kx_pk               sender's ephemeral X25519 public key
 *     ..      64   sig                 Ed25519 by the sender's identity key
 *                                      over TETHER_ENV_LABEL_HELLO || 0x00
 *                                      || every byte before sig
 *
 *   restart notice (TETHER_ENV_TYPE_RESTART): a hello's layout and size,
 *     type byte 0x02, nonce and kx_pk all zero, signed over
 *     TETHER_ENV_LABEL_RESTART || 0x00 || every byte before sig. It says
 *     "I am this incarnation of `from`" to `to`, outside any session; it
 *     never changes a session, only tells the engine that a peer it holds
 *     state of may have restarted (see tether__session_check_restart).
 *
 *   sealed envelope (type TETHER_ENV_TYPE_USER_MIN..255, chosen by caller)
 *     0       u8   version  TETHER_ENVELOPE_VERSION
 *     1       u8   type
 *     2       u64  seq      1, 2, 3, ... per session and direction
 *     10      n    payload
 *     10+n    32   mac      crypto_auth (HMAC-SHA-512-256) over bytes
 *                           0..10+n under the sending direction's key
 *
 * Session keys: the node whose name sorts first (bytewise, shorter prefix
 * first) is the crypto_kx client, the other the server. The session id is
 * BLAKE2b-256(TETHER_ENV_LABEL_SID || 0x00 || H(client hello) ||
 * H(server hello)), H = BLAKE2b-256 of the whole signed hello, so it binds
 * both names, incarnations, nonces and kx keys. Each direction's MAC key is
 * BLAKE2b-256(key = crypto_kx key of that direction, TETHER_ENV_LABEL_KEY
 * || 0x00 || session id).
 *
 * Why replaying an old hello yields nothing usable: the session keys come
 * from an X25519 exchange between the two ephemeral kx keys of *this*
 * handshake. The secret halves of those keys exist only inside the two
 * sessions (from caller-given seeds) and are wiped as soon as the keys are
 * derived. A replayed hello carries a peer kx public key whose secret no
 * one holds any more (the peer wiped it), and the replayer does not hold
 * ours, so the keys we derive from it are unknown to everybody: no
 * envelope the replayer sends will pass the MAC, and nothing we seal can
 * be opened by it. The identity signature only proves who made the hello,
 * not that it is fresh. Replays of the current peer hello and hellos of an
 * older peer incarnation are also rejected outright (replayed / too_old),
 * so they cannot even reset an established session. Within one incarnation
 * a hello must also carry a higher counter (the nonce's first 8 bytes)
 * than the last one accepted, so no hello captured earlier can force a
 * re-handshake either (too_old): only the peer can make a fresher one.
 *
 * Session state machine (one tether_session_t per peer):
 *
 *   IDLE         after init; nothing sent or received.
 *   HELLO_SENT   tether__session_hello() built our hello and holds our
 *                ephemeral kx secret; waiting for the peer's hello.
 *   PEER_HELLO   a valid peer hello was accepted while we had no hello
 *                outstanding; tether__session_wants_hello() is true and the
 *                caller must now build and send ours.
 *   ESTABLISHED  keys derived, kx secrets wiped; seal/open work.
 *
 *   hello():   IDLE, HELLO_SENT, ESTABLISHED -> HELLO_SENT (fresh keys;
 *              an old session's keys are wiped, so its envelopes fail)
 *              PEER_HELLO -> ESTABLISHED
 *   accept():  HELLO_SENT -> ESTABLISHED
 *              IDLE, PEER_HELLO, ESTABLISHED -> PEER_HELLO (the old keys
 *              are wiped: a new hello from the peer replaces the session)
 *              a rejected hello changes nothing (only counters)
 *   reset():   any -> IDLE (keys wiped; the replay memory of peer hellos
 *              is kept)
 *
 * Rejected input is counted (per session and, if given, in a node-wide
 * stats struct) and never decoded further.
 */
#ifndef TETHER_CORE_ENVELOPE_H
#define TETHER_CORE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "core/keys.h"
#include "tether/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TETHER_ENVELOPE_VERSION 0xE1 /* first byte of every message */

/* Message types (byte 1). 0x00 and 0x03..0x0f are reserved. */
#define TETHER_ENV_TYPE_HELLO    0x01
#define TETHER_ENV_TYPE_RESTART  0x02
#define TETHER_ENV_TYPE_USER_MIN 0x10 /* first type seal() accepts */

#define TETHER_ENV_NONCE_BYTES   32 /* hello nonce */
#define TETHER_ENV_KX_SEED_BYTES 32 /* crypto_kx_SEEDBYTES */
#define TETHER_ENV_KX_PK_BYTES   32 /* crypto_kx_PUBLICKEYBYTES */
#define TETHER_ENV_KEY_BYTES     32 /* crypto_auth_KEYBYTES */
#define TETHER_ENV_MAC_BYTES     32 /* crypto_auth_BYTES */
#define TETHER_ENV_SID_BYTES     32 /* session id */
#define TETHER_ENV_HEADER_BYTES  10 /* version, type, u64 seq */
#define TETHER_ENV_OVERHEAD      (TETHER_ENV_HEADER_BYTES + TETHER_ENV_MAC_BYTES)

/* Fixed part of a hello (everything but the two names). */
#define TETHER_HELLO_FIXED_BYTES                                               \
    (4 + 8 + TETHER_ENV_NONCE_BYTES + TETHER_ENV_KX_PK_BYTES + TETHER_SIG_BYTES)
/* Largest hello (two 255-byte names): size a send buffer with this. */
#define TETHER_HELLO_MAX_BYTES                                                 \
    (TETHER_HELLO_FIXED_BYTES + 2 * TETHER_NODE_NAME_MAX)

/* Default cap on a sealed payload (tether__session_set_max_payload). */
#define TETHER_ENV_MAX_PAYLOAD (64u << 20)

/* Replay window: sequence numbers up to this far below the highest one
 * seen are still accepted once each (reordering); older ones are too_old. */
#define TETHER_ENV_REPLAY_WINDOW 1024

/* Domain-separation labels (see the wire format above). */
#define TETHER_ENV_LABEL_HELLO   "tether/v1/hello"
#define TETHER_ENV_LABEL_RESTART "tether/v1/restart"
#define TETHER_ENV_LABEL_SID     "tether/v1/session-id"
#define TETHER_ENV_LABEL_KEY     "tether/v1/envelope-mac-key"

/*
 * Counters of what happened to incoming (and sealed) messages. Each
 * session has one, and every session of a node may also add into one
 * node-wide struct given at init. Only the counting code writes them.
 */
typedef struct tether_envelope_stats {
    uint64_t ok;             /* envelopes opened */
    uint64_t hello_ok;       /* hellos accepted */
    uint64_t restart_ok;     /* restart notices verified */
    uint64_t sealed;         /* envelopes sealed */
    uint64_t truncated;      /* shorter than its own structure says */
    uint64_t oversized;      /* longer than the cap or than its structure */
    uint64_t bad_version;    /* first byte not TETHER_ENVELOPE_VERSION */
    uint64_t malformed;      /* wrong type, bad name lengths, NUL in name */
    uint64_t tampered;       /* MAC did not verify (includes old sessions) */
    uint64_t replayed;       /* sequence number or hello seen before */
    uint64_t too_old;        /* below the replay window / older incarnation */
    uint64_t unknown_signer; /* hello from a name the trust set lacks */
    uint64_t bad_signature;  /* hello signature did not verify */
    uint64_t misaddressed;   /* hello not to us, or not from our peer */
    uint64_t no_session;     /* envelope arrived with no established keys */
} tether_envelope_stats_t;

enum tether_session_state {
    TETHER_SESSION_IDLE = 0,
    TETHER_SESSION_HELLO_SENT,
    TETHER_SESSION_PEER_HELLO,
    TETHER_SESSION_ESTABLISHED,
};

/*
 * One session with one peer. Caller-owned (stack or embedded), set up by
 * tether__session_init(), torn down (wiped) by tether__session_fini().
 * Fields are private to envelope.c; read them through the accessors. The
 * identity and trust set are borrowed and must outlive the session.
 */
typedef struct tether_session {
    const tether_identity_t *self;       /* borrowed */
    tether_trust_t *trust;               /* borrowed; lookups cache into it */
    tether_envelope_stats_t *node_stats; /* borrowed, may be NULL */
    tether_envelope_stats_t stats;
    char peer[TETHER_NODE_NAME_MAX + 1];
    size_t peer_len;
    int state;     /* enum tether_session_state */
    int is_client; /* 1 if our name sorts first */
    size_t max_payload;

    /* Our outstanding hello (HELLO_SENT). */
    uint64_t local_incarnation;
    uint8_t kx_pk[TETHER_ENV_KX_PK_BYTES];
    uint8_t kx_sk[32]; /* ephemeral secret, wiped once keys are derived */
    uint8_t local_hello_hash[32];

    /* The peer's accepted hello (PEER_HELLO, ESTABLISHED). */
    int have_peer_hello; /* ever accepted one (replay memory) */
    uint64_t peer_incarnation;
    uint8_t peer_nonce[TETHER_ENV_NONCE_BYTES];
    uint8_t peer_kx_pk[TETHER_ENV_KX_PK_BYTES];
    uint8_t peer_hello_hash[32];

    /* ESTABLISHED. */
    uint8_t sid[TETHER_ENV_SID_BYTES];
    uint8_t tx_key[TETHER_ENV_KEY_BYTES];
    uint8_t rx_key[TETHER_ENV_KEY_BYTES];
    /* HMAC states with each key already absorbed: copying one per message
     * skips the two key-block compressions crypto_auth() would redo, a
     * third of the cost of a small envelope. Same tags as crypto_auth(). */
    crypto_auth_hmacsha512256_state tx_mac;
    crypto_auth_hmacsha512256_state rx_mac;
    uint64_t tx_seq; /* last sequence number sent (0: none yet) */
    uint64_t rx_top; /* highest sequence number accepted (0: none) */
    uint64_t rx_bitmap[TETHER_ENV_REPLAY_WINDOW / 64]; /* by seq % window */
} tether_session_t;

/*
 * Sets up an IDLE session of identity `self` with the node `peer`
 * (NUL-terminated, 1..255 bytes, not our own name), trusting `trust`.
 * `node_stats` (may be NULL) receives every count this session makes, in
 * addition to its own. Calls tether__crypto_init(). Returns 0,
 * TETHER_EINVAL or TETHER_EIO.
 */
TETHER_MUST_CHECK int tether__session_init(tether_session_t *s,
                                           const tether_identity_t *self,
                                           tether_trust_t *trust,
                                           const char *peer,
                                           tether_envelope_stats_t *node_stats);

/* Wipes every key and the whole struct. NULL is a no-op. */
void tether__session_fini(tether_session_t *s);

/*
 * Back to IDLE: keys and ephemeral secrets wiped, counters kept, and the
 * memory of the last peer hello kept so it cannot be replayed. For
 * peer_down; a later hello starts a new session.
 */
void tether__session_reset(tether_session_t *s);

/*
 * Builds our signed hello to the peer into out (out_cap bytes, at least
 * tether__session_hello_size(); TETHER_HELLO_MAX_BYTES always suffices)
 * and stores its length in *out_len. `incarnation` is ours; `nonce` (32
 * fresh random bytes) and `kx_seed` (32 fresh random bytes, seeding
 * crypto_kx_seed_keypair) come from the caller, who wipes kx_seed after.
 * Any previous keys are wiped. If a peer hello is waiting (PEER_HELLO) the
 * session is ESTABLISHED on return, else HELLO_SENT. Returns 0,
 * TETHER_EINVAL, TETHER_ETOOBIG (out too small; state unchanged).
 */
TETHER_MUST_CHECK int
tether__session_hello(tether_session_t *s, uint64_t incarnation,
                      const uint8_t nonce[TETHER_ENV_NONCE_BYTES],
                      const uint8_t kx_seed[TETHER_ENV_KX_SEED_BYTES],
                      uint8_t *out, size_t out_cap, size_t *out_len);

/* Size of our hello to this session's peer, in bytes. */
size_t tether__session_hello_size(const tether_session_t *s);

/*
 * Takes a hello received from the peer (untrusted bytes). In order, it
 * checks: length and structure (truncated / oversized / bad_version /
 * malformed), the claimed sender is in the trust set (unknown_signer ->
 * TETHER_ENOTFOUND), the signature (bad_signature -> TETHER_EAUTH), the
 * sender is our peer and the addressee is us (misaddressed ->
 * TETHER_EPROTO), and that it is neither the hello already accepted
 * (replayed -> TETHER_EREPLAY) nor from an older peer incarnation or, in
 * the same incarnation, with a hello counter not above the last (too_old
 * -> TETHER_EREPLAY), and that its kx key is not a low-order point
 * (malformed -> TETHER_EPROTO). A rejected hello changes nothing but
 * counters.
 * An accepted one replaces any current session (its keys are wiped): with
 * our hello outstanding the session is then ESTABLISHED; otherwise it is
 * PEER_HELLO and the caller must call tether__session_hello() and send the
 * result (see tether__session_wants_hello). Returns 0 or the codes above
 * (TETHER_ETOOBIG oversized, TETHER_EAGAIN truncated, TETHER_EPROTO
 * malformed/bad version, TETHER_EINVAL NULL argument).
 */
TETHER_MUST_CHECK int tether__session_accept(tether_session_t *s,
                                             const uint8_t *in, size_t len);

/* 1 if the session is PEER_HELLO: our hello must be built and sent. */
int tether__session_wants_hello(const tether_session_t *s);

/* 1 if ESTABLISHED (seal and open work). */
int tether__session_established(const tether_session_t *s);

/* The enum tether_session_state value. */
int tether__session_state(const tether_session_t *s);

/*
 * Sets the largest payload seal() makes and open() accepts (default
 * TETHER_ENV_MAX_PAYLOAD; must be 1..TETHER_ENV_MAX_PAYLOAD).
 * Returns 0 or TETHER_EINVAL.
 */
TETHER_MUST_CHECK int tether__session_set_max_payload(tether_session_t *s,
                                                      size_t max_payload);

/* Size of the envelope sealing `payload_len` bytes (+ TETHER_ENV_OVERHEAD). */
size_t tether__envelope_sealed_size(size_t payload_len);

/*
 * Seals `payload` (len bytes, may be NULL when 0) as message `type`
 * (TETHER_ENV_TYPE_USER_MIN..255) with the next sequence number, into out
 * (out_cap >= len + TETHER_ENV_OVERHEAD); *out_len gets the envelope size.
 * The payload may already sit at out + TETHER_ENV_HEADER_BYTES (sealing in
 * place, no copy); any other overlap is also handled (memmove). Returns 0,
 * TETHER_ECLOSED (not ESTABLISHED, or sequence numbers exhausted),
 * TETHER_ETOOBIG (payload over the cap or out too small), TETHER_EINVAL.
 */
TETHER_MUST_CHECK int tether__session_seal(tether_session_t *s, uint8_t type,
                                           const uint8_t *payload, size_t len,
                                           uint8_t *out, size_t out_cap,
                                           size_t *out_len);

/*
 * An envelope sealed a part at a time, so that the cost of sealing a large
 * payload (a MAC over every byte, and a copy) can be spread over several
 * calls (the engine's flush of held sends does so; see engine.c). Begin
 * takes the sequence number and writes the header; each update copies the
 * next payload bytes after it and absorbs them into the MAC; end writes
 * the MAC. The sealer is independent of the session once begun: if the
 * session is reset meanwhile, the envelope is simply abandoned (its peer
 * would refuse it).
 */
typedef struct tether_sealer {
    crypto_auth_hmacsha512256_state st; /* the MAC so far */
    uint8_t *out;                       /* the envelope; borrowed */
    size_t len;                         /* payload bytes it will hold */
    size_t done;                        /* payload bytes absorbed so far */
} tether_sealer_t;

/*
 * Starts sealing a `len`-byte payload as message `type` into out
 * (out_cap >= len + TETHER_ENV_OVERHEAD): takes the next sequence number
 * and writes the header. Returns 0 or what tether__session_seal would
 * (TETHER_ECLOSED, TETHER_ETOOBIG, TETHER_EINVAL), with k untouched then.
 */
TETHER_MUST_CHECK int tether__session_seal_begin(tether_session_t *s,
                                                 uint8_t type, size_t len,
                                                 uint8_t *out, size_t out_cap,
                                                 tether_sealer_t *k);

/* Copies the next n payload bytes (at most len - done; n is cut to that)
 * after the header and absorbs them. `chunk` may already sit in place.
 * Returns the bytes taken. */
size_t tether__sealer_update(tether_sealer_t *k, const uint8_t *chunk,
                             size_t n);

/* Once every payload byte went in (done == len): writes the MAC and
 * returns the envelope's size; the sealer is wiped. */
size_t tether__sealer_end(tether_sealer_t *k);

/* Wipes a sealer whose envelope is abandoned. */
void tether__sealer_abort(tether_sealer_t *k);

/*
 * An envelope opened in three steps, so that the MAC over a large payload
 * can be computed while nothing guards the session (the NIF verifies a
 * large envelope without the engine lock; see tether_engine_recv_begin).
 * Begin copies what verification needs out of the session: the keyed MAC
 * state, the cap and the session id. Verify checks the structure and the
 * MAC against that copy and touches no session. End, back on the session,
 * refuses the envelope if the session is no longer the one begun on, then
 * counts the verdict and checks the replay window as open() does.
 * tether__session_open() is the three steps at once.
 */
typedef struct tether_opener {
    crypto_auth_hmacsha512256_state rx_mac; /* the session's keyed state */
    uint8_t sid[TETHER_ENV_SID_BYTES];      /* the session begun on */
    size_t max_payload;                     /* the session's cap */
    int established;                        /* 0: begun on no session */
    int fault;                              /* verify's verdict, 0: none */
    int mac_checked; /* verify computed the MAC: end refuses without it */
} tether_opener_t;

/* Copies what verifying an envelope needs out of s into o (any state:
 * a session that is not ESTABLISHED is refused by end). */
void tether__session_open_begin(const tether_session_t *s, tether_opener_t *o);

/* Checks an envelope's length, version, type and MAC against o (untrusted
 * bytes; no session is touched), keeping the verdict in o for end.
 * Returns 0 if it verified, else the code open() would return. */
int tether__opener_verify(tether_opener_t *o, const uint8_t *in, size_t len);

/*
 * Finishes opening `in` (len bytes) on s after tether__opener_verify(o):
 * refuses it if s is not ESTABLISHED (no_session -> TETHER_ECLOSED) or is
 * no longer the session o was begun on (tampered -> TETHER_EAUTH, as an
 * envelope of an old session is), counts verify's verdict (an opener that
 * never went through verify counts as tampered), then checks and
 * updates the replay window; outputs as open(). o is wiped.
 */
TETHER_MUST_CHECK int
tether__session_open_end(tether_session_t *s, tether_opener_t *o,
                         const uint8_t *in, size_t len, uint8_t *type_out,
                         const uint8_t **payload, size_t *payload_len);

/*
 * Opens an envelope received from the peer (untrusted bytes). Checks, in
 * order: a session is ESTABLISHED (no_session -> TETHER_ECLOSED); the
 * length (truncated -> TETHER_EAGAIN, over the cap -> oversized,
 * TETHER_ETOOBIG); the version byte (bad_version -> TETHER_EPROTO); the type
 * is a sealed type (malformed -> TETHER_EPROTO); the MAC, in constant time
 * (tampered -> TETHER_EAUTH); the sequence number against the replay window
 * (replayed / too_old -> TETHER_EREPLAY). Only then is the window updated
 * and the payload returned: *type_out (may be NULL) gets the type,
 * *payload and *payload_len a slice of `in` (no copy; valid while `in` is).
 * On error *payload is NULL and *payload_len 0.
 */
TETHER_MUST_CHECK int tether__session_open(tether_session_t *s,
                                           const uint8_t *in, size_t len,
                                           uint8_t *type_out,
                                           const uint8_t **payload,
                                           size_t *payload_len);

/* The session id (32 bytes) when ESTABLISHED; else TETHER_ECLOSED. */
TETHER_MUST_CHECK int tether__session_id(const tether_session_t *s,
                                         uint8_t sid[TETHER_ENV_SID_BYTES]);

/* The peer's incarnation from its accepted hello (0 before any). */
uint64_t tether__session_peer_incarnation(const tether_session_t *s);

/* This session's own counters (read-only view). */
const tether_envelope_stats_t *tether__session_stats(const tether_session_t *s);

/*
 * Builds our signed restart notice to the peer (see the wire format) into
 * out (out_cap >= tether__session_hello_size(); TETHER_HELLO_MAX_BYTES
 * always suffices), saying we run as `incarnation`. The session does not
 * change. Returns 0, TETHER_EINVAL or TETHER_ETOOBIG.
 */
TETHER_MUST_CHECK int
tether__session_restart_notice(const tether_session_t *s, uint64_t incarnation,
                               uint8_t *out, size_t out_cap, size_t *out_len);

/*
 * Verifies a restart notice received from the peer (untrusted bytes) as
 * accept() verifies a hello: structure, trusted signer, signature, from
 * our peer and to us (same counters and codes). On 0, *incarnation is the
 * incarnation the peer says it runs as; whether that is news is the
 * caller's to judge (a notice is replayable: only an incarnation newer
 * than the one held means anything). The session never changes.
 */
TETHER_MUST_CHECK int tether__session_check_restart(tether_session_t *s,
                                                    const uint8_t *in,
                                                    size_t len,
                                                    uint64_t *incarnation);

/*
 * Classifies received bytes without authenticating anything, so the engine
 * can route them: returns TETHER_ENV_TYPE_HELLO for a hello,
 * TETHER_ENV_TYPE_RESTART for a restart notice, the type byte
 * (>= TETHER_ENV_TYPE_USER_MIN) for a sealed envelope, TETHER_EAGAIN if
 * shorter than two bytes, TETHER_EPROTO for a bad version or reserved type.
 * The result is a hint only: accept/open do the real checks.
 */
int tether__envelope_kind(const uint8_t *in, size_t len);

/*
 * Reads the sender and addressee names of a hello without verifying it
 * (for routing a hello to the right session before accept). Writes
 * NUL-terminated copies to from/to (each TETHER_NODE_NAME_MAX + 1 bytes;
 * either may be NULL). Returns 0 or the structural error accept() would
 * give (TETHER_EAGAIN, TETHER_ETOOBIG, TETHER_EPROTO). Counts nothing.
 */
TETHER_MUST_CHECK int tether__hello_peek_names(const uint8_t *in, size_t len,
                                               char *from, char *to);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_CORE_ENVELOPE_H */
