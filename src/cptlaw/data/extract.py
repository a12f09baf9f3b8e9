"""Extractors: the files of one fetched source → documents (`Doc(id, source, text, kind)`).

One function per source format (the corpora come from package registries, see sources.py). Long texts (books, speeches, modules, licences)
come out whole and are chunked after the document-level split (cptlaw.data.corpora); short ontology entries
(HPO, GO, ChEBI) are packed here into samples of about `sample_chars`, entries of one ontology branch
together, in depth-first order so that neighbouring concepts share a sample.
"""

from __future__ import annotations

import fnmatch
import html
import json
import re
import sqlite3
import struct
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cptlaw.errors import ExtractError

LONG, PACKED = "long", "packed"  # long: chunk after splitting; packed: already sample-sized


@dataclass(frozen=True)
class Doc:
    id: str  # unique within the domain: "<source>/<key>"
    source: str
    text: str
    kind: str = LONG


def _files(root: Path, pattern: str, source: str) -> list[Path]:
    paths = sorted(p for p in Path(root).rglob(pattern) if p.is_file())
    if not paths:
        raise ExtractError(f"source '{source}': no `{pattern}` file under {root} (run the fetch stage)")
    return paths


# ---------------------------------------------------------------- prose and code


_BROWN_FIX = [
    (re.compile(r" ([,.;:?!)\]])"), r"\1"),
    (re.compile(r"([(\[]) "), r"\1"),
    (re.compile(r" n't"), "n't"),
]


def brown_sentence(line: str) -> str:
    """`The/at jury/nn said/vbd ./.` → `The jury said.` (tags stripped, quotes and punctuation re-attached)."""
    words = [tok.rsplit("/", 1)[0] for tok in line.split()]
    text = " ".join(words).replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
    for pat, rep in _BROWN_FIX:
        text = pat.sub(rep, text)
    return text


def brown(root: Path, source: str, **_: object) -> Iterator[Doc]:
    for path in _files(root, "c[a-r][0-9][0-9]", source):
        sents = [brown_sentence(ln) for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        yield Doc(f"{source}/{path.name}", source, " ".join(s for s in sents if s))


def text_files(root: Path, source: str, pattern: str = "*.txt", **_: object) -> Iterator[Doc]:
    """One document per text file (speeches, chapters, plays)."""
    for path in _files(root, pattern, source):
        yield Doc(f"{source}/{path.stem}", source, path.read_text(encoding="utf-8", errors="replace"))


def python_source(root: Path, source: str, exclude: Iterable[str] = (), **_: object) -> Iterator[Doc]:
    for path in _files(root, "*.py", source):
        rel = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatchcase(rel, p) for p in exclude):
            continue
        yield Doc(f"{source}/{rel}", source, path.read_text(encoding="utf-8", errors="replace"))


def spdx_json(root: Path, source: str, **_: object) -> Iterator[Doc]:
    for path in _files(root, "*.json", source):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ExtractError(f"source '{source}': {path.name} is not JSON ({exc})") from None
        text = rec.get("licenseText") or ""
        yield Doc(f"{source}/{path.stem}", source, f"{rec.get('name', path.stem)}\n\n{text}")


def abc(root: Path, source: str, **_: object) -> Iterator[Doc]:
    """ABC music files hold many tunes, each starting at an `X:` line: one document per tune."""
    for path in _files(root, "*.abc", source):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        for k, tune in enumerate(re.split(r"(?m)^(?=X:)", text)):
            if tune.lstrip().startswith("X:"):
                yield Doc(f"{source}/{rel}#{k}", source, tune)


_MM_SECTION = re.compile(
    r"(?m)^[ \t]*\$\([ \t]*\n\s*(?:[=#*-]{2}){10,}"
)  # `$(` + a rule line: a section header
_MM_PROOF = re.compile(r"\$=.*?\$\.", re.S)


