"""Items shaped like real archive.org items, and the odd things real
metadata holds.

``KINDS`` are modelled on the file lists of real items: a film of the
Prelinger collection (an MPEG2 original, its h.264/Ogg/GIF derivatives, a
``.thumbs/`` directory), a scanned book (private original scans, OCR
derivatives, on-the-fly EPUB/MOBI/DAISY/MARCXML made on request) and a
software item (a zip with spaces and brackets in its name).  They are what
``Catalog.generate(mix="realistic")`` mixes in, and download whole with the
emulator's keys (the account is the uploader, so private files come too).

``add_realism_items`` adds the items a downloader stumbles on: files listed
without size, mtime or md5, a private file and a listed file gone (403 and
404 without the uploader's keys), Last-Modified a few seconds off the
metadata, names archive.org allows (NFC and NFD, case-only twins, 250
bytes, ``#?%+&``), a 0-byte file, history/, a redirect to the second data
node with a raw UTF-8 Location; ``add_big_item`` an item of 20,000 files.
"""

import random

from tests.emulator.catalog import EPOCH, CatalogFile, FileSpec, video_files

#: What archive.org lists for _files.xml: no size, mtime or md5 (it cannot
#: hold its own checksum).
FILES_XML_UNLISTED = ("size", "mtime", "md5")
#: The on-the-fly derivatives of a texts item, after its identifier.
ON_THE_FLY = (".epub", ".mobi", "_daisy.zip", "_archive_marc.xml")


def _sized(rng, file_size, low=0.5, high=1.5):
    return max(1, round(file_size * rng.uniform(low, high)))


def _metadata_files(identifier, rng, files_xml_unlisted=()):
    """_meta.xml, _files.xml (source original, as archive.org lists them)
    and the torrent (source metadata; its listed md5 is stale)."""
    return [
        FileSpec(f"{identifier}_meta.xml", rng.randint(800, 3000), format="Metadata"),
        FileSpec(f"{identifier}_files.xml", rng.randint(1500, 6000), format="Metadata",
                 unlisted=files_xml_unlisted),
        FileSpec(f"{identifier}_archive.torrent", rng.randint(2000, 9000), source="metadata",
                 format="Archive BitTorrent"),
    ]


