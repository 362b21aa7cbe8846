# A Mix project that depends on tether by path, as an Elixir user's would;
# `make test` runs its ExUnit tests to prove Mix builds tether (C included)
# through rebar3.
defmodule TetherMixCheck.MixProject do
  use Mix.Project

  def project do
    [
      app: :tether_mix_check,
      version: "0.1.0",
      elixir: "~> 1.14",
      deps: [{:tether, path: "../..", manager: :rebar3}]
    ]
  end

  def application, do: [extra_applications: []]
end
