import pytest

from harness.benchmark.binaries import binary_for_abi, parse_binary_options, shipped_binary
from harness.config import load_config
from harness.errors import DeviceError, UserError


def test_toml_overrides_defaults(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_text('[run]\ndevices = "a,b"\n[benchmark]\nnum_runs = 7\nmin_secs = 0.2\n'
                    '[binaries]\narm64-v8a = "/opt/bm"\n')
    config = load_config(path)
    assert config.devices == "a,b"
    assert config.benchmark.num_runs == 7
    assert "--num_runs=7" in config.benchmark.flags()
    assert "--min_secs=0.2" in config.benchmark.flags()
    assert config.binaries == {"arm64-v8a": "/opt/bm"}


@pytest.mark.parametrize("text, words", [
    ("[run]\nnot_a_key = 1\n", "not_a_key"),
    ("[nonsense]\n", "nonsense"),
    ("[binaries]\nmips = 'x'\n", "mips"),
    ("[run\n", "TOML"),
])
def test_bad_config_is_a_user_error_naming_the_input(tmp_path, text, words):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=words):
        load_config(path)


def test_missing_config_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_binary_selection_by_abi(tmp_path):
    assert shipped_binary("x86_64").read_text().startswith("#!")
    assert binary_for_abi("x86_64", {}) == shipped_binary("x86_64")
    with pytest.raises(DeviceError, match="--binary arm64-v8a=PATH"):
        binary_for_abi("arm64-v8a", {})
    custom = tmp_path / "bm"
    custom.write_bytes(b"\x7fELF")
    assert binary_for_abi("arm64-v8a", {"arm64-v8a": str(custom)}) == custom
    with pytest.raises(UserError):
        parse_binary_options(("arm64-v8a",))
