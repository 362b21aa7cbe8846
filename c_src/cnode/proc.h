/*
 * cnode/proc.h: the C process model of a tether C-node.
 *
 * A process table (tether_procs_t) belongs to one node and one thread (the
 * event loop). It owns every C process of the node: its pid, registered
 * name, mailbox, links, the monitors it holds and the monitors others hold
 * on it. The table is sans-IO: it never touches a socket. Whatever must
 * reach another node is handed to an output callback as a tether_out_t
 * (the runtime in conn.c turns it into a distribution frame); whatever
 * arrives from another node is fed in with the tether_procs_*_in calls.
 *
 * Terms (messages, exit reasons) are external term format slices that
 * start with the version byte 131, exactly as they travel in a 'p' frame.
 *
 * Messages are queued in mailboxes; tether_procs_run() hands them to the
 * processes' handlers one at a time, so a handler never runs inside
 * another handler and may freely send, link, monitor, spawn or exit.
 * Exit signals are processed as soon as they are raised (iteratively, so
 * a long chain of local links does not deepen the stack).
 */
#ifndef TETHER_CNODE_PROC_H
#define TETHER_CNODE_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "tether/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest atom text in bytes (255 UTF-8 characters) plus the NUL. */
#define TETHER_ATOM_MAX MAXATOMLEN_UTF8

/* Pid numbers stay within the classic 15/13-bit ranges every peer takes. */
#define TETHER_PID_NUM_MAX    0x7fffu
#define TETHER_PID_SERIAL_MAX 0x1fffu

/* References carry three words; the first keeps to 18 bits. */
#define TETHER_REF_WORDS  3
#define TETHER_REF_W0_MAX 0x3ffffu

typedef struct tether_procs tether_procs_t;
typedef struct tether_proc tether_proc_t;

/* One received message: the sender when known (NULL after a plain SEND). */
typedef struct tether_msg {
    const erlang_pid *from;
    const char *data; /* external term format, starts with 131 */
    size_t len;
} tether_msg_t;

/* Called on the loop thread for every message taken from the mailbox. */
typedef void (*tether_proc_handler_fn)(tether_proc_t *self,
                                       const tether_msg_t *msg, void *arg);

/*
 * Called once when the process has exited, after its links and monitors
 * were told, with the exit reason (131-prefixed term). The process may
 * not send or link any more; free `arg` here.
 */
typedef void (*tether_proc_exit_fn)(tether_proc_t *self, const char *reason,
                                    size_t reason_len, void *arg);

/* What a new process runs. `on_exit` may be NULL. */
typedef struct tether_proc_spec {
    tether_proc_handler_fn handler;
    tether_proc_exit_fn on_exit;
    void *arg;
} tether_proc_spec_t;

/* Operations the table hands to the runtime for a remote node. */
typedef enum tether_out_kind {
    TETHER_OUT_SEND,          /* from -> to (pid): msg (SEND_SENDER) */
    TETHER_OUT_REG_SEND,      /* from -> to_name on node: msg */
    TETHER_OUT_ALIAS_SEND,    /* from -> ref (an alias): msg */
    TETHER_OUT_LINK,          /* from links to */
    TETHER_OUT_UNLINK_ID,     /* from unlinks to, id */
    TETHER_OUT_UNLINK_ID_ACK, /* from acks unlink of to, id */
    TETHER_OUT_EXIT,          /* link exit from -> to, reason in msg */
    TETHER_OUT_EXIT2,         /* exit/2 from -> to, reason in msg */
    TETHER_OUT_MONITOR,       /* from monitors to (pid) or to_name, ref */
    TETHER_OUT_DEMONITOR,     /* from drops monitor ref on to / to_name */
    TETHER_OUT_MONITOR_EXIT,  /* monitored `from` (or from_name) is down:
                                 tell watcher `to`, ref, reason in msg */
} tether_out_kind_t;

/*
 * One outgoing operation. Fields a kind does not use are zero. `node` is
 * the destination node's name. Pointers are valid during the call only.
 */
typedef struct tether_out {
    tether_out_kind_t kind;
    const char *node;
    const erlang_pid *from;
    const char *from_name; /* MONITOR_EXIT for a monitor taken by name */
    const erlang_pid *to;
    const char *to_name; /* REG_SEND, MONITOR and DEMONITOR by name */
    const erlang_ref *ref;
    uint64_t id;     /* UNLINK_ID / UNLINK_ID_ACK */
    const char *msg; /* message or reason, 131-prefixed */
    size_t msg_len;
} tether_out_t;

/* Hands one operation to the runtime; returns 0 or a TETHER_E* code. */
typedef int (*tether_out_fn)(void *ctx, const tether_out_t *op);

/* Counters kept by the table. */
typedef struct tether_procs_stats {
    uint64_t spawned;
    uint64_t exited;
    uint64_t delivered;
    uint64_t dropped; /* messages to unknown pids, names or aliases */
    uint64_t alive;
} tether_procs_stats_t;

/* ---- the table ---------------------------------------------------- */

