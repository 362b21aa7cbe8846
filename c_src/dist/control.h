/*
 * dist/control.h: distribution control messages (OTP 25).
 *
 * A distribution message is a control tuple, optionally followed by a
 * message term (see dist/frame.h for how they are framed). The decoder
 * turns the control tuple into a tether_ctl_t without copying any payload:
 * reasons, messages, trace tokens, spawn options and results are handed
 * out as slices (offset + length) into the buffer that was decoded, each
 * starting at the term's tag byte (never at a 131 version byte), so they
 * decode with ei_decode_*(buf, &index) from index = slice.off with no
 * ei_decode_version() first. Every term is validated in bounds before ei
 * looks at it (ei's decoders do not check buffer ends).
 *
 *  op                      control tuple                          + term
 *  LINK 1                  {1, FromPid, ToPid}
 *  SEND 2                  {2, Unused, ToPid}                     Message
 *  EXIT 3                  {3, FromPid, ToPid, Reason}
 *  UNLINK 4                {4, FromPid, ToPid}
 *  NODE_LINK 5             {5}
 *  REG_SEND 6              {6, FromPid, Unused, ToName}           Message
 *  GROUP_LEADER 7          {7, FromPid, ToPid}
 *  EXIT2 8                 {8, FromPid, ToPid, Reason}
 *  SEND_TT 12              {12, Unused, ToPid, Token}             Message
 *  EXIT_TT 13              {13, FromPid, ToPid, Token, Reason}
 *  REG_SEND_TT 16          {16, FromPid, Unused, ToName, Token}   Message
 *  EXIT2_TT 18             {18, FromPid, ToPid, Token, Reason}
 *  MONITOR_P 19            {19, FromPid, ToProc, Ref}
 *  DEMONITOR_P 20          {20, FromPid, ToProc, Ref}
 *  MONITOR_P_EXIT 21       {21, FromProc, ToPid, Ref, Reason}
 *  SEND_SENDER 22          {22, FromPid, ToPid}                   Message
 *  SEND_SENDER_TT 23       {23, FromPid, ToPid, Token}            Message
 *  PAYLOAD_EXIT 24         {24, FromPid, ToPid}                   Reason
 *  PAYLOAD_EXIT_TT 25      {25, FromPid, ToPid, Token}            Reason
 *  PAYLOAD_EXIT2 26        {26, FromPid, ToPid}                   Reason
 *  PAYLOAD_EXIT2_TT 27     {27, FromPid, ToPid, Token}            Reason
 *  PAYLOAD_MONITOR_P_EXIT 28 {28, FromProc, ToPid, Ref}           Reason
 *  SPAWN_REQUEST 29        {29, ReqId, From, GroupLeader, {M, F, Arity},
 *                           OptList}                              ArgList
 *  SPAWN_REQUEST_TT 30     {30, ReqId, From, GroupLeader, {M, F, Arity},
 *                           OptList, Token}                       ArgList
 *  SPAWN_REPLY 31          {31, ReqId, To, Flags, Result}
 *  SPAWN_REPLY_TT 32       {32, ReqId, To, Flags, Result, Token}
 *  ALIAS_SEND 33           {33, FromPid, Alias}                   Message
 *  ALIAS_SEND_TT 34        {34, FromPid, Alias, Token}            Message
 *  UNLINK_ID 35            {35, Id, FromPid, ToPid}
 *  UNLINK_ID_ACK 36        {36, Id, FromPid, ToPid}
 *
 * ToProc / FromProc are a pid or a registered name (atom).
 */
#ifndef TETHER_DIST_CONTROL_H
#define TETHER_DIST_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "tether/error.h"

enum {
    TETHER_DOP_LINK = 1,
    TETHER_DOP_SEND = 2,
    TETHER_DOP_EXIT = 3,
    TETHER_DOP_UNLINK = 4,
    TETHER_DOP_NODE_LINK = 5,
    TETHER_DOP_REG_SEND = 6,
    TETHER_DOP_GROUP_LEADER = 7,
    TETHER_DOP_EXIT2 = 8,
    TETHER_DOP_SEND_TT = 12,
    TETHER_DOP_EXIT_TT = 13,
    TETHER_DOP_REG_SEND_TT = 16,
    TETHER_DOP_EXIT2_TT = 18,
    TETHER_DOP_MONITOR_P = 19,
    TETHER_DOP_DEMONITOR_P = 20,
    TETHER_DOP_MONITOR_P_EXIT = 21,
    TETHER_DOP_SEND_SENDER = 22,
    TETHER_DOP_SEND_SENDER_TT = 23,
    TETHER_DOP_PAYLOAD_EXIT = 24,
    TETHER_DOP_PAYLOAD_EXIT_TT = 25,
    TETHER_DOP_PAYLOAD_EXIT2 = 26,
    TETHER_DOP_PAYLOAD_EXIT2_TT = 27,
    TETHER_DOP_PAYLOAD_MONITOR_P_EXIT = 28,
    TETHER_DOP_SPAWN_REQUEST = 29,
    TETHER_DOP_SPAWN_REQUEST_TT = 30,
    TETHER_DOP_SPAWN_REPLY = 31,
    TETHER_DOP_SPAWN_REPLY_TT = 32,
    TETHER_DOP_ALIAS_SEND = 33,
    TETHER_DOP_ALIAS_SEND_TT = 34,
    TETHER_DOP_UNLINK_ID = 35,
    TETHER_DOP_UNLINK_ID_ACK = 36,
};

