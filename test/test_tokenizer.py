"""The C tokenizer in the artifact (issue 20: tokenizer.bin, runtime/src/tokenizer.h) gives exactly the ids of
the Hugging Face tokenizers pipeline it was compiled from: on every rt-sentiment snippet, on a stress set
(accents, CJK, emoji, control and zero-width characters, long words, empty and whitespace-only text, a
100,000-character text), on random Unicode strings, for the real MiniLM's uncased WordPiece, for cased and
other normalizer settings, for a RoBERTa-style byte-level BPE and for an XLM-R-style SentencePiece Unigram (both
trained here on rt-sentiment: no RoBERTa or XLM-R vocabulary ships in a package; the Unigram with sentencepiece's
own nmt_nfkc normalization, so its Precompiled charsmap is the real one), for all-mpnet-base-v2's, whose <unk> is an
added token matched after normalization; and it refuses invalid UTF-8 by name."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, normalizers

import bertc
from bertc.errors import BertcError
from bertc.tokenizer import Unsupported, backend_tokenizer, read_spec
from search.tasks import load_task

MAX = 512


@pytest.fixture(scope="module")
def minilm(minilm_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "minilm.bertc"
    art = bertc.compile(minilm_path, "host", out=out, max_seq_len=MAX)
    return bertc.load(art.path), reference(minilm_path)


def reference(folder) -> Tokenizer:
    tok = backend_tokenizer(folder)
    tok.no_padding()
    tok.enable_truncation(MAX)
    return tok


def assert_same(model, ref: Tokenizer, texts: list[str], cap: int = MAX) -> None:
    ref.enable_truncation(cap)
    ours = model.tokenize(texts, max_tokens=cap)
    for i, (text, enc) in enumerate(zip(texts, ref.encode_batch(texts))):
        n = int(ours["attention_mask"][i].sum())
        assert ours["input_ids"][i, :n].tolist() == enc.ids, f"text {i}: {text[:200]!r}"
        assert ours["token_type_ids"][i, :n].tolist() == enc.type_ids
    ref.enable_truncation(MAX)


STRESS = [
    "", " ", "   \t\n  ", "\u3000\u00a0\u2028", "a", "Hello, World!",
    "Crème brûlée à la française, naïve café, Ångström, Øresund, Straße, İstanbul, ΣΊΣΥΦΟΣ, ǅemal",
    "e\u0301 a\u0300\u0316 q\u0323\u0307 \u1e0b\u0323 \u0041\u030a\u0327 stacked: a\u0305\u0332\u0305\u0332",
    "我爱北京天安门。日本語のテキスト、한국어 텍스트 훈민정음; mixed中文English混合",
    "emoji 😀🎉👍🏽👨‍👩‍👧‍👦 🏳️‍🌈 flags 🇫🇷🇯🇵 keycap 1️⃣ 🥰🤩🥳 and ☃ ❤️",
    "control\x00\x01\x07\x1b\x7f\x85 chars\ufffd\ufeff and zero\u200bwidth\u200c\u200d\u2060joiners\u00ad",
    "tabs\tand\nnewlines\r\nand\u000bvertical\u000cfeeds\u001c\u001d\u001e\u001f",
    "x" * 99, "y" * 100, "z" * 101, "supercalifragilisticexpialidocious" * 4, "é" * 150,
    "[CLS] [SEP] [MASK] [PAD] [UNK] inside[MASK]words and [mask] lower and [MASK[MASK]]",
    "punctuation!!! ?¿ ¡hola! «quotes» “curly” ‘single’ — dashes – … ellipsis ・ 、 。 ， ！ ＂",
    "full-width ＡＢＣ ａｂｃ １２３ and compatibility ﬁ ﬂ ㎏ ™ ℌ ½ ²",
    "private use \ue000\U000f0000 unassigned \u0378\U0001fffe noncharacters \ufdd0\uffff",
    "Hangul syllables 가각갂 and jamo \u1100\u1161\u11a8 and compatibility jamo ㄱㅏ",
    "Greek final sigma: ΟΔΟΣ, Σ alone, ὈΔΥΣΣΕΎΣ; Turkish I: DİYARBAKIR ıi",
    "Devanagari क्षत्रिय, Thai ภาษาไทย, Arabic العربية مَرْحَبًا, Hebrew עִבְרִית",
    "math 𝐀𝐁𝐂 𝔸 ∑∫√∞ ≤≥ ≠ and arrows →⇒⟹",
    "a" + "\u0301" * 60 + " b" + "\u20dd" * 5,
    "musical \U0001d15e\U0001d165\U0001d16d\U0001d172 symbols",
]


def test_real_minilm_matches_on_every_rt_sentiment_snippet(minilm):
    model, ref = minilm
    task = load_task("rt-sentiment")
    texts = [t for split in (task.train, task.dev, task.test) for t, _ in split]
    assert len(texts) == 12752
    for i in range(0, len(texts), 1000):
        assert_same(model, ref, texts[i:i + 1000])


def test_stress_set_matches(minilm):
    model, ref = minilm
    assert_same(model, ref, STRESS)
    assert_same(model, ref, STRESS, cap=8)  # and cut to 8 tokens, [CLS] and [SEP] kept
    long = " ".join(STRESS) * 70
    assert len(long) > 100_000
    assert_same(model, ref, [long, "中" * 100_000, "x" * 100_000])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_random_unicode_matches(minilm, text):
    model, ref = minilm
    assert_same(model, ref, [text])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("aéÉ İı ,.![]中가\u0301\u0316\u0323\u200b\t\x00Σσ")) |
                    st.characters(codec="utf-8"), max_size=60))
def test_random_mixed_text_matches(minilm, text):
    model, ref = minilm
    assert_same(model, ref, [text, "[MASK]" + text + "[SEP]"])


def test_invalid_utf8_is_refused_by_name(minilm):
    model, _ = minilm
    with pytest.raises(BertcError, match=r"not valid UTF-8: the byte 0xed at offset 3"):
        model.tokenize(["abc\ud800"])  # a lone surrogate: encoded as ED A0 80, which UTF-8 forbids
    with pytest.raises(BertcError, match=r"text 1: the text is not valid UTF-8"):
        model.tokenize(["fine", "bad\udcff"])


def test_artifact_without_a_readable_tokenizer_says_why(tmp_path):
    folder = tmp_path / "m"
    tiny_model("bert").save_pretrained(folder)
    art = bertc.compile(str(folder), "host", out=tmp_path / "m.bertc", max_seq_len=16)
    model = bertc.load(art.path)
    assert not model.has_tokenizer
    with pytest.raises(BertcError, match="no tokenizer.bin"):
        model.tokenize("text")


def _variant_folder(tmp_path, minilm_path, normalizer) -> str:
    """A tiny BERT beside MiniLM's vocabulary with another BertNormalizer (cased models and the like)."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(f"{minilm_path}/tokenizer.json")
    tok.normalizer = normalizer
    tok.no_padding()
    tok.no_truncation()
    folder = tmp_path / "variant"
    tiny_model("bert").save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("flags", [{"lowercase": False}, {"lowercase": True, "strip_accents": False},
                                   {"clean_text": False, "handle_chinese_chars": False, "lowercase": False}],
                         ids=["cased", "lowercase-keep-accents", "raw"])
