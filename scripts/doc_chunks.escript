#!/usr/bin/env escript
%% scripts/doc_chunks.escript: writes the EEP-48 doc chunks of src/*.erl
%% (edoc_doclet_chunks and edoc_layout_chunks) to doc/chunks/ in the
%% application's build directory, where code:get_doc/1 (and so `h/2' in
%% the Erlang shell) and Elixir's Code.fetch_docs/1 (and so `h' in iex)
%% look for them: `<app>/doc/chunks/<module>.chunk' beside `<app>/ebin'.
%%
%% rebar.config runs it after every compile, from the project's root:
%% under rebar3 the application is $REBAR_BUILD_DIR/lib/tether; under
%% Mix (`rebar3 bare compile') it is $REBAR_BARE_COMPILER_OUTPUT_DIR.
%% Chunks newer than their sources are kept. Without edoc installed it
%% says so and writes nothing; an edoc error fails the build.
-mode(compile).

main([]) ->
    case app_dir() of
        false ->
            io:format(standard_error, "doc_chunks: neither "
                      "REBAR_BARE_COMPILER_OUTPUT_DIR nor REBAR_BUILD_DIR "
                      "is set (run through rebar3)~n", []),
            halt(2);
        App ->
            main([App])
    end;
main([App]) ->
    Doc = filename:join(App, "doc"),
    Srcs = filelib:wildcard("src/*.erl"),
    Stale = [S || S <- Srcs, stale(S, Doc)],
    case {Stale, code:which(edoc)} of
        {[], _} ->
            ok;
        {_, non_existing} ->
            io:format("doc_chunks: edoc is not installed: no doc chunks~n");
        _ ->
            Opts = [{doclet, edoc_doclet_chunks},
                    {layout, edoc_layout_chunks},
                    {dir, Doc} | edoc_opts()],
            try edoc:files(Srcs, Opts) of
                ok -> ok
            catch
                Class:Reason ->
                    io:format(standard_error, "doc_chunks: edoc failed: "
                              "~p:~p~n", [Class, Reason]),
                    halt(1)
            end
    end;
main(_) ->
    io:format(standard_error, "usage: doc_chunks.escript [APP_DIR]~n", []),
    halt(2).

%% The application's build directory, as rebar3 tells its hooks.
app_dir() ->
    case os:getenv("REBAR_BARE_COMPILER_OUTPUT_DIR") of
        Dir when is_list(Dir), Dir =/= "" ->
            Dir;
        _ ->
            case os:getenv("REBAR_BUILD_DIR") of
                Build when is_list(Build), Build =/= "" ->
                    filename:join([Build, "lib", "tether"]);
                _ ->
                    false
            end
    end.

%% A source whose chunk is missing or older than the source.
stale(Src, Doc) ->
    Chunk = filename:join([Doc, "chunks",
                           filename:basename(Src, ".erl") ++ ".chunk"]),
    filelib:last_modified(Chunk) < filelib:last_modified(Src).

%% The edoc options of rebar.config (`rebar3 edoc' uses the same).
edoc_opts() ->
    case file:consult("rebar.config") of
        {ok, Terms} -> proplists:get_value(edoc_opts, Terms, []);
        {error, _} -> []
    end.
