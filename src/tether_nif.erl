%% @doc Loader and stubs for `tether_nif.so', the C core inside the BEAM.
%%
%% The library is looked up in the application's priv directory and, when
%% the application is not installed as such (a bare `-pa' of the ebin
%% directory), in `../priv' next to this module's beam file. Every stub
%% raises `nif_error' if the library did not load.
-module(tether_nif).

-export([version/0]).

-on_load(init/0).

-define(LIB, "tether_nif").

%% @private Loads the shared library; called by the code server.
-spec init() -> ok | {error, term()}.
init() ->
    erlang:load_nif(filename:join(priv_dir(), ?LIB), 0).

%% @doc The version string of the C library, for example `<<"0.1.0">>'.
-spec version() -> binary().
version() ->
    erlang:nif_error({not_loaded, ?MODULE}).

-spec priv_dir() -> file:filename().
priv_dir() ->
    case code:priv_dir(tether) of
        {error, bad_name} ->
            Ebin = filename:dirname(code:which(?MODULE)),
            filename:join(filename:dirname(Ebin), "priv");
        Dir ->
            Dir
    end.
