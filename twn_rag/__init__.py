"""twn-rag: Think-When-Needed multimodal embeddings for RAG pipelines."""

from twn_rag.budget import BudgetLedger, ReasoningBudget, calibrate
from twn_rag.config import TWNConfig
from twn_rag.embedder import TWNEmbedder
from twn_rag.inputs import EmbeddingInput, InvalidInputError
from twn_rag.modeling import CheckpointError, TWNModel, UnsupportedArchitectureError
from twn_rag.results import EmbeddingResult, EmbeddingResults

__version__ = "0.1.0"

__all__ = [
    "BudgetLedger",
    "CheckpointError",
    "EmbeddingInput",
    "EmbeddingResult",
    "EmbeddingResults",
    "InvalidInputError",
    "ReasoningBudget",
    "TWNConfig",
    "TWNEmbedder",
    "TWNModel",
    "UnsupportedArchitectureError",
    "__version__",
    "calibrate",
]
