"""Measurements of a miniature TWN on one split: every query and document is embedded once
without and once with a (greedy) thought, and each budget is then a choice, per input, of one
of the two vectors, made by ``ReasoningBudget.select`` on the no-think pass's gate score, as
``TWNEmbedder.encode`` makes it. So never, always, adaptive, a document think-ratio curve and
the oracle are compared on the very same vectors and thoughts.

The oracle thinks exactly where thinking helps: a document where its thought improves the
margin of the queries it answers, each as it retrieves better (``twn_rag.training.gate``'s
document labels), then each query
where its thought improves its rank against those documents. Gate labels are the training
stage's (margin gain > ``delta``); the gate's AUC per role is measured against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.evaluation import positive_ranks, retrieval_metrics
from twn_rag.training.data import document_corpus, load_examples
from twn_rag.training.gate import best_query_vectors, document_margins, margins, roc_auc

DOCUMENT_THINK_RATIOS = (0.0, 0.1, 0.25, 0.5, 1.0)


@dataclass
class RoleEmbeddings:
    """One role's inputs embedded both ways: vectors [N, D], gate scores, thoughts and their length."""

    never: np.ndarray
    always: np.ndarray
    gate_scores: np.ndarray
    thoughts: list[str | None]
    thought_tokens: np.ndarray

    def vectors(self, think: np.ndarray) -> np.ndarray:
        return np.where(think[:, None], self.always, self.never)


def embed_role(embedder: TWNEmbedder, inputs: list[dict], role: str) -> RoleEmbeddings:
    never = embedder.encode(inputs, role=role, budget=ReasoningBudget(mode="never"))
    budget = ReasoningBudget(mode="always", max_thought_tokens=embedder.config.max_thought_tokens)
    always = embedder.encode(inputs, role=role, budget=budget)
    return RoleEmbeddings(
        never=np.stack([r.vector for r in never]),
        always=np.stack([r.vector for r in always]),
        gate_scores=np.array([r.gate_score for r in never]),
        thoughts=[r.thought for r in always],
        thought_tokens=np.array([r.thought_tokens for r in always]),
    )


def selected(scores: np.ndarray, budget: ReasoningBudget) -> np.ndarray:
    """The think mask ``budget`` picks for inputs with these gate scores (one batch, fresh ledger)."""
    mask = np.zeros(len(scores), dtype=bool)
    mask[budget.select(scores.tolist())] = True
    return mask


@dataclass
class SplitEmbeddings:
    """A split's queries and documents embedded both ways, with each query's positive and kind."""

    queries: RoleEmbeddings
    documents: RoleEmbeddings
    positives: list[int]
    kinds: list[str]
    document_names: list[str]

    def ranks(self, query_think: np.ndarray, document_think: np.ndarray) -> np.ndarray:
        return positive_ranks(self.queries.vectors(query_think), self.documents.vectors(document_think), self.positives)

    def row(self, query_think: np.ndarray, document_think: np.ndarray, ranks: np.ndarray | None = None) -> dict:
        """Recall@1, MRR, think-rates and thought tokens of one choice of who thinks."""
        ranks = self.ranks(query_think, document_think) if ranks is None else ranks
        metrics = retrieval_metrics(ranks)
        return {
            "recall_at_1": metrics["recall_at_1"],
            "mrr": metrics["mrr"],
            "query_think_rate": float(query_think.mean()),
            "document_think_rate": float(document_think.mean()),
            "query_tokens": int(self.queries.thought_tokens[query_think].sum()),
            "document_tokens": int(self.documents.thought_tokens[document_think].sum()),
        }

    def query_gains(self) -> np.ndarray:
        """Per query, its margin with its thought minus without (documents without thoughts)."""
        docs = self.documents.never
        return margins(self.queries.always, docs, self.positives) - margins(self.queries.never, docs, self.positives)

    def document_gains(self) -> tuple[list[int], np.ndarray]:
        """Every document, and for each its margin gain from thinking, with the queries as
        they retrieve better (as the gate's labels are made; 0 for a document no query names)."""
        labelled = list(range(len(self.document_names)))
        docs = self.documents.never
        queries = best_query_vectors(self.queries.never, self.queries.always, docs, self.positives)
        gains = [
            document_margins(queries, docs, self.positives, d, self.documents.always[d])
            - document_margins(queries, docs, self.positives, d, docs[d])
            for d in labelled
        ]
        return labelled, np.array(gains)

    def gate_auc(self, delta: float) -> dict[str, float | None]:
        """ROC AUC of the gate scores against the self-supervised labels, per role."""
        labelled, gains = self.document_gains()
        return {
            "query": roc_auc(self.queries.gate_scores, self.query_gains() > delta),
            "document": roc_auc(self.documents.gate_scores[labelled], gains > delta),
        }

    def oracle(self, delta: float) -> dict:
        """Documents think where their label says so; then each query takes its better rank."""
        labelled, gains = self.document_gains()
        document_think = np.zeros(len(self.document_names), dtype=bool)
        document_think[[d for d, g in zip(labelled, gains) if g > delta]] = True
        nothink = self.ranks(np.zeros(len(self.positives), dtype=bool), document_think)
        think = self.ranks(np.ones(len(self.positives), dtype=bool), document_think)
        query_think = think < nothink
        return self.row(query_think, document_think, np.where(query_think, think, nothink))


