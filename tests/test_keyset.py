"""KeySet, TaggedKeys (iatools.base.keyset) and KeyMap (iatools.base.keymap)
judged against a plain Python set or dict fed the same random hashes,
repeats and all: lookups in small batches and in batches large enough to
be sorted first, additions past the size where they are sorted into runs,
removals, compactions, and a round trip through a real checkpoint file.
"""

import random
import subprocess
import sys
import zlib

import pytest

from iatools.base.keymap import KeyMap
from iatools.base.keyset import KeySet, TaggedKeys
from iatools.log import checkpoint
from tests.helpers import REPO

#: Enough hashes in one lookup for the sorted path, and in one set for its
#: additions to be sorted into several runs.
LARGE = 5_000
MANY = 1_200_000


def random_hashes(rng, count):
    return [rng.getrandbits(64) - (1 << 63) for _ in range(count)]


def picks(rng, pool, count):
    """``count`` hashes of ``pool`` and as many unknown ones, mixed."""
    asked = rng.choices(pool, k=count) + random_hashes(rng, count)
    rng.shuffle(asked)
    return asked


def filled_set(rng, pool, rounds, count):
    """A KeySet and its model, fed ``rounds`` batches of ``count`` hashes of
    ``pool`` (repeats among them)."""
    keys, model = KeySet(), set()
    for _ in range(rounds):
        batch = rng.choices(pool, k=count)
        keys.add(batch)
        model.update(batch)
    return keys, model


def assert_same_set(keys, model, rng, pool):
    for count in (1, 7, 256, LARGE):
        asked = picks(rng, pool, count)
        assert keys.contains_each(asked) == [h in model for h in asked]
    assert [h in keys for h in asked[:50]] == [h in model for h in asked[:50]]
    assert sorted(keys.hashes().tolist()) == sorted(model)
    assert len(keys.hashes()) == len(model)


def test_the_key_hashes_are_those_of_every_earlier_version():
    # Checkpoints and other processes hold these: they change only with
    # the checkpoints' MAGIC and the name of the hash they hold.
    keys = KeySet(0x0123456789abcdef)
    hashes = [-6934856655657458907, -9129957593041509249, -5566351399199633108]
    assert keys.hash_keys([b"item", b"item/file.txt", b""]) == hashes
    assert [keys.hash_key(k) for k in (b"item", b"item/file.txt", b"")] == hashes


def test_a_key_hashes_alike_alone_and_among_keys_of_every_length():
    rng = random.Random(5)
    keys = [rng.randbytes(rng.randrange(70)) for _ in range(5_000)]
    keys += [b"", b"a", b"a\0", b"abcdefgh", b"abcdefgh\0", b"\0" * 8, b"\0" * 9]
    key_set = KeySet(rng.getrandbits(64))
    together = key_set.hash_keys(keys)
    assert together == [key_set.hash_key(key) for key in keys]
    assert together == [key_set.hash_keys([key])[0] for key in keys]
    assert key_set.hash_array(keys).tolist() == together
    assert len(set(together)) == len(set(keys))


def test_the_salt_changes_every_hash():
    keys = [b"item%d" % n for n in range(1_000)]
    assert not set(KeySet(1).hash_keys(keys)) & set(KeySet(2).hash_keys(keys))


def test_a_key_set_holds_what_a_set_holds():
    rng = random.Random(1)
    pool = random_hashes(rng, 20_000)
    keys, model, added = KeySet(), set(), 0
    for round_ in range(40):
        batch = rng.choices(pool, k=rng.choice([0, 1, 30, 3_000]))
        keys.add(batch)
        model.update(batch)
        added += len(batch)
        assert keys.added == added and bool(keys) == bool(added)
        if round_ % 5 == 0:
            assert_same_set(keys, model, rng, pool)
    assert_same_set(keys, model, rng, pool)


def test_hashes_of_a_crowded_bucket_are_found_past_the_window():
    # Lookups look first in the first few places of a hash's bucket (its
    # top bits); 200 hashes sharing their top 40 bits make one bucket far
    # longer than that.
    rng = random.Random(5)
    crowded = [(0x1234567890 << 24) + rng.getrandbits(24) for _ in range(200)]
    pool = random_hashes(rng, 2_000) + crowded
    keys = KeySet()
    keys.add(pool)
    model = set(pool)
    near = [h + 1 for h in crowded if h + 1 not in model]
    asked = crowded + near + random_hashes(rng, 100)
    assert keys.contains_each(asked) == [h in model for h in asked]
    assert_same_set(keys, model, rng, pool)


