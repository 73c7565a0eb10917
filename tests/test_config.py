import dataclasses

import pytest

from ray_longtail.config import Config, load_config, replace
from ray_longtail.errors import ConfigError


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
])
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(overrides=[override])


def test_replace_is_type_checked_and_frozen():
    config = replace(Config(), **{"rerank.tail_weight": 0})
    assert config.rerank.tail_weight == 0.0 and isinstance(config.rerank.tail_weight, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rerank.tail_weight = 1.0  # type: ignore[misc]
