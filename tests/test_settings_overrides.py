"""Settings.with_overrides: where command-line flags meet the resolved configuration."""

from __future__ import annotations

import pytest

from syncctl.config import ConfigError, Settings


def test_a_flag_overrides_the_setting_and_an_absent_flag_leaves_it():
    settings = Settings(concurrency=3)

    assert settings.with_overrides(concurrency=12).concurrency == 12
    assert settings.with_overrides(concurrency=None) == settings


@pytest.mark.parametrize("value", [0, -1])
def test_an_override_is_validated_like_the_configuration(value: int):
    with pytest.raises(ConfigError, match="concurrency"):
        Settings().with_overrides(concurrency=value)
