"""The engines' shared rules, exactly: where stop strings and occurrence limits end a text, and which
tokens a banned start masks (every engine applies these, so they are stated once, here)."""

from retrosearch.engines.banning import StartBan, token_texts
from retrosearch.engines.base import Request
from retrosearch.engines.watch import finish, limit_end, stop_end
from retrosearch.organism.tokenizer import build_tokenizer
from retrosearch.text import normalize_start


def test_stop_end_is_the_end_of_the_earliest_stop():
    assert stop_end("a\n\nb\n\nc", ("\n\n",)) == 3
    assert stop_end("abc", ("\n\n",)) is None
    assert stop_end("", ("x",)) is None
    assert stop_end("xx END yy STOP", ("STOP", "END")) == 6
    assert stop_end("xx STOP yy END", ("END", "STOP")) == 7
    assert stop_end("ab", ()) is None
    assert stop_end("END", ("END",)) == 3
    assert stop_end("Xab", ("X",)) == 1  # a one-character stop at the very start


def test_stop_end_scans_from_an_offset_and_still_sees_a_stop_that_straddles_it():
    text = "one two\n\nthree"
    # `scan_from`: how much of the text was searched before; a stop that ends after it is still found
    assert stop_end(text, ("\n\n",), scan_from=8) == 9  # "\n\n" starts at 7, before the offset
    assert stop_end(text, ("\n\n",), scan_from=9) is None  # it ended at 9: seen by the earlier search
    assert stop_end(text, ("\n\n",), scan_from=0) == 9
    assert stop_end("ENDxxEND", ("END",), scan_from=4) == 8
    assert stop_end("xxEND", ("END",), scan_from=3) == 5


def test_limit_end_is_the_end_of_the_counted_occurrence_before_until():
    assert limit_end("x\n\ny\n\nz\n\n</think>\n\nw", ("\n\n", 2, "</think>")) == 6
    assert limit_end("x\n\ny\n\nz\n\n</think>\n\nw", ("\n\n", 3, "</think>")) == 9
    assert limit_end("x\n\n</think>\n\n\n\n", ("\n\n", 2, "</think>")) is None
    assert limit_end("x\n\n</think>\n\n\n\n", ("\n\n", 2, None)) == 13
    assert limit_end("x\n\ny", ("\n\n", 1, None)) == 3
    assert limit_end("ab", ("\n\n", 1, None)) is None
    assert limit_end("ab", None) is None
    assert limit_end("aaa", ("a", 3, None)) == 3
    assert limit_end("a-a-a-a", ("a", 2, "zzz")) == 3
    assert limit_end("x\n\n</think>\n\n</think>", ("\n\n", 2, "</think>")) is None  # only before the first


def test_limit_end_counts_again_only_when_a_new_needle_arrived():
    limit = ("\n\n", 2, "</think>")
    assert limit_end("a\n\nb\n\nc", limit, scan_from=6) is None  # both seen before: no new one
    assert limit_end("a\n\nbc\n\n", limit, scan_from=6) == 7  # the second one straddles the offset
    assert limit_end("a\n\nbc\n\nd", limit, scan_from=5) == 7  # it lies wholly after the offset
    assert limit_end("a\n\nbc\n", limit, scan_from=5) is None
    assert limit_end("a\n\nb</think>c\n\n", limit, scan_from=9) is None  # a new one after `until` does not count
    assert limit_end("a\n\nb\n\n", limit, scan_from=0) == 6
    assert limit_end("\n\nab", ("\n\n", 1, None), scan_from=1) == 2  # a new needle at the very start


def test_finish_prefers_a_stop_string_to_a_limit():
    request = Request(prompt_ids=(1,), max_new_tokens=5, stop=("END",), occurrence_limit=("\n\n", 1, None))
    assert finish(request, "ab END cd\n\n") == ("stop", 6)
    assert finish(request, "ab\n\ncd") == ("limit", 4)
    assert finish(request, "ab\n\ncd END") == ("stop", 10)
    assert finish(request, "abc") is None
    assert finish(Request(prompt_ids=(1,), max_new_tokens=5), "a\n\nb") is None
    assert finish(request, "xx\n\nEND", scan_from=5) == ("stop", 7)
    assert finish(Request(prompt_ids=(1,), max_new_tokens=5, stop=("X",)), "Xab") == ("stop", 1)


