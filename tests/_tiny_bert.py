"""A tiny randomly initialised BERT under Hugging Face's Trainer, written as HF users write one:
a model built from a config, TrainingArguments, a dataset and compute_metrics; and the firepbt
glue around it (``TinyBert``). Nothing is downloaded. Importable by workers."""

from __future__ import annotations

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

from firepbt.huggingface import HFTrainable

CONFIG = BertConfig(
    vocab_size=50,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=16,
    num_labels=2,
)


class Sequences(torch.utils.data.Dataset):
    """Token sequences labelled by whether token 7 occurs in them (fixed data)."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.ids = torch.tensor(rng.integers(1, 50, size=(n, 12)))
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        mask = torch.ones_like(self.ids[i])
        return {"input_ids": self.ids[i], "attention_mask": mask, "labels": self.labels[i]}


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def arguments() -> TrainingArguments:
    return TrainingArguments(
        output_dir="tiny-bert",
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=1e-3,
        weight_decay=0.01,
        warmup_steps=5,
    )


# The glue: what a user writes around their model, arguments and data.
class TinyBert(HFTrainable):
    def model_init(self):
        return BertForSequenceClassification(CONFIG)

    def arguments(self):
        return arguments()

    def datasets(self):
        return Sequences(400, seed=0), Sequences(128, seed=1)

    def trainer_options(self):
        return {"compute_metrics": accuracy}
