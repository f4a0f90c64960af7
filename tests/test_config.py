"""ClusterConfig / ProtocolParams validation (PROTOCOL.md section 1): every invalid
configuration fails with a pydantic ValidationError that names the offending field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError
from ubft.replica.core.config import ClusterConfig, ProtocolParams, SlowPathMode

KeyHex = Callable[[int], str]


def _raw(
    key_hex: KeyHex, n: int = 3, f: int = 1, memnodes: int = 3, **extra: Any
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "cluster_id": "prod-1",
        "f": f,
        "members": [{"id": i, "public_key": key_hex(i)} for i in range(n)],
        "memory_nodes": [{"id": j, "public_key": key_hex(50 + j)} for j in range(memnodes)],
        "admin_public_key": key_hex(99),
    }
    raw.update(extra)
    return raw


def _names(exc: ValidationError, field: str) -> bool:
    """The field appears in some error's location or message."""
    for err in exc.errors():
        if field in (str(part) for part in err["loc"]) or field in err["msg"]:
            return True
    return False


def _rejects(field: str, build: Callable[[], object]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        build()
    assert _names(info.value, field), f"{field!r} not named in {info.value.errors()}"
    return info.value


# --------------------------------------------------------------------------- accepted


def test_valid_config_is_accepted(key_hex: KeyHex) -> None:
    cfg = ClusterConfig.model_validate(_raw(key_hex))
    assert cfg.n == 3 and cfg.f == 1
    assert cfg.member_ids == (0, 1, 2)
    assert cfg.memnode_ids == (0, 1, 2)
    assert cfg.cluster_id_bytes == b"prod-1"
    assert cfg.member_keys()[1] == bytes.fromhex(key_hex(1))
    assert cfg.params == ProtocolParams()
    assert cfg.params.checkpoint_interval == 128 and cfg.params.ctb_checkpoint_interval == 64


def test_valid_f2_with_five_members_and_one_memory_node(key_hex: KeyHex) -> None:
    cfg = ClusterConfig.model_validate(_raw(key_hex, n=5, f=2, memnodes=1))
    assert cfg.n == 5


def test_config_is_frozen(key_hex: KeyHex) -> None:
    cfg = ClusterConfig.model_validate(_raw(key_hex))
    with pytest.raises(ValidationError):
        cfg.f = 2  # type: ignore[misc]


def test_params_accept_boundaries() -> None:
    p = ProtocolParams(tail=2, window=2, inflight_max=1, slow_path_mode="always")
    assert p.slow_path_mode is SlowPathMode.ALWAYS
    assert ProtocolParams(window=16, inflight_max=8).inflight_max == 8


# --------------------------------------------------------------------------- leader rotation


def test_leader_rotates_over_members_in_configured_order(key_hex: KeyHex) -> None:
    raw = _raw(key_hex)
    raw["members"] = [{"id": i, "public_key": key_hex(i)} for i in (7, 3, 11)]
    cfg = ClusterConfig.model_validate(raw)
    assert [cfg.leader(v) for v in range(7)] == [7, 3, 11, 7, 3, 11, 7]
    assert cfg.leader(3 * 1000 + 2) == 11


# --------------------------------------------------------------------------- membership


@pytest.mark.parametrize(("n", "f"), [(2, 1), (4, 1), (1, 1), (3, 2), (6, 2)])
def test_n_must_be_2f_plus_1(key_hex: KeyHex, n: int, f: int) -> None:
    _rejects("members", lambda: ClusterConfig.model_validate(_raw(key_hex, n=n, f=f)))


@pytest.mark.parametrize("memnodes", [0, 2, 4])
def test_even_number_of_memory_nodes_is_rejected(key_hex: KeyHex, memnodes: int) -> None:
    _rejects("memory_nodes", lambda: ClusterConfig.model_validate(_raw(key_hex, memnodes=memnodes)))


def test_duplicate_member_id_is_rejected(key_hex: KeyHex) -> None:
    raw = _raw(key_hex)
    raw["members"][2]["id"] = 0
    err = _rejects("members", lambda: ClusterConfig.model_validate(raw))
    assert "duplicate member id" in str(err)


def test_duplicate_member_key_is_rejected(key_hex: KeyHex) -> None:
    raw = _raw(key_hex)
    raw["members"][2]["public_key"] = raw["members"][0]["public_key"]
    err = _rejects("members", lambda: ClusterConfig.model_validate(raw))
    assert "public_key" in str(err)


def test_duplicate_memory_node_id_is_rejected(key_hex: KeyHex) -> None:
    raw = _raw(key_hex)
    raw["memory_nodes"][1]["id"] = 0
    _rejects("memory_nodes", lambda: ClusterConfig.model_validate(raw))


def test_member_id_out_of_range_is_rejected(key_hex: KeyHex) -> None:
    raw = _raw(key_hex)
    raw["members"][0]["id"] = 1 << 16
    _rejects("id", lambda: ClusterConfig.model_validate(raw))


# --------------------------------------------------------------------------- keys

BAD_KEYS = {
    "not_hex": "zz" * 32,
    "odd_hex": "abc",
    "too_short": "11" * 31,
    "too_long": "11" * 33,
    "empty": "",
    "all_zero_point": "00" * 32,  # decodes to a small-order point
    "identity_point": "01" + "00" * 31,
    "non_canonical": "ff" * 32,
}


@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
def test_bad_member_key_is_rejected(key_hex: KeyHex, bad: str) -> None:
    raw = _raw(key_hex)
    raw["members"][1]["public_key"] = BAD_KEYS[bad]
    _rejects("public_key", lambda: ClusterConfig.model_validate(raw))


@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
def test_bad_memory_node_key_is_rejected(key_hex: KeyHex, bad: str) -> None:
    raw = _raw(key_hex)
    raw["memory_nodes"][0]["public_key"] = BAD_KEYS[bad]
    err = _rejects("public_key", lambda: ClusterConfig.model_validate(raw))
    assert any("memory_nodes" in (str(p) for p in e["loc"]) for e in err.errors())


@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
def test_bad_admin_key_is_rejected(key_hex: KeyHex, bad: str) -> None:
    _rejects(
        "admin_public_key",
        lambda: ClusterConfig.model_validate(_raw(key_hex, admin_public_key=BAD_KEYS[bad])),
    )


# --------------------------------------------------------------------------- other fields


@pytest.mark.parametrize("cluster_id", ["", "Upper", "-lead", "has space", "x" * 65])
def test_bad_cluster_id_is_rejected(key_hex: KeyHex, cluster_id: str) -> None:
    _rejects(
        "cluster_id", lambda: ClusterConfig.model_validate(_raw(key_hex, cluster_id=cluster_id))
    )


def test_negative_epoch_is_rejected(key_hex: KeyHex) -> None:
    _rejects("epoch", lambda: ClusterConfig.model_validate(_raw(key_hex, epoch=-1)))


def test_extra_field_is_rejected_at_every_level(key_hex: KeyHex) -> None:
    _rejects("bogus", lambda: ClusterConfig.model_validate(_raw(key_hex, bogus=1)))
    raw = _raw(key_hex)
    raw["members"][0]["role"] = "leader"
    _rejects("role", lambda: ClusterConfig.model_validate(raw))
    raw = _raw(key_hex)
    raw["memory_nodes"][0]["rdma"] = True
    _rejects("rdma", lambda: ClusterConfig.model_validate(raw))
    _rejects("tial", lambda: ProtocolParams.model_validate({"tial": 128}))
    _rejects("tial", lambda: ClusterConfig.model_validate(_raw(key_hex, params={"tial": 128})))


# --------------------------------------------------------------------------- protocol params


@pytest.mark.parametrize("tail", [3, 127, 129])
def test_odd_tail_is_rejected(tail: int) -> None:
    _rejects("tail", lambda: ProtocolParams(tail=tail))


@pytest.mark.parametrize("window", [3, 255])
def test_odd_window_is_rejected(window: int) -> None:
    _rejects("window", lambda: ProtocolParams(window=window, inflight_max=1))


@pytest.mark.parametrize(("window", "inflight"), [(16, 9), (2, 2), (256, 129)])
def test_inflight_max_above_half_window_is_rejected(window: int, inflight: int) -> None:
    _rejects("inflight_max", lambda: ProtocolParams(window=window, inflight_max=inflight))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tail", 0),
        ("tail", 1 << 17),
        ("window", 0),
        ("batch_max", 0),
        ("client_window", 0),
        ("inflight_max", 0),
        ("fast_path_timeout_ns", 0),
        ("fast_timeout_ns", -1),
        ("max_reply_bytes", 15),
        ("echo_digest_threshold_bytes", -1),
        ("slow_path_mode", "sometimes"),
    ],
)
def test_out_of_range_param_is_rejected(field: str, value: object) -> None:
    _rejects(field, lambda: ProtocolParams.model_validate({field: value}))


def test_bad_params_inside_cluster_config_are_rejected(key_hex: KeyHex) -> None:
    _rejects("tail", lambda: ClusterConfig.model_validate(_raw(key_hex, params={"tail": 7})))
    _rejects(
        "inflight_max",
        lambda: ClusterConfig.model_validate(
            _raw(key_hex, params={"window": 8, "inflight_max": 5})
        ),
    )
