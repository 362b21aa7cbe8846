%% PropEr: random terms into every function tether_peer_service exports
%% (partisan's peer-service API) and into tether's barrel_p2p calls, on a
%% member of a two-node tether cluster. Each call must return (an
%% `{error, _}' is a return); an exception fails the property, and so
%% does a dead node or a dead tether application afterwards.
-module(tether_peer_service_prop_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("proper/include/proper.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1]).
-export([peer_service_survives_random_terms/1,
         barrel_calls_survive_random_terms/1]).

-define(NUMTESTS, 100).
-define(WAIT_MS, 30000).
%% Zero-arity calls and start_link are run once, not with random terms
%% (leave/0 would take the node out of the cluster for every later call).
-define(SKIP, [start_link, init, handle_call, handle_cast, handle_info,
               terminate, module_info, leave]).

all() ->
    [peer_service_survives_random_terms, barrel_calls_survive_random_terms].

init_per_suite(Config) ->
    Config1 = tether_test_lib:require_env(Config),
    [A, B] = tether_test_lib:start_cluster(
               2, #{overlapping_partitions => false,
                    env => [{heartbeat_ms, 200}, {ttl_ms, 1500},
                            {join_timeout_ms, 500}]}, ?WAIT_MS),
    [{nodes, [A, B]} | Config1].

end_per_suite(Config) ->
    ok = tether_test_lib:stop_case(),
    Config.

peer_service_survives_random_terms(Config) ->
    every(tether_peer_service, [F || F <- exports(tether_peer_service),
                                     not lists:member(element(1, F), ?SKIP)],
          Config).

barrel_calls_survive_random_terms(Config) ->
    Barrel = [lookup, lookup_local, list_services, subscribe_services,
              unsubscribe_services, active_view, passive_view,
              global_register, get_proxy, start_service_holder,
              stop_service_holder, migrate_peer],
    every(tether, [FA || {F, _} = FA <- exports(tether), lists:member(F, Barrel)],
          Config).

every(Mod, Funs, Config) ->
    [A | _] = ?config(nodes, Config),
    ?assertNotEqual([], Funs),
    lists:foreach(
      fun({F, Arity}) ->
              ct:log("~s:~s/~b", [Mod, F, Arity]),
              Prop = ?FORALL(Args, vector(Arity, random_term(A)),
                             survives(A, Mod, F, Args)),
              true = proper:quickcheck(Prop, [{numtests, num(Arity)},
                                              {to_file, user}, long_result])
                  =:= true orelse ct:fail({failed, Mod, F, Arity})
      end, Funs),
    %% The application is still up and answers.
    ok = erpc:call(A, tether_peer_service, forward_message,
                   [A, tether_peer_service, {'$tether_peer_message', A, x}, #{}]),
    #{members := _} = erpc:call(A, tether_peer_service, get_local_state, []).

num(0) -> 1;
num(_) -> ?NUMTESTS.

exports(Mod) ->
    [FA || {F, _} = FA <- Mod:module_info(exports), F =/= module_info].

survives(Node, Mod, F, Args) ->
    Outcome = try erpc:call(Node, Mod, F, Args, 20000) of
                  _ -> ok
              catch
                  Class:Reason -> {Class, Reason}
              end,
    ?WHENFAIL(ct:pal("~s:~s(~P) -> ~P", [Mod, F, Args, 20, Outcome, 20]),
              Outcome =:= ok).

%% Terms of every kind a caller might pass, and some well-formed ones
%% (names, specs, option maps and lists, funs) so that the checks past
%% the first are reached too.
random_term(Node) ->
    oneof([any(), a_map(), binary(), atom(), largeint(), float(),
           list(byte()), exactly(make_ref()), exactly(self()),
           exactly(Node), exactly(#{name => Node}),
           exactly(fun() -> ok end), exactly(fun(_, _, _) -> ok end),
           opts(), list(opt())]).

opts() ->
    ?LET(KVs, list(opt()), maps:from_list(KVs)).

opt() ->
    oneof([{ack, oneof([true, false, any()])},
           {channel, oneof([default, any()])},
           {partition_key, any()}, {causal_label, any()},
           {transitive, any()}, {ack_timeout_ms, oneof([1, 100, any()])},
           {prune, oneof([true, false, any()])}, {any(), any()}]).

a_map() ->
    ?LET(KVs, list({any(), any()}), maps:from_list(KVs)).