/*
 * Creates an empty table for node `node_name` (e.g. "c1@127.0.0.1") with
 * `creation`; `out` receives operations for other nodes. Returns 0,
 * TETHER_EINVAL or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_procs_new(const char *node_name, uint32_t creation,
                                       tether_out_fn out, void *out_ctx,
                                       tether_procs_t **procs);

/* Frees the table and every process in it, without sending anything. */
void tether_procs_free(tether_procs_t *procs);

/* The node name and creation used in pids and references. */
const char *tether_procs_node(const tether_procs_t *procs);
uint32_t tether_procs_creation(const tether_procs_t *procs);

/* Sets the creation; only before the first process or reference. */
void tether_procs_set_creation(tether_procs_t *procs, uint32_t creation);

/* Makes a fresh reference of this node. */
void tether_procs_make_ref(tether_procs_t *procs, erlang_ref *ref);

/* Looks up a live process by pid or by registered name; NULL if none. */
tether_proc_t *tether_procs_find(tether_procs_t *procs, const erlang_pid *pid);
tether_proc_t *tether_procs_whereis(tether_procs_t *procs, const char *name);

/* True if the pid names a process of this node (live or not). */
bool tether_procs_is_local(const tether_procs_t *procs, const erlang_pid *pid);

/*
 * Hands queued messages to their handlers, at most `budget` of them
 * (0 = until every mailbox is empty), and frees exited processes.
 * Returns the number of messages handled.
 */
size_t tether_procs_run(tether_procs_t *procs, size_t budget);

/* True if some mailbox holds a message. */
bool tether_procs_pending(const tether_procs_t *procs);

void tether_procs_stats(const tether_procs_t *procs,
                        tether_procs_stats_t *stats);

/* Sends `msg` from `from` (may be NULL) to any pid, local or remote. */
int tether_procs_send(tether_procs_t *procs, const erlang_pid *from,
                      const erlang_pid *to, const char *msg, size_t len);

/* ---- input from other nodes (the runtime calls these) -------------- */

/*
 * Direct delivery (off by default). When on, a message that arrives
 * through tether_procs_send_in(), _reg_send_in() or _alias_send_in() for
 * a process whose mailbox is empty, while no handler runs and no exit
 * signal is being processed, is handed to the handler during the call,
 * without a copy; otherwise it is queued as usual. Order per process is
 * kept (a queued message is never overtaken). The runtime turns it on:
 * the *_in calls then come from its event loop only, outside handlers.
 */
void tether__procs_set_direct(tether_procs_t *procs, bool on);

/* SEND / SEND_SENDER: `from` may be NULL. Unknown pids drop the message. */
void tether_procs_send_in(tether_procs_t *procs, const erlang_pid *from,
                          const erlang_pid *to, const char *msg, size_t len);

/* REG_SEND to a registered name of this node. */
void tether_procs_reg_send_in(tether_procs_t *procs, const erlang_pid *from,
                              const char *name, const char *msg, size_t len);

/* ALIAS_SEND to an alias of a local process. */
void tether_procs_alias_send_in(tether_procs_t *procs, const erlang_pid *from,
                                const erlang_ref *alias, const char *msg,
                                size_t len);

/* LINK from remote `from` to local `to`; a dead `to` answers noproc. */
void tether_procs_link_in(tether_procs_t *procs, const erlang_pid *from,
                          const erlang_pid *to);

/* UNLINK_ID: removes the link and answers UNLINK_ID_ACK. */
void tether_procs_unlink_in(tether_procs_t *procs, const erlang_pid *from,
                            const erlang_pid *to, uint64_t id);

/* UNLINK_ID_ACK: ends our own unlink; nothing left to do here. */
void tether_procs_unlink_ack_in(tether_procs_t *procs, const erlang_pid *from,
                                const erlang_pid *to, uint64_t id);

/*
 * EXIT (a linked process died; only acted on if the link exists) or,
 * with `is_exit2`, EXIT2 (exit/2). `reason` is 131-prefixed.
 */
void tether_procs_exit_in(tether_procs_t *procs, const erlang_pid *from,
                          const erlang_pid *to, const char *reason,
                          size_t reason_len, bool is_exit2);

/*
 * MONITOR_P from remote `from` on local `to` (a pid) or `to_name` (a
 * registered name; then `to` is NULL). An absent target answers at once
 * with MONITOR_P_EXIT reason noproc.
 */
void tether_procs_monitor_in(tether_procs_t *procs, const erlang_pid *from,
                             const erlang_pid *to, const char *to_name,
                             const erlang_ref *ref);

/* DEMONITOR_P from remote `from`. */
void tether_procs_demonitor_in(tether_procs_t *procs, const erlang_pid *from,
                               const erlang_pid *to, const char *to_name,
                               const erlang_ref *ref);

/*
 * MONITOR_P_EXIT: the remote process (pid `from`, or name `from_name` on
 * `from_node` for a monitor taken by name) is down; local `to` held the
 * monitor `ref`. Queues {'DOWN', Ref, process, Pid | {Name, Node}, Reason}.
 */
void tether_procs_monitor_exit_in(tether_procs_t *procs, const erlang_pid *from,
                                  const char *from_name, const char *from_node,
                                  const erlang_pid *to, const erlang_ref *ref,
                                  const char *reason, size_t reason_len);

