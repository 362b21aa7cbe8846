%% EUnit tests of the documentation a user reads in a shell: the EEP-48
%% doc chunks that the build writes (scripts/doc_chunks.escript), found by
%% code:get_doc/1 as `h/2' in the Erlang shell and `h' in iex find them.
-module(tether_docs_tests).

-include_lib("eunit/include/eunit.hrl").

%% The modules a user calls.
-define(PUBLIC, [tether, tether_rpc, tether_service, tether_nif]).

%% Every export of a public module has an English doc.
public_exports_have_docs_test_() ->
    [{atom_to_list(M), ?_assertEqual([], undocumented(M, [en]))}
     || M <- ?PUBLIC].

%% Every module of the application has a module doc, and every export is
%% documented or hidden on purpose (`@private', the behaviour callbacks).
every_module_is_documented_test_() ->
    _ = application:load(tether),
    {ok, Modules} = application:get_key(tether, modules),
    [{atom_to_list(M),
      fun() ->
              {docs_v1, _, erlang, _, ModuleDoc, _, _} = docs(M),
              ?assertMatch(#{<<"en">> := _}, ModuleDoc),
              ?assertEqual([], undocumented(M, [en, hidden]))
      end} || M <- Modules].

%% What `h(tether, join)' prints: the spec and the doc text. Rendered
%% in a process whose group leader is the node's `user' (shell_docs asks
%% it for the terminal's options, which EUnit's output capture does not
%% answer).
shell_renders_a_function_doc_test() ->
    Docs = docs(tether),
    Self = self(),
    Pid = spawn(fun() ->
                        group_leader(whereis(user), self()),
                        Self ! {self(), shell_docs:render(tether, join, Docs)}
                end),
    Text = receive
               {Pid, Chars} -> unicode:characters_to_list(Chars)
           after 5000 -> ""
           end,
    ?assertNotEqual(nomatch, string:find(Text, "-spec join(")),
    ?assertNotEqual(nomatch, string:find(Text, "Joins the cluster")).

%%% Helpers

%% The chunk of Module, as written by edoc (not the bare one that
%% code:get_doc/1 makes from the debug info when there is no chunk).
docs(Module) ->
    {ok, Docs} = code:get_doc(Module),
    {docs_v1, _, _, Format, _, Meta, _} = Docs,
    ?assertEqual(<<"application/erlang+html">>, Format),
    ?assertNot(maps:get(generated, Meta, false)),
    Docs.

%% The exports of Module whose doc is none of Kinds (`en': an English
%% doc; `hidden': marked private), as {Fun, Arity, What}.
undocumented(Module, Kinds) ->
    {docs_v1, _, _, _, _, _, Entries} = docs(Module),
    Docs = maps:from_list([{{F, A}, kind(Doc)}
                           || {{function, F, A}, _, _, Doc, _} <- Entries]),
    [{F, A, maps:get({F, A}, Docs, missing)}
     || {F, A} <- Module:module_info(exports), F =/= module_info,
        not lists:member(maps:get({F, A}, Docs, missing), Kinds)].

kind(#{<<"en">> := _}) -> en;
kind(hidden) -> hidden;
kind(Other) -> Other.