def test_a_key_set_of_a_million_hashes_sorted_in_runs():
    rng = random.Random(2)
    pool = random_hashes(rng, MANY)
    keys, model = KeySet(), set()
    for start in range(0, MANY, 100_000):
        batch = pool[start:start + 150_000]  # overlapping: repeats
        keys.add(batch)
        model.update(batch)
    assert_same_set(keys, model, rng, pool)
    keys.compact()
    assert keys.added == len(model)
    assert_same_set(keys, model, rng, pool)


@pytest.mark.parametrize("count", [1, 3, 50, LARGE + 1])
def test_discarded_hashes_are_gone_and_the_others_stay(count):
    rng = random.Random(4)
    pool = random_hashes(rng, 30_000)
    keys, model = KeySet(), set()
    for _ in range(3):
        more, more_model = filled_set(rng, pool, 1, 10_000)
        keys.add(more.hashes().tolist())
        model |= more_model
        gone = set(rng.sample(pool, count))
        keys.discard(gone)
        model -= gone
        assert_same_set(keys, model, rng, pool)
    # One by one, down to nothing.
    for h in sorted(model)[:200]:
        keys.discard([h])
        model.discard(h)
    assert_same_set(keys, model, rng, pool)
    keys.discard(model)
    keys.discard(pool[:1])
    assert keys.contains_each(pool[:5]) == [False] * 5 and 1 not in keys
    model.clear()
    assert_same_set(keys, model, rng, pool)
    keys.add(pool[:10])
    model.update(pool[:10])
    assert_same_set(keys, model, rng, pool)


def test_hashes_added_after_a_removal_are_counted_once():
    rng = random.Random(11)
    pool = random_hashes(rng, 10_000)
    keys, others = KeySet(), KeySet()
    keys.add(pool[:8_000])
    assert keys.contains_each(pool[:1]) == [True]
    keys.discard(pool[100:110])
    keys.add(pool[5_000:])  # merged with the run that lost some
    others.add(pool[:1])
    model = set(pool) - set(pool[100:110])
    assert keys.count_with(others) == (len(model), len(model))
    assert_same_set(keys, model, rng, pool)


def test_a_compaction_without_another_set_and_the_counts_of_the_union():
    rng = random.Random(5)
    pool = random_hashes(rng, 40_000)
    keys, others = KeySet(), KeySet()
    mine, theirs = rng.choices(pool, k=30_000), rng.choices(pool, k=20_000)
    keys.add(mine)
    others.add(theirs)
    assert keys.count_with(others) == (len(set(mine)), len(set(mine) | set(theirs)))
    keys.compact(without=others)
    model = set(mine) - set(theirs)
    assert keys.added == len(model)
    assert_same_set(keys, model, rng, pool)
    assert KeySet().count_with(others) == (0, len(set(theirs)))


def map_model(rng, pool, key_map, model, count):
    """Add ``count`` records of hashes of ``pool`` to a KeyMap and its model."""
    hashes = rng.choices(pool, k=count)
    first = [rng.randrange(-1, 1 << 40) for _ in hashes]
    second = random_hashes(rng, count)
    key_map.add(hashes, first, second)
    model.update(zip(hashes, zip(first, second)))


def assert_same_map(key_map, model, rng, pool, without=frozenset()):
    for count in (1, 300, LARGE):
        asked = picks(rng, pool, count)
        assert key_map.latest(asked) == [model.get(h) for h in asked]
    hashes = key_map.hashes().tolist()
    latest = dict(zip(hashes, zip(key_map.column(0).tolist(), key_map.column(1).tolist())))
    assert len(latest) == len(hashes) and hashes == sorted(model)
    assert latest == model
    if without:
        assert key_map.column_total(without=_set_of(without)) == sum(
            first for h, (first, _) in model.items() if h not in without)


def _set_of(hashes):
    keys = KeySet()
    keys.add(list(hashes))
    return keys


