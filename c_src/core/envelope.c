/*
 * core/envelope.c: signed hellos, per-direction session keys, sealed
 * envelopes with a replay window. Wire formats, key derivation and the
 * session state machine are described in envelope.h.
 */
#include "core/envelope.h"

#include <sodium.h>
#include <string.h>

_Static_assert(TETHER_ENV_KX_SEED_BYTES == crypto_kx_SEEDBYTES, "kx seed");
_Static_assert(TETHER_ENV_KX_PK_BYTES == crypto_kx_PUBLICKEYBYTES, "kx pk");
_Static_assert(crypto_kx_SECRETKEYBYTES == 32, "kx sk");
_Static_assert(crypto_kx_SESSIONKEYBYTES == 32, "kx session key");
_Static_assert(TETHER_ENV_KEY_BYTES == crypto_auth_KEYBYTES, "auth key");
_Static_assert(TETHER_ENV_MAC_BYTES == crypto_auth_BYTES, "auth tag");
_Static_assert(crypto_scalarmult_SCALARBYTES == 32, "x25519 scalar");
_Static_assert(TETHER_ENV_REPLAY_WINDOW % 64 == 0, "window is whole words");
_Static_assert(TETHER_ENV_TYPE_USER_MIN > TETHER_ENV_TYPE_HELLO, "types");

#define HASH_BYTES 32 /* BLAKE2b-256 transcript hashes */

/* Offsets in a sealed envelope. */
#define ENV_OFF_VERSION 0
#define ENV_OFF_TYPE    1
#define ENV_OFF_SEQ     2

/* Offsets in a hello, up to the names. */
#define HELLO_OFF_FROM_LEN 2
#define HELLO_OFF_TO_LEN   3
#define HELLO_OFF_NAMES    4

/* The signed part of a hello is prefixed with the hello label and a NUL
 * (a restart notice with its own, longer, label). */
#define HELLO_LABEL_BYTES (sizeof(TETHER_ENV_LABEL_HELLO))
#define HELLO_TBS_MAX                                                          \
    (sizeof(TETHER_ENV_LABEL_RESTART) + TETHER_HELLO_MAX_BYTES)

/* Adds one to counter `field` of the session and of the node, if any. */
#define COUNT(s, field)                                                        \
    do {                                                                       \
        (s)->stats.field++;                                                    \
        if ((s)->node_stats != NULL)                                           \
            (s)->node_stats->field++;                                          \
    } while (0)

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Bytewise order of two names, the shorter first when one is a prefix. */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Wipes the established session: its id, both MAC keys and their states. */
static void wipe_session_keys(tether_session_t *s)
{
    sodium_memzero(s->sid, sizeof s->sid);
    sodium_memzero(s->tx_key, sizeof s->tx_key);
    sodium_memzero(s->rx_key, sizeof s->rx_key);
    sodium_memzero(&s->tx_mac, sizeof s->tx_mac);
    sodium_memzero(&s->rx_mac, sizeof s->rx_mac);
}

/* Wipes the established keys, the outstanding kx secret and the window. */
static void wipe_keys(tether_session_t *s)
{
    sodium_memzero(s->kx_pk, sizeof s->kx_pk);
    sodium_memzero(s->kx_sk, sizeof s->kx_sk);
    sodium_memzero(s->local_hello_hash, sizeof s->local_hello_hash);
    wipe_session_keys(s);
    s->local_incarnation = 0;
    s->tx_seq = 0;
    s->rx_top = 0;
    memset(s->rx_bitmap, 0, sizeof s->rx_bitmap);
}

int tether__session_init(tether_session_t *s, const tether_identity_t *self,
                         tether_trust_t *trust, const char *peer,
                         tether_envelope_stats_t *node_stats)
{
    if (s == NULL)
        return TETHER_EINVAL;
    memset(s, 0, sizeof *s);
    if (self == NULL || trust == NULL || peer == NULL || self->name_len == 0 ||
        self->name_len > TETHER_NODE_NAME_MAX)
        return TETHER_EINVAL;
    size_t n = tether__node_name_len(peer);
    if (n == 0)
        return TETHER_EINVAL;
    int c = name_cmp(self->name, self->name_len, peer, n);
    if (c == 0)
        return TETHER_EINVAL; /* a node has no session with itself */
    int rc = tether__crypto_init();
    if (rc != 0)
        return rc;

    s->self = self;
    s->trust = trust;
    s->node_stats = node_stats;
    memcpy(s->peer, peer, n);
    s->peer[n] = '\0';
    s->peer_len = n;
    s->is_client = c < 0;
    s->state = TETHER_SESSION_IDLE;
    s->max_payload = TETHER_ENV_MAX_PAYLOAD;
    return 0;
}

