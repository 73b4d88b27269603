"""Model pools' pure logic (serving/pools.py) and configuration (serving/config.py)."""

from __future__ import annotations

import re

import pytest
import tiny_models
from pydantic import ValidationError

from serving.config import AppConfig
from serving.errors import ModelNotFoundError
from serving.pools import OTHER_MEMBERS, MemberLabels, PoolMembers, member_id


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """m00, m01 and the entries that are not members: a symlink out of the pool, a
    symlink to a member, a model without safetensors, a file, a hidden directory."""
    root = tmp_path_factory.mktemp("pool")
    tiny_models.classifier_pool(root, 2)
    outside = tiny_models.classifier(tmp_path_factory.mktemp("outside") / "model", seed=7)
    (root / "escape").symlink_to(outside)
    (root / "alias").symlink_to(root / "m01")
    (root / "pickled").mkdir()
    (root / "pickled" / "config.json").write_text("{}")
    (root / "pickled" / "pytorch_model.bin").write_bytes(b"")
    (root / "notes.txt").write_text("")
    hidden = root / ".hidden"
    hidden.mkdir()
    (hidden / "config.json").write_text("{}")
    (hidden / "model.safetensors").write_bytes(b"")
    return root, outside


def test_directory_members_are_the_subdirectories_with_safetensors(pool):
    root, _ = pool
    members = PoolMembers("customers", str(root))
    assert members.ids() == ["alias", "m00", "m01"]
    assert members.source("m00") == str(root / "m00")
    assert members.source("alias") == str(root / "m01")  # a symlink inside the pool


@pytest.mark.parametrize("name", [
    "escape", "pickled", "notes.txt", ".hidden", "..", ".", "m00/..", "../m00", "m00/../m01",
    "", "nope", "m00/", "/etc", "m%2F..",
])
def test_anything_else_is_not_found(pool, name):
    members = PoolMembers("customers", str(pool[0]))
    with pytest.raises(ModelNotFoundError, match="not a member of pool 'customers'"):
        members.source(name)


def test_listed_members_besides_the_directory(pool):
    root, outside = pool
    members = PoolMembers("customers", str(root), [str(outside), "org/name"])
    assert members.ids()[:2] == ["model", "org/name"]
    assert members.source("model") == str(outside)
    assert members.source("org/name") == "org/name"
    assert member_id(str(outside)) == "model" and member_id("org/name") == "org/name"


def test_metric_labels_are_bounded():
    labels = MemberLabels(limit=2)
    assert [labels(m) for m in ["a", "b", "c", "a", "d", "b"]] == ["a", "b", OTHER_MEMBERS,
                                                                  "a", OTHER_MEMBERS, "b"]


def _config(**entry):
    return AppConfig.model_validate({"models": [{"name": "customers",
                                                 "task": "text-classification", **entry}]})


def test_a_pool_entry(pool):
    spec = _config(pool=str(pool[0]), preload=["m00"], max_models_per_replica=2).models[0]
    assert spec.is_pool and spec.model is None
    settings = spec.member_settings(str(pool[0] / "m00"))
    assert settings.model == str(pool[0] / "m00") and settings.task == "text-classification"


@pytest.mark.parametrize("entry,message", [
    ({}, "set `model` (or `pool`/`members`"),
    ({"pool": "/nonexistent"}, "pool directory '/nonexistent' does not exist"),
    ({"pool": "POOL", "preload": ["nope"]}, "preload: customers/nope is not served"),
    ({"pool": "POOL", "preload": ["escape"]}, "preload: customers/escape is not served"),
    ({"members": ["not a model id!"]}, "neither a local directory nor a Hub id"),
    ({"members": ["a/b", "a/b"]}, "two members of pool 'customers' are called 'a/b'"),
    ({"pool": "POOL", "task": "text-generation"}, "pools serve encoder tasks"),
    ({"pool": "POOL", "max_models_per_replica": 0}, "max_models_per_replica"),
    ({"model": "org/name", "preload": ["x"]}, "preload is for model pools"),
])
def test_bad_pool_entries_name_the_problem(pool, entry, message):
    entry = {key: str(pool[0]) if value == "POOL" else value for key, value in entry.items()}
    with pytest.raises(ValidationError, match=re.escape(message)):
        _config(**entry)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    base = tiny_models.classifier(root / "base", seed=42)
    return base, tiny_models.lora_adapters(base, root / "pool", 2)


def test_a_pool_of_adapters_needs_adapter_members_and_the_torch_engine(adapters, pool):
    base, root = adapters
    spec = _config(model=str(base), pool=str(root)).models[0]
    assert spec.adapters and spec.load_settings().model == str(base)
    members = PoolMembers("tenants", str(root), adapters=True)
    assert members.ids() == ["a0", "a1"]
    with pytest.raises(ModelNotFoundError):  # a full model is not an adapter
        PoolMembers("tenants", str(pool[0]), adapters=True).source("m00")
    with pytest.raises(ValidationError, match="engine torch, not quantized"):
        _config(model=str(base), pool=str(root), engine="onnx")
    with pytest.raises(ValidationError, match="is not a PEFT adapter directory"):
        _config(model=str(base), members=[str(pool[0] / "m00")])