def test_other_normalizer_settings_match(tmp_path, minilm_path, flags):
    folder = _variant_folder(tmp_path, minilm_path, normalizers.BertNormalizer(**flags))
    art = bertc.compile(folder, "host", out=tmp_path / "v.bertc", max_seq_len=256)  # the tiny model's positions
    report = json.loads((art.path / "report.json").read_text())["tokenizer"]
    assert report["compiled"] and report["kind"] == "WordPiece"
    model = bertc.load(art.path)
    texts = STRESS + [t for t, _ in load_task("rt-sentiment").test[:300]]
    assert_same(model, reference(folder), texts, cap=256)


def test_a_tokenizer_of_another_kind_compiles_without_tokenizer_bin(tmp_path, minilm_path):
    folder = _variant_folder(tmp_path, minilm_path, normalizers.BertNormalizer())
    data = json.loads((tmp_path / "variant" / "tokenizer.json").read_text())
    data["normalizer"] = json.loads(normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()]).__getstate__())
    (tmp_path / "variant" / "tokenizer.json").write_text(json.dumps(data))
    art = bertc.compile(folder, "host", out=tmp_path / "v.bertc", max_seq_len=16)
    report = json.loads((art.path / "report.json").read_text())["tokenizer"]
    assert not report["compiled"] and "normalizer is 'Sequence'" in report["why"]
    assert not (art.path / "tokenizer.bin").exists()
    with pytest.raises(BertcError, match="normalizer is 'Sequence'"):
        bertc.load(art.path).tokenize("text")


