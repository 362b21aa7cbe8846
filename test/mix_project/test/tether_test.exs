defmodule TetherMixCheckTest do
  use ExUnit.Case

  import ExUnit.CaptureIO

  test "the tether dependency compiled and its NIF answers" do
    assert :tether.version() == to_charlist(Application.spec(:tether, :vsn))
  end

  # The build ships EEP-48 doc chunks (doc/chunks/ beside the dependency's
  # ebin), so `h :tether.join` in iex shows the doc, not "was not compiled
  # with docs".
  test "h shows the docs of the tether dependency" do
    assert {:docs_v1, _, :erlang, "application/erlang+html", %{"en" => _}, _, _} =
             Code.fetch_docs(:tether)

    require IEx.Helpers
    out = capture_io(fn -> IEx.Helpers.h(:tether.join()) end)
    assert out =~ "Joins the cluster"
    refute out =~ "compiled without docs"
  end
end