def metamath(root: Path, source: str, max_doc_chars: int = 20000, **_: object) -> Iterator[Doc]:
    """Metamath databases: comments and statements with proofs dropped; one document per (sub)section, a
    section longer than `max_doc_chars` cut into parts at blank lines (a few huge sections would otherwise
    make the document-level split lumpy)."""
    for path in _files(root, "*.mm", source):
        text = _MM_PROOF.sub("$.", path.read_text(encoding="utf-8", errors="replace"))
        starts = [0, *(m.start() for m in _MM_SECTION.finditer(text)), len(text)]
        for k, (a, b) in enumerate(zip(starts, starts[1:], strict=False)):
            parts = _blocks(text[a:b], max_doc_chars)
            for j, part in enumerate(parts):
                if part.strip():
                    yield Doc(
                        f"{source}/{path.stem}/{k:05d}" + (f".{j}" if len(parts) > 1 else ""), source, part
                    )


def _blocks(text: str, size: int) -> list[str]:
    """`text` cut at blank lines into blocks of at most about `size` characters."""
    out, buf = [], ""
    for para in text.split("\n\n"):
        if buf and len(buf) + len(para) > size:
            out.append(buf)
            buf = ""
        buf = f"{buf}\n\n{para}" if buf else para
    return [*out, buf] if buf else out


_OSIS_DROP = re.compile(r"<note\b.*?</note>|<title\b[^>]*type=\"x-gen\".*?</title>", re.S)
_OSIS_BREAK = re.compile(r"<(?:div|chapter|lb|l|lg|title|/title|/l|/lg)\b[^>]*>")
_TAG = re.compile(r"<[^>]+>")


def osis_text(markup: str) -> str:
    """OSIS markup → plain text: notes dropped, paragraph/line/chapter markers as newlines, tags removed."""
    text = _OSIS_DROP.sub("", markup)
    text = _OSIS_BREAK.sub("\n", text)
    return html.unescape(_TAG.sub("", text))


