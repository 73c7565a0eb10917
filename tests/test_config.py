import dataclasses
import pickle
import re

import pytest

from ray_longtail.config import RERANK_METHODS, Config, load_config, replace
from ray_longtail.errors import ConfigError
from ray_longtail.typed_config import InvalidValueError, number


def test_packaged_yaml_matches_dataclass_defaults():
    assert load_config() == Config()


def test_overrides_are_typed_and_take_precedence(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("embed:\n  batch_size: 32\nsplit:\n  test_days: 10\n")
    config = load_config(yaml_file, overrides=["embed.batch_size=256", "split.test_days=null",
                                               "split.test_fraction=0.1", "retrieve.sources=[content, ease]"])
    assert config.embed.batch_size == 256
    assert config.split.test_days is None and config.split.test_fraction == 0.1
    assert config.retrieve.sources == ["content", "ease"]
    assert load_config(yaml_file).embed.batch_size == 32


@pytest.mark.parametrize("override, words", [
    ("embed.batch_sise=3", "embed.batch_sise"),
    ("embed.batch_size=big", "integer"),
    ("eval.exclude_seen=maybe", "true/false"),
    ("nosection.key=1", "nosection"),
    ("embed=3", "section"),
    ("embed.runtime=onx", "auto, onnx, torch"),
])
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(overrides=[override])


def test_replace_is_type_checked_and_frozen():
    config = replace(Config(), **{"rerank.tail_weight": 0})
    assert config.rerank.tail_weight == 0.0 and isinstance(config.rerank.tail_weight, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rerank.tail_weight = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("override, key", [
    ("rerank.method=xqad", "rerank.method"),
    ("embed.device=gpu", "embed.device"),
    ("embed.device=cuda:x", "embed.device"),
    ("tune.objective=gini@10", "tune.objective"),
    ("tune.objective=ndcg@5", "tune.objective"),
    ("tune.objective=ndcg", "tune.objective"),
    ("data.max_unknown_item_share=1.5", "data.max_unknown_item_share"),
    ("data.sample_users_fraction=0", "data.sample_users_fraction"),
    ("split.test_days=0", "split.test_days"),
    ("split.valid_days=-1", "split.valid_days"),
    ("split.test_fraction=1.0", "split.test_fraction"),
    ("discover.head_share=1", "discover.head_share"),
    ("rank.holdout_share=0", "rank.holdout_share"),
    ("rank.subsample=1.01", "rank.subsample"),
    ("rank.eta=0", "rank.eta"),
    ("rank.early_stopping_rounds=-1", "rank.early_stopping_rounds"),
    ("rank.cpus_per_worker=0", "rank.cpus_per_worker"),
    ("rerank.tail_weight=-0.1", "rerank.tail_weight"),
    ("rerank.ndcg_tolerance=2", "rerank.ndcg_tolerance"),
    ("rerank.depth=0", "rerank.depth"),
    ("eval.tail_weights=[0.0, 1.5]", "eval.tail_weights"),
    ("eval.ks=[10, 0]", "eval.ks"),
    ("eval.max_users=0", "eval.max_users"),
    ("embed.batch_size=0", "embed.batch_size"),
    ("embed.num_gpus_per_actor=-1", "embed.num_gpus_per_actor"),
    ("retrieve.n_per_source=0", "retrieve.n_per_source"),
    ("retrieve.ease_lambda=0", "retrieve.ease_lambda"),
    ("profile.half_life_days=0", "profile.half_life_days"),
    ("tune.num_samples=0", "tune.num_samples"),
    ("ray.num_cpus=0", "ray.num_cpus"),
])
def test_out_of_range_values_name_the_dotted_key(override, key):
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}' must be .*; got "):
        load_config(overrides=[override])


@pytest.mark.parametrize("overrides, key", [
    (["eval.ks=[]"], "eval.ks"),
    (["eval.tail_weights=[]"], "eval.tail_weights"),
    (["split.test_days=null"], "split.test_days"),
    (["split.test_days=null", "split.test_fraction=0.5"], "split.test_fraction"),
    (["split.test_days=null", "split.test_fraction=0.3", "split.valid_fraction=0.7"], "split.valid_fraction"),
    (["eval.ks=[20]"], "tune.objective"),  # the default objective ndcg@10 is no longer reported
    (["embed.runtime=onnx", "embed.device=cuda"], "embed.runtime"),
    (["embed.runtime=onnx", "embed.num_gpus_per_actor=0.5"], "embed.runtime"),
])
def test_cross_field_rules_name_the_dotted_key(overrides, key):
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}' must be "):
        load_config(overrides=overrides)


def test_error_message_shows_the_value_and_the_allowed_set():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["rerank.method=xqad"])
    assert str(info.value) == f"config key 'rerank.method' must be one of {', '.join(RERANK_METHODS)}; got 'xqad'"
    with pytest.raises(ConfigError, match=re.escape("must be in (0, 1]; got 0.0")):
        load_config(overrides=["rank.subsample=0"])


@pytest.mark.parametrize("overrides", [
    ["rerank.method=mmr"],
    ["embed.device=cpu"], ["embed.device=cuda"], ["embed.device=cuda:1"],
    ["data.max_unknown_item_share=0", "data.sample_users_fraction=1"],
    ["data.max_unknown_item_share=1"],
    ["rank.subsample=1", "rank.early_stopping_rounds=0", "embed.num_gpus_per_actor=0"],
    ["rerank.tail_weight=0", "rerank.ndcg_tolerance=1"],
    ["rerank.tail_weight=1", "rerank.ndcg_tolerance=0"],
    ["eval.tail_weights=[0, 1]", "eval.ks=[1]", "tune.objective=cold_recall@1"],
    ["eval.ks=[5, 50]", "tune.objective=novelty@50"],
    ["split.test_days=null", "split.test_fraction=0.4", "split.valid_fraction=0.5"],
    ["split.test_days=null", "split.test_fraction=0.49"],
    ["split.valid_days=0.5", "eval.max_users=1", "ray.num_cpus=1"],
])
def test_edge_values_load(overrides):
    load_config(overrides=overrides)


@pytest.mark.parametrize("changes, key", [
    ({"rerank.method": "nope"}, "rerank.method"),
    ({"rerank.tail_weight": 1.5}, "rerank.tail_weight"),
    ({"tune.objective": "recall@7"}, "tune.objective"),
    ({"eval.ks": []}, "eval.ks"),
    ({"split.test_days": None}, "split.test_days"),
])
def test_replace_is_validated_like_load_config(changes, key):
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}' must be "):
        replace(Config(), **changes)
    assert replace(Config(), **{"rerank.method": "mmr", "eval.ks": [7], "tune.objective": "recall@7"}).eval.ks == [7]


def test_every_dataclass_default_satisfies_its_constraints():
    assert replace(Config()) == Config()


def test_invalid_value_error_survives_pickling():
    error = InvalidValueError("rerank.method", "x", "one of xquad, mmr")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ConfigError) and str(copy) == str(error) and copy.key == "rerank.method"


def test_number_rejects_two_bounds_on_one_side():
    with pytest.raises(ValueError):
        number(1, ge=0, gt=0)


def test_exponent_notation_without_a_dot_is_a_number():
    """PyYAML (YAML 1.1) reads `5e-5` as a string; a float key takes it as the number it means."""
    assert load_config(overrides=["embed.finetune.learning_rate=5e-5"]).embed.finetune.learning_rate == 5e-5
    with pytest.raises(ConfigError, match="expects a number"):
        load_config(overrides=["embed.finetune.learning_rate=5e-5x"])