def test_damaged_tokenizer_bin_is_refused_at_load(minilm, tmp_path):
    import shutil

    model, _ = minilm
    copy = tmp_path / "copy.bertc"
    shutil.copytree(model.path, copy)
    data = bytearray((copy / "tokenizer.bin").read_bytes())
    data[len(data) // 2] ^= 0x40
    (copy / "tokenizer.bin").write_bytes(bytes(data))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["tokenizer.bin"]["sha256"] = bertc.artifact.sha256_file(copy / "tokenizer.bin")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BertcError, match="tokenizer.bin: sha256 of its contents does not match"):
        bertc.load(copy)


def test_tokenize_pads_a_batch_to_its_longest(minilm):
    model, ref = minilm
    out = model.tokenize(["a gripping film", "short"])
    assert out["input_ids"].shape == (2, 5)
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert np.array_equal(out["input_ids"][1, 3:], [0, 0])  # [PAD]
    assert out["input_ids"][0].tolist() == ref.encode("a gripping film").ids
    # run_text cuts a long text as the tokenizer does at the length it keeps (MiniLM's max_seq_length, 256)
    ref.enable_truncation(model.text_max_tokens)
    assert model.run_text("word " * 600)[1] == [{"cut": True, "ids": ref.encode("word " * 600).ids}]
    assert model.run_text("short")[1] == [{"cut": False, "ids": ref.encode("short").ids}]
    assert model.count_tokens("word " * 600) == 602
    ref.enable_truncation(MAX)


