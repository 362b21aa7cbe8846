%% @doc Leader election with fencing tokens: the API that {@link tether}
%% delegates to, and the candidates the tether server keeps.
%%
%% The election itself is an engine module (`c_src/core/election.h',
%% engine message type 0x23), the same code on BEAM nodes and C-nodes.
%% Per name, each node has at most one candidate (a process); every node
%% publishes its candidacy and what it knows of the name's fences, and
%% holds what the live members published.
%%
%% == Default mode ==
%%
%% The winner is the live candidate with the highest priority, then the
%% lowest node name, so every member computes the same winner once the
%% membership converges; each side of a drop partition elects its own, a
%% defer partition changes nothing. The winner mints a fence (above every
%% fence it has seen, and a hybrid-logical-clock stamp), publishes it and
%% leads only once every live member acknowledged it, and never before
%% its first full exchange with every member it knows. So a new leader's
%% fence exceeds every fence issued before in its component; after a heal
%% (any member coming back or joining) the leader claims a fresh fence
%% above everything either side issued, and says so with
%% `{elected, NewFence}' even when it was already leading.
%%
%% == Quorum mode ==
%%
%% `quorum => true' with a voter set (the option `voters', or the
%% application env `election_voters', read when lead/2 is called; every
%% candidate of a name must have the same, `{error, voters_mismatch}'
%% otherwise): the winner among the candidates leads only while a
%% majority of the voters grant it a lease (`election_lease_ms', default
%% 2000, renewed every quarter lease). A voter grants no other candidate
%% until the lease it granted ran out by its own clock, and grants
%% nothing for one lease after it starts; a leader counts each grant as
%% valid for 7/8 of the lease from when it asked, so it steps down
%% (`revoked') before any voter can grant another, assuming no node's
%% clock runs more than 12% faster than another's (and, for fences across
%% a voter's restart, wall clocks within a lease of each other). So at
%% most one leader exists at any instant, cluster-wide, and fences grow
%% cluster-wide. The majority side of a partition elects within two
%% leases; on the minority side `lead' and `fence' answer
%% `{error, no_quorum}'. Failover after a leader's node dies waits for
%% its lease to run out at the voters.
%%
%% == The server side ==
%%
%% {@link tether_server} holds a {@link state()}: the local candidates
%% (name, pid, the options they were elected with) and a monitor of each;
%% a candidate that dies resigns. Engine actions `{leader, NameEtf,
%% elected | revoked, Fence}' become the messages
%% `{tether_leader, Name, {elected, Fence}}' and
%% `{tether_leader, Name, revoked}' to the candidate. A fresh engine
%% (after a leave and join, or a restart of distribution) gets every
%% candidate back; a candidate that led on the old engine is told
%% `revoked' first.
-module(tether_election).

%% The API of tether (see there).
-export([lead/1, lead/2, resign/1, leader/1, is_leader/1, fence/1,
         candidates/1]).
%% Callbacks of tether_server.
-export([init/0, handle_call/3, is_candidate/3, down/3, handle_action/2,
         engine_started/2, engine_stopped/2]).

-export_type([state/0, call/0, opts/0, fence/0]).

-define(SERVER, tether).
-define(PRIORITY_MIN, -(1 bsl 63)).
-define(PRIORITY_MAX, (1 bsl 63) - 1).
-define(VOTERS_MAX, 64).

%% A fencing token: grows with every leadership term.
-type fence() :: pos_integer().

%% The options of lead/2.
-type opts() :: #{priority => integer(), quorum => boolean(),
                  voters => [node()]}.

%% A candidacy as the server keeps it (no monitor yet while the engine
%% is asked to take it).
-record(cand, {pid :: pid(), mref :: reference() | undefined,
               priority :: integer(),
               quorum :: boolean(), voters :: [node()]}).

%% The local candidates, by name.
-opaque state() :: #{term() => #cand{}}.

%% The election's calls to the tether server.
-type call() :: {election_lead, term(), pid(), integer(), boolean(), [node()]}
              | {election_resign, term()}.

%%% The API (tether's)

%% @doc See {@link tether:lead/2}.
-spec lead(term()) -> {ok, {leader, fence()}} | {ok, follower}
                      | {error, term()}.
lead(Name) ->
    lead(Name, #{}).

%% @doc See {@link tether:lead/2}.
-spec lead(term(), opts()) -> {ok, {leader, fence()}} | {ok, follower}
                              | {error, term()}.
lead(Name, Opts) ->
    case options(Opts) of
        {ok, Priority, Quorum, Voters} ->
            server_call({election_lead, Name, self(), Priority, Quorum,
                         Voters});
        {error, _} = Error ->
            Error
    end.

%% @doc See {@link tether:resign/1}.
-spec resign(term()) -> ok | {error, not_candidate | not_distributed}.
resign(Name) ->
    server_call({election_resign, Name}).

%% @doc See {@link tether:leader/1}.
-spec leader(term()) -> {ok, node(), pid()} | {error, no_leader}.
leader(Name) ->
    case tether_server:engine() of
        undefined -> {error, no_leader};
        E -> case tether_nif:election_leader(E, Name) of
                 {ok, Node, Pid} -> {ok, tether_ring:node_term(Node), Pid};
                 Error -> Error
             end
    end.

%% @doc See {@link tether:is_leader/1}.
-spec is_leader(term()) -> boolean().
is_leader(Name) ->
    case tether_server:engine() of
        undefined -> false;
        E -> tether_nif:election_is_leader(E, Name)
    end.

%% @doc See {@link tether:fence/1}.
-spec fence(term()) -> {ok, fence()} | {error, not_leader | no_quorum}.
fence(Name) ->
    case tether_server:engine() of
        undefined -> {error, not_leader};
        E -> tether_nif:election_fence(E, Name)
    end.

%% @doc See {@link tether:candidates/1}.
-spec candidates(term()) -> [{node(), integer()}].
candidates(Name) ->
    case tether_server:engine() of
        undefined -> [];
        E -> [{tether_ring:node_term(N), P}
              || {N, P} <- tether_nif:election_candidates(E, Name)]
    end.

%% Checks lead/2's options in the caller: `{ok, Priority, Quorum,
%% Voters}' or the first problem as `{error, Reason}'.
-spec options(term()) -> {ok, integer(), boolean(), [node()]}
                         | {error, term()}.
options(Opts) when is_map(Opts) ->
    Known = [priority, quorum, voters],
    case [K || K <- maps:keys(Opts), not lists:member(K, Known)] of
        [Unknown | _] ->
            {error, {bad_option, {Unknown, maps:get(Unknown, Opts)}}};
        [] ->
            Priority = maps:get(priority, Opts, 0),
            Quorum = maps:get(quorum, Opts, false),
            if
                not is_integer(Priority) orelse Priority < ?PRIORITY_MIN
                orelse Priority > ?PRIORITY_MAX ->
                    {error, {bad_priority, Priority}};
                not is_boolean(Quorum) ->
                    {error, {bad_quorum, Quorum}};
                not Quorum ->
                    case maps:is_key(voters, Opts) of
                        true -> {error, voters_without_quorum};
                        false -> {ok, Priority, false, []}
                    end;
                true ->
                    voters(Priority, Opts)
            end
    end;
options(Opts) ->
    {error, {bad_options, Opts}}.

%% The voter set of a quorum candidacy: the option, else the application
%% env `election_voters' (read now).
-spec voters(integer(), map()) -> {ok, integer(), true, [node()]}
                                  | {error, term()}.
voters(Priority, Opts) ->
    Voters = case maps:find(voters, Opts) of
                 {ok, V} -> V;
                 error -> application:get_env(tether, election_voters, [])
             end,
    case is_list(Voters) andalso lists:all(fun is_atom/1, Voters) andalso
        length(Voters) =< ?VOTERS_MAX of
        false -> {error, {bad_voters, Voters}};
        true when Voters =:= [] -> {error, no_voters};
        true -> {ok, Priority, true, lists:usort(Voters)}
    end.

%% A call to the tether server; one not running answers
%% `{error, not_distributed}' as it does without an engine.
-spec server_call(call()) -> term().
server_call(Req) ->
    try
        gen_server:call(?SERVER, Req)
    catch
        exit:{noproc, _} -> {error, not_distributed}
    end.

%%% The server side

%% @doc No candidates.
-spec init() -> state().
init() ->
    #{}.

%% @doc An election call to the server, with the engine. `lead' makes
%% the caller the candidate (monitored) and answers what lead/2 answers;
%% `resign' ends the node's candidacy for the name.
-spec handle_call(call(), tether_nif:engine(), state()) -> {term(), state()}.
handle_call({election_lead, Name, _, _, _, _}, _E, St)
  when is_map_key(Name, St) ->
    {{error, already_candidate}, St};
handle_call({election_lead, Name, Pid, Priority, Quorum, Voters}, E, St) ->
    C = #cand{pid = Pid, priority = Priority, quorum = Quorum,
              voters = Voters},
    case lead_on(E, Name, C) of
        {ok, _} = Reply ->
            {Reply, St#{Name => C#cand{mref = erlang:monitor(process, Pid)}}};
        Error ->
            {Error, St}
    end;
handle_call({election_resign, Name}, E, St) ->
    case maps:take(Name, St) of
        {#cand{mref = MRef}, Rest} ->
            erlang:demonitor(MRef, [flush]),
            _ = tether_server:safe(
                  fun() -> tether_nif:election_resign(E, Name) end),
            {ok, Rest};
        error ->
            {{error, not_candidate}, St}
    end.

%% Makes candidacy C for Name on engine E.
-spec lead_on(tether_nif:engine(), term(), #cand{}) -> term().
lead_on(E, Name, #cand{pid = Pid, priority = P, quorum = Q, voters = V}) ->
    tether_server:safe(
      fun() ->
              tether_nif:election_lead(E, Name, Pid, P, Q,
                                       [atom_to_binary(N, utf8) || N <- V])
      end).

%% @doc Whether a `DOWN' message is the monitor of a local candidate.
-spec is_candidate(pid(), reference(), state()) -> boolean().
is_candidate(Pid, MRef, St) ->
    lists:any(fun(#cand{pid = P, mref = R}) -> P =:= Pid andalso R =:= MRef
              end, maps:values(St)).

%% @doc A candidate died (see is_candidate/3): every candidacy of it ends
%% (no `revoked': there is nobody to tell).
-spec down(pid(), tether_nif:engine() | undefined, state()) -> state().
down(Pid, E, St) ->
    maps:filter(
      fun(Name, #cand{pid = P}) when P =:= Pid ->
              _ = E =/= undefined andalso
                  tether_server:safe(
                    fun() -> tether_nif:election_resign(E, Name) end),
              false;
         (_, _) ->
              true
      end, St).

%% @doc An engine action of the election: the transition goes to the
%% candidate of the name.
-spec handle_action(tether_nif:action(), state()) -> state().
handle_action({leader, NameB, Change, Fence}, St) ->
    try binary_to_term(NameB) of
        Name ->
            case maps:find(Name, St) of
                {ok, #cand{pid = Pid}} -> tell(Pid, Name, Change, Fence);
                error -> ok
            end
    catch
        error:badarg -> ok
    end,
    St.

-spec tell(pid(), term(), elected | revoked, non_neg_integer()) -> ok.
tell(Pid, Name, elected, Fence) ->
    Pid ! {tether_leader, Name, {elected, Fence}},
    ok;
tell(Pid, Name, revoked, _Fence) ->
    Pid ! {tether_leader, Name, revoked},
    ok.

%% @doc A fresh engine runs: every candidate campaigns on it again (one
%% refused there is told `revoked' and forgotten).
-spec engine_started(tether_nif:engine(), state()) -> state().
engine_started(E, St) ->
    maps:filter(
      fun(Name, C = #cand{pid = Pid, mref = MRef}) ->
              case lead_on(E, Name, C) of
                  {ok, {leader, Fence}} ->
                      tell(Pid, Name, elected, Fence),
                      true;
                  {ok, follower} ->
                      true;
                  _ ->
                      erlang:demonitor(MRef, [flush]),
                      tell(Pid, Name, revoked, 0),
                      false
              end
      end, St).

%% @doc The engine stops: a candidate that led on it is told `revoked'.
-spec engine_stopped(tether_nif:engine() | undefined, state()) -> state().
engine_stopped(undefined, St) ->
    St;
engine_stopped(E, St) ->
    _ = [tell(Pid, Name, revoked, 0)
         || {Name, #cand{pid = Pid}} <- maps:to_list(St),
            tether_server:safe(
              fun() -> tether_nif:election_is_leader(E, Name) end) =:= true],
    St.
