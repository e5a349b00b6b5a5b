"""Stage 2: the gate, trained on self-supervised labels, for queries and (optionally) documents.

For every training query, the no-think and the think embedding (thought generated greedily
by the ``reasoning`` adapter, exactly as at inference) are scored against the query's
positive and against every other document of the data (its hard negatives and the other
queries' positives): margin = cos(positive) - max cos(negative). The label is 1 where
thinking improves the margin by more than ``delta``.

A document is labelled the same way from the other side: its margin is the mean margin of the
queries it is the positive of (every other document without thinking), once with the
document's no-think vector and once with its think vector. Each of those queries is embedded
as it retrieves better (``best_query_vectors``: with its thought where that raises its
margin; without thinking when only documents are labelled), so a document is not labelled
by queries that only find anything once they think (a card answering "the card of the
friend of kalo" without the query's thought is far from every query vector that matters).
A document that is nobody's positive (a hard negative only) helps no query of the data by
thinking: both its margins are 0 and its label is 0. Every document is labelled, so the gate
also learns where thinking is useless (labelled on the answered documents alone, one gate
spent half an index's document budget on pages no query of its training data named).

The gate MLP (one for both roles: it reads the role's own prompt in its features) then learns
these labels with class-balanced BCE on the frozen pooled features of the no-think pass (the
very features it reads at inference). With ``label_temperature`` set, the BCE targets are
soft, ``sigmoid((gain - delta) / label_temperature)``: one thought's gain is one draw (a
held-out input's thought may be right or wrong), and on a few hundred rows hard labels let the
gate learn which rows were lucky; soft targets keep the size of the gain (a wrong thought that
costs 0.1 is not a needless one that costs 0.9), so the gate learns where thinking pays on
average. Precision, recall and ROC AUC, always against the 0/1 labels, are reported on a
held-out split, overall and per role.

The saved threshold is 0.5, or calibrated to a target think-rate, or **cross-fitted**: with
``calibration_folds`` the gate is also fitted that many times, each time on all training rows
but one fold (folds drawn within each role), and each row scored by the fit that did not see
it; the threshold is the one of ``THRESHOLD_CANDIDATES`` at which those held-out scores would
have bought the largest net margin gain (the sum of the gains of the rows that think, a
needless thought counting its loss) on the query rows. That threshold is the queries' own
(``TWNConfig.gate_threshold`` per role); documents keep 0.5: an index rations their thinking
by its ``max_think_ratio``, where the gate's ranking is what counts, and a net-gain threshold
for documents says little (a harmless thought, a card's "this is card 17", gains about 0, so
the sum barely falls however many documents think). A gate fitted on a few dozen labelled
inputs scores its own rows with more confidence than inputs it has not seen (a held-out
lookup scores lower than the lookups it learned from), so a threshold read off its training
rows, or fixed at 0.5, does not say where new inputs should think; the held-out scores do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from twn_rag.budget import ReasoningBudget, calibrate
from twn_rag.config import DEFAULT_GATE_THRESHOLD, ROLES
from twn_rag.embedder import TWNEmbedder
from twn_rag.gate import GateMLP
from twn_rag.modeling import GATE_PART, TWNModel, load_tensor_file
from twn_rag.training.data import RetrievalExample, document_corpus, load_examples, prepare_inputs
from twn_rag.training.loading import load_for_training
from twn_rag.training.loop import TrainingArguments, TrainingLoop, resolve_training_device

logger = logging.getLogger(__name__)

GATE_DATA_FILENAME = "gate_data.pt"
GATE_METRICS_FILENAME = "gate_metrics.json"
# The thresholds a cross-fitted calibration chooses among: coarse on purpose, since a few
# dozen held-out scores cannot place a threshold finer than this.
THRESHOLD_CANDIDATES = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass
class GateArguments(TrainingArguments):
    """Gate options. ``delta``: the margin gain thinking must exceed for label 1.
    ``roles``: whose labels to learn, ``("query",)`` or with ``"document"`` too.
    ``holdout_fraction`` of each role's rows is kept out of training for the reported metrics.
    ``target_think_rate``: calibrate the saved threshold so this fraction of the training
    queries would think (else 0.5). ``calibration_folds``: instead, cross-fit the threshold
    (see the module docstring) over this many folds of the training rows, ``calibration_repeats``
    times with other folds (held-out scores averaged). ``label_temperature``: train on soft
    targets ``sigmoid((gain - delta) / label_temperature)`` instead of 0/1 (see the module
    docstring). ``embed_batch_size`` and ``max_thought_tokens`` (default: the checkpoint's)
    apply to labelling."""

    batch_size: int = 64
    epochs: float = 50.0
    learning_rate: float = 1e-3
    delta: float = 0.0
    holdout_fraction: float = 0.2
    target_think_rate: float | None = None
    calibration_folds: int | None = None
    calibration_repeats: int = 1
    label_temperature: float | None = None
    embed_batch_size: int = 8
    max_thought_tokens: int | None = None
    roles: tuple[str, ...] = ("query",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.roles = tuple(self.roles)
        if not self.roles or set(self.roles) - set(ROLES) or len(set(self.roles)) != len(self.roles):
            raise ValueError(f"roles must be distinct names among {ROLES}, got {list(self.roles)}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be within [0, 1), got {self.holdout_fraction}")
        if self.target_think_rate is not None and not 0.0 <= self.target_think_rate <= 1.0:
            raise ValueError(f"target_think_rate must be within 0..1, got {self.target_think_rate}")
        if self.label_temperature is not None and self.label_temperature <= 0:
            raise ValueError(f"label_temperature must be > 0, got {self.label_temperature}")
        if self.calibration_folds is not None:
            if self.calibration_folds < 2:
                raise ValueError(f"calibration_folds must be >= 2, got {self.calibration_folds}")
            if self.target_think_rate is not None:
                raise ValueError("give target_think_rate or calibration_folds, not both")
            if "query" not in self.roles:
                raise ValueError("calibration_folds sets the query threshold: roles must include 'query'")
        if self.calibration_repeats < 1:
            raise ValueError(f"calibration_repeats must be >= 1, got {self.calibration_repeats}")


@dataclass
class GateData:
    """Per labelled input (queries first, then documents): the gate's input features, the
    no-think and think margins, thought length, and its role (all ``"query"`` when not given)."""

    features: torch.Tensor  # [N, hidden], float32
    margin_nothink: torch.Tensor  # [N]
    margin_think: torch.Tensor  # [N]
    thought_tokens: torch.Tensor  # [N]
    meta: dict = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.roles = list(self.roles) or ["query"] * len(self.features)
        if len(self.roles) != len(self.features):
            raise ValueError(f"{len(self.roles)} roles for {len(self.features)} labelled rows")

    def labels(self, delta: float) -> torch.Tensor:
        """1.0 where thinking improves the margin by more than ``delta``, else 0.0."""
        return (self.gains() > delta).float()

    def gains(self) -> torch.Tensor:
        """Per row, the margin with thinking minus without."""
        return self.margin_think - self.margin_nothink

    def targets(self, delta: float, temperature: float | None = None) -> torch.Tensor:
        """The gate's training targets: ``labels(delta)``, or with ``temperature`` the soft
        ``sigmoid((gain - delta) / temperature)``, which is above 0.5 exactly where the label is 1."""
        return self.labels(delta) if temperature is None else torch.sigmoid((self.gains() - delta) / temperature)

    def rows(self, role: str) -> list[int]:
        """The row indices of ``role``'s inputs."""
        return [i for i, r in enumerate(self.roles) if r == role]

    def save(self, path: Path) -> None:
        tensors = {k: v for k, v in asdict(self).items() if k not in ("meta", "roles")}
        torch.save({**tensors, "meta": json.dumps(self.meta), "roles": json.dumps(self.roles)}, path)

    @classmethod
    def load(cls, path: Path) -> GateData:
        state = load_tensor_file(path)
        roles = json.loads(state.pop("roles", "[]"))  # files written before document labels hold queries only
        return cls(**{**state, "meta": json.loads(state["meta"]), "roles": roles})


def margins(queries: np.ndarray, documents: np.ndarray, positives: Sequence[int]) -> np.ndarray:
    """cos(query, its positive) - max cos(query, any other document), per query; rows are
    L2-normalised and the documents distinct. With no other document, cos(positive) alone."""
    scores = queries @ documents.T
    rows = np.arange(len(queries))
    positive = scores[rows, positives]
    scores[rows, positives] = -np.inf
    best_negative = scores.max(axis=1)
    return positive - np.where(np.isfinite(best_negative), best_negative, 0.0)


def best_query_vectors(
    nothink: np.ndarray, think: np.ndarray, doc_vectors: np.ndarray, positives: Sequence[int]
) -> np.ndarray:
    """Each query's vector as it retrieves better against ``doc_vectors``: its think vector
    where that raises its margin (``margins``), else its no-think vector; rows align."""
    better = margins(think, doc_vectors, positives) > margins(nothink, doc_vectors, positives)
    return np.where(better[:, None], think, nothink)


def document_margins(
    query_vectors: np.ndarray, doc_vectors: np.ndarray, positives: Sequence[int], document: int, vector: np.ndarray
) -> float:
    """The mean margin (see ``margins``) of the queries whose positive is ``document`` when that
    document is embedded as ``vector`` and every other document as in ``doc_vectors``; 0.0
    when no query's positive is ``document``."""
    rows = [i for i, p in enumerate(positives) if p == document]
    if not rows:
        return 0.0
    replaced = doc_vectors.copy()
    replaced[document] = vector
    return float(margins(query_vectors[rows], replaced, [positives[i] for i in rows]).mean())


def collect_gate_data(
    embedder: TWNEmbedder,
    examples: Sequence[RetrievalExample],
    *,
    roles: Sequence[str] = ("query",),
    batch_size: int = 8,
    max_thought_tokens: int | None = None,
    show_progress: bool = False,
) -> GateData:
    """Embed every query without and with a (greedy) thought, every document without, and
    return the features and margins the query labels come from; with ``"document"`` in
    ``roles`` also embed every document with a thought and add its row (see the module
    docstring). Rows: the queries (when ``"query"`` is in ``roles``), then the documents in
    order of first appearance (``document_corpus``)."""
    max_tokens = max_thought_tokens or embedder.config.max_thought_tokens
    documents, positives, negatives = document_corpus(examples)
    never = ReasoningBudget(mode="never")
    always = ReasoningBudget(mode="always", max_thought_tokens=max_tokens)
    doc_vectors = np.stack(
        [r.vector for r in embedder.encode(documents, role="document", budget=never, batch_size=batch_size)]
    )
    query_vectors, think_vectors, features, nothink, think, tokens = [], [], [], [], [], []
    chunks = range(0, len(examples), batch_size)
    for start in tqdm(chunks, desc="gate labels", unit="batch", disable=not show_progress):
        chunk = examples[start : start + batch_size]
        items = prepare_inputs(embedder, [e.query for e in chunk], chunk)
        with torch.inference_mode():
            vectors, pooled = embedder.embed_items(items, "query")
        query_vectors.append(vectors.float().cpu().numpy())
        if "query" not in roles:
            continue
        thought = embedder.encode(items, role="query", budget=always, batch_size=batch_size)
        rows = slice(start, start + len(chunk))
        think_vectors.append(np.stack([r.vector for r in thought]))
        nothink.append(margins(query_vectors[-1], doc_vectors, positives[rows]))
        think.append(margins(think_vectors[-1], doc_vectors, positives[rows]))
        features.append(pooled.float().cpu())
        tokens.extend(r.thought_tokens for r in thought)
    row_roles = ["query"] * len(tokens)
    if "document" in roles:
        queries = np.concatenate(query_vectors)
        if think_vectors:
            queries = best_query_vectors(queries, np.concatenate(think_vectors), doc_vectors, positives)
        # the first line naming a document (for error messages)
        owners = {
            d: examples[i]
            for i, named in reversed(list(enumerate(zip(positives, negatives))))
            for d in [named[0], *named[1]]
        }
        labelled = range(len(documents))
        for start in tqdm(range(0, len(labelled), batch_size), desc="document labels", disable=not show_progress):
            chunk = labelled[start : start + batch_size]
            items = prepare_inputs(embedder, [documents[d] for d in chunk], [owners[d] for d in chunk])
            with torch.inference_mode():
                _, pooled = embedder.embed_items(items, "document")
            thought = embedder.encode(items, role="document", budget=always, batch_size=batch_size)
            nothink.append([document_margins(queries, doc_vectors, positives, d, doc_vectors[d]) for d in chunk])
            think.append(
                [document_margins(queries, doc_vectors, positives, d, r.vector) for d, r in zip(chunk, thought)]
            )
            features.append(pooled.float().cpu())
            tokens.extend(r.thought_tokens for r in thought)
        row_roles += ["document"] * len(labelled)
    return GateData(
        features=torch.cat(features),
        margin_nothink=torch.from_numpy(np.concatenate(nothink)).float(),
        margin_think=torch.from_numpy(np.concatenate(think)).float(),
        thought_tokens=torch.tensor(tokens, dtype=torch.float32),
        meta={"examples": len(examples), "max_thought_tokens": max_tokens},
        roles=row_roles,
    )


def holdout_split(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic ``(train, held_out)`` index lists; held-out is empty for ``fraction`` 0,
    else at least one item while at least one stays for training."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    held = min(max(1, round(count * fraction)), count - 1) if fraction > 0 and count > 1 else 0
    return sorted(order[held:]), sorted(order[:held])


def role_holdout_split(roles: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``holdout_split`` within each role's rows (so every role has held-out rows), merged;
    for one role it is ``holdout_split`` itself."""
    train, held = [], []
    for role in dict.fromkeys(roles):
        rows = [i for i, r in enumerate(roles) if r == role]
        role_train, role_held = holdout_split(len(rows), fraction, seed)
        train += [rows[i] for i in role_train]
        held += [rows[i] for i in role_held]
    return sorted(train), sorted(held)


def roc_auc(scores: Sequence[float], labels: Sequence[float]) -> float | None:
    """Area under the ROC curve (ties count one half); ``None`` when a class is missing."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels) > 0.5
    positives, negatives = scores[labels], scores[~labels]
    if not len(positives) or not len(negatives):
        return None
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def binary_metrics(scores: Sequence[float], labels: Sequence[float], threshold: float | np.ndarray) -> dict:
    """Precision, recall, F1, accuracy and think-rate at ``threshold`` (score >= threshold
    predicts 1; one threshold, or one per score), and ROC AUC. Precision is ``None`` when
    nothing is predicted positive."""
    scores, truth = np.asarray(scores, dtype=float), np.asarray(labels) > 0.5
    predicted = scores >= threshold
    true_positive = int((predicted & truth).sum())
    precision = true_positive / predicted.sum() if predicted.any() else None
    recall = true_positive / truth.sum() if truth.any() else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    return {
        "count": len(scores),
        "positive_labels": int(truth.sum()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": float((predicted == truth).mean()) if len(scores) else None,
        "auc": roc_auc(scores, truth),
        "think_rate": float(predicted.mean()) if len(scores) else None,
    }


def train_gate(
    data: str | Path | Sequence[RetrievalExample],
    base: str | Path,
    args: GateArguments,
    *,
    base_model: str | Path | None = None,
    on_step_end: Callable[[int, dict], None] | None = None,
) -> Path:
    """Label, train, evaluate and calibrate the gate of the TWN checkpoint ``base``; write the
    checkpoint (released layout, new gate and threshold) and ``gate_metrics.json`` to
    ``args.output_dir``. Labels are cached in ``gate_data.pt`` there, so a resumed run does
    not think again. Returns the output folder."""
    examples = load_examples(data) if isinstance(data, (str, Path)) else list(data)
    device, dtype, autocast = resolve_training_device(args)
    embedder = load_for_training(base, device=device, dtype=dtype, base_model=base_model, require_twn=True)
    model = embedder.model
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    gate_data = _cached_gate_data(embedder, examples, args, output / GATE_DATA_FILENAME)
    labels = gate_data.labels(args.delta)
    train_rows, held_rows = role_holdout_split(gate_data.roles, args.holdout_fraction, args.seed)
    train_labels = labels[train_rows]
    if int(train_labels.sum()) in (0, len(train_rows)):
        gains = gate_data.gains()
        raise ValueError(
            f"all {len(train_rows)} training labels are {int(train_labels[0])} at delta={args.delta} "
            f"(margin gains range {float(gains.min()):.4f}..{float(gains.max()):.4f}); pick another --delta"
        )
    logger.info("gate labels: %s", label_summary(gate_data, args.delta))
    features = gate_data.features.to(model.device)
    targets = gate_data.targets(args.delta, args.label_temperature).to(model.device)
    calibration = None
    if args.calibration_folds is not None:
        thresholds, calibration = _crossfit_calibration(model, gate_data, features, targets, train_rows, args, autocast)
    fit_gate(model, features, targets, train_rows, args, autocast, on_step_end)
    with torch.no_grad():
        scores = model.gate(features).cpu().numpy()
    if calibration is None:
        threshold = DEFAULT_GATE_THRESHOLD
        if args.target_think_rate is not None:
            query_train = [i for i in train_rows if gate_data.roles[i] == "query"] or train_rows
            threshold = calibrate(scores[query_train], args.target_think_rate)
        thresholds = {role: float(threshold) for role in ROLES}
    model.config.gate_threshold = thresholds if calibration is not None else thresholds["query"]
    row_thresholds = np.array([thresholds[role] for role in gate_data.roles])

    def split_metrics(rows: Sequence[int]) -> dict:
        wanted = set(rows)
        train = [i for i in train_rows if i in wanted]
        held = [i for i in held_rows if i in wanted]
        return {
            "train": binary_metrics(scores[train], labels[train].numpy(), row_thresholds[train]),
            "heldout": binary_metrics(scores[held], labels[held].numpy(), row_thresholds[held]) if held else None,
        }

    report = {
        "delta": args.delta,
        "label_temperature": args.label_temperature,
        "threshold": thresholds["query"],
        "thresholds": thresholds,
        "target_think_rate": args.target_think_rate,
        "calibration": calibration,
        "labelled_queries": len(gate_data.rows("query")),
        "labelled_documents": len(gate_data.rows("document")),
        "positive_labels": int(labels.sum()),
        "mean_margin_gain": float(gate_data.gains().mean()),
        **split_metrics(range(len(labels))),
        "roles": {
            role: {"positive_labels": int(labels[gate_data.rows(role)].sum()), **split_metrics(gate_data.rows(role))}
            for role in dict.fromkeys(gate_data.roles)
        },
    }
    model.save(output)
    (output / GATE_METRICS_FILENAME).write_text(json.dumps(report, indent=2), encoding="utf-8")
    logger.info("gate done: %s", json.dumps(report["heldout"] or report["train"]))
    return output


def fit_gate(
    model: TWNModel,
    features: torch.Tensor,
    targets: torch.Tensor,
    rows: Sequence[int],
    args: GateArguments,
    autocast: bool = False,
    on_step_end: Callable[[int, dict], None] | None = None,
    checkpoints: bool = True,
) -> None:
    """Train ``model.gate`` from a fresh initialisation seeded with ``args.seed`` on ``features``
    and ``targets`` of ``rows``: class-balanced BCE (by the expected number of positives among
    those targets), ``args``' optimiser, epochs and batches; its log and (with ``checkpoints``)
    its final checkpoint go to ``args.output_dir`` (resumed there when ``args.resume``)."""
    _reset_gate(model.gate, args.seed)
    index = torch.tensor(list(rows), device=model.device)
    positives = float(targets[index].sum())
    if not 0 < positives < len(rows):
        raise ValueError(f"the gate cannot learn {len(rows)} rows whose targets are all of one class")
    pos_weight = torch.tensor((len(rows) - positives) / positives, device=model.device)
    loop = TrainingLoop("gate", model, args, [GATE_PART], args.total_steps(len(rows)), autocast, checkpoints)

    def step(step_index: int, micro: int) -> dict[str, float]:
        batch = index[loop.micro_batch(step_index, micro, len(rows))]
        logits = model.gate.logits(features[batch])
        loss = F.binary_cross_entropy_with_logits(logits, targets[batch], pos_weight=pos_weight)
        (loss / args.grad_accum).backward()
        return {"loss": loss.item()}

    loop.run(step, on_step_end)


def calibration_folds(roles: Sequence[str], folds: int, seed: int) -> list[int]:
    """A fold (0 .. ``folds`` - 1) for each row, dealt in a seeded random order within each
    role, so every fold holds rows of every role that has at least ``folds`` of them."""
    fold_of = [0] * len(roles)
    for role in dict.fromkeys(roles):
        rows = [i for i, r in enumerate(roles) if r == role]
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
        for position, k in enumerate(order):
            fold_of[rows[k]] = position % folds
    return fold_of


def crossfit_scores(
    model: TWNModel,
    features: torch.Tensor,
    targets: torch.Tensor,
    roles: Sequence[str],
    rows: Sequence[int],
    args: GateArguments,
    autocast: bool = False,
) -> np.ndarray:
    """Held-out gate scores of ``rows`` (in their order): for each of ``args.calibration_repeats``
    draws of ``args.calibration_folds`` folds (``calibration_folds``), the gate is fitted
    (``fit_gate``, each fit its own seed, its log in a scratch folder, no checkpoint) on the rows outside one fold
    and scores the rows inside it; each row's scores are averaged over the repeats. Leaves
    ``model.gate`` holding the last fit."""
    rows = list(rows)
    folds = args.calibration_folds
    total = np.zeros(len(rows))
    for repeat in range(args.calibration_repeats):
        fold_of = calibration_folds([roles[i] for i in rows], folds, args.seed + repeat)
        for k in range(folds):
            inside = [j for j, f in enumerate(fold_of) if f == k]
            if not inside:
                continue
            outside = [rows[j] for j, f in enumerate(fold_of) if f != k]
            with tempfile.TemporaryDirectory(prefix="twn-gate-fold-") as scratch:
                fold_args = dataclasses.replace(
                    args, output_dir=scratch, resume=False, seed=args.seed + 1 + repeat * folds + k
                )
                try:
                    fit_gate(model, features, targets, outside, fold_args, autocast, checkpoints=False)
                except ValueError as error:
                    raise ValueError(f"calibration fold {k + 1} of {folds}: {error}; use fewer folds") from error
            with torch.no_grad():
                total[inside] += model.gate(features[[rows[j] for j in inside]]).cpu().numpy()
    return total / args.calibration_repeats


def net_gain_threshold(
    scores: Sequence[float], gains: Sequence[float], candidates: Sequence[float] = THRESHOLD_CANDIDATES
) -> tuple[float, dict[float, float]]:
    """The candidate threshold at which thinking where ``scores`` >= it gains the most margin
    in all (the sum of ``gains`` of those rows: a needless thought counts its loss), and that
    sum for every candidate. Ties go to the candidate nearest 0.5, then to the higher one
    (fewer thoughts)."""
    scores, gains = np.asarray(scores, dtype=float), np.asarray(gains, dtype=float)
    net = {float(t): float(gains[scores >= t].sum()) for t in candidates}
    best = max(net.values())
    tied = [t for t, g in net.items() if math.isclose(g, best, rel_tol=1e-9, abs_tol=1e-9)]
    return min(tied, key=lambda t: (abs(t - 0.5), -t)), net


def _crossfit_calibration(
    model: TWNModel,
    gate_data: GateData,
    features: torch.Tensor,
    targets: torch.Tensor,
    train_rows: Sequence[int],
    args: GateArguments,
    autocast: bool,
) -> tuple[dict[str, float], dict]:
    """The thresholds per role, the queries' cross-fitted (``net_gain_threshold`` of the
    held-out scores of the query rows among ``train_rows``) and the documents' the default
    (see the module docstring), and the report: the net gain at every candidate and, per role,
    the held-out metrics at its threshold."""
    scores = dict(
        zip(train_rows, crossfit_scores(model, features, targets, gate_data.roles, train_rows, args, autocast))
    )
    rows_of = {role: [i for i in train_rows if gate_data.roles[i] == role] for role in dict.fromkeys(gate_data.roles)}
    queries = rows_of["query"]
    gains = gate_data.gains().numpy()
    threshold, net_gains = net_gain_threshold([scores[i] for i in queries], gains[queries])
    thresholds = {"query": threshold, "document": DEFAULT_GATE_THRESHOLD}
    labels = gate_data.labels(args.delta).numpy()
    report = {
        "folds": args.calibration_folds,
        "repeats": args.calibration_repeats,
        "net_gain": {f"{t:g}": round(g, 6) for t, g in net_gains.items()},
        "heldout": {
            role: binary_metrics([scores[i] for i in rows], labels[rows], thresholds[role])
            for role, rows in rows_of.items()
            if rows
        },
    }
    return thresholds, report


def _reset_gate(gate: GateMLP, seed: int) -> None:
    """Start from a fresh, seeded initialisation of the same layer sizes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = GateMLP(gate.dims, gate.activation_name)
    gate.load_state_dict(fresh.state_dict())


def _cached_gate_data(
    embedder: TWNEmbedder, examples: Sequence[RetrievalExample], args: GateArguments, path: Path
) -> GateData:
    expected = {
        "examples": len(examples),
        "max_thought_tokens": args.max_thought_tokens or embedder.config.max_thought_tokens,
        "sources": [e.source for e in examples[:1]] + [e.source for e in examples[-1:]],
        "roles": list(args.roles),
    }
    if args.resume and path.is_file():
        cached = GateData.load(path)
        if cached.meta == expected:
            logger.info("reusing gate labels from %s", path)
            return cached
    gate_data = collect_gate_data(
        embedder,
        examples,
        roles=args.roles,
        batch_size=args.embed_batch_size,
        max_thought_tokens=args.max_thought_tokens,
        show_progress=args.show_progress,
    )
    gate_data.meta = expected
    gate_data.save(path)
    return gate_data


def label_summary(gate_data: GateData, delta: float) -> str:
    """One line for logs: per role, how many inputs thinking helps, and the mean margin gain."""
    gains = gate_data.gains()
    parts = []
    for role in dict.fromkeys(gate_data.roles):
        rows = gains[gate_data.rows(role)]
        mean = float(rows.mean()) if len(rows) else math.nan
        parts.append(
            f"thinking helps {int((rows > delta).sum())} of {len(rows)} {role} inputs (mean margin gain {mean:+.4f})"
        )
    return "; ".join(parts)