void tether__session_fini(tether_session_t *s)
{
    if (s != NULL)
        sodium_memzero(s, sizeof *s);
}

void tether__session_reset(tether_session_t *s)
{
    if (s == NULL)
        return;
    wipe_keys(s);
    sodium_memzero(s->peer_kx_pk, sizeof s->peer_kx_pk);
    sodium_memzero(s->peer_hello_hash, sizeof s->peer_hello_hash);
    s->state = TETHER_SESSION_IDLE;
}

int tether__session_set_max_payload(tether_session_t *s, size_t max_payload)
{
    if (s == NULL || max_payload == 0 || max_payload > TETHER_ENV_MAX_PAYLOAD)
        return TETHER_EINVAL;
    s->max_payload = max_payload;
    return 0;
}

int tether__session_wants_hello(const tether_session_t *s)
{
    return s != NULL && s->state == TETHER_SESSION_PEER_HELLO;
}

int tether__session_established(const tether_session_t *s)
{
    return s != NULL && s->state == TETHER_SESSION_ESTABLISHED;
}

int tether__session_state(const tether_session_t *s)
{
    return s == NULL ? TETHER_SESSION_IDLE : s->state;
}

int tether__session_id(const tether_session_t *s,
                       uint8_t sid[TETHER_ENV_SID_BYTES])
{
    if (s == NULL || sid == NULL)
        return TETHER_EINVAL;
    if (s->state != TETHER_SESSION_ESTABLISHED)
        return TETHER_ECLOSED;
    memcpy(sid, s->sid, TETHER_ENV_SID_BYTES);
    return 0;
}

uint64_t tether__session_peer_incarnation(const tether_session_t *s)
{
    return s == NULL ? 0 : s->peer_incarnation;
}

const tether_envelope_stats_t *tether__session_stats(const tether_session_t *s)
{
    return s == NULL ? NULL : &s->stats;
}

size_t tether__session_hello_size(const tether_session_t *s)
{
    if (s == NULL || s->self == NULL)
        return 0;
    return TETHER_HELLO_FIXED_BYTES + s->self->name_len + s->peer_len;
}

size_t tether__envelope_sealed_size(size_t payload_len)
{
    return payload_len + TETHER_ENV_OVERHEAD;
}

/*
 * Derives the session from our outstanding kx key pair and the peer's
 * accepted hello: session id, then the two MAC keys (see envelope.h). The
 * results go to sid/tx/rx; nothing in the session changes. Returns 0, or
 * TETHER_EPROTO if the peer's kx key is unusable (a low-order point).
 */
static int derive_keys(const tether_session_t *s,
                       uint8_t sid[TETHER_ENV_SID_BYTES],
                       uint8_t tx[TETHER_ENV_KEY_BYTES],
                       uint8_t rx[TETHER_ENV_KEY_BYTES])
{
    uint8_t kx_rx[crypto_kx_SESSIONKEYBYTES];
    uint8_t kx_tx[crypto_kx_SESSIONKEYBYTES];
    uint8_t msg[sizeof(TETHER_ENV_LABEL_KEY) + TETHER_ENV_SID_BYTES];
    const uint8_t *client_hash, *server_hash;
    int rc;

    if (s->is_client) {
        rc = crypto_kx_client_session_keys(kx_rx, kx_tx, s->kx_pk, s->kx_sk,
                                           s->peer_kx_pk);
        client_hash = s->local_hello_hash;
        server_hash = s->peer_hello_hash;
    } else {
        rc = crypto_kx_server_session_keys(kx_rx, kx_tx, s->kx_pk, s->kx_sk,
                                           s->peer_kx_pk);
        client_hash = s->peer_hello_hash;
        server_hash = s->local_hello_hash;
    }
    if (rc != 0) {
        rc = TETHER_EPROTO;
        goto done;
    }

    /* sid = H(label || NUL || H(client hello) || H(server hello)) */
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, TETHER_ENV_SID_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)TETHER_ENV_LABEL_SID,
                              sizeof(TETHER_ENV_LABEL_SID));
    crypto_generichash_update(&st, client_hash, HASH_BYTES);
    crypto_generichash_update(&st, server_hash, HASH_BYTES);
    crypto_generichash_final(&st, sid, TETHER_ENV_SID_BYTES);

    /* key = H_keyed(kx key, label || NUL || sid), one per direction */
    memcpy(msg, TETHER_ENV_LABEL_KEY, sizeof(TETHER_ENV_LABEL_KEY));
    memcpy(msg + sizeof(TETHER_ENV_LABEL_KEY), sid, TETHER_ENV_SID_BYTES);
    crypto_generichash(tx, TETHER_ENV_KEY_BYTES, msg, sizeof msg, kx_tx,
                       sizeof kx_tx);
    crypto_generichash(rx, TETHER_ENV_KEY_BYTES, msg, sizeof msg, kx_rx,
                       sizeof kx_rx);
    rc = 0;