def embed_split(embedder: TWNEmbedder, data_file) -> SplitEmbeddings:
    """Embed the queries and the whole document collection of a split's JSONL both ways."""
    examples = load_examples(data_file)
    documents, positives, _ = document_corpus(examples)
    kinds = [e.id.split("-", 2)[2] for e in examples]  # ids are "<split>-<line>-<kind>" (task.write_jsonl)
    names = [d.get("text") or d["images"][0].rsplit("/", 1)[-1] for d in documents]
    return SplitEmbeddings(
        queries=embed_role(embedder, [e.query for e in examples], "query"),
        documents=embed_role(embedder, documents, "document"),
        positives=positives,
        kinds=kinds,
        document_names=names,
    )


def budget_rows(split: SplitEmbeddings, thresholds: dict[str, float], delta: float) -> dict[str, dict]:
    """never, always, adaptive (each role at its ``thresholds[role]``) and the oracle."""
    n_queries, n_docs = len(split.positives), len(split.document_names)
    return {
        "never": split.row(np.zeros(n_queries, dtype=bool), np.zeros(n_docs, dtype=bool)),
        "always": split.row(np.ones(n_queries, dtype=bool), np.ones(n_docs, dtype=bool)),
        "adaptive": split.row(
            selected(split.queries.gate_scores, ReasoningBudget(threshold=thresholds["query"])),
            selected(split.documents.gate_scores, ReasoningBudget(threshold=thresholds["document"])),
        ),
        "oracle": split.oracle(delta),
    }


def document_curve(
    split: SplitEmbeddings, query_threshold: float, ratios=DOCUMENT_THINK_RATIOS
) -> list[tuple[float, dict]]:
    """Queries adaptive at ``query_threshold``; documents think on the ``ratio`` of them with the
    highest gate scores (an index's ``max_think_ratio`` with no threshold)."""
    query_think = selected(split.queries.gate_scores, ReasoningBudget(threshold=query_threshold))
    curve = []
    for ratio in ratios:
        budget = ReasoningBudget(threshold=0.0, max_think_ratio=ratio)
        curve.append((ratio, split.row(query_think, selected(split.documents.gate_scores, budget))))
    return curve


def gain_share(curve: list[tuple[float, dict]], ratio: float) -> float | None:
    """The share of the always-think gain in Recall@1 (ratio 1 over ratio 0) reached at ``ratio``."""
    by_ratio = {r: row["recall_at_1"] for r, row in curve}
    gain = by_ratio[1.0] - by_ratio[0.0]
    return None if gain <= 0 else (by_ratio[ratio] - by_ratio[0.0]) / gain
