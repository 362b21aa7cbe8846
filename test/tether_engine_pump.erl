%% @doc Engines wired together in one test process, for the EUnit tests
%% of the engine NIFs. The engine is sans-IO: these functions pass the
%% time in (engine_tick) and carry each engine's `send' actions to the
%% engine they are addressed to, by hand, so the tests are deterministic
%% (no sleeps, no sockets). Engines are held in a map from node name to
%% engine; connections are modelled as always up.
-module(tether_engine_pump).

-export([new/2, pump/3, carry/2, run/4, join_all/4]).

-type engines() :: #{binary() => reference()}.
%% Which drained actions a caller wants back (send actions are carried
%% either way).
-type keep() :: fun((tuple()) -> boolean()).
-export_type([engines/0, keep/0]).

%% @doc A new engine named Name: incarnation 1 and a fresh random seed,
%% unless Opts (any other engine_new/1 options) say otherwise.
-spec new(binary(), map()) -> reference().
new(Name, Opts) ->
    Defaults = #{name => Name, incarnation => 1,
                 seed => crypto:strong_rand_bytes(32)},
    {ok, E} = tether_nif:engine_new(maps:merge(Defaults, Opts)),
    E.

%% @doc Ticks every engine at Now and carries actions until none is left
%% (carry/2); returns the actions Keep selects, as {EngineName, Action}.
-spec pump(engines(), non_neg_integer(), keep()) -> [{binary(), tuple()}].
pump(Es, Now, Keep) ->
    [ok = tether_nif:engine_tick(E, Now) || E <- maps:values(Es)],
    carry(Es, Keep).

%% @doc Drains every engine and delivers the `send' actions, again until
%% no send reaches an engine of Es; returns the actions Keep selects, in
%% the order they were drained, as {EngineName, Action}.
-spec carry(engines(), keep()) -> [{binary(), tuple()}].
carry(Es, Keep) ->
    Drained = [{N, tether_nif:engine_drain(E)} || {N, E} <- maps:to_list(Es)],
    Sent = [ok || {From, L} <- Drained, {send, To, Bytes} <- L,
                  deliver(Es, From, To, Bytes)],
    Kept = [{N, A} || {N, L} <- Drained, A <- L, Keep(A)],
    case Sent of
        [] -> Kept;
        _ -> Kept ++ carry(Es, Keep)
    end.

%% A payload above 64 KiB goes through the dirty-scheduler variant, as
%% the tether server hands it over.
deliver(Es, From, To, Bytes) ->
    case maps:find(To, Es) of
        {ok, E} when byte_size(Bytes) > 65536 ->
            ok = tether_nif:engine_recv_dirty(E, From, Bytes),
            true;
        {ok, E} ->
            _ = tether_nif:engine_recv(E, From, Bytes),
            true;
        error ->
            false
    end.

%% @doc Pumps every 10 ms of engine time from T0 to T0 + Ms; returns the
%% actions Keep selects and the time reached.
-spec run(engines(), non_neg_integer(), non_neg_integer(), keep()) ->
          {[{binary(), tuple()}], non_neg_integer()}.
run(Es, T0, Ms, Keep) ->
    lists:foldl(fun(T, {Acc, _}) -> {Acc ++ pump(Es, T, Keep), T} end,
                {[], T0}, lists:seq(T0, T0 + Ms, 10)).

%% @doc Tells every engine of Es that the others' connections are up,
%% pumps at time 1, lets every engine but First join First and runs Ms
%% of engine time from 2 (run/4); returns the time reached.
-spec join_all(engines(), binary(), non_neg_integer(), keep()) ->
          non_neg_integer().
join_all(Es, First, Ms, Keep) ->
    [ok = tether_nif:engine_peer_up(E, Y)
     || {X, E} <- maps:to_list(Es), Y <- maps:keys(Es), X =/= Y],
    _ = pump(Es, 1, Keep),
    [ok = tether_nif:engine_join(E, First)
     || {N, E} <- maps:to_list(Es), N =/= First],
    {_, T} = run(Es, 2, Ms, Keep),
    T.
