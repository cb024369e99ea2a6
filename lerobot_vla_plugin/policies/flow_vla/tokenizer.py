"""A byte-level tokenizer that ships with the package, so the small model needs no download.

Token ids are UTF-8 byte values shifted by one; 0 is padding. It mimics the call signature of a
`transformers` tokenizer so LeRobot's `TokenizerProcessorStep` machinery can use it unchanged.
"""

from __future__ import annotations

import torch

PAD_TOKEN_ID = 0
BYTE_VOCAB_SIZE = 257  # 256 byte values + padding


class ByteTokenizer:
    """Encodes text as its UTF-8 bytes; lower-cased and stripped, since instructions vary in case."""

    pad_token_id = PAD_TOKEN_ID
    vocab_size = BYTE_VOCAB_SIZE

    def encode(self, text: str) -> list[int]:
        return [byte + 1 for byte in text.strip().lower().encode("utf-8")]

    def __call__(
        self,
        text: str | list[str],
        max_length: int = 48,
        truncation: bool = True,
        padding: str = "max_length",
        padding_side: str = "right",
        return_tensors: str = "pt",
    ) -> dict[str, torch.Tensor]:
        texts = [text] if isinstance(text, str) else list(text)
        encoded = [self.encode(t) for t in texts]
        if truncation:
            encoded = [ids[:max_length] for ids in encoded]
        if padding == "max_length":
            length = max_length
        else:
            length = max(1, max((len(ids) for ids in encoded), default=1))
        input_ids = torch.full((len(encoded), length), PAD_TOKEN_ID, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, ids in enumerate(encoded):
            ids = ids[:length]
            if not ids:
                continue
            if padding_side == "left":
                input_ids[row, length - len(ids) :] = torch.tensor(ids)
                attention_mask[row, length - len(ids) :] = 1
            else:
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}
