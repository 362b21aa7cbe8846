defmodule TetherMixCheckTest do
  use ExUnit.Case

  test "the tether dependency compiled and its NIF answers" do
    assert :tether.version() == to_charlist(Application.spec(:tether, :vsn))
  end
end
