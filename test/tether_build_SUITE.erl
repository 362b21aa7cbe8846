%% common_test suite for what the skeleton promises: the NIF loads (from
%% the priv dir, or next to the beam file when the application is not
%% installed as such) and tether_cnode's command line behaves.
-module(tether_build_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0]).
-export([nif_version_matches_app/1, nif_loads_from_beside_the_beam/1,
         cnode_help/1, cnode_version/1, cnode_rejects_unknown_flag/1,
         cnode_rejects_stray_argument/1, cnode_flags_refused/1,
         cnode_every_flag_documented/1, c_program_with_pkg_config/1,
         c_build_quiet_and_serialised/1]).

all() ->
    [nif_version_matches_app, nif_loads_from_beside_the_beam, cnode_help,
     cnode_version, cnode_rejects_unknown_flag, cnode_rejects_stray_argument,
     cnode_flags_refused, cnode_every_flag_documented,
     c_program_with_pkg_config, c_build_quiet_and_serialised].

suite() ->
    [{timetrap, {minutes, 10}}].

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

%% Bad command lines: each exits with status 2 and one line on stderr
%% that says what is wrong and ends with the pointer to --help. Node
%% names are checked as erl checks them (net_kernel: the part before '@'
%% of letters, digits, '_' and '-'; a host without blanks, and without
%% dots for a short name).
cnode_flags_refused(_Config) ->
    N = ["--name", "a@127.0.0.1", "--cookie", "c"],
    Table =
        [{["--name"], "'--name' needs a value"},
         {["--name", "bad name@127.0.0.1", "--cookie", "c"], "bad --name"},
         {["--name", "a.b@127.0.0.1", "--cookie", "c"], "bad --name"},
         {["--name", "a@bad host", "--cookie", "c"], "bad --name"},
         {["--name", "@127.0.0.1", "--cookie", "c"], "bad --name"},
         {["--sname", "a@b.c", "--cookie", "c"], "no dots"},
         {["--sname", "a!b@h", "--cookie", "c"], "bad --sname"},
         {N ++ ["--join", "b c@127.0.0.1"], "bad --join"},
         {N ++ ["--join", "b@127.0.0.1", "--no-cluster"],
          "--join contradicts --no-cluster"},
         {N ++ ["--no-cluster", "--ring-size", "8"],
          "--ring-size contradicts --no-cluster"},
         {N ++ ["--no-cluster", "--service", "s"],
          "--service contradicts --no-cluster"},
         {N ++ ["--no-cluster", "--heartbeat-ms", "100"],
          "--heartbeat-ms contradicts --no-cluster"},
         {N ++ ["--lead-priority", "3"], "no --lead"},
         {N ++ ["--election-voter", "v@127.0.0.1"], "no --lead"},
         {N ++ ["--trust", "x y=/nonexistent"], "bad --trust"},
         {N ++ ["--election-voter", "v w", "--lead", "l"],
          "bad --election-voter"},
         {N ++ ["--channel", "wide"], "bad --channel"},
         {N ++ ["--channel", "wide:0"], "bad --channel"},
         {N ++ ["--channel", ":2"], "bad --channel"},
         {N ++ ["--channel", "w:2", "--channel", "w:3"], "given twice"},
         {N ++ ["--no-cluster", "--channel", "w:2"],
          "--channel contradicts --no-cluster"},
         {N ++ ["--dial-log-ms", "0"], "bad --dial-log-ms"},
         {N ++ ["--workers", "0"], "bad --workers"},
         {N ++ ["--sname", "b"], "not both"},
         {["--cookie", "c"], "--name or --sname is required"},
         {N ++ ["--cookie-file", "/x"], "not both"},
         {N ++ ["--proto-dist", "inet_tls"], "--ssl-dist-optfile"},
         {N ++ ["--ttl-ms", "500", "--heartbeat-ms", "1000"], "--ttl-ms"},
         {N ++ ["--identity", "/nonexistent"], "bad --identity"},
         {["keygen", "--secret-out"], "needs a value"},
         {["keygen", "--bogus"], "unknown keygen option"}],
    Bad = [{Args, Status, Out}
           || {Args, Want} <- Table,
              {Status, Out} <- [run_cnode(Args)],
              Status =/= 2
                  orelse string:find(Out, Want) =:= nomatch
                  orelse re:run(Out, "\\(try 'tether_cnode --help'\\)\n$")
                         =:= nomatch
                  orelse length(string:split(string:trim(Out), "\n",
                                             all)) =/= 1],
    ?assertEqual([], Bad).

%% Every long flag the parser knows (the option tables of
%% c_src/cnode/cli.c) is in --help and in tether/cli.h's list.
cnode_every_flag_documented(_Config) ->
    Src = source("c_src/cnode/cli.c"),
    Header = source("c_src/include/tether/cli.h"),
    {match, Found} = re:run(Src, "\\{\"([a-z0-9-]+)\", (?:required|no)_argument",
                            [global, {capture, all_but_first, list}]),
    Flags = lists:usort([F || [F] <- Found]),
    ?assert(length(Flags) > 30),
    {0, Help} = run_cnode(["--help"]),
    Missing = [{F, Where}
               || F <- Flags,
                  {Where, Text} <- [{help, Help}, {cli_h, Header}],
                  string:find(Text, "--" ++ F) =:= nomatch],
    ?assertEqual([], Missing).

