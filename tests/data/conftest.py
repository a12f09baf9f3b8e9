"""Small fixture documents, one per source format, written for the tests (no test downloads anything)."""

from __future__ import annotations

import json
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

BROWN = (
    "\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at investigation/nn "
    "of/in Atlanta's/np$ recent/jj primary/nn election/nn produced/vbd ``/`` no/at evidence/nn ''/'' that/cs "
    "any/dti irregularities/nns took/vbd place/nn ./.\n\n\n\tThe/at jury/nn further/rbr said/vbd in/in "
    "term-end/nn presentments/nns that/cs the/at City/nn-tl ,/, which/wdt had/hvd over-all/jj charge/nn ,/, "
    "deserves/vbz the/at praise/nn ./.\n"
)

OBO = """format-version: 1.2
ontology: hp

[Term]
id: HP:0000001
name: All
comment: Root of all terms.

[Term]
id: HP:0000118
name: Phenotypic abnormality
def: "A phenotypic abnormality." []
is_a: HP:0000001 ! All

[Term]
id: HP:0000152
name: Abnormality of head or neck
def: "An abnormality of head and neck." []
is_a: HP:0000118 ! Phenotypic abnormality

[Term]
id: HP:0000234
name: Abnormality of the head
def: "An abnormality of the \\"head\\"." []
is_a: HP:0000152 ! Abnormality of head or neck

[Term]
id: HP:0000707
name: Abnormality of the nervous system
def: "An abnormality of the nervous system." []
is_a: HP:0000118 ! Phenotypic abnormality

[Term]
id: HP:0001250
name: Seizure
def: "A seizure is an intermittent abnormality of nervous system physiology." []
is_a: HP:0000707 ! Abnormality of the nervous system

[Term]
id: HP:0009999
name: Obsolete thing
def: "Gone." []
is_obsolete: true

[Term]
id: HP:0008888
name: Bare name only

[Typedef]
id: part_of
name: part of
"""

METAMATH = """$( Header of the database.  Public domain. $)

$(
=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=
                  Propositional calculus
=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=
$)

  $( Axiom of modus ponens. $)
  ax-mp $a |- ps $.

  $( A double modus ponens inference. (Contributed by NM, 5-Apr-1994.) $)
  mp2 $p |- ch $=
    ( wi ax-mp ) ABCDEFG $.

$(
#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#
                  Set theory
#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#*#
$)

  $( Simplification of triple conjunction. (Contributed by NM, 21-Apr-1994.) $)
  simp1 $p |- ( ( ph /\\ ps /\\ ch ) -> ph ) $=
    ( w3a 3simpa simpld ) ABCDABABCEF $.
"""

ABC = """%abc-2.1
% a collection of tunes

X:1
T:The First Tune
M:6/8
K:D
A|dfa afd|gbg fed|

X:2
T:The Second Tune
M:4/4
K:G
GABc dedB|dedB dedB|
"""

PYTHON = '''"""A module."""


def square(x):
    """Return x squared."""
    return x * x


class Box:
    def __init__(self, v):
        self.v = v
'''

GUTENBERG = "THE TRAGEDY OF KING LEAR\n\nby William Shakespeare\n\n\n\n\nACT I.\n\nLear.\nMeantime we shall express our darker purpose.\n"

SOTU = "Fellow-Citizens of the Senate and House of Representatives: In meeting you again I feel much satisfaction.\n"


def write_sword(dir_: Path, books: list[str]) -> None:
    """A minimal SWORD zText module: one zlib block per book, `.bzs` index of (offset, size, usize)."""
    dir_.mkdir(parents=True, exist_ok=True)
    index, blob = b"", b""
    for book in books:
        raw = book.encode()
        comp = zlib.compress(raw)
        index += struct.pack("<III", len(blob), len(comp), len(raw))
        blob += comp
    (dir_ / "nt.bzs").write_bytes(index)
    (dir_ / "nt.bzz").write_bytes(blob)
    (dir_ / "nt.bzv").write_bytes(b"")


def write_go(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE go_term (_id INTEGER PRIMARY KEY, go_id TEXT, term TEXT, ontology TEXT, definition TEXT);
        CREATE TABLE go_bp_parents (_id INTEGER, _parent_id INTEGER, relationship_type TEXT);
        CREATE TABLE go_mf_parents (_id INTEGER, _parent_id INTEGER, relationship_type TEXT);
        CREATE TABLE go_cc_parents (_id INTEGER, _parent_id INTEGER, relationship_type TEXT);
        INSERT INTO go_term VALUES (1, 'all', 'all', 'universal', 'all');
        INSERT INTO go_term VALUES (2, 'GO:0008150', 'biological_process', 'BP', 'A biological process.');
        INSERT INTO go_term VALUES (3, 'GO:0000003', 'reproduction', 'BP', 'The production of new individuals.');
        INSERT INTO go_term VALUES (4, 'GO:0019953', 'sexual reproduction', 'BP', 'A reproduction process.');
        INSERT INTO go_term VALUES (5, 'GO:0003674', 'molecular_function', 'MF', 'A molecular function.');
        INSERT INTO go_term VALUES (6, 'GO:0003824', 'catalytic activity', 'MF', 'Catalysis of a reaction.');
        INSERT INTO go_term VALUES (7, 'GO:0000999', 'no definition', 'MF', NULL);
        INSERT INTO go_bp_parents VALUES (3, 2, 'isa'), (4, 3, 'isa');
        INSERT INTO go_mf_parents VALUES (6, 5, 'isa'), (7, 5, 'part_of');
        """
    )
    con.commit()
    con.close()


@pytest.fixture
def raw_tree(tmp_path) -> Path:
    """A data/raw-like tree with one directory per source format."""
    raw = tmp_path / "raw"
    (raw / "brown").mkdir(parents=True)
    (raw / "brown" / "ca01").write_text(BROWN)
    (raw / "brown" / "cb02").write_text(BROWN.replace("Fulton", "Dekalb"))
    (raw / "brown" / "README").write_text("not a corpus file")
    (raw / "sotu" / "data").mkdir(parents=True)
    (raw / "sotu" / "data" / "1790_washington.txt").write_text(SOTU)
    (raw / "shakespeare" / "texts").mkdir(parents=True)
    (raw / "shakespeare" / "texts" / "lear_gut.txt").write_text(GUTENBERG)
    (raw / "hpo").mkdir()
    (raw / "hpo" / "hp.obo").write_text(OBO)
    write_go(raw / "go" / "GO.sqlite")
    (raw / "metamath").mkdir()
    (raw / "metamath" / "set.mm").write_text(METAMATH)
    (raw / "spdx" / "licenses").mkdir(parents=True)
    (raw / "spdx" / "licenses" / "MIT.json").write_text(
        json.dumps({"name": "MIT License", "licenseText": "Permission is hereby granted, free of charge."})
    )
    (raw / "music" / "corpus").mkdir(parents=True)
    (raw / "music" / "corpus" / "tunes.abc").write_text(ABC)
    (raw / "code" / "pkg" / "tests").mkdir(parents=True)
    (raw / "code" / "pkg" / "mod.py").write_text(PYTHON)
    (raw / "code" / "pkg" / "tests" / "test_mod.py").write_text("def test(): pass\n")
    write_sword(
        raw / "bible",
        [
            '<div type="book"/><title type="main">Matthew</title><chapter n="1"/><w lemma="x">The</w> '
            '<w lemma="y">book</w> of the genealogy,<note placement="foot">a footnote</note> &amp; more.',
            '<div type="book"/><chapter n="1"/>In the beginning was the Word.',
        ],
    )
    return raw
