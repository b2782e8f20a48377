"""Settings that guard secrets: empty means unset, short secrets are refused where they matter."""

from __future__ import annotations

import pytest


def test_an_empty_admin_token_means_off() -> None:
    from app.core.config import Settings

    assert Settings(admin_token="").admin_token is None
    assert Settings(admin_token="   ").admin_token is None
    with pytest.raises(ValueError, match="16"):
        Settings(admin_token="short")
    with pytest.raises(ValueError, match="32"):
        Settings(app_env="production", MESHFOUNDRY_SECRET_KEY="too-short")
