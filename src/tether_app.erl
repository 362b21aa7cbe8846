%% @doc The tether application: starts {@link tether_sup}.
%%
%% It starts on any node, distributed or not (Mix starts dependency
%% applications in `mix test'); see {@link tether_config} for the
%% configuration it reads from the application environment.
-module(tether_app).
-behaviour(application).

-export([start/2, stop/1]).

%% @private
-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    tether_sup:start_link().

%% @private
-spec stop(term()) -> ok.
stop(_State) ->
    ok.