/* Largest atom (bytes) and reference (32-bit words) the decoder accepts. */
#define TETHER_ETF_MAX_ATOM_BYTES (MAXATOMLEN_UTF8 - 1)
#define TETHER_ETF_MAX_REF_WORDS  5

/* Flags of SPAWN_REPLY (erts dist.h). */
#define TETHER_SPAWN_FLAG_LINK    1
#define TETHER_SPAWN_FLAG_MONITOR 2

/* A term inside the decoded buffer: buf[off .. off+len), tag byte first. */
typedef struct {
    size_t off;
    size_t len; /* 0 when absent */
} tether_etf_slice_t;

/* A process: a pid, or a registered name. */
typedef struct {
    int is_name; /* 1: name is set; 0: pid is set */
    erlang_pid pid;
    char name[MAXATOMLEN_UTF8]; /* NUL-terminated UTF-8 */
} tether_ctl_proc_t;

/*
 * A decoded control message. Which fields are meaningful depends on op
 * (see the table above); the others are zeroed.
 *  from      FromPid / FromProc; for SPAWN_REQUEST the From pid
 *  to        ToPid / ToProc / ToName (REG_SEND: is_name = 1); for
 *            SPAWN_REPLY the To pid
 *  ref       Ref of MONITOR_P / DEMONITOR_P / MONITOR_P_EXIT, ReqId of
 *            SPAWN_REQUEST / SPAWN_REPLY, Alias of ALIAS_SEND
 *  unlink_id Id of UNLINK_ID / UNLINK_ID_ACK
 *  reason    Reason (in the tuple for EXIT*, EXIT2*, MONITOR_P_EXIT; the
 *            payload term for the PAYLOAD_* ops)
 *  message   Message of SEND*, REG_SEND*, SEND_SENDER*, ALIAS_SEND*; the
 *            ArgList of SPAWN_REQUEST*
 *  token     the trace token of the *_TT ops (skipped, never interpreted)
 */
typedef struct {
    int op;
    tether_ctl_proc_t from;
    tether_ctl_proc_t to;
    int has_ref;
    erlang_ref ref;
    uint64_t unlink_id;
    tether_etf_slice_t reason;
    tether_etf_slice_t message;
    tether_etf_slice_t token;
    /* SPAWN_REQUEST */
    erlang_pid group_leader;
    char module[MAXATOMLEN_UTF8];
    char function[MAXATOMLEN_UTF8];
    long arity;
    tether_etf_slice_t spawn_opts; /* OptList */
    /* SPAWN_REPLY */
    long spawn_flags;          /* TETHER_SPAWN_FLAG_* */
    tether_etf_slice_t result; /* the pid, or the error reason */
    int result_is_pid;
    erlang_pid result_pid; /* when result_is_pid */
} tether_ctl_t;

/*
 * Validates the term starting at buf[*off] against len (every nested
 * length, arity and atom size bounded; no recursion) and advances *off
 * past it. Rejects ATOM_CACHE_REF, LOCAL_EXT and compressed terms.
 * Returns 0 or TETHER_EPROTO.
 */
TETHER_MUST_CHECK int tether__etf_skip(const uint8_t *buf, size_t len,
                                       size_t *off);

/*
 * Decodes the distribution message buf[0..len) (control term then
 * optional term; versioned = 1 when each starts with 131, as in
 * tether_dist_msg_t) into out. Slices in out are offsets into buf.
 * Returns 0; TETHER_EUNSUPP for a well-formed control tuple whose op is
 * not listed above (out->op is set; count it and ignore it);
 * TETHER_EPROTO for a malformed tuple, a missing or extra trailing term,
 * or bytes after the last term.
 */
TETHER_MUST_CHECK int tether__ctl_decode(const uint8_t *buf, size_t len,
                                         int versioned, tether_ctl_t *out);

/* Returns the name of a control op ("REG_SEND", ...), or "UNKNOWN". */
const char *tether__ctl_op_name(int op);