def sword_ztext(root: Path, source: str, **_: object) -> Iterator[Doc]:
    """SWORD zText module (BlockType=BOOK): `.bzs` = (offset, size, usize) per zlib block in `.bzz`; block = book."""
    for bzs in _files(root, "*.bzs", source):
        index = bzs.read_bytes()
        blob = bzs.with_suffix(".bzz").read_bytes()
        for k in range(len(index) // 12):
            off, size, _usize = struct.unpack("<III", index[12 * k : 12 * k + 12])
            try:
                markup = zlib.decompress(blob[off : off + size]).decode("utf-8", errors="replace")
            except zlib.error as exc:
                raise ExtractError(f"source '{source}': block {k} of {bzs.name} is corrupt ({exc})") from None
            yield Doc(f"{source}/{bzs.stem}/{k:03d}", source, osis_text(markup))


# ---------------------------------------------------------------- ontologies (short entries → packed samples)


@dataclass(frozen=True)
class Entry:
    id: str
    text: str
    parents: tuple[str, ...]
    namespace: str = ""


def pack_entries(
    entries: list[Entry], source: str, sample_chars: int, branch_depth: int = 1
) -> Iterator[Doc]:
    """Pack ontology entries into samples of about `sample_chars`, never mixing two branches in one sample.

    Entries are visited depth-first over the is-a tree (roots and children sorted by id, each entry once,
    under its first-visited parent); an entry's branch is its ancestor at depth `branch_depth` (depth 0 =
    a root), so a sample holds neighbouring concepts of one branch, a meaningful unit to score.
    """
    by_id = {e.id: e for e in entries}
    children: dict[str, list[str]] = defaultdict(list)
    roots = []
    for e in entries:
        known = [p for p in e.parents if p in by_id]
        for p in known:
            children[p].append(e.id)
        if not known:
            roots.append(e.id)
    order: list[tuple[str, str]] = []  # (entry id, branch id)
    seen: set[str] = set()
    for root in sorted(roots):
        stack = [(root, 0, root)]
        while stack:
            node, depth, branch = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            branch = node if depth == branch_depth else branch
            order.append((node, branch))
            stack.extend((c, depth + 1, branch) for c in sorted(children[node], reverse=True))
    order.extend((e.id, e.id) for e in entries if e.id not in seen)  # is-a cycles (not expected)
    buf: list[str] = []
    size, current, counter = 0, None, defaultdict(int)

    def flush() -> Doc:
        k = counter[current]
        counter[current] += 1
        return Doc(f"{source}/{current}/{k}", source, "\n".join(buf), PACKED)

    for node, branch in order:
        text = by_id[node].text
        if not text:
            continue
        if buf and (branch != current or size + len(text) > sample_chars):
            yield flush()
            buf, size = [], 0
        current = branch
        buf.append(text)
        size += len(text) + 1
    if buf:
        yield flush()


_OBO_DEF = re.compile(r'^"((?:[^"\\]|\\.)*)"')


def parse_obo(text: str, require_def: bool = False) -> list[Entry]:
    """OBO `[Term]` stanzas → entries `name: definition comment` (obsolete terms and bare names dropped)."""
    entries = []
    for stanza in text.split("\n[")[1:]:
        if not stanza.startswith("Term]"):
            continue
        tags: dict[str, list[str]] = defaultdict(list)
        for line in stanza.splitlines()[1:]:
            key, sep, value = line.partition(": ")
            if sep:
                tags[key].append(value.strip())
        if not tags["id"] or tags["is_obsolete"] == ["true"]:
            continue
        m = _OBO_DEF.match(tags["def"][0]) if tags["def"] else None
        definition = m.group(1).replace('\\"', '"') if m else ""
        comment = " ".join(tags["comment"])
        if require_def and not definition or not (definition or comment):
            continue
        name = tags["name"][0] if tags["name"] else tags["id"][0]
        body = " ".join(x for x in (definition, comment) if x)
        parents = tuple(p.split(" ! ")[0].strip() for p in tags["is_a"])
        entries.append(Entry(tags["id"][0], f"{name}: {body}", parents, " ".join(tags["namespace"])))
    return entries


def obo(
    root: Path,
    source: str,
    sample_chars: int = 1000,
    branch_depth: int = 1,
    require_def: bool = False,
    **_: object,
) -> Iterator[Doc]:
    for path in _files(root, "*.obo", source):
        entries = parse_obo(path.read_text(encoding="utf-8", errors="replace"), require_def=require_def)
        yield from pack_entries(entries, source, sample_chars, branch_depth)


def go_sqlite(
    root: Path, source: str, sample_chars: int = 1000, branch_depth: int = 1, **_: object
) -> Iterator[Doc]:
    """GO.db's `GO.sqlite`: `go_term` (term, definition) + `go_{bp,mf,cc}_parents` is-a edges, packed by branch."""
    for path in _files(root, "*.sqlite", source):
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            rows = con.execute("SELECT _id, go_id, term, ontology, definition FROM go_term").fetchall()
            parents: dict[int, list[int]] = defaultdict(list)
            for table in ("go_bp_parents", "go_mf_parents", "go_cc_parents"):
                for child, parent in con.execute(
                    f"SELECT _id, _parent_id FROM {table} WHERE relationship_type='isa'"
                ):
                    parents[child].append(parent)
            con.close()
        except sqlite3.DatabaseError as exc:
            raise ExtractError(f"source '{source}': {path.name} is not a GO.db SQLite file ({exc})") from None
        go_id = {row[0]: row[1] for row in rows}
        entries = [
            Entry(gid, f"{term}: {definition}", tuple(go_id[p] for p in parents[_id] if p in go_id), ns)
            for _id, gid, term, ns, definition in rows
            if definition and gid != "all"
        ]
        yield from pack_entries(entries, source, sample_chars, branch_depth)


EXTRACTORS: dict[str, Callable[..., Iterator[Doc]]] = {
    "brown": brown,
    "text_files": text_files,
    "python_source": python_source,
    "spdx_json": spdx_json,
    "abc": abc,
    "metamath": metamath,
    "sword_ztext": sword_ztext,
    "obo": obo,
    "go_sqlite": go_sqlite,
}


def extract(extractor: str, root: Path, source: str, **options: object) -> Iterator[Doc]:
    """Documents of one source with extractor `extractor` (see EXTRACTORS)."""
    if extractor not in EXTRACTORS:
        raise ExtractError(f"source '{source}': unknown extractor {extractor!r}; known: {sorted(EXTRACTORS)}")
    if not Path(root).is_dir():
        raise ExtractError(f"source '{source}': {root} does not exist (run the fetch stage first)")
    return EXTRACTORS[extractor](Path(root), source, **options)
