%% @doc The common_test hook that gives a suite the set-up and clean-up
%% most tether suites share, instead of each suite writing the same
%% init_per_suite/end_per_testcase again. A suite installs it from
%% suite/0:
%%
%% ```
%% suite() -> [{ct_hooks, [tether_case_hook]}].
%% '''
%%
%% Before init_per_suite (which the suite may leave out), the suite's
%% environment is required, as the options `{tether_case_hook, Opts}'
%% say: `require => cnode' (the default) that of a suite starting
%% C-nodes (tether_test_lib:require_env/1), `require => dist' only that
%% this node is distributed (require_dist/2), `require => none' nothing;
%% `compiled => Module' also that Module is compiled. A missing
%% environment fails the suite.
%%
%% Before end_per_testcase (which the suite may leave out, or keep for
%% clean-up of its own), everything the case started through
%% tether_test_lib's start_case_* and start_cluster functions is stopped
%% (tether_test_lib:stop_case/0), and with `flush => true' the case's
%% mailbox is emptied after that. That runs in the test case's process,
%% where those functions keep what they started.
-module(tether_case_hook).

-export([init/2, pre_init_per_suite/3, pre_end_per_testcase/4]).

-type opts() :: #{require => cnode | dist | none, compiled => module(),
                  flush => boolean()}.
-export_type([opts/0]).

%% @doc Keeps the options (a map, see the module doc) as the hook's state.
-spec init(term(), opts() | []) -> {ok, opts()}.
init(_Id, []) ->
    {ok, #{}};
init(_Id, Opts) when is_map(Opts) ->
    {ok, Opts}.

%% @doc Requires the suite's environment before its init_per_suite: the
%% Config, or `{fail, Why}' (and the suite does not run).
-spec pre_init_per_suite(module(), list() | {skip | fail, term()}, opts()) ->
          {list() | {skip | fail, term()}, opts()}.
pre_init_per_suite(_Suite, {SkipOrFail, _} = Earlier, Opts)
  when SkipOrFail =:= skip; SkipOrFail =:= fail ->
    {Earlier, Opts};
pre_init_per_suite(_Suite, Config, Opts) ->
    {require(maps:get(require, Opts, cnode), Opts, Config), Opts}.

require(cnode, #{compiled := M}, Config) ->
    tether_test_lib:require_env(Config, M);
require(cnode, _, Config) ->
    tether_test_lib:require_env(Config);
require(dist, Opts, Config) ->
    tether_test_lib:require_dist(Config, maps:get(compiled, Opts, tether));
require(none, _, Config) ->
    Config.

%% @doc Stops the case's nodes (and empties its mailbox with `flush')
%% before the suite's own end_per_testcase.
-spec pre_end_per_testcase(module(), atom(), list(), opts()) -> {list(), opts()}.
pre_end_per_testcase(_Suite, _Case, Config, Opts) ->
    ok = tether_test_lib:stop_case(),
    _ = case Opts of
            #{flush := true} -> tether_test_lib:flush();
            _ -> []
        end,
    {Config, Opts}.