done:
    sodium_memzero(kx_rx, sizeof kx_rx);
    sodium_memzero(kx_tx, sizeof kx_tx);
    return rc;
}

/* Moves the session to ESTABLISHED with freshly derived keys, wiping the
 * ephemeral kx secret. Returns 0 or derive_keys()'s error (then nothing
 * changed). */
static int establish(tether_session_t *s)
{
    uint8_t sid[TETHER_ENV_SID_BYTES];
    uint8_t tx[TETHER_ENV_KEY_BYTES];
    uint8_t rx[TETHER_ENV_KEY_BYTES];

    int rc = derive_keys(s, sid, tx, rx);
    if (rc == 0) {
        uint64_t inc = s->local_incarnation;
        wipe_keys(s);
        s->local_incarnation = inc;
        memcpy(s->sid, sid, sizeof sid);
        memcpy(s->tx_key, tx, sizeof tx);
        memcpy(s->rx_key, rx, sizeof rx);
        crypto_auth_hmacsha512256_init(&s->tx_mac, tx, sizeof tx);
        crypto_auth_hmacsha512256_init(&s->rx_mac, rx, sizeof rx);
        s->state = TETHER_SESSION_ESTABLISHED;
    }
    sodium_memzero(sid, sizeof sid);
    sodium_memzero(tx, sizeof tx);
    sodium_memzero(rx, sizeof rx);
    return rc;
}

/*
 * Writes a signed hello-layout message of `type` (hello or restart notice)
 * from us to the peer into out (size bytes): names, incarnation, nonce and
 * kx key, then the Ed25519 signature over label || NUL || the body.
 */
static void write_signed(const tether_session_t *s, uint8_t type,
                         const char *label, size_t label_len,
                         uint64_t incarnation, const uint8_t *nonce,
                         const uint8_t *kx_pk, uint8_t *out, size_t size)
{
    uint8_t tbs[HELLO_TBS_MAX];
    const tether_identity_t *self = s->self;
    size_t body = size - TETHER_SIG_BYTES;
    uint8_t *p = tbs + label_len; /* the body, after the label */
    size_t off = HELLO_OFF_NAMES;

    memcpy(tbs, label, label_len);
    p[0] = TETHER_ENVELOPE_VERSION;
    p[1] = type;
    p[HELLO_OFF_FROM_LEN] = (uint8_t)self->name_len;
    p[HELLO_OFF_TO_LEN] = (uint8_t)s->peer_len;
    memcpy(p + off, self->name, self->name_len);
    off += self->name_len;
    memcpy(p + off, s->peer, s->peer_len);
    off += s->peer_len;
    put_u64(p + off, incarnation);
    off += 8;
    memcpy(p + off, nonce, TETHER_ENV_NONCE_BYTES);
    off += TETHER_ENV_NONCE_BYTES;
    memcpy(p + off, kx_pk, TETHER_ENV_KX_PK_BYTES);
    memcpy(out, p, body);
    crypto_sign_detached(out + body, NULL, tbs, label_len + body, self->sk);
    sodium_memzero(tbs, sizeof tbs);
}

