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


# --------------------------------------------------------------------------------------------
# Ranges


def _all_fields(obj, seen=None) -> set[str]:
    """Bare and class-qualified field names of a dataclass tree."""
    import dataclasses

    seen = set() if seen is None else seen
    for f in dataclasses.fields(obj):
        seen |= {f.name, f"{type(obj).__name__}.{f.name}"}
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _all_fields(value, seen)
    return seen


def test_every_range_rule_names_a_real_field_and_defaults_pass():
    from modalrec.config import RANGES
    from modalrec.core.registry import available_models

    known: set[str] = set()
    for name in available_models():
        cfg = build_config(model=name)  # every model's defaults are inside the ranges
        known |= _all_fields(cfg.model) | _all_fields(cfg.data) | _all_fields(cfg.train) | _all_fields(cfg.eval)
    assert set(RANGES) <= known, f"rules for no field: {sorted(set(RANGES) - known)}"


@pytest.mark.parametrize(
    "model, override, says",
    [
        ("sasrec", "model.n_layers=-1", "model.n_layers=-1 is out of range: it must be >= 1"),
        ("sasrec", "model.hidden_size=0", "model.hidden_size=0 is out of range: it must be >= 1"),
        ("sasrec", "model.dropout=1.0", "model.dropout=1.0 is out of range: it must be in [0, 1)"),
        ("sasrec", "model.init_std=0", "model.init_std=0.0 is out of range: it must be > 0"),
        ("sasrec", "train.patience=0", "train.patience=0 is out of range: it must be >= 1"),
        ("sasrec", "train.window_stride=-1", "train.window_stride=-1 is out of range: it must be >= 0"),
        ("sasrec", "train.warmup_steps=-5", "train.warmup_steps=-5 is out of range: it must be >= 0"),
        ("sasrec", "train.threads=-2", "train.threads=-2 is out of range: it must be >= 0"),
        ("sasrec", "train.eval_every=0", "train.eval_every=0 is out of range: it must be >= 1"),
        ("sasrec", "train.lr=0", "train.lr=0.0 is out of range: it must be > 0"),
        ("sasrec", "train.lr=.nan", "train.lr=nan is out of range: it must be > 0"),
        ("sasrec", "eval.batch_size=0", "eval.batch_size=0 is out of range: it must be >= 1"),
        ("sasrec", "eval.ks=[10,0]", "eval.ks[1]=0 is out of range: it must be >= 1"),
        ("sasrec", "data.time_cut=1", "data.time_cut=1.0 is out of range: it must be in (0, 1)"),
        ("sasrec", "model.hidden_size=31", "model.n_heads=2 must divide model.hidden_size=31"),
        ("pmmrec", "model.fusion_heads=3", "model.fusion_heads=3 must divide model.hidden_size=128"),
        ("pmmrec", "model.text.max_tokens=1", "model.text.max_tokens=1 is out of range: it must be >= 2"),
        ("pmmrec", "model.image_grid=8", "model.image_grid=8 is out of range: it must be in [1, 7]"),
        ("missrec", "model.decoder_layers=0", "model.decoder_layers=0 is out of range: it must be >= 1"),
        ("missrec", "model.image.image_size=4", "model.image.image_size=4 is out of range: it must be >= 8"),
        ("unisrec", "model.temperature=0", "model.temperature=0.0 is out of range: it must be > 0"),
        ("unisrec", "model.n_experts=0", "model.n_experts=0 is out of range: it must be >= 1"),
    ],
)
def test_out_of_range_values_name_key_value_and_range(model, override, says):
    with pytest.raises(ConfigError) as e:
        build_config(overrides=[override], model=model)
    assert says in str(e.value)


def test_meaningful_zeros_are_allowed():
    build_config(overrides=["model.inner_size=0"], model="pmmrec")  # 0 = 4 x hidden_size
    build_config(overrides=["model.encoder_layers=0"], model="missrec")
    build_config(overrides=["train.window_stride=0", "train.threads=0", "train.epochs=0", "data.max_seq_len=0"])


def test_a_field_range_in_metadata_wins():
    import dataclasses

    from modalrec.config import Range, check_ranges

    @dataclasses.dataclass
    class Toy:
        n_layers: int = dataclasses.field(default=0, metadata={"range": Range(0, 3)})

    check_ranges(Toy(), "model")  # 0 allowed by its own range, not the table's >= 1
    with pytest.raises(ConfigError, match=r"model.n_layers=4 is out of range: it must be in \[0, 3\]"):
        check_ranges(Toy(n_layers=4), "model")


def test_unisrec_defaults_to_the_stride_its_grid_chose():
    """bench/grids/unisrec-stride-ml100k.yaml chose overlapping windows (stride 10) for training on a target;
    pre-training keeps non-overlapping ones; an explicit value always wins."""
    assert build_config(model="unisrec").train.window_stride == 10
    assert build_config(model="unisrec", overrides=["model.stage=pretrain"]).train.window_stride == 0
    assert build_config(model="unisrec", overrides=["train.window_stride=0"]).train.window_stride == 0
