"""Training TWN adapters on your own data, in three stages (see the README):

1. ``train_sft``: joint SFT with gradient detachment (reasoning adapter: thought next-token
   loss; embedding adapter and queries: InfoNCE on no-think and think views);
2. ``train_gate``: the gate MLP on self-supervised labels (does thinking improve the margin?);
3. ``train_rl``: GRPO on the reasoning adapter with the embedding's gap reward.

``average_checkpoints`` averages an adapter over a run's last checkpoints (e.g. the reasoning
adapter after SFT). Data: ``load_examples`` reads the JSONL format of ``twn_rag.training.data``.
"""

from twn_rag.training.averaging import average_checkpoints
from twn_rag.training.data import DataFormatError, RetrievalExample, load_examples
from twn_rag.training.gate import GateArguments, train_gate
from twn_rag.training.loop import TrainingArguments
from twn_rag.training.rl import RLArguments, train_rl
from twn_rag.training.sft import SFTArguments, train_sft

__all__ = [
    "DataFormatError",
    "GateArguments",
    "RLArguments",
    "RetrievalExample",
    "SFTArguments",
    "TrainingArguments",
    "average_checkpoints",
    "load_examples",
    "train_gate",
    "train_rl",
    "train_sft",
]
