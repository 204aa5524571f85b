"""The items the emulator serves.

Build a catalog with ``Catalog.generate(...)`` and/or ``add_item(...)``;
``add_special_items()`` adds the awkward cases (dark, missing, restricted,
unsafe file names, metadata that is not JSON).  Everything — sizes, bytes,
md5s, mtimes, servers — follows from the identifiers, names and seed, so two
catalogs built alike serve the same bytes.
"""

import hashlib
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.emulator.content import FileContent

#: 2020-01-01T00:00:00Z, the base of every ``created`` and ``mtime``.
EPOCH = 1_577_836_800

FORMATS = {
    ".mp4": "MPEG4", ".ogv": "Ogg Video", ".jpg": "JPEG", ".xml": "Metadata",
    ".txt": "Text", ".bin": "Data", ".torrent": "Archive BitTorrent",
}

#: Names no downloader may turn into paths (absolute, ``..``, backslashes).
UNSAFE_NAMES = ("../evil.txt", "/etc/passwd", "a/../../b", "dir\\..\\..\\evil.txt")
#: Legal names that need careful URL quoting.
ODD_NAMES = (
    "with space.txt", "colon: yes.txt", "100% sure.txt", "hash#tag.txt",
    "question?.txt", "plus+sign.txt", "ünïcödé/ファイル.txt",
)


@dataclass(frozen=True)
class FileSpec:
    """A file to put in an item; ``format`` and ``mtime`` default sensibly.
    The rest shape it as archive.org does some files: ``unlisted`` fields
    ("size", "mtime", "md5") the metadata leaves out; ``private`` files
    answer 403 but to the emulator's keys; a ``gone`` file is listed but
    answers 404; ``skew`` seconds are added to its Last-Modified."""

    name: str
    size: int
    source: str = "original"
    format: str = None
    mtime: int = None
    unlisted: tuple = ()
    private: bool = False
    gone: bool = False
    skew: int = 0


class CatalogFile:
    """A file as served: the spec's fields plus its content."""

    def __init__(self, identifier, spec, default_mtime):
        self.identifier = identifier
        self.name = spec.name
        self.size = spec.size
        self.source = spec.source
        self.format = spec.format or FORMATS.get(os.path.splitext(spec.name)[1], "Unknown")
        self.mtime = default_mtime if spec.mtime is None else spec.mtime
        self.spec = spec
        self.content = FileContent(f"{identifier}/{spec.name}".encode(), spec.size)

    @property
    def last_modified(self):
        """The time the storage server's Last-Modified header says."""
        return self.mtime + self.spec.skew

    @property
    def is_files_xml(self):
        return self.name == f"{self.identifier}_files.xml"

    @property
    def is_regenerated(self):
        """_files.xml and the torrent: rewritten as the item changes, so the
        md5 listed for them is stale (reported on archive.org)."""
        return self.is_files_xml or self.name == f"{self.identifier}_archive.torrent"

    def md5(self):
        """The md5 of the bytes served."""
        return self.content.md5()

    def listed_digests(self):
        """The checksums the metadata lists."""
        if self.is_regenerated:
            # archive.org rewrites these as the item changes, so the md5 it
            # lists never matches the served file; downloaders must cope.
            return {"md5": hashlib.md5(b"stale " + self.content.key).hexdigest()}
        return self.content.digests()


@dataclass
class Item:
    identifier: str
    files: dict  # name -> CatalogFile, in listing order
    collection: str = "demo"
    mediatype: str = "data"
    title: str = ""
    created: int = EPOCH
    dark: bool = False
    restricted: bool = False
    missing: bool = False
    metadata_not_json: bool = False
    #: item_last_updated; a day after ``created`` until changes.py changes it
    updated: int = None
    on_the_fly: dict = field(default_factory=dict)  # name -> CatalogFile, made on request
    data_node: int = 0  # downloads redirect to servers[data_node]
    raw_utf8_location: bool = False  # the redirect's Location is not percent-encoded
    data_domain: str = "archive.org"  # where its storage hosts are
    _hash: int = field(init=False, repr=False)

    def __post_init__(self):
        if self.updated is None:
            self.updated = self.created + 86400
        digest = hashlib.sha256(self.identifier.encode()).digest()
        self._hash = int.from_bytes(digest[:8], "big")

    @property
    def servers(self):
        """(d1, d2): the storage hosts holding the item."""
        return (f"ia8{self._hash % 100000:05d}.us.{self.data_domain}",
                f"ia6{self._hash // 100000 % 100000:05d}.us.{self.data_domain}")

    @property
    def dir(self):
        return f"/{self._hash % 33 + 1}/items/{self.identifier}"

    @property
    def uniq(self):
        return self._hash % 10**9

    @property
    def item_size(self):
        return sum(f.size for f in self.files.values())

    @property
    def state(self):
        for name in ("missing", "dark", "metadata_not_json", "restricted"):
            if getattr(self, name):
                return name
        return "ok"


