/*
 * core/relay.h: messages relayed around a cut path, a part of every
 * engine (engine message type TETHER_MSG_RELAY, 0x26).
 *
 * When the direct path from us to a member D is cut (a drop partition
 * between the two, or no usable session) but another member can still
 * reach both, the shell hands a SHELL payload to tether_relay_send(): the
 * engine signs it with our Ed25519 identity key and sends it, sealed as
 * usual under each session, to every member it has a usable session with
 * (but D). A relay that can reach D passes it on; one that cannot passes
 * it on to its own members while hops remain. D checks the signature
 * against the key it trusts for the origin and hands the payload to its
 * shell as a MESSAGE action from the origin, exactly as if it had come
 * straight from it.
 *
 * Why the identity key and not a session key. Sessions are MAC'd pairwise
 * (crypto_auth under keys only the two ends hold), so a relay could
 * neither check nor re-seal an origin's MAC for the destination, and the
 * origin-destination session may not exist at all (the cut may be older
 * than the destination's restart). Every member already trusts every
 * other member's identity public key (an explicit list, or keys derived
 * from the cluster secret or cookie, core/keys.h), so an Ed25519
 * signature by the origin proves the origin to the destination and to
 * every relay, whoever carries it. The price is one signature (~23 us)
 * per relayed message at the origin and one verification (~60 us) at
 * each relay and at the destination: relaying is the detour, not the
 * road, so it is paid only while the direct path is cut.
 *
 * Wire: {relay, Origin, Inc, Dest, Id, Hops, Payload, Sig}
 *   Origin, Dest  node names (atoms)
 *   Inc           the origin's incarnation
 *   Id            the origin's relay counter (1, 2, ... per incarnation)
 *   Hops          relays still allowed after the receiver (0..HOPS_MAX)
 *   Payload       the SHELL message's bytes (one term in external format,
 *                 not decoded by the engine)
 *   Sig           Ed25519 (tether__identity_sign, 64 bytes) of
 *                 "tether/v1/relay" 0x00 || len(Origin) || Origin ||
 *                 Inc (8 bytes, big-endian) || len(Dest) || Dest ||
 *                 Id (8 bytes, big-endian) || Payload
 * Hops is not signed: relays count it down. A member that raises it only
 * makes a message travel further among trusted members; it cannot forge,
 * alter or replay one.
 *
 * Guarantees at the destination (and at every relay, which passes a
 * message on at most once): a message is handed on only if its
 * signature verifies under the origin's trusted key (forged or altered:
 * refused, counted as relay_refused), at most once per (origin,
 * incarnation, id) (a replay or a copy that came by another relay:
 * counted as relay_duplicates; ids below a window of
 * TETHER_RELAY_WINDOW behind the highest seen are refused the same way),
 * and never from an older incarnation than one seen (relay_stale).
 * Ordering and retransmission are the shell's (the lanes of
 * tether_channel): a relay is as lossy as any one message.
 */
#ifndef TETHER_CORE_RELAY_H
#define TETHER_CORE_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

/* The largest hop count a message may carry; more is refused. */
#define TETHER_RELAY_HOPS_MAX     4
/* The hop count tether_relay_send() uses for hops 0: one relay and, if
 * it cannot reach the destination, one more. */
#define TETHER_RELAY_HOPS_DEFAULT 2
/* The largest payload relayed (a lane part is 8 KiB). */
#define TETHER_RELAY_PAYLOAD_MAX  (1u << 20)
/* Ids per origin remembered below the highest one seen. */
#define TETHER_RELAY_WINDOW       64

/*
 * Sends the SHELL payload etf (len bytes, one term in external format)
 * to `dest` through the other members, signed by our identity key, with
 * `hops` relays allowed (0: TETHER_RELAY_HOPS_DEFAULT; at most
 * TETHER_RELAY_HOPS_MAX). It goes to every live member we have a usable
 * session with but `dest` (each under the partition rules). Returns 0
 * when at least one member took it, TETHER_ECLOSED when none could (no
 * other member, we left), TETHER_ETOOBIG (payload over
 * TETHER_RELAY_PAYLOAD_MAX), TETHER_EINVAL, TETHER_ENOMEM.
 */
int tether_relay_send(tether_engine_t *eng, const char *dest,
                      const uint8_t *etf, size_t len, unsigned hops);

/* Registers the relay on a new engine (tether_engine_new() does it).
 * Returns 0, TETHER_ENOMEM or the registration's errors. */
TETHER_MUST_CHECK int tether__relay_attach(tether_engine_t *eng);

#endif /* TETHER_CORE_RELAY_H */
