"""The TLS context builder, without servers: what it verifies, what it refuses."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import pydantic
import pytest
import trustme

from coordinator._errors import SettingsError
from coordinator.adapters.redis import acl_users
from coordinator.service import Settings, tls_context
from coordinator.service._tls import diagnose_tls, verification_off


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    client = ca.issue_cert("client.test")
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key", "other")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_pem.write_to_path(str(paths["key"]))
    trustme.CA().cert_pem.write_to_path(str(paths["other"]))
    return paths


def test_plaintext_urls_get_no_context() -> None:
    settings = Settings()
    assert tls_context(settings, "amqp") is None
    assert tls_context(settings, "redis") is None


def test_a_tls_url_gets_a_context_that_verifies_the_certificate_and_the_name(
    pems: dict[str, Path],
) -> None:
    settings = Settings(
        amqp_url="amqps://u:p@broker:5671/",
        redis_url="rediss://redis:6380/0",
        tls_ca_file=pems["ca"],
        tls_cert_file=pems["cert"],
        tls_key_file=pems["key"],
    )
    for server in ("amqp", "redis"):
        context = tls_context(settings, server)  # type: ignore[arg-type]
        assert context is not None
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        assert len(context.get_ca_certs()) == 1  # ours, not the system's


def test_a_server_setting_overrides_the_shared_one(pems: dict[str, Path]) -> None:
    settings = Settings(
        amqp_url="amqps://broker/",
        redis_url="rediss://redis:6380/0",
        tls_ca_file=pems["ca"],
        redis_tls_ca_file=pems["other"],
    )
    amqp, redis = tls_context(settings, "amqp"), tls_context(settings, "redis")
    assert amqp is not None and redis is not None
    assert amqp.get_ca_certs() != redis.get_ca_certs()


def test_the_url_may_name_the_files_as_each_library_does(pems: dict[str, Path]) -> None:
    settings = Settings(
        amqp_url=f"amqps://broker/?cafile={pems['ca']}",
        redis_url=f"rediss://redis:6380/0?ssl_ca_certs={pems['other']}",
    )
    amqp, redis = tls_context(settings, "amqp"), tls_context(settings, "redis")
    assert amqp is not None and redis is not None
    assert len(amqp.get_ca_certs()) == len(redis.get_ca_certs()) == 1
    assert amqp.get_ca_certs() != redis.get_ca_certs()


@pytest.mark.parametrize(
    ("url", "off"),
    [
        ("amqps://broker/?no_verify_ssl=1", ["no_verify_ssl=1"]),
        ("rediss://r:1/0?ssl_cert_reqs=none", ["ssl_cert_reqs=none"]),
        ("rediss://r:1/0?ssl_cert_reqs=CERT_OPTIONAL", ["ssl_cert_reqs=CERT_OPTIONAL"]),
        ("rediss://r:1/0?ssl_check_hostname=False", ["ssl_check_hostname=False"]),
        ("rediss://r:1/0?ssl_cert_reqs=required&ssl_check_hostname=true", []),
        ("amqps://broker/?no_verify_ssl=0", []),
    ],
)
def test_verification_off_is_found_in_the_url(url: str, off: list[str]) -> None:
    assert verification_off(url) == off


def test_verification_off_needs_insecure(pems: dict[str, Path]) -> None:
    url = "rediss://redis:6380/0?ssl_cert_reqs=none"
    with pytest.raises(SettingsError) as refused:
        tls_context(Settings(redis_url=url), "redis")
    assert str(refused.value).startswith(
        "SAGA_REDIS_URL turns TLS verification off (ssl_cert_reqs=none)"
    )
    assert "\n" not in str(refused.value)
    context = tls_context(Settings(redis_url=url, tls_insecure=True), "redis")
    assert context is not None
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_insecure_alone_turns_nothing_off(pems: dict[str, Path]) -> None:
    context = tls_context(Settings(amqp_url="amqps://broker/", tls_insecure=True), "amqp")
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED


def test_files_that_cannot_be_used_are_one_line_each(pems: dict[str, Path]) -> None:
    with pytest.raises(pydantic.ValidationError, match="no such file"):
        Settings(tls_ca_file=pems["ca"].with_name("missing.pem"))
    with pytest.raises(SettingsError, match="not a PEM CA certificate"):
        tls_context(Settings(amqp_url="amqps://b/", tls_ca_file=pems["key"]), "amqp")
    with pytest.raises(SettingsError, match="without a certificate"):
        tls_context(Settings(amqp_url="amqps://b/", tls_key_file=pems["key"]), "amqp")
    mismatched = Settings(
        amqp_url="amqps://b/", tls_cert_file=pems["cert"], tls_key_file=pems["ca"]
    )
    with pytest.raises(SettingsError, match="cannot be loaded"):
        tls_context(mismatched, "amqp")


async def test_a_failure_that_is_not_tls_is_left_to_the_caller() -> None:
    # Nothing listens on port 1: refused, neither TLS nor plaintext answers.
    refused = ConnectionRefusedError(111, "refused")
    assert await diagnose_tls("Redis", "redis://127.0.0.1:1/0", refused) is None
    assert await diagnose_tls("Redis", "rediss://127.0.0.1:1/0", refused) is None


def test_the_deployed_acl_file_is_the_one_saga_acl_prints() -> None:
    deployed = Path(__file__).parents[2] / "deploy" / "redis" / "users.acl"
    assert deployed.read_text() == acl_users("saga")


def test_acl_passwords_are_written_as_their_hash_and_namespaces_are_escaped() -> None:
    text = acl_users("a*b", {"participant": "s3cret"})
    assert "s3cret" not in text
    assert f"#{hashlib.sha256(b's3cret').hexdigest()}" in text
    assert "~a\\*b:reply:*" in text


async def test_a_handshake_cut_short_is_waited_for_and_a_refusal_is_not() -> None:
    cut = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert await diagnose_tls("Redis", "rediss://localhost:1/0", cut) is None
    refused = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert")
    refused.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    line = await diagnose_tls("Redis", "rediss://localhost:1/0", refused)
    assert line is not None and "wants a client certificate" in line