int tether__session_hello(tether_session_t *s, uint64_t incarnation,
                          const uint8_t nonce[TETHER_ENV_NONCE_BYTES],
                          const uint8_t kx_seed[TETHER_ENV_KX_SEED_BYTES],
                          uint8_t *out, size_t out_cap, size_t *out_len)
{
    uint8_t kx_pk[TETHER_ENV_KX_PK_BYTES];
    uint8_t kx_sk[crypto_kx_SECRETKEYBYTES];
    int rc;

    if (s == NULL || s->self == NULL || nonce == NULL || kx_seed == NULL ||
        out == NULL || out_len == NULL)
        return TETHER_EINVAL;
    size_t size = tether__session_hello_size(s);
    if (out_cap < size)
        return TETHER_ETOOBIG;

    crypto_kx_seed_keypair(kx_pk, kx_sk, kx_seed);
    write_signed(s, TETHER_ENV_TYPE_HELLO, TETHER_ENV_LABEL_HELLO,
                 HELLO_LABEL_BYTES, incarnation, nonce, kx_pk, out, size);

    /* Any earlier session or outstanding hello ends here. */
    wipe_keys(s);
    s->local_incarnation = incarnation;
    memcpy(s->kx_pk, kx_pk, sizeof kx_pk);
    memcpy(s->kx_sk, kx_sk, sizeof kx_sk);
    crypto_generichash(s->local_hello_hash, HASH_BYTES, out, size, NULL, 0);
    *out_len = size;

    if (s->state == TETHER_SESSION_PEER_HELLO) {
        rc = establish(s);
        if (rc != 0) {
            /* Not reachable: accept() checked the peer's kx key. */
            tether__session_reset(s);
            goto done;
        }
    } else {
        s->state = TETHER_SESSION_HELLO_SENT;
    }
    rc = 0;

done:
    sodium_memzero(kx_sk, sizeof kx_sk);
    return rc;
}

/*
 * Parsed view of a hello (pointers into the input). parse_hello() checks
 * only the structure; returns 0 or the TETHER_E* code, and names in *what
 * the counter to bump.
 */
typedef struct hello_view {
    const char *from;
    size_t from_len;
    const char *to;
    size_t to_len;
    uint64_t incarnation;
    const uint8_t *nonce;
    const uint8_t *kx_pk;
    const uint8_t *sig;
    size_t body_len; /* bytes covered by the signature */
} hello_view_t;

enum parse_fault {
    FAULT_NONE = 0,
    FAULT_TRUNCATED,
    FAULT_OVERSIZED,
    FAULT_BAD_VERSION,
    FAULT_MALFORMED,
};

static int parse_hello(const uint8_t *in, size_t len, uint8_t type,
                       hello_view_t *v, enum parse_fault *what)
{
    *what = FAULT_NONE;
    if (in == NULL || len == 0) {
        *what = FAULT_TRUNCATED;
        return TETHER_EAGAIN;
    }
    if (in[0] != TETHER_ENVELOPE_VERSION) {
        *what = FAULT_BAD_VERSION;
        return TETHER_EPROTO;
    }
    if (len > TETHER_HELLO_MAX_BYTES) {
        *what = FAULT_OVERSIZED;
        return TETHER_ETOOBIG;
    }
    if (len < HELLO_OFF_NAMES) {
        *what = FAULT_TRUNCATED;
        return TETHER_EAGAIN;
    }
    if (in[1] != type || in[HELLO_OFF_FROM_LEN] == 0 ||
        in[HELLO_OFF_TO_LEN] == 0) {
        *what = FAULT_MALFORMED;
        return TETHER_EPROTO;
    }
    size_t from_len = in[HELLO_OFF_FROM_LEN];
    size_t to_len = in[HELLO_OFF_TO_LEN];
    size_t want = TETHER_HELLO_FIXED_BYTES + from_len + to_len;
    if (len < want) {
        *what = FAULT_TRUNCATED;
        return TETHER_EAGAIN;
    }
    if (len > want) {
        *what = FAULT_OVERSIZED;
        return TETHER_ETOOBIG;
    }
    size_t off = HELLO_OFF_NAMES;
    v->from = (const char *)in + off;
    v->from_len = from_len;
    off += from_len;
    v->to = (const char *)in + off;
    v->to_len = to_len;
    off += to_len;
    if (memchr(v->from, '\0', from_len) != NULL ||
        memchr(v->to, '\0', to_len) != NULL) {
        *what = FAULT_MALFORMED;
        return TETHER_EPROTO;
    }
    v->incarnation = get_u64(in + off);
    off += 8;
    v->nonce = in + off;
    off += TETHER_ENV_NONCE_BYTES;
    v->kx_pk = in + off;
    off += TETHER_ENV_KX_PK_BYTES;
    v->body_len = off;
    v->sig = in + off;
    return 0;
}

static void count_fault(tether_session_t *s, enum parse_fault what)
{
    switch (what) {
    case FAULT_TRUNCATED:
        COUNT(s, truncated);
        break;
    case FAULT_OVERSIZED:
        COUNT(s, oversized);
        break;
    case FAULT_BAD_VERSION:
        COUNT(s, bad_version);
        break;
    case FAULT_MALFORMED:
        COUNT(s, malformed);
        break;
    case FAULT_NONE:
        break;
    }
}

/* 1 if X25519 with this public key gives the all-zero secret (low order),
 * which crypto_kx would refuse later. Any clamped scalar tells. */