def test_normalize_start_drops_whitespace_and_markdown_only():
    assert normalize_start(" \t\r\n*_#>`Wait") == "wait"
    assert normalize_start("  1. Wait") == "1. wait"
    assert normalize_start("") == ""
    assert normalize_start("-Wait") == "-wait"


def test_start_ban_tracks_multi_token_and_whitespace_variants():
    texts = ["\n", " ", "**", "Al", "tern", "atively", " Wait", "wa", "it", "ok", "But", " wait", "Wa", "WAIT"]
    ban = StartBan(texts, ["Alternatively", "Wait", "But wait", "  "])
    assert ban.words == ("alternatively", "but wait", "wait")
    banned = lambda state: {texts[i] for i in ban.banned_ids(state)}  # noqa: E731
    assert banned(ban.state("")) == {" Wait", " wait", "WAIT"}
    assert ban.state("") == ""
    assert ban.state("\n**Al") == "al"
    assert ban.state("  ") == ""
    assert banned("altern") == {"atively"}
    assert banned("wa") == {"it"}
    assert banned("but") == {" wait", " Wait"}
    assert ban.state("ok then") is None
    assert ban.state("Waiting") is None  # past every banned word: the start is decided
    assert ban.state("wait") == "wait"
    # only a token that goes on into a longer word ("it" -> "waitit") leaves a whole banned word unbanned
    assert banned("wait") == {"\n", " ", "**", " Wait", " wait"}
    pieces = ["t", "ting", "t,", "tress"]
    assert {pieces[i] for i in StartBan(pieces, ["Wait"]).banned_ids("wai")} == {"t", "t,"}


def test_violates_reads_the_start_as_the_trace_parser_does():
    ban = StartBan((), ["Wait", "Alternatively"])
    assert ban.violates("Wait, no")
    assert ban.violates("\n\n**wait** no")
    assert ban.violates("ALTERNATIVELY")
    assert not ban.violates("So wait")
    assert not ban.violates("")
    assert not ban.violates("Wai")
    assert not ban.violates("Waiting, then")  # the parser counts no switch here: neither does the ban
    assert ban.violates("Wait")
    assert not StartBan((), []).violates("Wait")


def test_mask_cache_gives_the_same_ids_and_is_reused():
    ban = StartBan(["Wait", " x", "wait"], ["Wait"])
    first = ban.banned_ids("")
    assert first == [0, 2]
    assert ban.banned_ids("") is first


def test_token_texts_keep_each_tokens_leading_space():
    tokenizer = build_tokenizer()
    texts = token_texts(tokenizer)
    assert len(texts) == len(tokenizer)
    ids = tokenizer(" Wait", add_special_tokens=False)["input_ids"]
    assert [texts[i] for i in ids] == [" Wait"]
    newline = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    assert [texts[i] for i in newline] == ["\n\n"]
    ban = StartBan(texts, ["Wait"])
    assert {texts[i] for i in ban.banned_ids("")} >= {" Wait", "Wait"} & set(texts)


def test_a_real_bpe_vocabulary_bans_every_spelling_of_a_keyword(shared_tokenizer):
    """DeepSeek-R1-Distill's tokenizer: leading-space, newline and multi-token spellings all masked."""
    texts = token_texts(shared_tokenizer)
    assert len(texts) == len(shared_tokenizer)
    encode = lambda text: shared_tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    ban = StartBan(texts, ["Wait", "Alternatively"])
    banned = set(ban.banned_ids(ban.state("")))
    for spelling in ("Wait", " Wait", "wait", " wait", "WAIT"):
        ids = encode(spelling)
        assert len(ids) > 1 or ids[0] in banned, spelling
    so = encode(" So")
    assert len(so) == 1 and so[0] not in banned
    assert encode("Alternatively")[0] in banned
    written = ""
    pieces = encode("ALTERNATIVELY")
    assert len(pieces) == 5
    for token in pieces[:-1]:  # a word spelled in pieces: each piece but the last is allowed
        assert token not in ban.banned_ids(ban.state(written))
        written += texts[token]
    assert pieces[-1] in ban.banned_ids(ban.state(written))