def test_text_runs_on_arm64_under_qemu_with_no_python_tokenizer(minilm_path, tmp_path):
    """bertc_run --text on the device: the ids are tokenizers', the hidden states PyTorch's on those ids."""
    import torch
    import transformers

    art = bertc.compile(minilm_path, "android-arm64", out=tmp_path / "arm.bertc", max_seq_len=32)
    model = bertc.load(art.path, device="qemu")
    ref = reference(minilm_path)
    text = "Crème brûlée, 中文 and a gripping film! [MASK] 😀"
    out, info = model.run_text([text])
    assert info == [{"cut": False, "ids": ref.encode(text).ids}]
    ids = torch.tensor([info[0]["ids"]])
    with torch.inference_mode():
        want = transformers.AutoModel.from_pretrained(minilm_path).eval()(input_ids=ids).last_hidden_state.numpy()
    assert np.abs(out["last_hidden_state"] - want).max() < 1e-4
    _, info = model.run_text(["word " * 100])
    ref.enable_truncation(32)
    assert info == [{"cut": True, "ids": ref.encode("word " * 100).ids}]


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    """A tiny RoBERTa with a byte-level BPE tokenizer laid out as roberta-base's tokenizer.json is (no
    normalizer, ByteLevel, RobertaProcessing, <mask> with lstrip), its vocabulary trained on rt-sentiment."""
    import torch
    import transformers as T
    from conftest import tiny_config
    from tokenizers import ByteLevelBPETokenizer

    task = load_task("rt-sentiment")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([t for t, _ in task.train], vocab_size=3000, min_frequency=2, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder = tmp_path_factory.mktemp("roberta")
    T.RobertaTokenizerFast(tokenizer_object=bpe._tokenizer).save_pretrained(folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    data["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                              "trim_offsets": True, "add_prefix_space": False}
    for tok in data["added_tokens"]:  # as roberta-base ships them
        tok["normalized"], tok["lstrip"] = tok["content"] != "<mask>", tok["content"] == "<mask>"
    (folder / "tokenizer.json").write_text(json.dumps(data))
    torch.manual_seed(0)
    T.AutoModel.from_config(tiny_config("roberta", vocab=3000)).save_pretrained(folder)
    art = bertc.compile(str(folder), "host", out=folder / "r.bertc", max_seq_len=256)
    return folder, bertc.load(art.path)


BPE_STRESS = STRESS + ["it's  we'll  they're I'M 'd ''s", "a  b\n\nc \t d  ", "x <mask> y<mask>z  <mask>  w",
                       "  leading", "trailing  ", "numbers 123 4.5 ½ ٣ Ⅻ", "<s></s><pad><unk>"]


def exact_everywhere(folder, model, kind: str, stress: list[str]) -> None:
    """Every rt-sentiment snippet, the stress set whole and cut to 6 tokens, and 100,000-character texts."""
    report = json.loads((model.path / "report.json").read_text())["tokenizer"]
    assert report["kind"] == kind and report["compiled"]
    ref = reference(folder)
    task = load_task("rt-sentiment")
    texts = [t for split in (task.train, task.dev, task.test) for t, _ in split]
    for i in range(0, len(texts), 1000):
        assert_same(model, ref, texts[i:i + 1000], cap=256)
    assert_same(model, ref, stress, cap=256)
    assert_same(model, ref, stress, cap=6)
    assert_same(model, ref, [" ".join(stress) * 50, "x" * 100_000, "😀" * 30_000], cap=256)


def test_byte_level_bpe_matches_on_every_snippet_and_the_stress_set(roberta):
    exact_everywhere(*roberta, "byte-level BPE", BPE_STRESS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80) | st.text(alphabet=st.sampled_from(list(" \t\n'sdtmlrevé1½!<mask>中😀")), max_size=40))
def test_byte_level_bpe_matches_on_random_unicode(roberta, text):
    folder, model = roberta
    assert_same(model, reference(folder), [text, text + "<mask>" + text], cap=256)


def test_byte_level_alphabet_is_tokenizers_own():
    from tokenizers.pre_tokenizers import ByteLevel

    from bertc.tokenizer import _byte_alphabet

    alphabet = _byte_alphabet()
    assert sorted(alphabet.values()) == list(range(256)) and set(alphabet) == set(ByteLevel.alphabet())


def test_byte_level_bpe_with_a_prefix_space(roberta, tmp_path):
    import shutil

    folder, _ = roberta
    variant = tmp_path / "prefix"
    shutil.copytree(folder, variant, ignore=shutil.ignore_patterns("*.bertc"))
    data = json.loads((variant / "tokenizer.json").read_text())
    data["pre_tokenizer"]["add_prefix_space"] = True
    (variant / "tokenizer.json").write_text(json.dumps(data))
    model = bertc.load(bertc.compile(str(variant), "host", out=tmp_path / "p.bertc", max_seq_len=256).path)
    assert_same(model, reference(variant), BPE_STRESS + [t for t, _ in load_task("rt-sentiment").test[:300]], cap=256)


def test_tokenize_and_text_runs_from_many_threads(minilm):
    """bertc_tokenize reads only the tokenizer (bertc.h): threads tokenizing while others run the model get the
    ids and the embeddings each would alone."""
    from concurrent.futures import ThreadPoolExecutor

    model, ref = minilm
    texts = [t for t, _ in load_task("rt-sentiment").test[:12]]
    want_ids = [ref.encode(t).ids for t in texts]
    want = [model.encode(t)[0] for t in texts]

    def worker(k: int) -> int:
        wrong = 0
        for i in range(24):
            j = (k + i) % len(texts)
            wrong += model.tokenize(texts[j])["input_ids"][0].tolist() != want_ids[j]
            wrong += not np.array_equal(model.encode(texts[j])[0], want[j])
        return wrong

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(worker, range(6))) == 0


@pytest.fixture(scope="module")
def unigram(tmp_path_factory):
    """A tiny XLM-R with a SentencePiece Unigram tokenizer: a sentencepiece model trained on rt-sentiment with its
    nmt_nfkc normalization, converted by transformers as it converts XLM-R's (Precompiled charsmap,
    WhitespaceSplit + Metaspace, Unigram, <s> $A </s>)."""
    import io

    import sentencepiece
    import torch
    import transformers as T
    from conftest import tiny_config

    folder = tmp_path_factory.mktemp("unigram")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([t for t, _ in load_task("rt-sentiment").train]), model_writer=model, vocab_size=2000,
        model_type="unigram", normalization_rule_name="nmt_nfkc", character_coverage=0.9995, minloglevel=2)
    (folder / "sentencepiece.bpe.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "XLMRobertaTokenizer"}')
    tok = T.AutoTokenizer.from_pretrained(folder)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    T.AutoModel.from_config(tiny_config("roberta", vocab=len(tok))).save_pretrained(folder)
    return folder, bertc.load(bertc.compile(str(folder), "host", out=folder / "u.bertc", max_seq_len=256).path)


UNIGRAM_STRESS = BPE_STRESS + ["Hello  wörld, ﬁne e\u0301!", "\u00a0\u3000 full-width ＡＢＣ １２３ ㎏ ½ ™",
                               "a▁b ▁▁c ▁", "क्षत्रिय ि्", "🇫🇷🇯🇵🇺", "👨\u200d👩\u200d👧 👍🏽", "\r\n\r\n"]


def test_unigram_matches_on_every_snippet_and_the_stress_set(unigram):
    exact_everywhere(*unigram, "Unigram", UNIGRAM_STRESS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80) | st.text(alphabet=st.sampled_from(
    list(" \t\n\u00a0\u3000▁aé\u0301\u0316😀\u200d👍🏽🇫क्षﬁ가\u1100\u1161\u11a8\x01<mask>")), max_size=40))