static int kx_pk_is_weak(const uint8_t pk[TETHER_ENV_KX_PK_BYTES])
{
    static const uint8_t probe[crypto_scalarmult_SCALARBYTES] = {9};
    uint8_t q[crypto_scalarmult_BYTES];
    int weak = crypto_scalarmult(q, probe, pk) != 0;
    sodium_memzero(q, sizeof q);
    return weak;
}

/*
 * Checks a signed hello-layout message of `type` from the peer: its
 * structure, a trusted signer, the signature under `label`, and that it is
 * from our peer to us. Counts what it refuses. Returns 0 with *v, or the
 * TETHER_E* code of the first fault (see tether__session_accept).
 */
static int verify_signed(tether_session_t *s, const uint8_t *in, size_t len,
                         uint8_t type, const char *label, size_t label_len,
                         hello_view_t *v)
{
    uint8_t tbs[HELLO_TBS_MAX];
    uint8_t pk[TETHER_KEY_PUBLIC_BYTES];
    enum parse_fault what;
    int rc;

    rc = parse_hello(in, len, type, v, &what);
    if (rc != 0) {
        count_fault(s, what);
        return rc;
    }

    /* Who claims to have signed it, and is that name trusted at all? */
    rc = tether__trust_lookup_n(s->trust, v->from, v->from_len, pk);
    if (rc != 0) {
        COUNT(s, unknown_signer);
        return TETHER_ENOTFOUND;
    }
    memcpy(tbs, label, label_len);
    memcpy(tbs + label_len, in, v->body_len);
    rc = crypto_sign_verify_detached(v->sig, tbs, label_len + v->body_len, pk);
    sodium_memzero(tbs, sizeof tbs);
    if (rc != 0) {
        COUNT(s, bad_signature);
        return TETHER_EAUTH;
    }

    /* Authentic; now is it from our peer, to us? */
    if (name_cmp(v->from, v->from_len, s->peer, s->peer_len) != 0 ||
        name_cmp(v->to, v->to_len, s->self->name, s->self->name_len) != 0) {
        COUNT(s, misaddressed);
        return TETHER_EPROTO;
    }
    return 0;
}

/* The sender's hello counter: the nonce's first 8 bytes, big-endian. */
static uint64_t hello_counter(const uint8_t nonce[TETHER_ENV_NONCE_BYTES])
{
    return get_u64(nonce);
}

int tether__session_accept(tether_session_t *s, const uint8_t *in, size_t len)
{
    hello_view_t v;
    int rc;

    if (s == NULL || s->self == NULL || s->trust == NULL)
        return TETHER_EINVAL;
    rc = verify_signed(s, in, len, TETHER_ENV_TYPE_HELLO,
                       TETHER_ENV_LABEL_HELLO, HELLO_LABEL_BYTES, &v);
    if (rc != 0)
        return rc;

    /* Fresh? Never the hello we already took, never an older incarnation. */
    if (s->have_peer_hello) {
        if (v.incarnation < s->peer_incarnation) {
            COUNT(s, too_old);
            return TETHER_EREPLAY;
        }
        if (v.incarnation == s->peer_incarnation &&
            sodium_memcmp(v.nonce, s->peer_nonce, TETHER_ENV_NONCE_BYTES) ==
                0) {
            COUNT(s, replayed);
            return TETHER_EREPLAY;
        }
        /* An earlier hello of this incarnation, captured and sent again:
         * it must not tear down the session the later one set up. */
        if (v.incarnation == s->peer_incarnation &&
            hello_counter(v.nonce) <= hello_counter(s->peer_nonce)) {
            COUNT(s, too_old);
            return TETHER_EREPLAY;
        }
    }
    if (kx_pk_is_weak(v.kx_pk)) {
        COUNT(s, malformed);
        return TETHER_EPROTO;
    }

    /* Accepted: it replaces whatever session there was. */
    if (s->state != TETHER_SESSION_HELLO_SENT)
        wipe_keys(s);
    else {
        /* Keep our outstanding kx pair; drop only established keys. */
        wipe_session_keys(s);
    }
    s->have_peer_hello = 1;
    s->peer_incarnation = v.incarnation;
    memcpy(s->peer_nonce, v.nonce, TETHER_ENV_NONCE_BYTES);
    memcpy(s->peer_kx_pk, v.kx_pk, TETHER_ENV_KX_PK_BYTES);
    crypto_generichash(s->peer_hello_hash, HASH_BYTES, in, len, NULL, 0);
    COUNT(s, hello_ok);

    if (s->state == TETHER_SESSION_HELLO_SENT) {
        rc = establish(s);
        if (rc != 0) {
            /* Not reachable: the kx key was checked above. */
            tether__session_reset(s);
            return rc;
        }
    } else {
        s->state = TETHER_SESSION_PEER_HELLO;
    }
    return 0;
}