/*
 * Encoders. Each appends ONE complete frame (4-byte length, header for
 * the negotiated dflags, control tuple, and the message/reason term when
 * the op has one) to x, which must have been set up with ei_x_new() (not
 * _with_version). Term arguments (msg, reason, args, opts, result) are
 * external-format bytes, with or without a leading 131. Where OTP has an
 * older and a newer form, dflags picks the one the peer accepts:
 * SEND_SENDER -> SEND without DFLAG_SEND_SENDER (or when from is NULL);
 * EXIT, EXIT2, MONITOR_P_EXIT -> PAYLOAD_* with DFLAG_EXIT_PAYLOAD;
 * UNLINK_ID -> UNLINK without DFLAG_UNLINK_ID. Each returns 0, TETHER_EINVAL
 * (NULL or empty required argument, or the peer lacks the feature: SPAWN_*
 * without DFLAG_SPAWN, ALIAS_SEND without DFLAG_ALIAS, UNLINK_ID_ACK without
 * DFLAG_UNLINK_ID), TETHER_ETOOBIG (a term over 2 GiB) or TETHER_ENOMEM.
 * On failure x->index is unchanged.
 */
int tether__ctl_encode_send(ei_x_buff *x, uint64_t dflags,
                            const erlang_pid *from, const erlang_pid *to,
                            const uint8_t *msg, size_t msg_len);
int tether__ctl_encode_reg_send(ei_x_buff *x, uint64_t dflags,
                                const erlang_pid *from, const char *to_name,
                                const uint8_t *msg, size_t msg_len);
int tether__ctl_encode_alias_send(ei_x_buff *x, uint64_t dflags,
                                  const erlang_pid *from,
                                  const erlang_ref *alias, const uint8_t *msg,
                                  size_t msg_len);
int tether__ctl_encode_link(ei_x_buff *x, uint64_t dflags,
                            const erlang_pid *from, const erlang_pid *to);
int tether__ctl_encode_unlink_id(ei_x_buff *x, uint64_t dflags, uint64_t id,
                                 const erlang_pid *from, const erlang_pid *to);
int tether__ctl_encode_unlink_id_ack(ei_x_buff *x, uint64_t dflags, uint64_t id,
                                     const erlang_pid *from,
                                     const erlang_pid *to);
/* EXIT (a linked process died): PAYLOAD_EXIT with DFLAG_EXIT_PAYLOAD. */
int tether__ctl_encode_exit(ei_x_buff *x, uint64_t dflags,
                            const erlang_pid *from, const erlang_pid *to,
                            const uint8_t *reason, size_t reason_len);
/* EXIT2 (exit/2 sent to a process): PAYLOAD_EXIT2 with EXIT_PAYLOAD. */
int tether__ctl_encode_exit2(ei_x_buff *x, uint64_t dflags,
                             const erlang_pid *from, const erlang_pid *to,
                             const uint8_t *reason, size_t reason_len);
/* MONITOR_P: from monitors to (to->is_name: a registered name there). */
int tether__ctl_encode_monitor_p(ei_x_buff *x, uint64_t dflags,
                                 const erlang_pid *from,
                                 const tether_ctl_proc_t *to,
                                 const erlang_ref *ref);
int tether__ctl_encode_demonitor_p(ei_x_buff *x, uint64_t dflags,
                                   const erlang_pid *from,
                                   const tether_ctl_proc_t *to,
                                   const erlang_ref *ref);
/*
 * MONITOR_P_EXIT (the monitored process `from` died; `to` is the
 * watcher): PAYLOAD_MONITOR_P_EXIT with DFLAG_EXIT_PAYLOAD. from is the
 * process the watcher monitored (by pid or by name, as it asked).
 */
int tether__ctl_encode_monitor_p_exit(ei_x_buff *x, uint64_t dflags,
                                      const tether_ctl_proc_t *from,
                                      const erlang_pid *to,
                                      const erlang_ref *ref,
                                      const uint8_t *reason, size_t reason_len);
/*
 * SPAWN_REQUEST: spawn module:function/arity on the peer with argument
 * list args (a proper list term of arity elements) and option list opts
 * (NULL for []).
 */
int tether__ctl_encode_spawn_request(
    ei_x_buff *x, uint64_t dflags, const erlang_ref *req_id,
    const erlang_pid *from, const erlang_pid *group_leader, const char *module,
    const char *function, long arity, const uint8_t *opts, size_t opts_len,
    const uint8_t *args, size_t args_len);
/*
 * SPAWN_REPLY: result is the new process's pid when result_pid is not
 * NULL, else the error term error_reason (e.g. the atom notsup).
 */
int tether__ctl_encode_spawn_reply(ei_x_buff *x, uint64_t dflags,
                                   const erlang_ref *req_id,
                                   const erlang_pid *to, long flags,
                                   const erlang_pid *result_pid,
                                   const uint8_t *error_reason,
                                   size_t error_reason_len);

#endif /* TETHER_DIST_CONTROL_H */
