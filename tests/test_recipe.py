"""Recipes: loading, presets, strict validation, --set overrides, dict round trip."""
from __future__ import annotations

import pytest

from audiodiff.errors import AudiodiffError, RecipeError
from audiodiff.recipe import (LMNT_FAST_BETAS, MEL_PRESETS, AudioConfig, Recipe, load_recipe,
                              parse_override, prime_factors)

from conftest import RECIPES, TINY


def write(tmp_path, text: str, name: str = "r.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tiny_recipe_loads_with_its_values():
    r = load_recipe(TINY)
    assert r.model.residual_layers == 6
    assert r.model.residual_channels == 16
    assert r.model.dilation_cycle == 3
    assert r.train.batch_size == 4
    assert r.train.segment == 8192
    assert r.train.learning_rate == pytest.approx(1e-3)
    assert r.data.source == "folder"  # so `train tiny --data DIR` takes any folder of clips
    assert r.data.validation_count == 2
    assert r.diffusion.fast_betas == LMNT_FAST_BETAS


def test_ljspeech_recipe_is_diffwave_base():
    r = load_recipe(RECIPES / "ljspeech.toml")
    assert (r.model.residual_layers, r.model.residual_channels, r.model.dilation_cycle) == (30, 64, 10)
    assert (r.diffusion.steps, r.diffusion.beta_start, r.diffusion.beta_end) == (50, 1e-4, 0.05)
    assert r.diffusion.fast_betas == (1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5)
    assert r.train.batch_size == 16 and r.train.learning_rate == pytest.approx(2e-4)
    assert r.train.segment % r.audio.hop_length == 0


def test_hifigan_preset_fills_audio_section(tmp_path):
    r = load_recipe(write(tmp_path, '[audio]\npreset = "hifigan"\n[data]\nroot = "x"\n'))
    a = r.audio
    assert (a.sample_rate, a.n_fft, a.hop_length, a.win_length, a.n_mels) == (22050, 1024, 256, 1024, 80)
    assert (a.fmin, a.fmax) == (0.0, 8000.0)
    assert (a.center, a.normalized, a.mel_htk, a.mel_norm, a.compression) == (False, False, False, "slaney", "ln")


def test_diffwave_preset_fills_audio_section(tmp_path):
    r = load_recipe(write(tmp_path, '[audio]\npreset = "diffwave"\n[data]\nroot = "x"\n'))
    a = r.audio
    assert a.preset == "diffwave"
    assert (a.fmin, a.fmax, a.center, a.normalized, a.mel_htk, a.mel_norm, a.compression) == (
        20.0, 11025.0, True, True, True, "none", "db_unit")


def test_explicit_audio_key_overrides_preset(tmp_path):
    r = load_recipe(write(tmp_path, '[audio]\npreset = "hifigan"\nfmax = 11025.0\nn_mels = 100\n'
                                    '[data]\nroot = "x"\n'))
    assert r.audio.fmax == 11025.0
    assert r.audio.n_mels == 100
    assert r.audio.n_fft == MEL_PRESETS["hifigan"]["n_fft"]  # the rest still from the preset


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, '[train]\nbatch_sise = 3\n[data]\nroot = "x"\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message
    assert "train.batch_sise" in message
    assert "\n" not in message
    assert isinstance(info.value, AudiodiffError)


def test_wrong_type_names_key_and_file(tmp_path):
    path = write(tmp_path, '[train]\nbatch_size = "x"\n[data]\nroot = "x"\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message and "train.batch_size" in message and "int" in message


@pytest.mark.parametrize("text, key", [
    ("[train]\nlearning_rate = true\n", "train.learning_rate"),   # bool is not a float
    ("[model]\nresidual_layers = 2.5\n", "model.residual_layers"),  # float is not an int
    ("[model]\nconditional = 1\n", "model.conditional"),            # int is not a bool
    ("[diffusion]\nfast_betas = 0.5\n", "diffusion.fast_betas"),    # scalar is not a list
])
def test_other_type_errors(tmp_path, text, key):
    path = write(tmp_path, text + '[data]\nroot = "x"\n')
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        load_recipe(path)


def test_int_accepted_for_float(tmp_path):
    r = load_recipe(write(tmp_path, '[train]\nlearning_rate = 1\n[data]\nroot = "x"\n'))
    assert r.train.learning_rate == 1.0 and isinstance(r.train.learning_rate, float)


@pytest.mark.parametrize("text, key", [
    ("[train]\nbatch_size = 0\n", "train.batch_size"),
    ("[model]\nkernel_size = 4\n", "model.kernel_size"),
    ("[audio]\nhop_length = 17\n", "audio.hop_length"),
    ("[audio]\nfmax = 20000.0\n", "audio.fmax"),
    ("[train]\nema_decay = 1.0\n", "train.ema_decay"),
    ("[diffusion]\nbeta_start = 0.1\nbeta_end = 0.05\n", "diffusion.beta_end"),
    ("[audio]\npreset = \"nope\"\n", "audio.preset"),
    ("[train]\nstft_loss_weight = -0.1\n", "train.stft_loss_weight"),
])
def test_out_of_range_values(tmp_path, text, key):
    path = write(tmp_path, text + '[data]\nroot = "x"\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert key in str(info.value) and str(path) in str(info.value)


def test_unknown_section(tmp_path):
    path = write(tmp_path, '[optimizer]\nlr = 1\n[data]\nroot = "x"\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "[optimizer]" in str(info.value) and str(path) in str(info.value)


def test_missing_data_root_is_an_error(tmp_path):
    with pytest.raises(RecipeError, match=r"data\.root"):
        load_recipe(write(tmp_path, "[train]\nbatch_size = 2\n"))


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "absent.toml")
    bad = write(tmp_path, "[train\nbatch_size = 3\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    assert str(bad) in str(info.value) and "TOML" in str(info.value)


def test_set_overrides_parse_toml_values():
    r = load_recipe(TINY, ["train.batch_size=3", "train.learning_rate=5e-4", 'data.source="folder"',
                           "data.root=/some/where/data", "model.conditional=false",
                           "diffusion.fast_betas=[0.01, 0.5]", "train.ema_decay = 0.5"])
    assert r.train.batch_size == 3 and isinstance(r.train.batch_size, int)
    assert r.train.learning_rate == pytest.approx(5e-4)
    assert r.data.source == "folder"
    assert r.data.root == "/some/where/data"  # a bare path string is kept as text
    assert r.model.conditional is False
    assert r.diffusion.fast_betas == (0.01, 0.5)
    assert r.train.ema_decay == 0.5
    # untouched values stay as in the file
    assert r.train.segment == 8192


def test_set_override_errors():
    with pytest.raises(RecipeError, match="section.key=value"):
        load_recipe(TINY, ["batch_size=3"])
    with pytest.raises(RecipeError, match="section.key=value"):
        load_recipe(TINY, ["train.batch_size"])
    with pytest.raises(RecipeError, match=r"\[optim\]"):
        load_recipe(TINY, ["optim.lr=3"])
    with pytest.raises(RecipeError, match=r"train\.batch_sise"):
        load_recipe(TINY, ["train.batch_sise=3"])
    with pytest.raises(RecipeError, match=r"train\.batch_size must be int"):
        load_recipe(TINY, ["train.batch_size=abc"])


def test_parse_override():
    assert parse_override("train.seed=7") == ("train", "seed", 7)
    assert parse_override("data.root=C:/x y") == ("data", "root", "C:/x y")
    assert parse_override("audio.fmax=8e3") == ("audio", "fmax", 8000.0)


def test_to_dict_from_dict_round_trip():
    r = load_recipe(TINY, ["train.batch_size=3", "audio.n_mels=64"])
    d = r.to_dict()
    assert isinstance(d["diffusion"]["fast_betas"], list)
    assert d["train"]["batch_size"] == 3 and d["audio"]["n_mels"] == 64
    back = Recipe.from_dict(d)
    assert back == r
    assert back.to_dict() == d


def test_from_dict_validates():
    d = load_recipe(TINY).to_dict()
    d["model"]["bogus"] = 1
    with pytest.raises(RecipeError, match=r"ckpt: unknown key model\.bogus"):
        Recipe.from_dict(d, where="ckpt")


def test_prime_factors():
    assert prime_factors(12) == [2, 2, 3]
    assert prime_factors(256) == [2] * 8
    assert prime_factors(300) == [2, 2, 3, 5, 5]
    assert prime_factors(17) == [17]
    assert prime_factors(1) == []


def test_audio_config_default_matches_hifigan():
    defaults = AudioConfig()
    for key, value in MEL_PRESETS["hifigan"].items():
        assert getattr(defaults, key) == value, key