def test_a_key_map_gives_the_numbers_added_last():
    rng = random.Random(6)
    pool = random_hashes(rng, 20_000)
    key_map, model = KeyMap(2), {}
    for round_ in range(12):
        map_model(rng, pool, key_map, model, rng.choice([0, 1, 2_000, 9_000]))
        assert key_map.added >= len(model)
        if round_ % 4 == 0:
            assert_same_map(key_map, model, rng, pool)
    assert_same_map(key_map, model, rng, pool, without=set(rng.sample(pool, 3_000)))


def test_the_total_of_a_column_is_exact_past_64_bits_and_without_a_set():
    rng = random.Random(8)
    pool = random_hashes(rng, 150_000)
    key_map = KeyMap(1)
    sizes = [rng.randrange(1 << 40) for _ in pool]
    # Two groups whose sums pass 63 bits: added as Python integers.
    sizes[30], sizes[100_000] = (1 << 63) - 1, 1 << 62
    key_map.add(pool[:100_000], sizes[:100_000])
    key_map.add(pool[100_000:], sizes[100_000:])
    key_map.add(pool[:10], [7] * 10)  # the latest number counts
    latest = dict(zip(pool, sizes)) | dict.fromkeys(pool[:10], 7)
    assert key_map.column_total() == sum(latest.values())
    gone = set(rng.sample(pool, 5_000)) | {pool[100_000]}
    assert key_map.column_total(without=_set_of(gone)) == sum(
        size for h, size in latest.items() if h not in gone)
    assert KeyMap(1).column_total() == 0


def test_a_compaction_with_nothing_to_drop_shares_the_arrays_it_had():
    # skip's status checkpoint: ten million keys seen and sized, none
    # completed; compacting without the completed keys copied 240 MB.
    rng = random.Random(11)
    hashes = KeySet.of(random_hashes(rng, 50_000)).hashes()
    sizes = hashes * 3
    seen, sized = KeySet(), KeyMap(1)
    seen.adopt(hashes)
    sized.adopt(hashes, sizes)
    others = KeySet.of(random_hashes(rng, 1_000))
    seen.compact(without=others)
    sized.compact(without=others)
    assert seen.hashes() is hashes and sized.hashes() is hashes
    assert seen.added == sized.added == len(hashes)
    assert sized.latest(hashes[:3].tolist()) == [(int(s),) for s in sizes[:3]]
    seen.compact(without=KeySet.of(hashes[:10].tolist()))
    assert seen.added == len(hashes) - 10 and seen.hashes() is not hashes


def test_a_key_map_compacted_without_a_set_then_updated():
    rng = random.Random(7)
    pool = random_hashes(rng, 10_000)
    key_map, model = KeyMap(2), {}
    map_model(rng, pool, key_map, model, 15_000)
    gone = set(rng.sample(pool, 2_000))
    key_map.compact(without=_set_of(gone))
    model = {h: v for h, v in model.items() if h not in gone}
    assert key_map.added == len(model)
    assert_same_map(key_map, model, rng, pool)
    later = KeyMap(2)
    map_model(rng, pool, later, model, 5_000)
    added = key_map.added + later.added
    key_map.update(later)
    assert key_map.added == added
    assert_same_map(key_map, model, rng, pool)


def test_tagged_keys_know_each_key_with_its_latest_numbers():
    rng = random.Random(8)
    pool = random_hashes(rng, 10_000)
    key_map, model = KeyMap(3), {}
    for _ in range(3):
        hashes = rng.choices(pool, k=6_000)
        columns = [[rng.randrange(4) for _ in hashes] for _ in range(3)]
        key_map.add(hashes, *columns)
        model.update(zip(hashes, zip(*columns)))
    reopened = set(rng.sample(sorted(model), 500))
    keys, tags = key_map.keys_and_tags(99, (1, 2), reopened)
    assert keys.salt == 99
    assert sorted(keys.hashes().tolist()) == sorted(set(model) - reopened)
    for count in (1, 256, LARGE):
        asked = rng.choices(pool, k=count)
        second, third = [rng.randrange(4) for _ in asked], [rng.randrange(4) for _ in asked]
        expected = [h in model and h not in reopened and model[h][1:] == (b, c)
                    for h, b, c in zip(asked, second, third)]
        assert tags.has_each(asked, second, third).tolist() == expected
    assert not any(TaggedKeys().has_each(pool[:5], [0] * 5, [0] * 5))


