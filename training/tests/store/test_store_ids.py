"""Model ids NAME-vX.Y.Z and semantic versions."""

from __future__ import annotations

import pytest

from pumit.errors import InputError
from pumit.store.ids import ModelId, Version, is_full_id, parse_id_or_name, slugify_name, validate_name


def test_parse_full_id() -> None:
    mid = ModelId.parse("knee-seg-v1.2.10")
    assert (mid.name, str(mid.version)) == ("knee-seg", "1.2.10")
    assert str(mid) == "knee-seg-v1.2.10"
    assert str(ModelId.parse("Knee-V1.0.0")) == "knee-v1.0.0"  # ids are case-insensitive


@pytest.mark.parametrize("bad", ["knee", "knee-1.0.0", "knee-v1.0", "knee-v01.0.0", "-v1.0.0", "kn ee-v1.0.0",
                                 "knee-v1.0.0-rc1", "../x-v1.0.0", ""])
def test_malformed_ids_raise_input_error(bad: str) -> None:
    with pytest.raises(InputError, match="malformed model id"):
        ModelId.parse(bad)


def test_version_order_is_numeric() -> None:
    assert Version.parse("1.10.0") > Version.parse("1.9.9")
    assert Version.parse("v2.0.0") == Version(2, 0, 0)
    assert str(Version.parse("1.2.3").bump_patch()) == "1.2.4"
    with pytest.raises(InputError, match="semantic version"):
        Version.parse("1.0")


def test_names() -> None:
    assert validate_name("Knee_seg.2") == "knee_seg.2"
    for bad in ("", "-x", "a b", "x" * 65, "knee-v1.0.0"):
        with pytest.raises(InputError):
            validate_name(bad)
    assert slugify_name("Knee MRI Segmentation!") == "knee-mri-segmentation"
    assert slugify_name("knee-v2.0.0") == "knee"
    assert slugify_name("***") is None


def test_parse_id_or_name() -> None:
    assert parse_id_or_name("knee") == ("knee", None)
    assert parse_id_or_name("knee-v1.0.0") == ("knee", Version(1, 0, 0))
    assert is_full_id("a-v0.0.1") and not is_full_id("a")
    with pytest.raises(InputError, match="bare NAME"):
        parse_id_or_name("no such/model")
