%% PropEr: random terms into every function the NIF library exports.
%%
%% The calls run on a peer node, so a crash of the VM shows up as a lost
%% node (a failed property) instead of killing the test runner. A NIF may
%% return anything or raise `badarg'; any other exception, and above all
%% a dead node, fails the property. New NIFs are covered as soon as they
%% are exported from tether_nif: the list is read from the module.
%%
%% Random terms never make an engine, so the service NIFs also get random
%% names and metas on a real engine of the peer: every one registers and
%% reads back as it went in, or is refused with `{error, too_big |
%% invalid}'.
-module(tether_nif_prop_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("proper/include/proper.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1]).
-export([every_nif_survives_random_terms/1, the_node_survives/1]).
-export([services_round_trip_random_terms/1]).
%% Run on the peer (this module is loaded there).
-export([peer_engine/0, peer_svc_round_trip/2, peer_svc_info/0]).

-define(NUMTESTS, 300).

all() ->
    [every_nif_survives_random_terms, services_round_trip_random_terms,
     the_node_survives].

init_per_suite(Config) ->
    %% Not linked: init_per_suite's process ends before the cases run.
    %% Its control channel is its distribution connection to this node.
    Peer = tether_test_lib:start_peer(peer:random_name(?MODULE),
                                      #{connection => dist}),
    Node = tether_test_lib:peer_node(Peer),
    {module, tether_nif} = erpc:call(Node, code, ensure_loaded, [tether_nif]),
    {?MODULE, Bin, File} = code:get_object_code(?MODULE),
    {module, ?MODULE} = erpc:call(Node, code, load_binary, [?MODULE, File, Bin]),
    [{peer, Peer}, {node, Node} | Config].

end_per_suite(Config) ->
    ok = tether_test_lib:stop_peer(?config(peer, Config)),
    Config.

every_nif_survives_random_terms(Config) ->
    Node = ?config(node, Config),
    Nifs = [FA || {F, _} = FA <- tether_nif:module_info(exports),
                  F =/= module_info, F =/= init],
    ?assertNotEqual([], Nifs),
    lists:foreach(
      fun({F, Arity}) ->
              Prop = ?FORALL(Args, vector(Arity, random_term()),
                             survives(Node, F, Args)),
              ct:log("tether_nif:~s/~b", [F, Arity]),
              true = proper:quickcheck(Prop, [{numtests, ?NUMTESTS},
                                              {to_file, user}, long_result])
                  =:= true orelse ct:fail({nif_failed, F, Arity})
      end, Nifs).

services_round_trip_random_terms(Config) ->
    Node = ?config(node, Config),
    ok = erpc:call(Node, ?MODULE, peer_engine, []),
    Prop = ?FORALL({Name, Meta}, {random_term(), random_term()},
                   begin
                       R = erpc:call(Node, ?MODULE, peer_svc_round_trip,
                                     [Name, Meta], 10000),
                       ?WHENFAIL(ct:pal("~P, ~P -> ~P",
                                        [Name, 20, Meta, 20, R, 20]),
                                 R =:= ok)
                   end),
    true = proper:quickcheck(Prop, [{numtests, ?NUMTESTS}, {to_file, user},
                                    long_result]) =:= true
        orelse ct:fail(services_round_trip),
    #{bad_msgs := 0, count := 0} =
        erpc:call(Node, ?MODULE, peer_svc_info, []).

the_node_survives(Config) ->
    ?assertEqual(pong, net_adm:ping(?config(node, Config))).

%% A call survives when it returns or raises badarg, and the node lives.
survives(Node, F, Args) ->
    Outcome = try erpc:call(Node, tether_nif, F, Args, 10000) of
                  _ -> ok
              catch
                  error:{exception, badarg, _} -> ok;
                  Class:Reason -> {Class, Reason}
              end,
    ?WHENFAIL(ct:pal("tether_nif:~s(~P) -> ~P", [F, Args, 20, Outcome, 20]),
              Outcome =:= ok).

%% Terms of every kind a caller might pass by mistake.
random_term() ->
    oneof([any(), a_map(), binary(), bitstring(), atom(),
           largeint(), float(), list(byte()), utf8(),
           exactly(make_ref()), exactly(self()),
           exactly(fun erlang:node/0)]).

a_map() ->
    ?LET(KVs, list({any(), any()}), maps:from_list(KVs)).

%% On the peer: an engine kept in a persistent term for the cases.
peer_engine() ->
    {ok, E} = tether_nif:engine_new(#{name => atom_to_binary(node(), utf8),
                                      incarnation => 1,
                                      seed => <<7:256>>,
                                      cookie => <<"prop">>}),
    persistent_term:put({?MODULE, engine}, E).

peer_svc_info() ->
    tether_nif:svc_info(persistent_term:get({?MODULE, engine})).

%% On the peer: registers Name for the calling process with Meta, reads
%% it back every way and unregisters it. ok, or what went wrong.
peer_svc_round_trip(Name, Meta) ->
    E = persistent_term:get({?MODULE, engine}),
    Self = atom_to_binary(node(), utf8),
    Pid = self(),
    case tether_nif:svc_register(E, Name, Pid, Meta) of
        ok ->
            Checks = [{local, tether_nif:svc_local(E, Name) =:= {ok, Pid, Meta}},
                      {lookup, tether_nif:svc_lookup(E, Name) =:=
                           [{Self, Pid, Meta}]},
                      {names, lists:member(Name, tether_nif:svc_names(E))},
                      {unregister, tether_nif:svc_unregister(E, Name) =:= ok},
                      {gone, tether_nif:svc_local(E, Name) =:= undefined},
                      {empty, tether_nif:svc_lookup(E, Name) =:= []}],
            case [C || {C, false} <- Checks] of
                [] -> ok;
                Failed -> {failed, Failed}
            end;
        {error, Why} when Why =:= too_big; Why =:= invalid ->
            ok;
        Other ->
            {unexpected, Other}
    end.
