"""A small SentencePiece model laid out like PaliGemma's, trained in-process in about a second.

For demos, tests and offline smoke runs of the real model code with small random-weight models: PaliGemma's own
tokenizer (`gs://big_vision/paligemma_tokenizer.model`) is a download. Token ids mean nothing to official
checkpoints: never pair this tokenizer with real weights.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import sentencepiece

__all__ = ["make_small_paligemma_tokenizer"]

_WORDS = [
    "pick",
    "up",
    "the",
    "red",
    "cube",
    "and",
    "place",
    "it",
    "in",
    "the",
    "bowl",
    "fold",
    "towel",
    "open",
    "drawer",
    "close",
    "door",
    "push",
    "button",
    "stack",
    "blocks",
    "put",
    "fork",
    "on",
    "plate",
    "wipe",
    "table",
    "pour",
    "water",
    "Task",
    "State",
    "Action",
    "transfer",
    "insertion",
    "sock",
    "left",
    "right",
    "arm",
]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _user_defined_piece(text: str) -> bytes:
    """A ModelProto.pieces entry (protobuf wire format) of type USER_DEFINED (4) with score 0."""
    encoded = text.encode()
    body = b"\x0a" + _varint(len(encoded)) + encoded + b"\x15" + struct.pack("<f", 0.0) + b"\x18" + _varint(4)
    return b"\x0a" + _varint(len(body)) + body


def make_small_paligemma_tokenizer(
    path: Path, *, num_loc: int = 1024, num_seg: int = 128, base_vocab: int = 400
) -> Path:
    """A SentencePiece model laid out like PaliGemma's: pad 0, EOS 1, BOS 2, UNK 3, learned pieces, then
    `<locNNNN>` and `<segNNN>` symbols at the end of the vocabulary (where π₀-FAST puts its action tokens)."""
    sentences = []
    for i in range(3000):
        words = [_WORDS[(i * 7 + j * 13) % len(_WORDS)] for j in range(3 + i % 9)]
        numbers = " ".join(str((i * 31 + j * 17) % 256) for j in range(i % 14))
        sentences.append(f"Task: {' '.join(words)}, State: {numbers};\nAction: {i % 97} |")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=base_vocab,
        model_type="bpe",
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        byte_fallback=True,
        character_coverage=1.0,
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        user_defined_symbols=["\n"],
        minloglevel=2,
    )
    extra = [f"<loc{i:04d}>" for i in range(num_loc)] + [f"<seg{i:03d}>" for i in range(num_seg)]
    path.write_bytes(model.getvalue() + b"".join(_user_defined_piece(piece) for piece in extra))
    return path