int tether__session_restart_notice(const tether_session_t *s,
                                   uint64_t incarnation, uint8_t *out,
                                   size_t out_cap, size_t *out_len)
{
    static const uint8_t zero[TETHER_ENV_NONCE_BYTES + TETHER_ENV_KX_PK_BYTES];

    if (s == NULL || s->self == NULL || out == NULL || out_len == NULL)
        return TETHER_EINVAL;
    size_t size = tether__session_hello_size(s);
    if (out_cap < size)
        return TETHER_ETOOBIG;
    write_signed(s, TETHER_ENV_TYPE_RESTART, TETHER_ENV_LABEL_RESTART,
                 sizeof(TETHER_ENV_LABEL_RESTART), incarnation, zero,
                 zero + TETHER_ENV_NONCE_BYTES, out, size);
    *out_len = size;
    return 0;
}

int tether__session_check_restart(tether_session_t *s, const uint8_t *in,
                                  size_t len, uint64_t *incarnation)
{
    hello_view_t v;
    int rc;

    if (s == NULL || s->self == NULL || s->trust == NULL || incarnation == NULL)
        return TETHER_EINVAL;
    rc = verify_signed(s, in, len, TETHER_ENV_TYPE_RESTART,
                       TETHER_ENV_LABEL_RESTART,
                       sizeof(TETHER_ENV_LABEL_RESTART), &v);
    if (rc != 0)
        return rc;
    COUNT(s, restart_ok);
    *incarnation = v.incarnation;
    return 0;
}

/* Whether a `len`-byte payload of `type` may be sealed now into out_cap
 * bytes: 0, TETHER_ECLOSED, TETHER_ETOOBIG or TETHER_EINVAL. */
static int seal_check(const tether_session_t *s, uint8_t type, size_t len,
                      const uint8_t *out, size_t out_cap)
{
    if (s == NULL || out == NULL || type < TETHER_ENV_TYPE_USER_MIN)
        return TETHER_EINVAL;
    if (s->state != TETHER_SESSION_ESTABLISHED || s->tx_seq == UINT64_MAX)
        return TETHER_ECLOSED;
    if (len > s->max_payload || out_cap < TETHER_ENV_OVERHEAD ||
        out_cap - TETHER_ENV_OVERHEAD < len)
        return TETHER_ETOOBIG;
    return 0;
}

int tether__session_seal_begin(tether_session_t *s, uint8_t type, size_t len,
                               uint8_t *out, size_t out_cap, tether_sealer_t *k)
{
    int rc = seal_check(s, type, len, out, out_cap);

    if (rc < 0)
        return rc;
    if (k == NULL)
        return TETHER_EINVAL;
    s->tx_seq++;
    out[ENV_OFF_VERSION] = TETHER_ENVELOPE_VERSION;
    out[ENV_OFF_TYPE] = type;
    put_u64(out + ENV_OFF_SEQ, s->tx_seq);
    k->st = s->tx_mac;
    crypto_auth_hmacsha512256_update(&k->st, out, TETHER_ENV_HEADER_BYTES);
    k->out = out;
    k->len = len;
    k->done = 0;
    COUNT(s, sealed);
    return 0;
}

size_t tether__sealer_update(tether_sealer_t *k, const uint8_t *chunk, size_t n)
{
    uint8_t *dst = k->out + TETHER_ENV_HEADER_BYTES + k->done;

    if (n > k->len - k->done)
        n = k->len - k->done;
    if (n == 0)
        return 0;
    if (chunk != dst)
        memmove(dst, chunk, n);
    crypto_auth_hmacsha512256_update(&k->st, dst, n);
    k->done += n;
    return n;
}

size_t tether__sealer_end(tether_sealer_t *k)
{
    size_t covered = TETHER_ENV_HEADER_BYTES + k->done;

    crypto_auth_hmacsha512256_final(&k->st, k->out + covered);
    tether__sealer_abort(k);
    return covered + TETHER_ENV_MAC_BYTES;
}

void tether__sealer_abort(tether_sealer_t *k)
{
    sodium_memzero(k, sizeof *k);
}

