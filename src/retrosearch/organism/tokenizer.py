"""The organism's word-level tokenizer, built with `tokenizers` and saved as a PreTrainedTokenizerFast.

Every piece carries its own leading space, so decoding is plain concatenation and
`decode(encode(text)) == text` for every text the teacher writes. The blank line, each transition
keyword and the think tags are single tokens; digits are split one per token.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from retrosearch.trace import DEFAULT_KEYWORDS, FORMATS

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
PIECES = r"\n\n|\n| ?\\?[A-Za-z]+| ?\d| ?[^\sA-Za-z\d]| "
WORDS = [
    "find",
    "the",
    "digit",
    "x",
    "then",
    "gives",
    "try",
    "not",
    "yes",
    "answer",
    "is",
    "I",
    "guess",
    "so",
    "check",
    "it",
    "again",
    "let",
    "me",
    "Wait",
    "Alternatively",
    "Hmm",
    "But",
    "wait",
    "Let",
    "double",
    "Another",
    "approach",
    "On",
    "second",
    "thought",
    "\\boxed",
]
PUNCTUATION = list(":,.=+*-{}()?!")
# words of the second generation's traces, after every first-generation piece so those keep their ids
LATER_WORDS = ["to", "get", "by", "need", "want", "no"]
MULTI_WORD_KEYWORDS = tuple(keyword for keyword in DEFAULT_KEYWORDS if " " in keyword)  # one token each
TAGS = (FORMATS["r1"].open, FORMATS["r1"].close)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>' }}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def vocabulary() -> list[str]:
    pieces = ["\n\n", "\n", " "]
    for word in [*WORDS, *PUNCTUATION, *map(str, range(10)), *LATER_WORDS]:
        pieces += [word, " " + word]
    return list(dict.fromkeys(pieces))


def build_tokenizer() -> PreTrainedTokenizerFast:
    specials = [PAD, BOS, EOS, UNK, USER, ASSISTANT]
    vocab = {token: index for index, token in enumerate(specials + vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    core.add_tokens([AddedToken(token, normalized=False) for token in (*TAGS, *MULTI_WORD_KEYWORDS)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(directory)
    return tokenizer