def test_unigram_matches_on_random_unicode(unigram, text):
    folder, model = unigram
    assert_same(model, reference(folder), [text, "<mask>" + text], cap=256)


@pytest.mark.parametrize("layout", ["xlm-r as on the hub", "prepend first"])
def test_unigram_other_layouts(unigram, tmp_path, layout):
    """The layout XLM-R's tokenizer.json has on the hub (Precompiled then Replace(' {2,}', ' '), Metaspace alone),
    and Metaspace's prepend_scheme "first"."""
    import shutil

    folder, _ = unigram
    variant = tmp_path / "variant"
    shutil.copytree(folder, variant, ignore=shutil.ignore_patterns("*.bertc"))
    data = json.loads((variant / "tokenizer.json").read_text())
    meta = data["pre_tokenizer"]["pretokenizers"][-1]
    if layout == "prepend first":
        meta["prepend_scheme"] = "first"
    else:
        data["normalizer"] = {"type": "Sequence", "normalizers": [
            data["normalizer"], {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    data["pre_tokenizer"] = meta
    (variant / "tokenizer.json").write_text(json.dumps(data))
    model = bertc.load(bertc.compile(str(variant), "host", out=tmp_path / "v.bertc", max_seq_len=256).path)
    assert_same(model, reference(variant), UNIGRAM_STRESS + [t for t, _ in load_task("rt-sentiment").test[:300]],
                cap=256)


def _mpnet_source() -> Path | None:
    """all-mpnet-base-v2's folder where its packages are installed (`make setup` installs them), or where an earlier
    run unpacked it."""
    try:
        from bertc.packaged import all_mpnet_base_v2

        return all_mpnet_base_v2()
    except (ImportError, BertcError):
        cache = Path(os.environ.get("BERTC_CACHE") or Path.home() / ".cache" / "bertc") / "models"
        found = sorted(cache.glob("all-mpnet-base-v2-*/tokenizer.json"))
        return found[-1].parent if found else None


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory):
    """all-mpnet-base-v2's own tokenizer (WordPiece, BertNormalizer, <s> $A </s>; <unk> a special token matched after
    normalization, <mask> with lstrip) beside a tiny BERT of its vocabulary size."""
    source = _mpnet_source()
    if source is None:
        pytest.skip("all-mpnet-base-v2 is not installed: `make setup` installs its packages")
    folder = tmp_path_factory.mktemp("mpnet")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(source / name, folder / name)
    tiny_model("bert", vocab=30527).save_pretrained(folder)
    return folder, bertc.load(bertc.compile(str(folder), "host", out=folder / "m.bertc", max_seq_len=256).path)


MPNET_STRESS = STRESS + ["<unk>", "<UNK>", "<Unk>", "< unk >", "x<unk>y", "x <UNK>y", "<ùnk> <ＵＮＫ> <UNK", "<mask>",
                         "a <mask> b", "a<mask>", "</s>", "</S> <S>", "<s><unk></s><pad>", "[UNK] [unk]",
                         "<<unk>> <unk><unk> <unk>>", "Ünk <UNK>ä 中<unk>文 가<Unk>"]


def test_mpnet_matches_on_every_snippet_and_its_added_tokens(mpnet):
    exact_everywhere(*mpnet, "WordPiece", MPNET_STRESS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(["<unk>", "<UNK>", "<mask>", "</s>", "<", ">", "u", "N", "k", " ", "é", "\u0301",
                                      "中", "\t", "\x00"]), max_size=30).map("".join) | st.text(max_size=60))
def test_mpnet_matches_on_random_text(mpnet, text):
    folder, model = mpnet
    assert_same(model, reference(folder), [text], cap=256)


def _synthetic_folder(tmp_path, added) -> Path:
    """A tiny BERT with a WordPiece of a few dozen pieces, BertNormalizer and ``added`` tokens."""
    from tokenizers import AddedToken, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *letters, *(f"##{c}" for c in letters), *"<>/.,!", "tag", "un", "##k"]
    tok = Tokenizer(models.WordPiece({v: i for i, v in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tok.add_special_tokens([AddedToken(t, normalized=False) for t in vocab[:4]])
    tok.add_tokens([AddedToken(content, **kw) for content, kw in added])
    folder = tmp_path / "synthetic"
    tiny_model("bert", vocab=tok.get_vocab_size()).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(folder)
    return folder


def test_normalized_added_tokens_are_found_in_the_normalized_text(tmp_path):
    """<Tag> and Ünïcode match as <tag> and unicode in the lowercased, accent-stripped text, also inside words and
    beside punctuation; the raw-matched <tag (tried first, on the raw text) wins where both could match."""
    folder = _synthetic_folder(tmp_path, [("<Tag>", {"normalized": True}), ("Ünïcode", {"normalized": True}),
                                          ("ÀB", {"normalized": True, "lstrip": True, "rstrip": True}),
                                          ("<tag", {"normalized": False})])
    spec = read_spec(json.loads(backend_tokenizer(folder).to_str()))
    assert {(a.text, a.normalized) for a in spec.added if a.id > 3} == {("<tag>", True), ("unicode", True),
                                                                        ("ab", True), ("<tag", False)}
    model = bertc.load(bertc.compile(str(folder), "host", out=tmp_path / "s.bertc", max_seq_len=64).path)
    texts = ["<Tag>", "<TAG> x<tag>y <tag> <TaG", "UNICODE unïcode ÜNÏCODE! xunicodey", "about a b ÀB àb  AB  c",
             "<<TAG>> <tag>>", "Ü\u0308nicode U\u0308\u0301nicode", "tag un unk", ""]
    assert_same(model, reference(folder), texts, cap=64)
    assert_same(model, reference(folder), texts, cap=4)


@pytest.mark.parametrize("content, kw, why", [
    ("<x y>", {"normalized": True}, "normalizes to '<x y>', which is empty or holds whitespace"),
    ("中文", {"normalized": True}, "holds whitespace"),
    ("<word>", {"single_word": True}, "matched as a single word only"),
])
def test_added_tokens_the_c_tokenizer_cannot_match_are_refused_with_why(tmp_path, content, kw, why):
    folder = _synthetic_folder(tmp_path, [(content, kw)])
    with pytest.raises(Unsupported, match=why):
        read_spec(json.loads(backend_tokenizer(folder).to_str()))
