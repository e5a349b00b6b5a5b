"""The synthetic world of benchmarks/twn_mini and the bundled model built from it."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.loaders import FileRef, LoaderSettings, iter_file_items
from twn_rag.mini import (
    MINI_MODEL_DIR,
    card_page_text,
    load_world_pages,
    mini_model_path,
    mini_test_split,
    mini_world,
    ticket_page_text,
    write_world_pdf,
)
from twn_rag.training import load_examples
from twn_rag.training.data import document_corpus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "twn_mini"))
import task


def test_world_is_reproducible_and_splits_hold_names_and_tickets_apart():
    a, b = task.build_world(0), task.build_world(0)
    assert a.entities == b.entities and a.queries == b.queries and a.tickets == b.tickets
    assert task.build_world(1).entities != a.entities
    for kind in ("lookup-number", "lookup-ticket"):
        subjects = {split: {q.text.split()[-1] for q in a.split(split) if q.kind == kind} for split in task.SPLITS}
        assert not subjects["train"] & subjects["test"] and not subjects["validation"] & subjects["test"]
    reasoning = [q for q in a.queries if q.kind in task.REASONING_KINDS]
    assert all(q.thought and q.thought.startswith("Fact: ") for q in reasoning)
    assert all(q.thought is None for q in a.queries if q.kind not in task.REASONING_KINDS)
    corpus = task.pretraining_corpus(a)
    text = " ".join(corpus)
    captioned = {d.thought for d in a.documents if d.colour}  # pictures: captions in pretrain.py
    for thought in [q.thought for q in reasoning] + [d.thought for d in a.documents if d.thought not in captioned]:
        # every fact a thought states, of a query or a document, is stated in pre-training
        assert all(fact in text for fact in re.findall(r"Fact: [^.]*\.", thought)), thought
    assert all(q.thought in text for q in reasoning)  # a card chain is also one line
    # ... but never right after the query's or the page's own words (that would leak the answer
    # into the plain, no-think reading)
    for query in reasoning:
        assert not any(line.startswith(query.text) for line in corpus)
    tickets = [d for d in a.documents if task.kind_of(d) == "ticket"]
    assert not any(line.startswith(page.text) and line != page.text for page in tickets for line in corpus)


def test_tickets_need_a_thought_on_the_document_side():
    world = task.build_world(0)
    corpus = " ".join(task.pretraining_corpus(world))
    by_id = {d.doc_id: d for d in world.documents}
    tickets = [d for d in world.documents if task.kind_of(d) == "ticket"]
    assert len(tickets) == len(world.tickets) and {d.split for d in tickets} == set(task.SPLITS)
    for document in world.documents:  # cards, pictures and notes: the thought says what the surface shows
        if document not in tickets:
            shown = (document.text or document.colour).rstrip(".").split()[-1]
            assert f" {shown} " in document.thought.replace(".", " ")
    for ticket, (seat, hall, _) in world.tickets.items():
        page = by_id[task.ticket_id(ticket)]
        assert page.text == f"Ticket {ticket}." and f" {hall}" not in page.text  # the page does not show its hall
        first, second = f"Fact: ticket {ticket} is for seat {seat}.", f"Fact: seat {seat} is in hall {hall}."
        assert page.thought == f"{first} {second}" and first in corpus and second in corpus
        # never in one line: ticket -> hall is not one step
        assert not any(page.thought in line for line in task.pretraining_corpus(world))
        # the world states the chain in one direction only: nothing maps a hall to its seat or ticket
        assert f"hall {hall} is" not in corpus and f"hall {hall} has" not in corpus
    lookups = [q for q in world.queries if q.kind == "lookup-ticket"]
    assert len(lookups) == len(world.tickets) and all(q.thought is None for q in lookups)
    for query in lookups:
        assert by_id[query.positive].thought.endswith(f"hall {query.text.split()[-1]}.")
    for split in task.SPLITS:
        documents = world.split_documents(split)
        assert {d.split for d in documents if d.split} == {split}
        assert {q.positive for q in world.split(split)} <= {d.doc_id for d in documents}


def test_one_fact_answers_state_one_fact_never_a_chain():
    world = task.build_world(0)
    corpus = task.pretraining_corpus(world)
    answers = task.one_fact_answers(world)
    assert len(answers) == len(world.friends) + len(world.entities) + len(world.tickets)
    for role, question, answer, page in answers:
        assert answer in corpus and answer.count("Fact: ") == 1
        assert not any(q.text == question for q in world.queries)  # never a query of any split
        if role == "query":  # a name's friend or its own card, never its friend's card
            name = question.split()[-1]
            friend, (card, _) = world.friends[name], world.entities[name]
            assert (question, answer) in {
                (f"the friend of {name}", task.friend_fact(name, friend)),
                (f"the card of {name}", task.card_fact(name, card)),
            }
            assert page is None  # asked as text
        else:  # a ticket's seat, never its hall
            ticket = int(question.split()[1].rstrip("."))
            assert question == task.ticket_text(ticket) and "hall" not in answer
            assert page == task.ticket_id(ticket)  # asked as its page: the text and the rendered page


def test_chat_examples_are_what_the_reasoning_adapter_writes_after_its_prompt(mini, tmp_path):
    from pretrain import chat_examples

    from twn_rag.inputs import EmbeddingInput
    from twn_rag.processing import TWNProcessor

    processor, config, world = mini.processor, mini.config, task.build_world(0)
    task.write_pages(world, tmp_path, max_image_pixels=config.max_image_pixels)
    examples = chat_examples(processor.hf_processor, world, config, tmp_path / "pages")
    answers = task.one_fact_answers(world)
    assert isinstance(processor, TWNProcessor) and len(examples) == len(answers)
    assert sum(image is not None for _, image in examples) == len(world.tickets)
    end_of_turn = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for (text, image), answer in zip(examples, answers):
        images = [] if image is None else [image]
        assert (image is None) == (answer.page is None)
        prompt = processor.generation_batch(
            [EmbeddingInput(text=answer.question, images=images)], [config.prompts(answer.role)[1]]
        )
        chat = processor.hf_processor(text=[text], images=images or None, return_tensors="pt")
        # the adapter's own prompt (its image tokens and pixels too), then the answer and the end of turn
        prompt_ids, chat_ids = prompt["input_ids"][0].tolist(), chat["input_ids"][0].tolist()
        assert chat_ids[: len(prompt_ids)] == prompt_ids and chat_ids[-1] == end_of_turn
        assert processor.tokenizer.decode(chat_ids[len(prompt_ids) : -1]) == answer.answer
        if image is not None:
            assert torch.equal(chat["pixel_values"], prompt["pixel_values"])
    # the build's tokenizer spells its instructions a word a token (a period is one more), and
    # each role name is one token
    for text in [p for role in ("query", "document") for p in config.prompts(role)]:
        assert len(processor.tokenizer(text, add_special_tokens=False)["input_ids"]) <= len(text.split()) + 1, text
    for role in ("system", "user", "assistant"):
        assert len(processor.tokenizer(role, add_special_tokens=False)["input_ids"]) == 1, role


def test_splits_are_written_in_the_training_format(tmp_path):
    world = task.build_world(0)
    paths = task.write_jsonl(world, tmp_path)
    examples = {split: load_examples(paths[split]) for split in task.SPLITS}
    assert sum(len(v) for v in examples.values()) == len(world.queries)
    picture = next(e for e in examples["test"] if "images" in e.positive)
    assert Path(picture.positive["images"][0]).is_file()
    for split, lines in examples.items():  # a split's file holds its whole collection
        documents, _, _ = document_corpus(lines)
        assert len(documents) == len(world.split_documents(split))
        thoughts = {e.positive.get("text") or e.positive["images"][0]: e.positive_thought for e in lines}
        shown = {
            d.text or str(tmp_path / "pictures" / f"{d.colour}.png"): d.thought for d in world.split_documents(split)
        }
        assert thoughts == {key: shown[key] for key in thoughts}  # each positive carries its document's thought
    # SFT reads the train lines and the counterfactual pairs, which only the think view sees
    sft = load_examples(paths["sft"])
    plain, counterfactual = sft[: len(examples["train"])], sft[len(examples["train"]) :]
    assert [e.query for e in plain] == [e.query for e in examples["train"]]
    assert not any(e.think_view_only for e in plain) and all(e.think_view_only for e in counterfactual)
    train_names = [n for n, split in world.entity_split.items() if split == "train"]
    assert len(counterfactual) == task.COUNTERFACTUALS_PER_LOOKUP * 2 * len(train_names)
    train_subjects = {q.text.split()[-1] for q in world.split("train") if q.kind in task.DOCUMENT_REASONING_KINDS}
    train_subjects |= set(train_names)
    real = {q.thought for q in world.queries} | {d.thought for d in world.documents}
    for pair in counterfactual:  # only train names and halls, and facts that are not the world's
        assert pair.query["text"].split()[-1] in train_subjects
        assert (pair.query_thought or pair.positive_thought) not in real


def test_training_pages_are_the_pages_an_index_loads(tmp_path):
    """Every card, ticket and hall plate is trained on as its page's text and the page image
    the loaders render from ``write_world_pdf`` at the model's cap: what the demo's index embeds."""
    world = task.build_world(0)
    task.write_jsonl(world, tmp_path / "data")
    lines = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    sides = [side for line in lines for side in [line["positive"], *line["negatives"]]]
    assert all(
        ("text" in side) == ("image" in side and side["image"].startswith("pages/")) for side in sides if "text" in side
    )
    test_tickets = [d for d in world.split_documents("test") if task.kind_of(d) == "ticket"]
    pdf = write_world_pdf(
        tmp_path / "demo" / "tickets.pdf", [ticket_page_text(int(d.doc_id.split("-")[1])) for d in test_tickets]
    )
    settings = LoaderSettings(max_image_pixels=task.PAGE_PIXELS)
    for doc, item in zip(test_tickets, iter_file_items(FileRef.describe(pdf), settings), strict=True):
        trained = Image.open(tmp_path / "data" / "pages" / f"{doc.doc_id}.png")
        assert item.text == doc.text
        assert np.array_equal(np.asarray(trained), np.asarray(item.image))


def test_bundled_model_matches_the_world_the_script_builds():
    world = mini_world()
    built = task.build_world(json.loads((MINI_MODEL_DIR / "world.json").read_text())["seed"])
    assert {n: (c, col) for n, (c, col, _) in world.entities.items()} == built.entities
    assert {n: s for n, (_, _, s) in world.entities.items()} == built.entity_split
    assert world.tickets == built.tickets and world.friends == built.friends
    # the test split it ships is the one the script writes: the same queries, the same collection
    shipped = load_examples(mini_test_split())
    assert [e.query["text"] for e in shipped] == [q.text for q in built.split("test")]
    assert len(document_corpus(shipped)[0]) == len(built.split_documents("test"))
    adapter = json.loads((mini_model_path() / "embedding" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "backbone"  # ships its backbone inside


@pytest.fixture(scope="module")
def mini():
    return TWNEmbedder.from_pretrained(mini_model_path(), device="cpu", dtype="float32")


def test_bundled_model_states_the_facts_it_was_trained_on(mini):
    world = mini_world()
    names = world.names("train")[:4]
    results = mini.encode([f"the card of the friend of {n}" for n in names], budget=ReasoningBudget(mode="always"))
    expected = []
    for name in names:
        friend = world.friends[name]
        expected.append(f"Fact: {name} has friend {friend}. Fact: {friend} has card {world.entities[friend][0]}.")
    assert [r.thought for r in results] == expected


def pages(embedder, folder: Path, texts: list[str]) -> list[dict]:
    """``texts`` as an index embeds them: PDF pages loaded at the model's image cap."""
    items = load_world_pages(folder / "pages.pdf", texts, embedder.config.max_image_pixels)
    return [item.to_input() for item in items]


def test_bundled_model_writes_the_hall_of_a_ticket_page_down(mini, tmp_path):
    world = mini_world()
    tickets = world.ticket_numbers("train")[:4]
    inputs = pages(mini, tmp_path, [ticket_page_text(t) for t in tickets])
    results = mini.encode(inputs, role="document", budget=ReasoningBudget(mode="always"))
    expected = []
    for ticket in tickets:
        seat, hall, _ = world.tickets[ticket]
        expected.append(f"Fact: ticket {ticket} is for seat {seat}. Fact: seat {seat} is in hall {hall}.")
    assert [r.thought for r in results] == expected


def test_bundled_model_ranks_a_direct_query_first_without_thinking(mini, tmp_path):
    never = ReasoningBudget(mode="never")
    cards = pages(mini, tmp_path, [card_page_text(n) for n in range(mini_world().num_cards)])
    documents = mini.encode(cards, role="document", budget=never)
    [query] = mini.encode(["number 17"], budget=never)
    scores = [float(d.vector @ query.vector) for d in documents]
    assert scores.index(max(scores)) == 17