/* One envelope in one call: the sealer's steps back to back. */
int tether__session_seal(tether_session_t *s, uint8_t type,
                         const uint8_t *payload, size_t len, uint8_t *out,
                         size_t out_cap, size_t *out_len)
{
    tether_sealer_t k;
    uint8_t *dst;
    int rc;

    if (out_len == NULL || (payload == NULL && len > 0))
        return TETHER_EINVAL;
    if ((rc = seal_check(s, type, len, out, out_cap)) < 0)
        return rc;
    dst = out + TETHER_ENV_HEADER_BYTES;
    /* Move the payload first: it may overlap the header's bytes. */
    if (len > 0 && payload != dst)
        memmove(dst, payload, len);
    if ((rc = tether__session_seal_begin(s, type, len, out, out_cap, &k)) < 0)
        return rc;
    (void)tether__sealer_update(&k, dst, len);
    *out_len = tether__sealer_end(&k);
    return 0;
}

/* Bit for sequence number `seq` in the ring bitmap. */
static uint64_t *window_word(tether_session_t *s, uint64_t seq, uint64_t *bit)
{
    uint64_t pos = seq % TETHER_ENV_REPLAY_WINDOW;
    *bit = (uint64_t)1 << (pos % 64);
    return &s->rx_bitmap[pos / 64];
}

/*
 * Classifies `seq` against the window: 0 if new, TETHER_EREPLAY with
 * *too_old set accordingly otherwise. Changes nothing.
 */
static int window_check(tether_session_t *s, uint64_t seq, int *too_old)
{
    uint64_t bit;

    *too_old = 0;
    if (seq == 0) { /* never sent: sequence numbers start at 1 */
        *too_old = 1;
        return TETHER_EREPLAY;
    }
    if (seq > s->rx_top)
        return 0;
    if (s->rx_top - seq >= TETHER_ENV_REPLAY_WINDOW) {
        *too_old = 1;
        return TETHER_EREPLAY;
    }
    uint64_t *w = window_word(s, seq, &bit);
    return (*w & bit) ? TETHER_EREPLAY : 0;
}

/* Records `seq` (already checked new) and slides the window if needed. */
static void window_accept(tether_session_t *s, uint64_t seq)
{
    uint64_t bit;

    if (seq > s->rx_top) {
        uint64_t ahead = seq - s->rx_top;
        if (ahead >= TETHER_ENV_REPLAY_WINDOW) {
            memset(s->rx_bitmap, 0, sizeof s->rx_bitmap);
        } else {
            /* Clear the slots of rx_top+1..seq: they held numbers that are
             * now below the window. */
            for (uint64_t q = s->rx_top + 1; q <= seq;) {
                if (q % 64 == 0 && seq - q >= 63) {
                    s->rx_bitmap[(q % TETHER_ENV_REPLAY_WINDOW) / 64] = 0;
                    q += 64;
                } else {
                    uint64_t *w = window_word(s, q, &bit);
                    *w &= ~bit;
                    q++;
                }
            }
        }
        s->rx_top = seq;
    }
    uint64_t *w = window_word(s, seq, &bit);
    *w |= bit;
}

/* Faults of a sealed envelope that verify finds, beyond those of
 * enum parse_fault: each is counted by end, under the session. */
#define FAULT_TAMPERED (FAULT_MALFORMED + 1)

void tether__session_open_begin(const tether_session_t *s, tether_opener_t *o)
{
    memset(o, 0, sizeof *o);
    o->established = s->state == TETHER_SESSION_ESTABLISHED;
    if (!o->established)
        return;
    o->rx_mac = s->rx_mac;
    memcpy(o->sid, s->sid, sizeof o->sid);
    o->max_payload = s->max_payload;
}

/* The code open() returns for a fault of verify. */
static int fault_code(int fault)
{
    switch (fault) {
    case FAULT_TRUNCATED:
        return TETHER_EAGAIN;
    case FAULT_OVERSIZED:
        return TETHER_ETOOBIG;
    case FAULT_BAD_VERSION:
    case FAULT_MALFORMED:
        return TETHER_EPROTO;
    case FAULT_TAMPERED:
        return TETHER_EAUTH;
    default:
        return 0;
    }
}

