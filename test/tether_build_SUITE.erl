%% common_test suite for what the skeleton promises: the NIF loads (from
%% the priv dir, or next to the beam file when the application is not
%% installed as such) and tether_cnode's command line behaves.
-module(tether_build_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0]).
-export([nif_version_matches_app/1, nif_loads_from_beside_the_beam/1,
         cnode_help/1, cnode_version/1, cnode_rejects_unknown_flag/1,
         cnode_rejects_stray_argument/1]).

all() ->
    [nif_version_matches_app, nif_loads_from_beside_the_beam, cnode_help,
     cnode_version, cnode_rejects_unknown_flag, cnode_rejects_stray_argument].

nif_version_matches_app(_Config) ->
    ok = load_app(),
    {ok, Vsn} = application:get_key(tether, vsn),
    ?assertEqual(Vsn, tether:version()).

%% A copy of the beam and the library under a directory that is not named
%% after the application: code:priv_dir(tether) fails there, so the loader
%% must find ../priv next to the beam.
nif_loads_from_beside_the_beam(Config) ->
    Root = filename:join(?config(priv_dir, Config), "not_an_app"),
    Ebin = filename:join(Root, "ebin"),
    Priv = filename:join(Root, "priv"),
    ok = filelib:ensure_dir(filename:join(Ebin, "x")),
    ok = filelib:ensure_dir(filename:join(Priv, "x")),
    {ok, _} = file:copy(code:which(tether_nif),
                        filename:join(Ebin, "tether_nif.beam")),
    {ok, _} = file:copy(filename:join(code:priv_dir(tether), "tether_nif.so"),
                        filename:join(Priv, "tether_nif.so")),
    %% Not distributed, and only the copy on its code path.
    Peer = tether_test_lib:start_peer(undefined, #{connection => standard_io,
                                                   link => true,
                                                   code_path => [Ebin]}),
    try
        ?assertEqual({error, bad_name},
                     tether_test_lib:peer_call(Peer, code, priv_dir, [tether])),
        ?assertEqual(list_to_binary(tether:version()),
                     tether_test_lib:peer_call(Peer, tether_nif, version, []))
    after
        tether_test_lib:stop_peer(Peer)
    end.

cnode_help(_Config) ->
    {0, Out} = run_cnode(["--help"]),
    ?assertMatch({match, _}, re:run(Out, "^Usage: tether_cnode")),
    ?assertMatch({match, _}, re:run(Out, "--version")).

cnode_version(_Config) ->
    {0, Out} = run_cnode(["--version"]),
    ?assertEqual("tether_cnode " ++ tether:version() ++ "\n", Out).

cnode_rejects_unknown_flag(_Config) ->
    {Status, Out} = run_cnode(["--no-such-flag"]),
    ?assertNotEqual(0, Status),
    ?assertMatch({match, _}, re:run(Out, "unknown option '--no-such-flag'")).

cnode_rejects_stray_argument(_Config) ->
    {Status, Out} = run_cnode(["stray"]),
    ?assertNotEqual(0, Status),
    ?assertMatch({match, _}, re:run(Out, "stray")).

%% Helpers

load_app() ->
    case application:load(tether) of
        ok -> ok;
        {error, {already_loaded, tether}} -> ok
    end.

%% Runs the C-node program with Args; returns its exit status and its
%% stdout and stderr together.
run_cnode(Args) ->
    tether_test_lib:run_cnode(Args).