class Catalog:
    """Items by identifier; sorted listing for search."""

    def __init__(self):
        self.items = {}
        self.repeated_in_search = None  # an identifier search results list twice
        self._sorted = None

    @classmethod
    def generate(cls, items=20, files_per_item=3, file_size=10 * 1024, mix="plain",
                 collection="demo", seed=1, identifier_prefix=None):
        """``items`` items named ``{prefix}{n:04d}`` (prefix defaults to
        ``{collection}-``).  ``mix="plain"``: ``files_per_item`` files of
        exactly ``file_size`` bytes.  ``mix="realistic"``: per original
        (``files_per_item`` of them, sizes 0.5–1.5 × ``file_size``) an .ogv
        derivative, plus a thumbnail, _meta.xml, _files.xml and
        ``extras/notes — café ünï.txt``; but items 3, 5, 7 ... are in turn a
        film, a scanned book and a software item (``realistic.KINDS``)."""
        from tests.emulator.realistic import add_on_the_fly, realistic_item  # needs FileSpec
        if mix not in ("plain", "realistic"):
            raise ValueError(f"mix must be 'plain' or 'realistic', not {mix!r}")
        catalog = cls()
        prefix = f"{collection}-" if identifier_prefix is None else identifier_prefix
        width = max(4, len(str(items)))
        for index in range(1, items + 1):
            identifier = f"{prefix}{index:0{width}d}"
            rng = random.Random(f"{seed}/{identifier}")
            if mix == "plain":
                mediatype, specs = "data", _plain_files(identifier, files_per_item, file_size)
            else:
                mediatype, specs = realistic_item(index, identifier, files_per_item,
                                                  file_size, rng)
            item = catalog.add_item(identifier, specs, collection=collection,
                                    mediatype=mediatype, created=EPOCH + index * 3600)
            if mediatype == "texts":
                add_on_the_fly(item)
        return catalog

    def add_item(self, identifier, files, *, collection="demo", mediatype="data", title=None,
                 created=None, dark=False, restricted=False, missing=False,
                 metadata_not_json=False):
        """Add (or replace) an item made of ``FileSpec``s.  ``missing``: search
        lists it but its metadata is ``{}`` (deleted after indexing)."""
        if created is None:
            digest = hashlib.sha256(identifier.encode()).digest()
            created = EPOCH + int.from_bytes(digest[:3], "big")
        catalog_files = {}
        for position, spec in enumerate(files, 1):
            catalog_files[spec.name] = CatalogFile(identifier, spec, created + 60 * position)
        item = Item(identifier, catalog_files, collection, mediatype,
                    title or f"Emulated item {identifier}", created,
                    dark, restricted, missing, metadata_not_json)
        self.items[identifier] = item
        self._sorted = None
        return item

    def add_special_items(self, collection="special"):
        """Items for hostile and failure tests, all in ``collection``:
        ``special-dark``, ``special-missing``, ``special-restricted``,
        ``special-not-json``, ``special-unsafe-names`` (``UNSAFE_NAMES`` plus
        ``ok.txt``) and ``special-odd-names`` (``ODD_NAMES``)."""
        small = [FileSpec("a.txt", 1000), FileSpec("b.bin", 5000)]
        self.add_item("special-dark", small, collection=collection, dark=True)
        self.add_item("special-missing", small, collection=collection, missing=True)
        self.add_item("special-restricted", small, collection=collection, restricted=True)
        self.add_item("special-not-json", small, collection=collection, metadata_not_json=True)
        unsafe = [FileSpec(name, 100) for name in UNSAFE_NAMES] + [FileSpec("ok.txt", 100)]
        self.add_item("special-unsafe-names", unsafe, collection=collection)
        self.add_item("special-odd-names", [FileSpec(n, 300) for n in ODD_NAMES],
                      collection=collection)
        return sorted(i for i in self.items if i.startswith("special-"))

    def sorted_items(self):
        if self._sorted is None:
            self._sorted = sorted(self.items.values(), key=lambda item: item.identifier)
        return self._sorted

    def file(self, identifier, name):
        """The CatalogFile; KeyError if there is none."""
        return self.items[identifier].files[name]

    def file_bytes(self, identifier, name):
        return self.file(identifier, name).content.read()

    def md5(self, identifier, name):
        """The md5 of the served bytes (for ``_files.xml`` not the listed one)."""
        return self.file(identifier, name).md5()

    def all_files(self):
        return [f for item in self.sorted_items() for f in item.files.values()]

    def warm(self, threads=None):
        """Compute every md5 now.  Big files go to threads (hashlib releases
        the GIL); small ones are quicker done here than handed over."""
        files = self.all_files()
        for catalog_file in files:
            if catalog_file.size < 1 << 20:
                catalog_file.md5()
        with ThreadPoolExecutor(threads or os.cpu_count() or 2) as pool:
            list(pool.map(CatalogFile.md5, [f for f in files if f.size >= 1 << 20]))

    def write_jsonl(self, path):
        """One line per file: id, name, size, md5 (of the served bytes), mtime,
        source, and ``state`` when the item is not plain ("dark", "missing",
        "restricted", "metadata_not_json")."""
        self.warm()
        with open(path, "w", encoding="utf-8") as out:
            for item in self.sorted_items():
                for f in item.files.values():
                    record = {"id": item.identifier, "name": f.name, "size": f.size,
                              "md5": f.md5(), "mtime": f.mtime, "source": f.source}
                    if item.state != "ok":
                        record["state"] = item.state
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _plain_files(identifier, count, size):
    return [FileSpec(f"{identifier}_{k:02d}.bin", size) for k in range(1, count + 1)]


def video_files(identifier, originals, file_size, rng):
    specs = []
    for k in range(1, max(1, originals) + 1):
        stem = identifier if k == 1 else f"{identifier}_part{k:02d}"
        size = max(1, round(file_size * rng.uniform(0.5, 1.5)))
        specs.append(FileSpec(f"{stem}.mp4", size))
        specs.append(FileSpec(f"{stem}.ogv", max(1, size * 3 // 5), source="derivative"))
    specs += [
        FileSpec(f"{identifier}_thumb.jpg", rng.randint(4096, 40960), source="derivative",
                 format="Thumbnail"),
        FileSpec(f"{identifier}_meta.xml", rng.randint(800, 3000), source="metadata"),
        FileSpec(f"{identifier}_files.xml", rng.randint(1500, 6000), source="metadata"),
        FileSpec("extras/notes — café ünï.txt", rng.randint(200, 5000)),
    ]
    return specs