%% examples/hello, a program outside the C build, is built with nothing
%% but what README.md shows (`pkg-config --cflags --libs tether' against
%% priv/tether.pc) and works: stock Erlang calls its C function.
c_program_with_pkg_config(Config) ->
    Exe = filename:join(?config(priv_dir, Config), "hello"),
    Dir = filename:join(root(), "examples/hello"),
    {0, Out} = sh(["make", "-C", Dir, "OUT=" ++ Exe]),
    ct:log("~s", [Out]),
    {0, PcOut} = sh(["env", "PKG_CONFIG_PATH=" ++ priv(), "pkg-config",
                     "--cflags", "--libs", "tether"]),
    ?assertNotEqual(nomatch, string:find(PcOut, "-ltether")),
    ?assertEqual({0, "hello " ++ tether:version() ++ "\n"},
                 sh([Exe, "--version"])),
    {ok, C} = tether_test_lib:start_cnode(#{exe => Exe, prog => "hello",
                                             log_dir => ?config(priv_dir,
                                                                Config)}),
    try
        Node = tether_test_lib:cnode_node(C),
        ?assertEqual(<<"hello, world">>,
                     rpc:call(Node, hello, greet, [<<"world">>], 10000)),
        ?assertMatch({badrpc, {'EXIT', {badarg, _}}},
                     rpc:call(Node, hello, greet, [world], 10000))
    after
        tether_test_lib:stop_cnode(C)
    end.

%% scripts/build_c.sh (rebar3's and Mix's pre-compile hook), on a copy of
%% the tree: two builds started at once after a change take turns (the
%% changed file is compiled once, every output is whole), and a build of
%% the unchanged tree prints nothing and touches no file.
c_build_quiet_and_serialised(Config) ->
    Copy = filename:join(?config(priv_dir, Config), "tree"),
    ok = filelib:ensure_dir(filename:join(Copy, "x")),
    {0, _} = sh(["sh", "-c", "tar -C \"$0\" -cf - --exclude=c_src/build/asan"
                 " --exclude=c_src/build/vg --exclude=c_src/build/bench"
                 " c_src examples scripts priv | tar -C \"$1\" -xf -",
                 root(), Copy]),
    Build = filename:join(Copy, "scripts/build_c.sh"),
    Priv = filename:join(Copy, "priv"),
    %% The copy kept its times: up to date.
    ?assertEqual({0, ""}, sh([Build])),
    Cli = filename:join(Copy, "c_src/cnode/cli.c"),
    {ok, Src} = file:read_file(Cli),
    ok = file:write_file(Cli, [Src, "\n/* changed */\n"]),
    Self = self(),
    _ = [spawn_link(fun() -> Self ! {built, I, sh([Build])} end)
         || I <- [1, 2]],
    Outs = [receive {built, I, R} -> R after 600000 -> error(timeout) end
            || I <- [1, 2]],
    ct:log("~p", [Outs]),
    ?assertEqual([0, 0], [S || {S, _} <- Outs]),
    Compiles = [L || {_, O} <- Outs, L <- string:split(O, "\n", all),
                     string:find(L, "-c cnode/cli.c") =/= nomatch],
    ?assertMatch([_], Compiles),
    ?assertEqual({0, "tether_cnode " ++ tether:version() ++ "\n"},
                 sh([filename:join(Priv, "tether_cnode"), "--version"])),
    {0, Members} = sh(["ar", "t", filename:join(Priv, "libtether.a")]),
    ?assertNotEqual(nomatch, string:find(Members, "cli.o")),
    ?assertEqual([], filelib:wildcard("**/*.tmp.*", Priv)),
    Before = mtimes(Priv),
    ?assertEqual({0, ""}, sh([Build])),
    ?assertEqual(Before, mtimes(Priv)).

%% Helpers

%% The source tree (priv/ is the tree's own, linked into _build).
root() ->
    filename:join(tether_test_lib:priv_dir(), "..").

priv() ->
    filename:absname(tether_test_lib:priv_dir()).

%% Every file under Dir with its modification time.
mtimes(Dir) ->
    [{F, filelib:last_modified(F)}
     || F <- filelib:wildcard(filename:join(Dir, "**/*")), filelib:is_regular(F)].

%% Runs a program (found on PATH) with arguments, no shell; returns its
%% exit status and its stdout and stderr together.
sh([Prog | Args]) ->
    Exe = case filename:pathtype(Prog) of
              absolute -> Prog;
              _ -> os:find_executable(Prog)
          end,
    Port = open_port({spawn_executable, Exe},
                     [{args, Args}, exit_status, stderr_to_stdout, binary]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, [Acc, D]);
        {Port, {exit_status, S}} -> {S, unicode:characters_to_list(Acc)}
    after 600000 ->
            error({timeout, Port})
    end.

%% The text of a file of the source tree (beside the priv directory, as
%% the test library finds c_src/build).
source(Rel) ->
    {ok, Bin} = file:read_file(filename:join(root(), Rel)),
    binary_to_list(Bin).

load_app() ->
    case application:load(tether) of
        ok -> ok;
        {error, {already_loaded, tether}} -> ok
    end.

%% Runs the C-node program with Args; returns its exit status and its
%% stdout and stderr together.
run_cnode(Args) ->
    tether_test_lib:run_cnode(Args).