int tether__opener_verify(tether_opener_t *o, const uint8_t *in, size_t len)
{
    uint8_t tag[TETHER_ENV_MAC_BYTES];

    if (!o->established)
        return TETHER_ECLOSED;
    if (len < TETHER_ENV_OVERHEAD)
        o->fault = FAULT_TRUNCATED;
    else if (len - TETHER_ENV_OVERHEAD > o->max_payload)
        o->fault = FAULT_OVERSIZED;
    else if (in[ENV_OFF_VERSION] != TETHER_ENVELOPE_VERSION)
        o->fault = FAULT_BAD_VERSION;
    else if (in[ENV_OFF_TYPE] < TETHER_ENV_TYPE_USER_MIN)
        o->fault = FAULT_MALFORMED;
    if (o->fault != FAULT_NONE)
        return fault_code(o->fault);
    size_t covered = len - TETHER_ENV_MAC_BYTES;
    crypto_auth_hmacsha512256_update(&o->rx_mac, in, covered);
    crypto_auth_hmacsha512256_final(&o->rx_mac, tag);
    if (crypto_verify_32(tag, in + covered) != 0)
        o->fault = FAULT_TAMPERED;
    o->mac_checked = 1;
    sodium_memzero(tag, sizeof tag);
    sodium_memzero(&o->rx_mac, sizeof o->rx_mac);
    return fault_code(o->fault);
}

int tether__session_open_end(tether_session_t *s, tether_opener_t *o,
                             const uint8_t *in, size_t len, uint8_t *type_out,
                             const uint8_t **payload, size_t *payload_len)
{
    int too_old, rc = 0;

    if (s->state != TETHER_SESSION_ESTABLISHED || !o->established) {
        COUNT(s, no_session);
        rc = TETHER_ECLOSED;
        goto done;
    }
    if (sodium_memcmp(o->sid, s->sid, sizeof o->sid) != 0) {
        COUNT(s, tampered); /* begun on a session since replaced */
        rc = TETHER_EAUTH;
        goto done;
    }
    if (o->fault == FAULT_TAMPERED ||
        (o->fault == FAULT_NONE && !o->mac_checked)) {
        COUNT(s, tampered);
        rc = TETHER_EAUTH;
        goto done;
    }
    if (o->fault != FAULT_NONE) {
        count_fault(s, (enum parse_fault)o->fault);
        rc = fault_code(o->fault);
        goto done;
    }
    uint64_t seq = get_u64(in + ENV_OFF_SEQ);
    if (window_check(s, seq, &too_old) != 0) {
        if (too_old)
            COUNT(s, too_old);
        else
            COUNT(s, replayed);
        rc = TETHER_EREPLAY;
        goto done;
    }
    window_accept(s, seq);
    COUNT(s, ok);
    if (type_out != NULL)
        *type_out = in[ENV_OFF_TYPE];
    *payload = in + TETHER_ENV_HEADER_BYTES;
    *payload_len = len - TETHER_ENV_OVERHEAD;
done:
    sodium_memzero(o, sizeof *o);
    return rc;
}

int tether__session_open(tether_session_t *s, const uint8_t *in, size_t len,
                         uint8_t *type_out, const uint8_t **payload,
                         size_t *payload_len)
{
    tether_opener_t o;

    if (payload != NULL)
        *payload = NULL;
    if (payload_len != NULL)
        *payload_len = 0;
    if (s == NULL || payload == NULL || payload_len == NULL ||
        (in == NULL && len > 0))
        return TETHER_EINVAL;
    tether__session_open_begin(s, &o);
    (void)tether__opener_verify(&o, in, len);
    return tether__session_open_end(s, &o, in, len, type_out, payload,
                                    payload_len);
}

int tether__envelope_kind(const uint8_t *in, size_t len)
{
    if (in == NULL || len < 2)
        return TETHER_EAGAIN;
    if (in[0] != TETHER_ENVELOPE_VERSION)
        return TETHER_EPROTO;
    if (in[1] == TETHER_ENV_TYPE_HELLO || in[1] == TETHER_ENV_TYPE_RESTART ||
        in[1] >= TETHER_ENV_TYPE_USER_MIN)
        return in[1];
    return TETHER_EPROTO;
}

int tether__hello_peek_names(const uint8_t *in, size_t len, char *from,
                             char *to)
{
    hello_view_t v;
    enum parse_fault what;

    int rc =
        parse_hello(in, len, in != NULL && len >= 2 ? in[1] : 0, &v, &what);
    if (rc == 0 && in[1] != TETHER_ENV_TYPE_HELLO &&
        in[1] != TETHER_ENV_TYPE_RESTART)
        rc = TETHER_EPROTO;
    if (rc != 0)
        return rc;
    if (from != NULL) {
        memcpy(from, v.from, v.from_len);
        from[v.from_len] = '\0';
    }
    if (to != NULL) {
        memcpy(to, v.to, v.to_len);
        to[v.to_len] = '\0';
    }
    return 0;
}
