"""Tasks as data: the prompt-word table, templates, item checks, few-shot draws, hub adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occiforge import languages
from occiforge.errors import UserError
from occiforge.eval import hub, prompts
from occiforge.eval.items import Item, read_items, read_texts
from occiforge.eval.tasks import OCCIGLOT_SUITE, TEMPLATES, TaskData, load_local, load_tasks, pose, template_for


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def qa_items(lang: str, n: int) -> list[dict]:
    return [{"id": f"{lang}-{i}", "lang": lang, "question": f"q{i}?", "choices": [f"a{i}", f"b{i}"], "answer": i % 2} for i in range(n)]


def test_prompt_words_cover_all_24_languages():
    for lang in languages.EU_LANGUAGES:
        row = prompts.words(lang, "native")
        assert set(row) == set(prompts.KEYS) and all(v.strip() for v in row.values()), lang
    assert prompts.words("de", "native")["question"] == "Frage"
    assert prompts.words("de", "en")["question"] == "Question"
    # lm-eval's xcopa connectors, so the native xcopa prompt is lm-eval's
    assert (prompts.words("et", "native")["because"], prompts.words("et", "native")["therefore"]) == ("sest", "seetõttu")
    assert (prompts.words("it", "native")["because"], prompts.words("it", "native")["therefore"]) == ("perché", "quindi")


def test_templates_are_versioned_and_the_occiglot_suite_loads_from_the_hub():
    for t in TEMPLATES.values():
        assert t.version >= 1 and t.metric in ("acc", "acc_norm", "mc2")
    for name in OCCIGLOT_SUITE:
        assert TEMPLATES[name].hub is not None
    assert {name: TEMPLATES[name].fewshot for name in OCCIGLOT_SUITE} == {
        "m_arc": 25, "m_hellaswag": 10, "m_mmlu": 5, "m_truthfulqa": 0, "belebele": 5}
    assert template_for("anything_else").name == "qa"


def item(**kw) -> Item:
    base = {"id": "1", "lang": "de", "choices": ("Mars", "Venus"), "answer": 0}
    return Item(**(base | kw))


def test_templates_render_english_and_native_prompts():
    w_en, w_de = prompts.words("de", "en"), prompts.words("de", "native")
    q = item(question="Welcher Planet ist rot?")
    assert TEMPLATES["m_arc"].render(q, w_en, "en") == ("Question: Welcher Planet ist rot?\nAnswer:", ["Mars", "Venus"])
    assert TEMPLATES["m_arc"].render(q, w_de, "native")[0] == "Frage: Welcher Planet ist rot?\nAntwort:"
    assert TEMPLATES["m_mmlu"].render(q, w_en, "en") == ("Welcher Planet ist rot?\nA. Mars\nB. Venus\nAnswer:", ["A", "B"])
    bb = TEMPLATES["belebele"].render(item(context="Ein Text.", question="Was?"), w_en, "en")
    assert bb[0] == "P: Ein Text.\nQ: Was?\nA: Mars\nB: Venus\nAnswer:"
    x = item(lang="it", context="L'uomo aprì il rubinetto.", question="effect", choices=("Il gabinetto.", "Dell'acqua."))
    assert TEMPLATES["xcopa"].render(x, prompts.words("it", "native"), "native") == (
        "L'uomo aprì il rubinetto quindi", ["il gabinetto.", "dell'acqua."])
    assert TEMPLATES["sib200"].render(item(context="Ein Satz."), w_de, "native")[0] == "Ein Satz.\nThema:"


@pytest.mark.parametrize(("record", "message"), [
    ({"question": "q", "choices": ["a", "b"], "answer": 2}, "answer index 2 is out of range for 2 choices"),
    ({"question": "q", "choices": [], "answer": 0}, "'choices' are empty"),
    ({"question": "q", "choices": ["a", " "], "answer": 0}, "choice 1 is empty"),
    ({"question": "q", "choices": ["a"], "answer": 0, "lang": "fr"}, "lang 'fr' in a file for 'de'"),
    ({"choices": ["a"], "answer": 0}, "needs a non-empty 'question' or 'context'"),
])
def test_bad_items_are_one_line_errors_naming_file_and_line(tmp_path, record, message):
    path = write_jsonl(tmp_path / "de.jsonl", [{"question": "ok", "choices": ["x"], "answer": 0}, record])
    with pytest.raises(UserError) as e:
        read_items(path)
    assert str(e.value).startswith(f"{path}:2: ") and message in str(e.value) and "\n" not in str(e.value)


def test_records_need_a_language_unless_the_file_names_one(tmp_path):
    mixed = write_jsonl(tmp_path / "items.jsonl", qa_items("de", 2) + qa_items("fr", 1))
    assert {i.lang for i in read_items(mixed)} == {"de", "fr"}
    with pytest.raises(UserError, match=r"items2.jsonl:1: no 'lang'"):
        read_items(write_jsonl(tmp_path / "items2.jsonl", [{"question": "q", "choices": ["a"], "answer": 0}]))
    with pytest.raises(UserError, match=r"de.jsonl:1: lang 'fr' in a file for 'de'"):
        read_texts(write_jsonl(tmp_path / "t" / "de.jsonl", [{"text": "x", "lang": "fr"}]))


def test_local_folder_is_one_task_per_language(shared_data):
    tasks = load_local(shared_data / "mc" / "sib200")
    assert {t.name for t in tasks} == {"sib200"} and {t.lang for t in tasks} == set(languages.EU_LANGUAGES)
    assert all(len(t.items) == 50 and len(t.items[0].choices) == 7 and t.template.name == "sib200" for t in tasks)
    xcopa = load_tasks(str(shared_data / "mc" / "xcopa" / "it.jsonl"))
    assert [(t.name, t.lang, t.template.name) for t in xcopa] == [("xcopa", "it", "xcopa")]


def task(tmp_path: Path, n: int = 8, pool: int | None = None, shots: int = 3) -> TaskData:
    folder = tmp_path / "quiz"
    write_jsonl(folder / "en.jsonl", qa_items("en", n))
    if pool is not None:
        write_jsonl(folder / "fewshot" / "en.jsonl", [r | {"id": "shot-" + r["id"]} for r in qa_items("en", pool)])
    (t,) = load_tasks(str(folder), shots=shots)
    return t


def test_fewshot_examples_are_seeded_per_item_and_never_the_item(tmp_path):
    t = task(tmp_path)
    a, b = pose(t, seed=1), pose(t, seed=1)
    assert [p.context for p in a] == [p.context for p in b]
    assert [p.context for p in pose(t, seed=2)] != [p.context for p in a]
    for p in a:
        blocks = p.context.split("\n\n")
        assert len(blocks) == 4 and blocks[-1] == f"Question: {p.item.question}\nAnswer:"
        assert f"Question: {p.item.question}\n" not in "\n\n".join(blocks[:-1])
    # an item's prompt does not depend on which other items are scored
    t.items = t.items[3:]
    assert [p.context for p in pose(t, seed=1)] == [p.context for p in a[3:]]


def test_fewshot_examples_come_from_the_separate_split_when_there_is_one(tmp_path):
    t = task(tmp_path, pool=4)
    for p in pose(t, seed=0):
        examples = p.context.split("\n\n")[:-1]
        assert all(any(f"q{i}?" in e for i in range(4)) for e in examples)
        assert all(e.endswith((" a0", " b1", " a2", " b3")) for e in examples)  # gold answers
    with pytest.raises(UserError, match="5-shot needs 5 examples"):
        pose(task(tmp_path / "x", pool=4, shots=5), seed=0)


def test_hub_adapters_read_the_datasets_records():
    arc = hub.adapt_rows(hub.HUB["m_arc"], [{"id": "a", "instruction": "Was  ist [x]rot?", "option_a": "Mars",
                                             "option_b": "Venus", "option_c": "Erde", "option_d": "Pluto",
                                             "option_e": None, "answer": "C"}], "de", "hf:m_arc")
    assert (arc[0].question, arc[0].choices, arc[0].answer) == ("Was ist rot?", ("Mars", "Venus", "Erde", "Pluto"), 2)
    bb = hub.adapt_rows(hub.HUB["belebele"], [{"link": "l", "question_number": 1, "flores_passage": "P.",
                                               "question": " Q? ", "mc_answer1": "a", "mc_answer2": "b",
                                               "mc_answer3": "c", "mc_answer4": "d", "correct_answer_num": "2"}], "pl", "hf:b")
    assert (bb[0].context, bb[0].question, bb[0].answer) == ("P.", "Q?", 1)
    hs = hub.adapt_rows(hub.HUB["m_hellaswag"], [{"ind": 3, "activity_label": "Kochen", "ctx_a": "Er nimmt",
                                                  "ctx_b": "einen topf.", "endings": ["x", "y"], "label": "1"}], "de", "hf:h")
    assert (hs[0].context, hs[0].answer) == ("Kochen: Er nimmt Einen topf.", 1)
    tq = hub.adapt_rows(hub.HUB["m_truthfulqa"], [{"question": "Q?", "mc2_targets_choices": ["f", "t1", "t2"],
                                                   "mc2_targets_labels": [0, 1, 1]}], "fr", "hf:t")
    assert (tq[0].labels, tq[0].answer) == ((0, 1, 1), 1)
    exams = [{"id": "e1", "question": {"stem": "S?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}},
              "answerKey": "B", "info": {"language": lang}} for lang in ("Polish", "Italian")]
    assert [(i.id, i.answer) for i in hub.adapt_rows(hub.HUB["exams"], exams, "pl", "hf:e")] == [("e1", 1)]
    with pytest.raises(UserError, match=r"hf:x#0: unexpected record"):
        hub.adapt_rows(hub.HUB["xcopa"], [{"premise": "p"}], "it", "hf:x")


def test_hub_tasks_load_through_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load(dataset, config, split):
        calls.append((dataset, config, split))
        return [{"index_id": i, "category": "travel", "text": f"Satz {i}."} for i in range(6)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    tasks = load_tasks("builtin:sib200", langs=["de", "el"], shots=2, max_items=4)
    assert calls == [("Davlan/sib200", "deu_Latn", "test"), ("Davlan/sib200", "deu_Latn", "train"),
                     ("Davlan/sib200", "ell_Grek", "test"), ("Davlan/sib200", "ell_Grek", "train")]
    assert [(t.lang, len(t.items), len(t.pool), t.same_split) for t in tasks] == [("de", 4, 6, False), ("el", 4, 6, False)]
    assert tasks[0].items[0].answer == 1 and tasks[0].fewshot == 2
    with pytest.raises(UserError, match="unknown built-in task"):
        load_tasks("builtin:nope")
