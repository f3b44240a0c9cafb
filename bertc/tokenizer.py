"""The model's tokenizer as tokenizer.bin, the compact file the C runtime tokenizes text with
(runtime/src/tokenizer.c), so that an artifact takes text on a device with no Python.

The source of truth is the Hugging Face ``tokenizers`` pipeline the model folder describes (its
tokenizer.json, or the one transformers builds from vocab.txt): the C tokenizer must give exactly its ids.
Kinds read: WordPiece (BERT, MiniLM, DistilBERT, ELECTRA, MPNet) with the BertNormalizer and the
BertPreTokenizer; byte-level BPE (RoBERTa, and GPT-2's tokenizer in general) with no normalizer and the
ByteLevel pre-tokenizer, its merges applied lowest rank first; SentencePiece Unigram (XLM-R, ALBERT-style)
with the Precompiled normalizer (its charsmap decoded here: ``charsmap_entries``), WhitespaceSplit /
Metaspace and the Viterbi over the pieces' scores. Any other kind, normalizer or pre-tokenizer is named in ``Unsupported`` and the
artifact is built without tokenizer.bin (``bertc run --text`` then tokenizes with transformers on the host).

The C side normalizes in the order the BertNormalizer does:

    text --map1--> clean text, pad CJK with spaces, NFD (when accents are stripped)
         --canonical reordering by combining class (NFD's, when accents are stripped)
         --map2--> drop nonspacing marks (when stripped), lowercase (when lowercasing)
         --flags--> split on whitespace, isolate punctuation (BertPreTokenizer)
         --> greedy longest-match WordPiece over the vocabulary, [CLS] ... [SEP], truncation

and byte-level BPE: split as GPT-2's pattern does ('s 't ... | ?letters | ?numbers | ?other | spaces), each
piece's bytes merged pair by pair in the merges' order, <s> ... </s>. The vocabulary and merges are stored
as raw bytes (GPT-2's byte-to-character alphabet undone here), so the C side never maps bytes.

Every per-character table is generated here from Python's ``unicodedata`` (Unicode 14 on Python 3.11),
never written by hand. ``tokenizers`` was built with other Unicode versions (its categories are older,
Rust's lowercase newer), so each table is then compared with what ``tokenizers`` itself does to every
code point, and where the two disagree (about 450 code points: marks and format characters assigned
since, case pairs added in Unicode 15 and 16) the table takes ``tokenizers``' answer: exact ids are the
contract. ``Tables.overrides`` counts them; report.json shows the count.

File layout (little-endian):

    0   "BTOK", u32 version, u8[32] sha256 of bytes 40..end
    40  u32 kind (1 WordPiece, 2 byte-level BPE), u32 flags (1 clean text, 2 CJK, 4 strip accents, 8 lowercase;
        16 add a prefix space, 32 a piece in the vocabulary is taken whole)
    48  u32 max_length, i32 unk, cls, sep, pad, u32 cls_type, seq_type, sep_type,
        u32 max_input_chars_per_word, u32 longest map1 output, u32 longest map2 output, u32 Metaspace's replacement
    96  NSECT x (u32 offset, u32 count): the sections below, each 4-byte aligned

An added token is three u32 in "added" (id | 1 << 29 matched after normalization | 1 << 30 lstrip | 1 << 31 rstrip,
then offset and length of its text in "added_bytes"): tokenizers' AddedVocabulary finds the others in the raw text,
then a normalized one (its content normalized) in the normalized text of each piece between them.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BertcError

MAGIC, VERSION = b"BTOK", 5  # 2: byte-level BPE (its merges); 3: Unigram (scores, charsmap); 4: its replacement;
# 5: added tokens matched after normalization (bit 29 of an added token's id)
WORDPIECE, BYTE_BPE, UNIGRAM = 1, 2, 3
CLEAN_TEXT, HANDLE_CJK, STRIP_ACCENTS, LOWERCASE = 1, 2, 4, 8  # WordPiece: the BertNormalizer's settings
ADD_PREFIX_SPACE, IGNORE_MERGES = 16, 32  # byte-level BPE: the ByteLevel pre-tokenizer's and the model's
# a code point's class for byte-level BPE's split (GPT-2's pattern: letters, numbers, whitespace, the rest)
LETTER, NUMBER = 2, 4
# Unigram (SentencePiece): the normalizer and pre-tokenizer steps it has
PRECOMPILED, COLLAPSE_SPACES, WHITESPACE_SPLIT, METASPACE_SPLIT, PREPEND_ALWAYS, PREPEND_FIRST = (
    1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12, 1 << 13)
# a code point's grapheme-cluster properties (UAX #29), the low bits of a Unigram run's info
GCB = ["Other", "CR", "LF", "Control", "Extend", "ZWJ", "Regional_Indicator", "Prepend", "SpacingMark", "L", "V", "T",
       "LV", "LVT"]
EXT_PICT, INCB = 1 << 4, {"Consonant": 1 << 5, "Extend": 2 << 5, "Linker": 3 << 5}
# flags of a normalized character for the pre-tokenizer (the top byte of a run's info)
WHITESPACE, PUNCTUATION = 1, 2
SECTIONS = ("run_start", "run_info", "map", "pool", "ccc", "vocab_offsets", "vocab_bytes", "hash", "added",
            "added_bytes", "prefix", "merges", "merge_hash", "scores", "charsmap", "charsmap_bytes", "charsmap_hash")
HEADER_BYTES = 96 + 8 * len(SECTIONS)
MAX_CODE_POINT = 0x110000
_SEPARATOR = "\ua66e"  # CYRILLIC LETTER MULTIOCULAR O: no case, no decomposition, combining class 0, a letter


class Unsupported(BertcError):
    """The tokenizer is of a kind the C runtime does not read yet; the message names what."""


# --------------------------------------------------------------------------- Unicode, per code point


def _is_cjk(cp: int) -> bool:
    """The ranges BERT calls Chinese characters (the BertNormalizer's own list, not a Unicode property)."""
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                              (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF),
                                              (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def _code_points() -> range:
    return range(MAX_CODE_POINT)


def _char(cp: int) -> str | None:
    return None if 0xD800 <= cp <= 0xDFFF else chr(cp)  # surrogates are not text


def _map1(c: str, flags: int) -> str:
    """Clean text, CJK padding and NFD of one character, as unicodedata says."""
    if flags & CLEAN_TEXT:
        if c in "\0\ufffd" or (c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs")):
            return ""
        if c in "\t\n\r" or c.isspace():
            return " "
    if flags & HANDLE_CJK and _is_cjk(ord(c)):
        return f" {c} "
    return unicodedata.normalize("NFD", c) if flags & STRIP_ACCENTS else c


def _hangul_jamo(cp: int) -> str | None:
    """A precomposed Hangul syllable's canonical decomposition by Unicode's arithmetic (section 3.12), which
    tokenizer.c repeats instead of storing 11,172 table entries; None for any other code point."""
    s = cp - 0xAC00
    if not 0 <= s < 11172:
        return None
    lead, vowel, tail = 0x1100 + s // 588, 0x1161 + s % 588 // 28, 0x11A7 + s % 28
    return chr(lead) + chr(vowel) + (chr(tail) if tail != 0x11A7 else "")


def _map2(c: str, flags: int) -> str:
    """Dropping a nonspacing mark and lowercasing, one character at a time (not str.lower() of a
    string, which would turn a final sigma into a different letter than the tokenizers library does)."""
    if flags & STRIP_ACCENTS and unicodedata.category(c) == "Mn":
        return ""
    return c.lower() if flags & LOWERCASE else c


def _pretokenizer_flags(c: str) -> int:
    if c.isspace():
        return WHITESPACE
    if (c.isascii() and not c.isalnum() and c.isprintable() and c != " ") or unicodedata.category(c)[0] == "P":
        return PUNCTUATION
    return 0


def _hf_per_char(normalizer, chars: list[str]) -> list[str]:
    """What the tokenizers normalizer makes of each character alone, from one call: the characters joined
    by a separator it leaves as it is (and the separator alone)."""
    rest = [c for c in chars if c != _SEPARATOR]
    out = normalizer.normalize_str(_SEPARATOR + _SEPARATOR.join(rest) + _SEPARATOR).split(_SEPARATOR)
    if len(out) != len(rest) + 2:
        raise BertcError("tokenizers changed the separator character while comparing Unicode tables; report this")
    answers = dict(zip(rest, out[1:-1]))
    return [answers[c] if c != _SEPARATOR else normalizer.normalize_str(c) for c in chars]


def _hf_pretokenizer_flags(pre_tokenizer, chars: list[str]) -> list[int]:
    """WHITESPACE for a character the pre-tokenizer drops, PUNCTUATION for one it splits off on its own."""
    text = "a" + "a".join(chars) + "a"
    pieces = pre_tokenizer.pre_tokenize_str(text)
    flags = [WHITESPACE] * len(chars)  # a character no piece covers was dropped
    for _, (start, end) in pieces:
        for pos in range(start, end):
            if pos % 2:  # characters sit at the odd positions
                flags[pos // 2] = PUNCTUATION if (start, end) == (pos, pos + 1) else 0
    return flags


# A run's info: the character's flags in the top byte, the index of its map entry (0: none) below.
DROP1, SPACE1, PAD1, DROP2, HANGUL = 4, 8, 16, 32, 64  # map1 gives nothing / a space / " c "; map2 nothing;
# HANGUL: map1 is the syllable's decomposition into jamo, which the C side computes (Unicode's algorithm)
_MAP1_FLAG = {"": DROP1, " ": SPACE1}


@dataclass
class Tables:
    """The Unicode part of tokenizer.bin: code points in runs of equal info, the map entries (map1 and
    map2 outputs as (offset, length) into the pool, length 0xFFFFFFFF for "the character itself"), the
    nonzero canonical combining classes (cp << 8 | class), and how many code points follow tokenizers
    where unicodedata says otherwise."""

    run_start: list[int]
    run_info: list[int]
    maps: list[int]
    pool: list[int]
    ccc: list[int]
    longest: tuple[int, int]
    overrides: int


def _build_tables(flags: int, normalizer, pre_tokenizer) -> Tables:
    chars = [c for cp in _code_points() if (c := _char(cp)) is not None]
    map1, map2 = {}, {}
    for c in chars:
        if (m := _map1(c, flags)) != c:
            map1[ord(c)] = m
        if (m := _map2(c, flags)) != c:
            map2[ord(c)] = m
    # the tokenizers library's own answers, for every character: where they differ, they win
    overrides = 0
    for c, want in zip(chars, _hf_per_char(normalizer, chars)):
        cp = ord(c)
        if "".join(map2.get(ord(x), x) for x in map1.get(cp, c)) != want:
            overrides += 1
            map1.pop(cp, None)
            map2[cp] = want  # the character passes map1 as itself; map2 gives tokenizers' result
    pre = [0] * MAX_CODE_POINT
    for c, f in zip(chars, _hf_pretokenizer_flags(pre_tokenizer, chars)):
        overrides += f != _pretokenizer_flags(c)
        pre[ord(c)] = f
    info = [f << 24 for f in pre]
    pool: list[int] = []
    maps = [0, 0xFFFFFFFF, 0, 0xFFFFFFFF]  # entry 0: itself, twice
    for cp in sorted(set(map1) | set(map2)):
        m1, m2 = map1.get(cp), map2.get(cp)
        if m1 is not None and m1 in _MAP1_FLAG:
            info[cp] |= _MAP1_FLAG[m1] << 24
            m1 = None
        elif m1 is not None and m1 == f" {chr(cp)} ":
            info[cp] |= PAD1 << 24
            m1 = None
        elif m1 is not None and m1 == _hangul_jamo(cp):
            info[cp] |= HANGUL << 24
            m1 = None
        if m2 == "":
            info[cp] |= DROP2 << 24
            m2 = None
        if m1 is None and m2 is None:
            continue
        info[cp] |= len(maps) // 4
        for m in (m1, m2):
            maps += [0, 0xFFFFFFFF] if m is None else [len(pool), len(m)]
            pool += [] if m is None else [ord(x) for x in m]
    run_start, run_info = [], []
    for cp, i in enumerate(info):
        if not run_info or i != run_info[-1] or i & 0xFFFFFF:
            run_start.append(cp)
            run_info.append(i)
    ccc = [ord(c) << 8 | k for c in chars if (k := unicodedata.combining(c))] if flags & STRIP_ACCENTS else []
    longest = (max([len(m) for m in map1.values()] + [3]), max([len(m) for m in map2.values()] + [1]))
    return Tables(run_start, run_info, maps, pool, ccc, longest, overrides)


def _bpe_class(c: str) -> int:
    """GPT-2's pattern's class of a character, as unicodedata says: \\p{L}, \\p{N}, \\s or none of them."""
    cat = unicodedata.category(c)
    return LETTER if cat[0] == "L" else NUMBER if cat[0] == "N" else WHITESPACE if c.isspace() else 0


def _hf_bpe_class(pre_tokenizer, c: str) -> int:
    """The class the ByteLevel pre-tokenizer's own regex gives c: what it joins after a letter, a digit, '!'."""
    for probe, cls in (("a", LETTER), ("1", NUMBER), ("!", 0)):
        if len(pre_tokenizer.pre_tokenize_str(probe + c)) == 1:
            return cls
    return WHITESPACE


def _runs(info: list[int]) -> tuple[list[int], list[int]]:
    """Per-code-point info as runs: the code points where it changes, and its value from each on."""
    run_start, run_info = [], []
    for cp, i in enumerate(info):
        if not run_info or i != run_info[-1]:
            run_start.append(cp)
            run_info.append(i)
    return run_start, run_info


def _build_bpe_tables(pre_tokenizer) -> Tables:
    """One class per code point for the split; no maps (byte-level BPE has no normalizer)."""
    overrides, info = 0, [0] * MAX_CODE_POINT
    for cp in _code_points():
        if (c := _char(cp)) is None:
            continue
        ours, theirs = _bpe_class(c), _hf_bpe_class(pre_tokenizer, c)
        overrides += ours != theirs
        info[cp] = theirs << 24
    run_start, run_info = _runs(info)
    return Tables(run_start, run_info, [0, 0xFFFFFFFF, 0, 0xFFFFFFFF], [], [], (3, 1), overrides)


def _build_unigram_tables(pre_tokenizer) -> Tables:
    """Whitespace (what WhitespaceSplit splits on: tokenizers' own answer, from a probe of each character) and the
    grapheme-cluster properties the Precompiled normalizer's segmentation needs, from the regex module (it
    carries Grapheme_Cluster_Break, Extended_Pictographic and Indic_Conjunct_Break, which unicodedata lacks)."""
    import regex
    from tokenizers.pre_tokenizers import WhitespaceSplit

    chars = [c for cp in _code_points() if (c := _char(cp)) is not None]
    text = "".join(chars)
    index = [ord(c) for c in chars]
    info = [0] * MAX_CODE_POINT
    for value, name in enumerate(GCB[1:], 1):
        for m in regex.finditer(rf"\p{{GCB={name}}}+", text):
            for k in range(m.start(), m.end()):
                info[index[k]] |= value
    for pattern, bit in [(r"\p{ExtPict}+", EXT_PICT), *((rf"\p{{InCB={n}}}+", b) for n, b in INCB.items())]:
        for m in regex.finditer(pattern, text):
            for k in range(m.start(), m.end()):
                info[index[k]] |= bit
    split, overrides = WhitespaceSplit(), 0
    for c in chars:
        theirs = WHITESPACE if len(split.pre_tokenize_str("a" + c + "a")) == 2 else 0
        overrides += theirs != (WHITESPACE if c.isspace() else 0)
        info[ord(c)] |= theirs << 24
    run_start, run_info = _runs(info)
    return Tables(run_start, run_info, [0, 0xFFFFFFFF, 0, 0xFFFFFFFF], [], [], (3, 1), overrides)


def charsmap_entries(charsmap: bytes) -> dict[bytes, bytes]:
    """A SentencePiece precompiled charsmap (a Darts double-array trie of UTF-8 keys, then their replacements,
    each ended by a NUL) as key -> replacement, every key the trie holds (depth-first over its bytes)."""
    size = struct.unpack_from("<I", charsmap)[0]
    units = struct.unpack_from(f"<{size // 4}I", charsmap, 4)
    blob = charsmap[4 + size:]
    offset = lambda u: (u >> 10) << ((u & (1 << 9)) >> 6)  # Darts' unit layout
    out: dict[bytes, bytes] = {}
    stack = [(offset(units[0]), b"")]
    while stack:
        node, key = stack.pop()
        for c in range(1, 256):
            pos = node ^ c
            if pos >= len(units) or units[pos] & ((1 << 31) | 0xFF) != c:
                continue
            child = pos ^ offset(units[pos])
            if (units[pos] >> 8) & 1:
                start = units[child] & ((1 << 31) - 1)
                out[key + bytes([c])] = blob[start:blob.index(b"\0", start)]
            stack.append((child, key + bytes([c])))
    return out


def _cached_charsmap(charsmap: bytes) -> dict[bytes, bytes]:
    """charsmap_entries, kept in $BERTC_CACHE/unicode/ by the charsmap's sha256 (decoding nmt_nfkc's 225,276 keys
    takes 8 s): u8 key length, u16 replacement length, key, replacement, per entry; data, never code."""
    path = _cache_dir() / f"charsmap-{hashlib.sha256(charsmap).hexdigest()[:16]}.bin"
    try:
        data, out, at = path.read_bytes(), {}, 0
        while at < len(data):
            klen, vlen = struct.unpack_from("<BH", data, at)
            out[data[at + 3:at + 3 + klen]] = data[at + 3 + klen:at + 3 + klen + vlen]
            at += 3 + klen + vlen
        if at == len(data) and out:
            return out
    except (OSError, struct.error):
        pass
    out = charsmap_entries(charsmap)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(b"".join(struct.pack("<BH", len(k), len(v)) + k + v for k, v in out.items()))
        tmp.replace(path)
    except OSError:
        pass
    return out


def _cache_dir() -> Path:
    return Path(os.environ.get("BERTC_CACHE") or Path.home() / ".cache" / "bertc") / "unicode"


def unicode_tables(kind: int, flags: int, normalizer, pre_tokenizer) -> Tables:
    """The tables for a tokenizer of ``kind`` with normalizer flags ``flags``: built once per tokenizers version,
    Python Unicode version and version of this file (building them looks at all 1.1 million code points, 7 s
    for WordPiece, 10 s for byte-level BPE), then read from $BERTC_CACHE/unicode/ (JSON: data, never code)."""
    import tokenizers

    key = hashlib.sha256(f"{kind} {flags} {tokenizers.__version__} {unicodedata.unidata_version} "
                         f"{Path(__file__).read_bytes().hex()}".encode()).hexdigest()[:16]
    path = _cache_dir() / f"{key}.json"
    try:
        data = json.loads(path.read_text())
        return Tables(**{**data, "longest": tuple(data["longest"])})
    except (OSError, ValueError, TypeError, KeyError):
        pass
    tables = (_build_tables(flags, normalizer, pre_tokenizer) if kind == WORDPIECE else
              _build_bpe_tables(pre_tokenizer) if kind == BYTE_BPE else _build_unigram_tables(pre_tokenizer))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(tables)))
        tmp.replace(path)  # atomic: a concurrent compile reads the whole file or none
    except OSError:
        pass  # a read-only home: build them again next time
    return tables


# --------------------------------------------------------------------------- the tokenizer.json


@dataclass(frozen=True)
class AddedToken:
    """An added token as tokenizer.bin holds it: the text matched (of a normalized one, its content normalized, found
    in the normalized text), its id, and whether the whitespace before / after it goes with it."""

    text: str
    id: int
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = False


@dataclass(frozen=True)
class Spec:
    """What tokenizer.bin holds of a WordPiece tokenizer.json."""

    flags: int
    vocab: dict[str, int]
    unk: int
    cls: int
    sep: int
    pad: int
    types: tuple[int, int, int]  # token type of [CLS], of the text, of [SEP]
    prefix: str
    max_input_chars_per_word: int  # WordPiece's
    added: list[AddedToken]
    kind: int = WORDPIECE
    merges: list[tuple[int, int, int]] = field(default_factory=list)  # byte-level BPE, by rank: left, right, merged
    scores: list[float] = field(default_factory=list)  # Unigram: each piece's log probability
    charsmap: dict[bytes, bytes] = field(default_factory=dict)  # Unigram: the Precompiled normalizer's
    replacement: int = 0  # Unigram: the code point Metaspace writes for a space (U+2581)


def backend_tokenizer(folder: Path):
    """The tokenizers pipeline transformers uses for the model folder (tokenizer.json, or built from
    vocab.txt and tokenizer_config.json)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds; the message is what matters
        raise Unsupported(f"transformers cannot load the tokenizer in {folder}: {e}") from None
    if not getattr(tok, "is_fast", False):
        raise Unsupported(f"the tokenizer in {folder} has no tokenizers (fast) form ({type(tok).__name__})")
    return tok.backend_tokenizer


def read_spec(config: dict[str, Any]) -> Spec:
    """The tokenizer a tokenizer.json (as a dict) describes, or Unsupported naming what is not read yet."""
    model = config.get("model") or {}
    if model.get("type") == "BPE":
        return _read_bpe(config)
    if model.get("type") == "Unigram":
        return _read_unigram(config)
    if model.get("type") != "WordPiece":
        raise Unsupported(f"its model is {model.get('type')!r}; the C tokenizer reads WordPiece, byte-level BPE and "
                          "Unigram")
    norm, pre, post = (config.get(k) or {} for k in ("normalizer", "pre_tokenizer", "post_processor"))
    if norm.get("type") != "BertNormalizer":
        raise Unsupported(f"its normalizer is {norm.get('type')!r}; the C tokenizer reads the BertNormalizer")
    if pre.get("type") != "BertPreTokenizer":
        raise Unsupported(f"its pre-tokenizer is {pre.get('type')!r}; the C tokenizer reads the BertPreTokenizer")
    lowercase = bool(norm.get("lowercase"))
    strip = norm.get("strip_accents")
    flags = ((CLEAN_TEXT if norm.get("clean_text") else 0) | (HANDLE_CJK if norm.get("handle_chinese_chars") else 0)
             | (STRIP_ACCENTS if (lowercase if strip is None else strip) else 0) | (LOWERCASE if lowercase else 0))
    vocab = model["vocab"]
    cls, sep, types = _special_tokens(post)
    unk = vocab.get(model.get("unk_token", ""))
    if unk is None:
        raise Unsupported(f"its unknown token {model.get('unk_token')!r} is not in the vocabulary")
    pad = (config.get("padding") or {}).get("pad_id", vocab.get("[PAD]", 0))
    return Spec(flags, vocab, unk, cls, sep, pad, types, model.get("continuing_subword_prefix", "##"),
                int(model.get("max_input_chars_per_word", 100)), _added_tokens(config, normalized_in_c=True))


def _added_tokens(config: dict[str, Any], normalized_in_c: bool) -> list[AddedToken]:
    """The added tokens. A normalized one is matched in the raw text where the tokenizer has no normalizer (its
    normalized text is the raw text); else as its content normalized by tokenizers itself, in the normalized text
    (``normalized_in_c``: WordPiece's tok_piece does that), refused for the kinds that do not."""
    normalizer = None
    if config.get("normalizer") and any(tok.get("normalized") for tok in config.get("added_tokens", [])):
        from tokenizers import Tokenizer

        normalizer = Tokenizer.from_str(json.dumps(config)).normalizer
    added = []
    for tok in config.get("added_tokens", []):
        content, flags = tok["content"], (tok["id"], bool(tok.get("lstrip")), bool(tok.get("rstrip")))
        if tok.get("single_word"):
            raise Unsupported(f"its added token {content!r} is matched as a single word only, which the C tokenizer "
                              "does not do yet")
        if not tok.get("normalized") or normalizer is None:
            added.append(AddedToken(content, *flags))
            continue
        if not normalized_in_c:
            raise Unsupported(f"its added token {content!r} is matched after normalization, which the C tokenizer "
                              "does for WordPiece only yet")
        text = normalizer.normalize_str(content)
        if not text or any(c.isspace() for c in text):  # tok_piece matches within chunks that end at whitespace
            raise Unsupported(f"its added token {content!r} normalizes to {text!r}, which is empty or holds "
                              "whitespace; the C tokenizer matches normalized added tokens without whitespace only")
        added.append(AddedToken(text, *flags, normalized=True))
    return added


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-to-character alphabet (bytes_to_unicode), inverted: which byte each character of a byte-level
    vocabulary stands for. (test_tokenizer.py checks it against tokenizers' ByteLevel.alphabet().)"""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    extra = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(extra)}
    return {c: b for b, c in chars.items()}


def _read_bpe(config: dict[str, Any]) -> Spec:
    model, pre, post = (config.get(k) or {} for k in ("model", "pre_tokenizer", "post_processor"))
    if config.get("normalizer"):
        raise Unsupported(f"its BPE has a normalizer ({config['normalizer'].get('type')!r}); the C tokenizer reads "
                          "byte-level BPE without one (RoBERTa's, GPT-2's)")
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        raise Unsupported(f"its BPE pre-tokenizer is {pre.get('type')!r}; the C tokenizer reads ByteLevel with "
                          "GPT-2's split")
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise Unsupported(f"its BPE sets {key}, which the C tokenizer does not do")
    if model.get("byte_fallback") or model.get("fuse_unk"):
        raise Unsupported("its BPE falls back to bytes or fuses unknown tokens, which byte-level BPE never needs")
    alphabet = _byte_alphabet()
    vocab = {}
    for text, i in model["vocab"].items():
        try:
            vocab[bytes(alphabet[c] for c in text).decode("latin-1")] = i
        except KeyError:
            raise Unsupported(f"its vocabulary entry {text!r} is not in GPT-2's byte alphabet") from None
    merges = []
    for rank, m in enumerate(model.get("merges", [])):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        l, r = (bytes(alphabet[c] for c in x).decode("latin-1") for x in (left, right))
        if l not in vocab or r not in vocab or l + r not in vocab:
            raise Unsupported(f"its merge #{rank} ({left} {right}) names a token not in the vocabulary")
        merges.append((vocab[l], vocab[r], vocab[l + r]))
    cls, sep, types = _special_tokens(post)
    pad = (config.get("padding") or {}).get("pad_id", model["vocab"].get("<pad>", 1))
    flags = (ADD_PREFIX_SPACE if pre.get("add_prefix_space") else 0) | (IGNORE_MERGES if model.get("ignore_merges") else 0)
    unk = model["vocab"].get(model.get("unk_token") or "", 0)
    return Spec(flags, vocab, unk, cls, sep, pad, types, "", 0, _added_tokens(config, normalized_in_c=False),
                BYTE_BPE, merges)


def _read_unigram(config: dict[str, Any]) -> Spec:
    """SentencePiece as tokenizers holds it: Precompiled (+ Replace of runs of spaces), [WhitespaceSplit,]
    Metaspace, Unigram."""
    import base64

    model, norm, pre = (config.get(k) or {} for k in ("model", "normalizer", "pre_tokenizer"))
    if model.get("byte_fallback"):
        raise Unsupported("its Unigram falls back to bytes, which the C tokenizer does not do yet")
    flags, charsmap = 0, {}
    steps = norm.get("normalizers", [norm]) if norm.get("type") == "Sequence" else [norm] if norm else []
    for k, step in enumerate(steps):
        kind = step.get("type")
        if kind == "Precompiled" and k == 0:
            flags |= PRECOMPILED
            charsmap = _cached_charsmap(base64.b64decode(step["precompiled_charsmap"]))
        elif kind == "Replace" and step.get("pattern") == {"Regex": " {2,}"} and step.get("content") == " ":
            flags |= COLLAPSE_SPACES
        else:
            raise Unsupported(f"its normalizer step {kind!r} is not one the C tokenizer does for Unigram "
                              "(Precompiled, then Replace of ' {2,}')")
    pres = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if [p.get("type") for p in pres] not in (["Metaspace"], ["WhitespaceSplit", "Metaspace"]):
        raise Unsupported(f"its pre-tokenizer {[p.get('type') for p in pres]} is not Metaspace (after WhitespaceSplit)")
    meta = pres[-1]
    scheme = meta.get("prepend_scheme", "always" if meta.get("add_prefix_space", True) else "never")
    flags |= (WHITESPACE_SPLIT if len(pres) == 2 else 0) | (METASPACE_SPLIT if meta.get("split", True) else 0) | {
        "always": PREPEND_ALWAYS, "first": PREPEND_FIRST, "never": 0}[scheme]
    replacement = meta.get("replacement", "\u2581")
    if len(replacement) != 1:
        raise Unsupported(f"its Metaspace replacement {replacement!r} is not one character")
    vocab = {}
    for i, (piece, _) in enumerate(model["vocab"]):
        vocab[piece] = i  # the last of equal pieces wins, as in tokenizers' token_to_ids
    unk = model.get("unk_id")
    cls, sep, types = _special_tokens(config.get("post_processor") or {})
    pad = (config.get("padding") or {}).get("pad_id", vocab.get("<pad>", 0))
    return Spec(flags, vocab, unk if unk is not None else 0, cls, sep, pad, types, "", 0,
                _added_tokens(config, normalized_in_c=False), UNIGRAM,
                scores=[float(score) for _, score in model["vocab"]], charsmap=charsmap, replacement=ord(replacement))


def _special_tokens(post: dict[str, Any]) -> tuple[int, int, tuple[int, int, int]]:
    """[CLS] and [SEP] of one text, and the token type of each part, from the post-processor."""
    if post.get("type") in ("BertProcessing", "RobertaProcessing"):  # [CLS] $A [SEP], <s> $A </s> (MPNet's)
        return post["cls"][1], post["sep"][1], (0, 0, 0)
    if post.get("type") != "TemplateProcessing":
        raise Unsupported(f"its post-processor is {post.get('type')!r}; the C tokenizer reads BertProcessing and "
                          "TemplateProcessing")
    single = post["single"]
    shape = ["SpecialToken" if "SpecialToken" in p else "Sequence" for p in single]
    if shape != ["SpecialToken", "Sequence", "SpecialToken"]:
        raise Unsupported(f"its template for one text is {shape}; the C tokenizer reads [CLS] $A [SEP]")
    first, seq, last = single[0]["SpecialToken"], single[1]["Sequence"], single[2]["SpecialToken"]
    ids = [post["special_tokens"][p["id"]]["ids"] for p in (first, last)]
    if any(len(i) != 1 for i in ids):
        raise Unsupported("its template adds more than one token at an end, which the C tokenizer does not do yet")
    return ids[0][0], ids[1][0], (first.get("type_id", 0), seq.get("type_id", 0), last.get("type_id", 0))


# --------------------------------------------------------------------------- tokenizer.bin


def fnv1a(data: bytes) -> int:
    """The vocabulary's hash (tokenizer.c computes the same)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _hash_table(tokens: list[bytes]) -> list[int]:
    size = 1
    while size < 2 * len(tokens):
        size *= 2
    slots = [0] * size
    for i, t in enumerate(tokens):
        if not t:
            continue
        h = fnv1a(t) & (size - 1)
        while slots[h]:
            h = (h + 1) & (size - 1)
        slots[h] = i + 1
    return slots


def _charsmap_entries(charsmap: dict[bytes, bytes]) -> tuple[list[tuple[int, int, int, int]], bytes, list[int]]:
    """(key offset, key length, replacement offset, replacement length) per entry, their bytes, and a hash table of
    the keys (FNV-1a, as the vocabulary's; slot = entry + 1)."""
    entries, blob = [], bytearray()
    for key, value in charsmap.items():
        entries.append((len(blob), len(key), len(blob) + len(key), len(value)))
        blob += key + value
    size = 1
    while size < 2 * len(entries):
        size *= 2
    slots = [0] * (size if entries else 0)
    for i, key in enumerate(charsmap):
        h = fnv1a(key) & (size - 1)
        while slots[h]:
            h = (h + 1) & (size - 1)
        slots[h] = i + 1
    return entries, bytes(blob), slots


def merge_key(left: int, right: int) -> int:
    """The merges' hash of a pair of ids (tokenizer.c computes the same)."""
    return ((left * 0x9E3779B1) ^ (right * 0x85EBCA77)) & 0xFFFFFFFF


def _merge_hash(merges: list[tuple[int, int, int]]) -> list[int]:
    """Open addressing: slot = rank + 1 of the pair hashed there, 0 empty; a power of two at least twice the merges."""
    size = 1
    while size < 2 * len(merges):
        size *= 2
    slots = [0] * size
    for rank, (left, right, _) in enumerate(merges):
        h = merge_key(left, right) & (size - 1)
        while slots[h]:
            h = (h + 1) & (size - 1)
        slots[h] = rank + 1
    return slots


def encode(spec: Spec, tables: Tables, max_length: int) -> bytes:
    """tokenizer.bin's bytes."""
    size = max([*spec.vocab.values(), *(a.id for a in spec.added)]) + 1  # an added token may lie past the model's
    tokens = [b""] * size
    for text, i in spec.vocab.items():  # byte-level BPE's entries are raw bytes, held as latin-1 text
        tokens[i] = text.encode("latin-1" if spec.kind == BYTE_BPE else "utf-8")
    offsets = [0]
    for t in tokens:
        offsets.append(offsets[-1] + len(t))
    added, added_bytes = [], b""
    for a in sorted(spec.added, key=lambda a: (a.text, a.normalized)):
        added += [a.id | a.normalized << 29 | a.lstrip << 30 | a.rstrip << 31, len(added_bytes), len(a.text.encode())]
        added_bytes += a.text.encode()
    slots = _hash_table(tokens)
    cm = _charsmap_entries(spec.charsmap)
    sections = {
        "run_start": struct.pack(f"<{len(tables.run_start)}I", *tables.run_start),
        "run_info": struct.pack(f"<{len(tables.run_info)}I", *tables.run_info),
        "map": struct.pack(f"<{len(tables.maps)}I", *tables.maps),
        "pool": struct.pack(f"<{len(tables.pool)}I", *tables.pool),
        "ccc": struct.pack(f"<{len(tables.ccc)}I", *tables.ccc),
        "vocab_offsets": struct.pack(f"<{len(offsets)}I", *offsets),
        "vocab_bytes": b"".join(tokens),
        "hash": struct.pack(f"<{len(slots)}I", *slots),
        "added": struct.pack(f"<{len(added)}I", *added),
        "added_bytes": added_bytes,
        "prefix": spec.prefix.encode(),
        "merges": b"".join(struct.pack("<3I", *m) for m in spec.merges),
        "scores": struct.pack(f"<{len(spec.scores)}d", *spec.scores),
        "charsmap": b"".join(struct.pack("<4I", *e) for e in cm[0]),
        "charsmap_bytes": cm[1],
        "charsmap_hash": struct.pack(f"<{len(cm[2])}I", *cm[2]),
        "merge_hash": struct.pack(f"<{len(merge_slots := _merge_hash(spec.merges))}I", *merge_slots),
    }
    counts = {"run_start": len(tables.run_start), "run_info": len(tables.run_info), "map": len(tables.maps) // 4,
              "pool": len(tables.pool), "ccc": len(tables.ccc), "vocab_offsets": len(offsets), "vocab_bytes": len(sections["vocab_bytes"]),
              "hash": len(slots), "added": len(spec.added), "added_bytes": len(added_bytes), "prefix": len(sections["prefix"]),
              "merges": len(spec.merges), "merge_hash": len(merge_slots), "scores": len(spec.scores),
              "charsmap": len(cm[0]), "charsmap_bytes": len(cm[1]), "charsmap_hash": len(cm[2])}
    body = bytearray(struct.pack("<2I", spec.kind, spec.flags))
    body += struct.pack("<I4i3I4I", max_length, spec.unk, spec.cls, spec.sep, spec.pad, *spec.types,
                        spec.max_input_chars_per_word, *tables.longest, spec.replacement)
    body += bytes(HEADER_BYTES - 8 * len(SECTIONS) - 40 - len(body))  # the section table starts at byte 96
    table_at = len(body)
    body += bytes(8 * len(SECTIONS))
    for k, name in enumerate(SECTIONS):
        body += bytes(-(len(body) + 40) % 4)
        struct.pack_into("<2I", body, table_at + 8 * k, len(body) + 40, counts[name])
        body += sections[name]
    return MAGIC + struct.pack("<I", VERSION) + hashlib.sha256(body).digest() + bytes(body)


@dataclass(frozen=True)
class Built:
    """A tokenizer.bin written, with what report.json says of it."""

    kind: str
    vocab_size: int
    bytes: int
    overrides: int


def write_tokenizer_bin(folder: Path, out: Path, max_length: int) -> Built:
    """Compile the tokenizer in model ``folder`` into ``out``; Unsupported when it is of a kind not read yet."""
    backend = backend_tokenizer(folder)
    config = json.loads(backend.to_str())
    spec = read_spec(config)
    flags = spec.flags if spec.kind == WORDPIECE else 0  # the other kinds' classes do not depend on their flags
    tables = unicode_tables(spec.kind, flags, backend.normalizer, backend.pre_tokenizer)
    data = encode(spec, tables, max_length)
    out.write_bytes(data)
    return Built({WORDPIECE: "WordPiece", BYTE_BPE: "byte-level BPE", UNIGRAM: "Unigram"}[spec.kind], len(spec.vocab),
                 len(data), tables.overrides)


