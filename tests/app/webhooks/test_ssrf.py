"""The SSRF guard with the development setting off (the default): no private or loopback receiver, at registration
and again at delivery, whatever name points there."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import Settings
from app.webhooks import service as webhook_service
from tests.app.webhooks.conftest import Receiver, create_preview, eventually
from tests.conftest import Api, Caller

URL = "/openapi/v1/webhooks"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_local": False})


REFUSED = [
    ("http://127.0.0.1:8080/hook", "webhook URLs must be https"),
    ("http://example.com/hook", "webhook URLs must be https"),
    ("https://127.0.0.1/hook", "URL points to a private or reserved address"),
    ("https://10.1.2.3/hook", "URL points to a private or reserved address"),
    ("https://[::1]/hook", "URL points to a private or reserved address"),
    ("https://[::ffff:192.168.0.1]/hook", "URL points to a private or reserved address"),
    ("https://localhost/hook", "URL points to a private or reserved address"),
    ("https://127.1/hook", "URL points to a private or reserved address"),  # a name that resolves to loopback
    ("https://2130706433/hook", "URL points to a private or reserved address"),  # 127.0.0.1, as a number
    ("https://no-such-host.invalid/hook", "cannot resolve no-such-host.invalid"),
]


@pytest.mark.asyncio
async def test_registration_refuses_what_is_not_a_public_https_url(api: Api, caller: Caller) -> None:
    for url, message in REFUSED:
        response = await api.client.post(URL, json={"url": url}, headers=caller.headers)
        assert (response.status_code, response.json()) == (400, {"message": f"Invalid parameter url: {message}"}), url
    assert (await api.client.get(URL, headers=caller.headers)).json() == []


@pytest.mark.asyncio
async def test_delivery_checks_the_address_again_and_sends_nothing(
    api: Api, caller: Caller, worker, receiver: Receiver, db
) -> None:  # type: ignore[no-untyped-def]
    # Registered when the name still passed (arranged with the check off); at delivery `127.1` resolves to loopback.
    port = receiver.url.split(":")[-1].split("/")[0]
    async with db() as session, session.begin():
        registered = await webhook_service.register(
            session, account_id=caller.account_id, url=f"https://127.1:{port}/hook", base_url=api.base_url,
            server_secret=b"unused", allow_local=True,
        )  # fmt: skip

    await create_preview(api, caller)

    async def refused() -> list[dict[str, Any]]:
        shown = (await api.client.get(f"{URL}/{registered.webhook.id}", headers=caller.headers)).json()
        return list(shown["last_errors"])

    errors = await eventually(refused, "a refused delivery")
    assert errors[0]["message"] == "URL points to a private or reserved address"
    assert errors[0]["status_code"] is None
    assert receiver.requests == []


def test_the_development_setting_is_refused_in_production(tmp_path) -> None:  # type: ignore[no-untyped-def]
    production = {"app_env": "production", "MESHFOUNDRY_HOME": tmp_path, "MESHFOUNDRY_SECRET_KEY": "k" * 40}
    assert Settings(**production).webhook_allow_local is False
    with pytest.raises(ValueError, match="WEBHOOK_ALLOW_LOCAL must not be set in production"):
        Settings(**production, webhook_allow_local=True)
