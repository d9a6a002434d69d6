import pytest

from modalrec.config import ConfigError, build_config, load_run_config, parse_override, save_config


def test_defaults_and_overrides():
    cfg = build_config(overrides=["train.epochs=3", "model.hidden_size=32", "eval.ks=[5,10]", "data.split=cold"])
    assert cfg.train.epochs == 3
    assert cfg.model.name == "sasrec" and cfg.model.hidden_size == 32
    assert cfg.eval.ks == [5, 10]
    assert cfg.data.split == "cold"


def test_list_override_comma_form_and_float():
    cfg = build_config(overrides=["eval.ks=10,20", "train.lr=5e-4"])
    assert cfg.eval.ks == [10, 20]
    assert cfg.train.lr == pytest.approx(5e-4)


def test_unknown_key_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        build_config(overrides=["train.epoch=3"])
    with pytest.raises(ConfigError, match="Unknown config section 'trian'.*'train'"):
        build_config(overrides=["trian.epochs=3"])
    with pytest.raises(ConfigError, match="hidden_size"):
        build_config(overrides=["model.hiden_size=3"])


def test_wrong_types_are_errors():
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        build_config(overrides=["train.epochs=three"])
    with pytest.raises(ConfigError, match="expected true/false"):
        build_config(overrides=["eval.exclude_history=maybe"])
    with pytest.raises(ConfigError, match="data.split='kfold'"):
        build_config(overrides=["data.split=kfold"])


def test_unknown_model():
    with pytest.raises(ConfigError, match="Unknown model 'sasrek'. Did you mean 'sasrec'"):
        build_config(model="sasrek")


def test_model_switch_uses_that_models_config():
    cfg = build_config(model="pop")
    assert cfg.model.name == "pop"
    with pytest.raises(ConfigError):
        build_config(model="pop", overrides=["model.hidden_size=8"])


def test_no_eval_of_values():
    parts, value = parse_override("data.dataset=__import__('os').system('true')")
    assert parts == ["data", "dataset"] and isinstance(value, str)


def test_roundtrip_yaml(tmp_path):
    cfg = build_config(overrides=["train.epochs=7", "model.n_layers=1"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_run_config(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.sub=value"):
        build_config(overrides=["train.epochs"])