def test_numbers_beyond_64_bits_are_kept_and_asked_for():
    # A job's "size" may be any whole number.
    key_map = KeyMap(2)
    key_map.add([1, 2], [10**30, 5], [0, -(10**25)])
    _, tags = key_map.keys_and_tags(0, (0, 1))
    assert tags.has_each([1, 2, 1], [10**30, 5, 10**29], [0, -(10**25), 0]).tolist() == [
        True, True, False]
    assert key_map.latest([1, 2])[1] == (5, hash(-(10**25)))


def saved_and_loaded(tmp_path, dump, restore):
    """What ``restore`` reads back of what ``dump`` wrote, through a real
    checkpoint of a small log; and the checkpoint file."""
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"{}\n")
    position = checkpoint.Position().after(log.read_bytes(), 1)
    checkpoint.save(str(log), "test", position, 1 << 20, dump)
    loaded, state = checkpoint.load(str(log), "test", restore)
    assert loaded == position and state is not None
    return state, tmp_path / "log.jsonl.test-checkpoint"


def test_sets_and_maps_come_back_from_a_checkpoint(tmp_path):
    rng = random.Random(9)
    pool = random_hashes(rng, 20_000)
    keys, key_model = filled_set(rng, pool, 3, 8_000)
    key_map, map_model_ = KeyMap(2), {}
    map_model(rng, pool, key_map, map_model_, 12_000)
    _, tags = key_map.keys_and_tags(keys.salt, (0, 1))

    def dump(writer):
        keys.dump(writer)
        key_map.dump(writer)
        tags.dump(writer)

    def restore(reader):
        return KeySet.load(reader), KeyMap.load(reader, 2), TaggedKeys.load(reader)

    (keys_back, map_back, tags_back), _ = saved_and_loaded(tmp_path, dump, restore)
    assert (keys_back.salt, keys_back.added) == (keys.salt, keys.added)
    assert map_back.added == key_map.added
    assert_same_set(keys_back, key_model, rng, pool)
    assert_same_map(map_back, map_model_, rng, pool)
    hashes = sorted(map_model_)
    assert all(tags_back.has_each(hashes, *zip(*map(map_model_.get, hashes))))
    # Still a set and a map that grow, and lose hashes.
    keys_back.add(pool[:100])
    key_model.update(pool[:100])
    keys_back.discard(pool[100:110])
    key_model.difference_update(pool[100:110])
    assert_same_set(keys_back, key_model, rng, pool)
    map_model(rng, pool, map_back, map_model_, 3_000)
    assert_same_map(map_back, map_model_, rng, pool)


def test_a_set_of_several_runs_is_saved_merged_once_each(tmp_path):
    """Written a batch of its largest run at a time, with the hashes of the
    other runs (some held by both) that fall before the next batch."""
    rng = random.Random(12)
    pool = random_hashes(rng, MANY + 400_000)
    keys, model = KeySet(), set()
    for batch in (pool[:MANY], pool[MANY - 50_000:], rng.choices(pool, k=20_000)):
        keys.add(batch)  # runs of 1.2 million, 450,000 and 20,000 hashes
        model.update(batch)
    loaded, _ = saved_and_loaded(tmp_path, keys.dump, KeySet.load)
    assert loaded.hashes().tolist() == sorted(model)
    assert_same_set(loaded, model, rng, pool)


def test_lookups_agree_before_and_after_a_run_builds_its_index():
    """Lookups of a few hashes search the sorted run; once they add up to an
    eighth of its keys, it builds its index and looks there."""
    rng = random.Random(13)
    pool = random_hashes(rng, 80_000)
    keys = KeySet()
    keys.add(pool)
    keys.compact()  # one sorted run
    model = set(pool)
    (run,) = keys._runs
    while run._starts is None:
        asked = picks(rng, pool, 500)
        assert keys.contains_each(asked) == [h in model for h in asked]
    asked = picks(rng, pool, 500)
    assert keys.contains_each(asked) == [h in model for h in asked]


