"""Perturbed copies of train sentences, for the teacher to label: the ways English sentences go wrong.

Most come out unacceptable, some do not ("She quickly left" -> "Quickly she left"): the teacher's logits say which,
so the student learns from more varied sentences than CoLA's 8,551 without anyone labelling them.

Operations (teacher.augment.operations; each copy draws one of them, seeded):
- swap, drop, duplicate: one word swapped with the next, dropped or repeated;
- inflection: a verb, noun or auxiliary in another form of its lemma ("The dogs bark" -> "The dogs barking");
- determiner, preposition, auxiliary, complementizer: a function word of that class replaced by another of it,
  dropped, or one inserted;
- argument: a noun phrase after a verb dropped, or one added ("She put the book" / "She slept the book");
- move: a span of one to three words moved elsewhere in the sentence;
- clause: the sentence's two parts swapped around a clause boundary ("that", "because", a comma...), or the
  boundary word dropped.
An operation that cannot apply to a sentence (no determiner, say) falls back to duplicate, and says so in the
operation column, so the counts per operation are what was done.
"""

import numpy as np
import pandas as pd

LEGACY_OPERATIONS = ("swap", "drop", "duplicate")
FUNCTION_WORDS = {
    "determiner": (
        "the",
        "a",
        "an",
        "this",
        "that",
        "these",
        "those",
        "some",
        "every",
        "each",
        "any",
        "no",
        "much",
        "many",
        "all",
        "both",
        "either",
        "neither",
        "several",
    ),
    "preposition": (
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "by",
        "from",
        "about",
        "into",
        "onto",
        "under",
        "over",
        "after",
        "before",
        "through",
        "between",
        "against",
        "without",
    ),
    "auxiliary": (
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "has",
        "have",
        "had",
        "do",
        "does",
        "did",
        "will",
        "would",
        "can",
        "could",
        "shall",
        "should",
        "may",
        "might",
        "must",
    ),
    "complementizer": (
        "that",
        "whether",
        "if",
        "for",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "why",
        "how",
    ),
}
OPERATIONS = (*LEGACY_OPERATIONS, "inflection", *FUNCTION_WORDS, "argument", "move", "clause")
BOUNDARIES = ("that", "because", "and", "but", "which", "who", "when", "if", "whether", "although", "while", "so")
PUNCTUATION = ".,;:!?\"'"
INFLECTED = ("VERB", "NOUN", "AUX")
NOUN_PHRASES = ("the book", "it", "him", "a letter", "the man", "them", "some water")


def split_word(word: str) -> tuple[str, str, str]:
    """'"Hello,' -> ('"', 'Hello', ','): punctuation stays where it was when the core changes."""
    core = word.strip(PUNCTUATION)
    if not core:
        return word, "", ""
    start = word.index(core)
    return word[:start], core, word[start + len(core) :]


def recased(form: str, like: str) -> str:
    return form[:1].upper() + form[1:] if like[:1].isupper() else form


def lemmas(word: str) -> list[str]:
    """Its lemmas as a verb, noun or auxiliary: "dogs," -> ["dog"] (lemminflect's tables, no tagger)."""
    import lemminflect

    found = lemminflect.getAllLemmas(split_word(word)[1].lower())
    return sorted({lemma for pos in INFLECTED if pos in found for lemma in found[pos]})


def lemma_forms(core: str) -> list[str]:
    """The other forms of `core`'s lemmas as a verb, noun or auxiliary."""
    import lemminflect

    forms = set()
    for pos, found in lemminflect.getAllLemmas(core.lower()).items():
        if pos in INFLECTED:
            for lemma in found:
                forms.update(
                    f for inflected in lemminflect.getAllInflections(lemma, upos=pos).values() for f in inflected
                )
    forms.discard(core.lower())
    return sorted(forms)


def is_verb(core: str) -> bool:
    import lemminflect

    return "VERB" in lemminflect.getAllLemmas(core.lower())


def pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def legacy(words: list[str], operation: str, rng: np.random.Generator) -> list[str]:
    if operation == "swap" and len(words) >= 2:
        i = int(rng.integers(len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    elif operation == "drop" and len(words) >= 2:
        del words[int(rng.integers(len(words)))]
    else:  # duplicate, and the fallback for one-word sentences
        i = int(rng.integers(len(words)))
        words.insert(i, words[i])
    return words


def inflection(words: list[str], rng: np.random.Generator) -> list[str] | None:
    candidates = [(i, forms) for i, word in enumerate(words) if (forms := lemma_forms(split_word(word)[1]))]
    if not candidates:
        return None
    i, forms = pick(rng, candidates)
    lead, core, trail = split_word(words[i])
    words[i] = lead + recased(pick(rng, forms), core) + trail
    return words


def function_word(words: list[str], kind: str, rng: np.random.Generator) -> list[str] | None:
    """Replace, drop or insert one word of FUNCTION_WORDS[kind]."""
    vocabulary = FUNCTION_WORDS[kind]
    found = [i for i, word in enumerate(words) if split_word(word)[1].lower() in vocabulary]
    action = int(rng.integers(3)) if found else 2
    if action == 2:  # insert one before a random word
        i = int(rng.integers(len(words)))
        word = pick(rng, list(vocabulary))
        if i == 0:
            lead, core, trail = split_word(words[0])
            words[0] = lead + core[:1].lower() + core[1:] + trail if not core.startswith("I") else words[0]
            word = recased(word, "X")
        words.insert(i, word)
        return words
    i = pick(rng, found)
    lead, core, trail = split_word(words[i])
    if action == 0:
        others = [w for w in vocabulary if w != core.lower()]
        words[i] = lead + recased(pick(rng, others), core) + trail
    elif len(words) >= 2:
        del words[i]
    else:
        return None
    return words


def argument(words: list[str], rng: np.random.Generator) -> list[str] | None:
    verbs = [i for i, word in enumerate(words[:-1]) if is_verb(split_word(word)[1])]
    if not verbs:
        return None
    i = pick(rng, verbs)
    after = [split_word(word)[1].lower() for word in words[i + 1 : i + 4]]
    if after and after[0] in FUNCTION_WORDS["determiner"] + ("him", "her", "it", "them", "me", "us"):
        end = i + 2 if after[0] not in FUNCTION_WORDS["determiner"] else i + min(3, len(words) - i)
        trail = split_word(words[end - 1])[2]
        del words[i + 1 : end]
        words[i] = words[i] + trail if trail and not split_word(words[i])[2] else words[i]
        return words
    lead, core, trail = split_word(words[i])
    words[i] = lead + core
    words.insert(i + 1, pick(rng, list(NOUN_PHRASES)) + trail)
    return words


def move(words: list[str], rng: np.random.Generator) -> list[str] | None:
    if len(words) < 3:
        return None
    length = int(rng.integers(1, min(3, len(words) - 1) + 1))
    start = int(rng.integers(len(words) - length + 1))
    span, rest = words[start : start + length], words[:start] + words[start + length :]
    places = [p for p in range(len(rest) + 1) if p != start]
    at = pick(rng, places)
    return rest[:at] + span + rest[at:]


def clause(words: list[str], rng: np.random.Generator) -> list[str] | None:
    bounds = [i for i, word in enumerate(words) if 0 < i < len(words) - 1 and split_word(word)[1].lower() in BOUNDARIES]
    bounds += [i + 1 for i, word in enumerate(words[:-2]) if word.endswith(",")]
    if not bounds:
        return None
    i = pick(rng, sorted(set(bounds)))
    if int(rng.integers(2)) == 0 and split_word(words[i])[1].lower() in BOUNDARIES:
        del words[i]
        return words
    return swap_parts(words[:i], words[i:])


def swap_parts(first: list[str], second: list[str]) -> list[str]:
    """'A b, c d.' -> 'C d a b.': the sentence's case and final punctuation stay at its ends."""
    final = second[-1][len(second[-1].rstrip(".!?")) :]
    second[-1], first[-1] = second[-1][: len(second[-1]) - len(final)], first[-1].rstrip(",;:")
    if first[0] != "I" and not first[0].startswith("I'"):
        first[0] = first[0][:1].lower() + first[0][1:]
    second[0] = recased(second[0], "X")
    return [*second, *first[:-1], first[-1] + final]


def perturb(words: list[str], operation: str, rng: np.random.Generator) -> tuple[str, list[str]]:
    """(the operation done, the perturbed words): `operation`, or duplicate where it cannot apply."""
    words = list(words)
    if operation in LEGACY_OPERATIONS:
        return operation, legacy(words, operation, rng)
    if operation == "inflection":
        changed = inflection(words, rng)
    elif operation in FUNCTION_WORDS:
        changed = function_word(words, operation, rng)
    else:
        changed = {"argument": argument, "move": move, "clause": clause}[operation](words, rng)
    return (operation, changed) if changed is not None else ("duplicate", legacy(list(words), "duplicate", rng))


def perturbations(frame: pd.DataFrame, copies: int, seed: int, operations=LEGACY_OPERATIONS) -> pd.DataFrame:
    """`copies` perturbed versions of each row's sentence, each different from it: columns source_idx, copy (0 to
    copies - 1), operation (the one done), sentence. The same rows, copies, seed and operations give the same
    sentences; the default operations draw those of before the richer ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for idx, sentence in zip(frame["idx"], frame["sentence"], strict=True):
        words = sentence.split()
        if not words:
            continue
        for copy in range(copies):
            operation = operations[int(rng.integers(len(operations)))] if len(words) >= 2 else "duplicate"
            done, changed = perturb(words, operation, rng)
            if changed == words:  # e.g. swapped two equal words: duplicating always changes the sentence
                done, changed = perturb(words, "duplicate", rng)
            rows.append((int(idx), copy, done, " ".join(changed)))
    return pd.DataFrame(rows, columns=["source_idx", "copy", "operation", "sentence"])


def by_operation(operations: pd.Series, logits: np.ndarray) -> dict[str, dict]:
    """Per operation done: how many copies, and the share the teacher calls unacceptable (its logit is the larger)."""
    unacceptable = pd.Series(logits[:, 0] > logits[:, 1], index=operations.index)
    grouped = unacceptable.groupby(operations.to_numpy())
    return {
        name: {"copies": int(len(calls)), "unacceptable_share": round(float(calls.mean()), 4)}
        for name, calls in grouped
    }