/*
 * The connection to `node` is gone: every local link to a process there
 * gets exit reason noconnection, every monitor on a process there gets
 * DOWN noconnection, and what that node held on us is forgotten.
 */
void tether_procs_node_down(tether_procs_t *procs, const char *node);

/* ---- the processes ------------------------------------------------- */

/*
 * Starts a process running `spec`. `proc` (may be NULL) receives it; the
 * pointer stays valid until the process has exited and tether_procs_run()
 * has freed it. Returns 0 or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_proc_spawn(tether_procs_t *procs,
                                        const tether_proc_spec_t *spec,
                                        tether_proc_t **proc);

/* The table a process lives in, its pid, and whether it still lives. */
tether_procs_t *tether_proc_procs(const tether_proc_t *self);
const erlang_pid *tether_proc_pid(const tether_proc_t *self);
bool tether_proc_alive(const tether_proc_t *self);
void *tether_proc_arg(const tether_proc_t *self);

/* The registered name, or NULL. */
const char *tether_proc_name(const tether_proc_t *self);

/*
 * Registers `name` for the process. TETHER_EEXIST if the name is taken
 * or the process already has one; TETHER_EINVAL for a bad name or a dead
 * process.
 */
TETHER_MUST_CHECK int tether_proc_register(tether_proc_t *self,
                                           const char *name);

/* Removes a registered name; TETHER_ENOTFOUND if not registered. */
TETHER_MUST_CHECK int tether_procs_unregister(tether_procs_t *procs,
                                              const char *name);

/* Sends to a pid (local or remote). */
int tether_proc_send(tether_proc_t *self, const erlang_pid *to, const char *msg,
                     size_t len);

/*
 * Sends to `name` on `node` (NULL or this node: local). An unknown local
 * name returns TETHER_ENOTFOUND (the BEAM would raise badarg).
 */
int tether_proc_send_name(tether_proc_t *self, const char *name,
                          const char *node, const char *msg, size_t len);

/* Sends to an alias (a reference); local aliases are resolved here. */
int tether_proc_send_alias(tether_proc_t *self, const erlang_ref *alias,
                           const char *msg, size_t len);

/* Creates an alias for the process (messages to it reach its mailbox). */
TETHER_MUST_CHECK int tether_proc_alias(tether_proc_t *self, erlang_ref *alias);
/* Drops an alias; TETHER_ENOTFOUND if it was not one of ours. */
TETHER_MUST_CHECK int tether_proc_unalias(tether_proc_t *self,
                                          const erlang_ref *alias);

/*
 * Links to `pid`. Linking to a dead local process delivers an exit
 * signal noproc (as the BEAM does); a remote dead one answers the same
 * through its node.
 */
int tether_proc_link(tether_proc_t *self, const erlang_pid *pid);
int tether_proc_unlink(tether_proc_t *self, const erlang_pid *pid);

/*
 * Monitors a pid, or a name on a node (`node` NULL = this node). `ref`
 * receives the monitor reference; a missing target gives DOWN noproc.
 */
TETHER_MUST_CHECK int tether_proc_monitor(tether_proc_t *self,
                                          const erlang_pid *pid,
                                          erlang_ref *ref);
TETHER_MUST_CHECK int tether_proc_monitor_name(tether_proc_t *self,
                                               const char *name,
                                               const char *node,
                                               erlang_ref *ref);
/* Drops a monitor; TETHER_ENOTFOUND if `ref` is not one held. */
TETHER_MUST_CHECK int tether_proc_demonitor(tether_proc_t *self,
                                            const erlang_ref *ref);

/* Sets trap_exit; returns the previous value. */
bool tether_proc_trap_exit(tether_proc_t *self, bool on);

/* Sends an exit signal (exit/2) to `pid`, reason 131-prefixed. */
int tether_proc_send_exit(tether_proc_t *self, const erlang_pid *pid,
                          const char *reason, size_t len);

/*
 * The process exits with `reason` (131-prefixed; NULL means normal):
 * links get EXIT, monitors get DOWN. Safe to call from its own handler.
 */
void tether_proc_exit(tether_proc_t *self, const char *reason, size_t len);

/* ---- helpers -------------------------------------------------------- */

bool tether_pid_eq(const erlang_pid *a, const erlang_pid *b);
bool tether_ref_eq(const erlang_ref *a, const erlang_ref *b);

/* True if node looks like "alive@host" (both parts non-empty, fits an atom). */
bool tether_node_name_valid(const char *node);

/* True if the term (131-prefixed) is the atom `atom`. */
bool tether_term_is_atom(const char *term, size_t len, const char *atom);

/*
 * Encodes the atom `atom` as a 131-prefixed term into `buf` (at least
 * TETHER_ATOM_TERM_MAX bytes); returns its length or 0 if it does not fit.
 */
#define TETHER_ATOM_TERM_MAX (TETHER_ATOM_MAX + 8)
size_t tether_term_atom(char *buf, size_t cap, const char *atom);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_CNODE_PROC_H */