@pytest.mark.parametrize("differ_at", [None, 0, 1_100_000])
def test_a_map_of_the_keys_of_a_loaded_set_shares_their_array(tmp_path, differ_at):
    """A map whose keys are those of a set loaded before it holds no copy
    of them; one whose keys differ (at the first hash, or past the first
    batch compared) reads its own, and is right either way."""
    rng = random.Random(14)
    pool = sorted(set(random_hashes(rng, MANY)))
    keys = KeySet()
    keys.add(pool)
    key_map, model = KeyMap(2), {}
    mapped = list(pool)
    if differ_at is not None:
        mapped[differ_at] += 1
    key_map.add(mapped, [h % 1000 for h in mapped], mapped)
    model.update((h, (h % 1000, h)) for h in mapped)

    def dump(writer):
        keys.dump(writer)
        key_map.dump(writer)

    def restore(reader):
        loaded = KeySet.load(reader)
        return loaded, KeyMap.load(reader, 2, keys_like=loaded)

    (keys_back, map_back), _ = saved_and_loaded(tmp_path, dump, restore)
    assert keys_back.contains_each(pool[:3]) == [True] * 3  # the set first
    assert (map_back.hashes() is keys_back.hashes()) == (differ_at is None)
    assert_same_map(map_back, model, rng, mapped)
    # Each goes its own way after: the set loses hashes, the map gains some.
    keys_back.discard(pool[:10])
    assert_same_set(keys_back, set(pool[10:]), rng, pool)
    map_model(rng, mapped, map_back, model, 2_000)
    assert_same_map(map_back, model, rng, mapped)


def test_a_loaded_map_answers_from_its_checkpoint_and_is_saved_again_unread(tmp_path):
    """A map loaded and asked for a few keys reads its records a batch at a
    time, holding none; saved again before anything is added, it copies
    its section as it was.  Once a record is added, it is read whole."""
    rng = random.Random(15)
    pool = random_hashes(rng, MANY + 100_000)
    key_map, model = KeyMap(2), {}
    key_map.add(pool[:MANY], [h % 977 for h in pool[:MANY]], pool[:MANY])
    model.update((h, (h % 977, h)) for h in pool[:MANY])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    loaded, first = saved_and_loaded(tmp_path / "a", key_map.dump, lambda r: KeyMap.load(r, 2))
    for _ in range(3):
        asked = picks(rng, pool, 5_000)  # past the first batch, and not held
        assert loaded.latest(asked) == list(map(model.get, asked))
    hashes, column = loaded.hashes_and_column(1)  # (its other column passed over)
    assert hashes.tolist() == sorted(model)
    assert column.tolist() == [model[h][1] for h in sorted(model)]
    assert "_keys" not in loaded.__dict__
    again, second = saved_and_loaded(tmp_path / "b", loaded.dump, lambda r: KeyMap.load(r, 2))
    assert second.read_bytes() == first.read_bytes()
    assert_same_map(again, model, rng, pool)
    map_model(rng, pool, loaded, model, 2_000)
    assert_same_map(loaded, model, rng, pool)
    hashes, column = loaded.hashes_and_column(0)
    assert column.tolist() == [model[h][0] for h in hashes.tolist()]


def test_a_loaded_set_reads_its_section_only_at_its_first_lookup(tmp_path):
    rng = random.Random(10)
    hashes = random_hashes(rng, 1_000)
    keys = KeySet()
    keys.add(hashes)
    loaded, path = saved_and_loaded(tmp_path, keys.dump, KeySet.load)
    # The section's hashes, written backwards after the load: read now,
    # they would be found out of order.
    data = path.read_bytes()
    start = len(checkpoint.MAGIC) + 8 + 8 + 8 + 8
    end = start + 8 * len(hashes)
    backwards = b"".join(data[at:at + 8] for at in range(end - 8, start - 8, -8))
    with open(path, "r+b") as file:
        file.seek(start)
        file.write(backwards)
    assert zlib.crc32(path.read_bytes()) != zlib.crc32(data)
    assert loaded and loaded.added == len(hashes) and loaded.salt == keys.salt
    with pytest.raises(ValueError, match="not a key set"):
        loaded.contains_each(hashes[:1])


@pytest.mark.parametrize("command", ["joblog", "route"])
def test_commands_that_hold_no_keys_do_not_import_numpy(command):
    probe = subprocess.run([sys.executable, "-X", "importtime", "-m",
                            f"iatools.commands.{command}", "--version"],
                           cwd=REPO, capture_output=True)
    assert probe.returncode == 0, probe.stderr
    imported = {line.split("|")[-1].strip() for line in probe.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "iatools.base.keyset" in imported  # the probe did see the imports
    assert "numpy" not in imported