def film_files(identifier, file_size, rng):
    size = _sized(rng, file_size, 2, 3)
    specs = [
        FileSpec(f"{identifier}.mpeg", size, format="MPEG2"),
        FileSpec(f"{identifier}_512kb.mp4", size // 4 + 1, source="derivative", format="h.264"),
        FileSpec(f"{identifier}.ogv", size // 3 + 1, source="derivative", format="Ogg Video"),
        FileSpec(f"{identifier}.gif", _sized(rng, file_size, 0.2, 0.4), source="derivative",
                 format="Animated GIF"),
        FileSpec("__ia_thumb.jpg", rng.randint(4096, 9000), source="derivative",
                 format="Item Tile"),
        FileSpec(f"{identifier}_reviews.xml", rng.randint(300, 900), format="Metadata"),
    ]
    specs += [FileSpec(f"{identifier}.thumbs/{identifier}_{n:06d}.jpg", rng.randint(2000, 6000),
                       source="derivative", format="Thumbnail") for n in (1, 2, 3, 4, 5)]
    return specs + _metadata_files(identifier, rng)


def book_files(identifier, file_size, rng):
    originals = [
        FileSpec(f"{identifier}_orig_jp2.tar", _sized(rng, file_size, 3, 4),
                 format="Single Page Original JP2 Tar", private=True),
        FileSpec(f"{identifier}_scandata.xml", rng.randint(2000, 8000), format="Scandata"),
        FileSpec(f"{identifier}_marc.xml", rng.randint(1000, 3000), format="MARC"),
    ]
    derivatives = [(f"{identifier}_jp2.zip", "Single Page Processed JP2 ZIP", 2.0),
                   (f"{identifier}.pdf", "Text PDF", 1.0),
                   (f"{identifier}_djvu.txt", "DjVuTXT", 0.1),
                   (f"{identifier}_djvu.xml", "Djvu XML", 0.5),
                   (f"{identifier}_hocr.html", "hOCR", 0.6),
                   (f"{identifier}_chocr.html.gz", "chOCR", 0.2),
                   (f"{identifier}_page_numbers.json", "Page Numbers JSON", 0.05),
                   ("__ia_thumb.jpg", "Item Tile", 0.3)]
    specs = originals + [FileSpec(name, _sized(rng, file_size * factor), source="derivative",
                                  format=form) for name, form, factor in derivatives]
    return specs + _metadata_files(identifier, rng)


def software_files(identifier, file_size, rng):
    return [
        FileSpec("Alley Cat (1984)(Synapse Software)[a].zip", _sized(rng, file_size), format="ZIP"),
        FileSpec(f"{identifier}.png", rng.randint(3000, 9000), format="PNG"),
        FileSpec(f"{identifier}_screenshot.gif", rng.randint(3000, 9000), format="GIF"),
        FileSpec(f"{identifier}_meta.sqlite", rng.randint(4000, 9000), source="metadata",
                 format="Metadata"),
        FileSpec("__ia_thumb.jpg", rng.randint(3000, 9000), source="derivative",
                 format="Item Tile"),
    ] + _metadata_files(identifier, rng)


#: (mediatype, files(identifier, file_size, rng)) of each kind.
KINDS = (("movies", film_files), ("texts", book_files), ("software", software_files))


def realistic_item(index, identifier, originals, file_size, rng):
    """(mediatype, FileSpecs) of the ``index``-th item (from 1) of the
    realistic mix: items 3, 5, 7 ... are the KINDS in turn, the others the
    video item the mix always had."""
    if index < 3 or index % 2 == 0:
        return "movies", video_files(identifier, originals, file_size, rng)
    mediatype, files = KINDS[(index - 3) // 2 % len(KINDS)]
    return mediatype, files(identifier, file_size, rng)


def add_on_the_fly(item):
    """Give a texts item the derivatives archive.org makes on request:
    not listed, served without size in advance or Last-Modified."""
    rng = random.Random(item.identifier)
    for suffix in ON_THE_FLY:
        spec = FileSpec(f"{item.identifier}{suffix}", rng.randint(3000, 9000), source="derivative",
                        unlisted=("size", "mtime", "md5"))
        item.on_the_fly[spec.name] = CatalogFile(item.identifier, spec, None)


#: Names archive.org allows that trouble downloaders.
ODD_NAMES = (
    "with space.txt", "hash#tag.txt", "question?.txt", "100% sure.txt", "plus+sign.txt",
    "this&that.txt", "caf\u00e9.txt", "cafe\u0301.txt", "Readme.txt", "README.txt",
    "x" * 246 + ".txt", "sub/dir/deep.txt", "sub/Ünïcödé ファイル.txt",
)


def add_realism_items(catalog, collection="realism"):
    """``real-odd`` (every healthy oddity above), ``real-private`` (one
    private file, one gone, two good), ``real-book`` (a book, with its
    on-the-fly derivatives) and ``real-elsewhere`` (stored on hosts of
    notarchive.org), all in ``collection``; returns their ids."""
    rng = random.Random("realism")
    identifier = "real-odd"
    odd = [FileSpec(name, rng.randint(100, 3000)) for name in ODD_NAMES]
    odd += [
        FileSpec("empty.dat", 0),
        FileSpec("no size.bin", 4321, unlisted=("size",)),
        FileSpec("no mtime.bin", 1234, unlisted=("mtime",)),
        FileSpec("no md5.bin", 2345, unlisted=("md5",)),
        FileSpec("skewed.bin", 3456, skew=3),
        FileSpec("history/files/old.txt.~1~", 500),
        FileSpec(f"{identifier}.mp4", 20_000, format="MPEG4"),
        FileSpec(f"{identifier}.ogv", 9_000, source="derivative", format="Ogg Video"),
        FileSpec(f"{identifier}_thumb.jpg", 4_000, source="derivative", format="Thumbnail"),
    ] + _metadata_files(identifier, rng, FILES_XML_UNLISTED)
    item = catalog.add_item(identifier, odd, collection=collection, mediatype="data")
    item.data_node, item.raw_utf8_location = 1, True
    catalog.add_item("real-private", [
        FileSpec("public.txt", 1000), FileSpec("also public.txt", 2000),
        FileSpec("secret.pdf", 3000, private=True), FileSpec("lost.bin", 4000, gone=True),
    ], collection=collection)
    elsewhere = catalog.add_item("real-elsewhere", [FileSpec("data.bin", 5000)],
                                 collection=collection)
    elsewhere.data_domain = "notarchive.org"
    book = catalog.add_item("real-book", book_files("real-book", 10_000, rng),
                            collection=collection, mediatype="texts")
    add_on_the_fly(book)
    return ["real-book", "real-elsewhere", "real-odd", "real-private"]


def add_big_item(catalog, identifier="real-big", files=20_000):
    """An item of ``files`` small files (a photo archive): JPEGs in
    directories of 1,000, each with a thumbnail."""
    specs = [FileSpec(f"roll{n // 1000:03d}/img{n:06d}.jpg", 16 + n % 64, mtime=EPOCH + n)
             for n in range(files * 9 // 10)]
    specs += [FileSpec(f"thumbs/img{n:06d}_thumb.jpg", 8, source="derivative",
                       format="Thumbnail", mtime=EPOCH + n) for n in range(files - len(specs))]
    return catalog.add_item(identifier, specs, collection="realism")
