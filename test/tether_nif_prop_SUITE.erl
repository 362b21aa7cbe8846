%% PropEr: random terms into every function the NIF library exports.
%%
%% The calls run on a peer node, so a crash of the VM shows up as a lost
%% node (a failed property) instead of killing the test runner. A NIF may
%% return anything or raise `badarg'; any other exception, and above all
%% a dead node, fails the property. New NIFs are covered as soon as they
%% are exported from tether_nif: the list is read from the module.
-module(tether_nif_prop_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("proper/include/proper.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1]).
-export([every_nif_survives_random_terms/1, the_node_survives/1]).

-define(NUMTESTS, 300).

all() ->
    [every_nif_survives_random_terms, the_node_survives].

init_per_suite(Config) ->
    Ebin = filename:dirname(code:which(tether_nif)),
    %% Not linked: init_per_suite's process ends before the cases run.
    {ok, Peer, Node} = peer:start(#{name => peer:random_name(?MODULE),
                                    host => "127.0.0.1",
                                    longnames => true,
                                    args => ["-pa", Ebin, "-setcookie",
                                             atom_to_list(erlang:get_cookie())]}),
    {module, tether_nif} = erpc:call(Node, code, ensure_loaded, [tether_nif]),
    [{peer, Peer}, {node, Node} | Config].

end_per_suite(Config) ->
    peer:stop(?config(peer, Config)),
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
