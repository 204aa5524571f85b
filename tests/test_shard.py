"""ia-resolve --shard K/N: N machines split the jobs exactly, by a hash that
is pinned here so it can never change under a running mirror."""

import hashlib

import pytest

from iatools.contract.shard import item_hash, shard_of
from tests.helpers import base_env, command, jsonl_bytes, parse_jsonl, run

#: Fixed values of the documented hash (ia-resolve(1), "Shards").  If one of
#: these changes, every sharded mirror would start fetching other items.
PINNED = [
    ("nasa", 1011927721943734672, 2, 7),
    ("gov.archives.arc.1", 11952105105549555777, 1, 6),
    ("prelinger", 6227392295821303324, 2, 5),
    ("a", 4681665781835383343, 3, 3),
]
IDS = [f"item-{n:04d}" for n in range(1000)]


def documented_shard(identifier, count):
    """The formula as ia-resolve(1) states it, written out independently."""
    digest = hashlib.blake2b(identifier.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


def resolve_shard(spec, ids, **env):
    result = run([command("ia-resolve"), "--itemlist", "-", "--shard", spec],
                 input="".join(f"{i}\n" for i in ids), env=base_env(**env))
    assert result.returncode == 0, result.stderr
    return [job["id"] for job in parse_jsonl(result.stdout)]


@pytest.mark.parametrize("identifier, value, of3, of7", PINNED)
def test_the_hash_is_pinned(identifier, value, of3, of7):
    assert item_hash(identifier) == value
    assert (shard_of(identifier, 3), shard_of(identifier, 7)) == (of3, of7)


def test_the_command_applies_the_pinned_shards():
    ids = [identifier for identifier, *_ in PINNED]
    for k in (1, 2, 3):
        assert resolve_shard(f"{k}/3", ids) == [i for i, _, of3, _ in PINNED if of3 == k]


def test_three_shards_of_1000_items_are_disjoint_and_cover_all():
    shards = [resolve_shard(f"{k}/3", IDS) for k in (1, 2, 3)]
    seen = [i for shard in shards for i in shard]
    assert sorted(seen) == IDS  # every id once: no overlap, nothing missed
    for k, shard in enumerate(shards, 1):
        assert 250 <= len(shard) <= 420, f"shard {k}/3 has {len(shard)} of 1000"
        assert shard == [i for i in IDS if documented_shard(i, 3) == k]


def test_shards_do_not_depend_on_the_python_hash_seed():
    assert resolve_shard("2/5", IDS, PYTHONHASHSEED="1") == \
        resolve_shard("2/5", IDS, PYTHONHASHSEED="2")


def test_all_files_of_an_item_fall_in_its_shard():
    jobs = [{"id": i, "file": f"{i}_{n}.txt", "batch": "b"} for i in IDS[:60] for n in range(3)]
    kept = {}
    for k in (1, 2):
        result = run([command("ia-resolve"), "-i", "-", "--shard", f"{k}/2"],
                     input=jsonl_bytes(jobs))
        assert result.returncode == 0, result.stderr
        kept[k] = parse_jsonl(result.stdout)
    for k, shard in kept.items():
        assert all(documented_shard(job["id"], 2) == k and job["batch"] == "b" for job in shard)
    assert sorted((j["id"], j["file"]) for s in kept.values() for j in s) == \
        sorted((j["id"], j["file"]) for j in jobs)


def test_one_shard_of_one_keeps_everything():
    assert resolve_shard("1/1", IDS) == IDS


def test_bad_identifiers_are_reported_in_every_shard():
    for k in (1, 2):
        result = run([command("ia-resolve"), "--shard", f"{k}/2", "nasa", "bad/id"])
        assert result.returncode == 1
        assert b"argument 2" in result.stderr and b"bad/id" in result.stderr


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "x", "2", "1/3/5", "-1/3", "1/ 3", ""])
def test_a_bad_shard_is_a_usage_error(spec):
    result = run([command("ia-resolve"), "--shard", spec, "nasa"])
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode().startswith("ia-resolve: error: argument --shard")
