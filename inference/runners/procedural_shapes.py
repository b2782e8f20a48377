"""Prompt words + a seeded generator -> a shape family and its signed-distance composition.

The first prompt word naming a known family picks its template (chair, table, car, tree, house, robot,
mushroom, sword, cup/mug, creature); anything else gets a creature or a totem-like sculpture, chosen by
the seeded generator. Templates draw their proportions and optional parts from the same generator, so the
same prompt and seed always give the same object and other seeds give visibly different variants.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from inference.runners import procedural_figures as figures
from inference.runners import procedural_objects as objects
from inference.runners.sdf import Composition

Builder = Callable[[Composition, np.random.Generator, set[str]], None]

# Vocabularies are written as space-separated words to keep the table compact.
_VOCAB = {
    "chair": "chair stool seat armchair throne bench",
    "table": "table desk",
    "car": "car truck van vehicle automobile jeep bus supercar",
    "tree": "tree oak pine fir plant bush spruce",
    "house": "house hut cottage cabin building home shed barn",
    "robot": "robot mech android droid cyborg automaton",
    "mushroom": "mushroom toadstool fungus shroom",
    "sword": "sword blade dagger katana sabre saber",
    "cup": "cup mug teacup tankard",
    "creature": "cat dog fox bear horse pig cow frog bunny rabbit dinosaur lion wolf mouse bird duck penguin "
    "owl dragon monster creature animal alien goblin puppy kitten chicken sheep goat deer elephant tiger "
    "character critter",
}
_BUILDERS: dict[str, Builder] = {
    "chair": objects.chair,
    "table": objects.table,
    "car": objects.car,
    "tree": figures.tree,
    "house": objects.house,
    "robot": figures.robot,
    "mushroom": figures.mushroom,
    "sword": objects.sword,
    "cup": objects.cup,
    "creature": figures.creature,
}
FAMILIES: dict[str, tuple[Builder, frozenset[str]]] = {
    name: (_BUILDERS[name], frozenset(words.split())) for name, words in _VOCAB.items()
}


def _stem(word: str) -> str:
    # Plural prompts ("two chairs") should find the singular family.
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def choose_family(words: list[str], rng: np.random.Generator) -> str:
    """The first prompt word that names a family wins; otherwise the seeded generator picks a fallback."""
    for word in words:
        for name, (_, vocab) in FAMILIES.items():
            if word in vocab or _stem(word) in vocab:
                return name
    return "creature" if rng.random() < 0.5 else "sculpture"


def build(words: list[str], rng: np.random.Generator, symmetric: bool) -> tuple[str, Composition]:
    """Compose the object for `words` (lower-case prompt words) from `rng`."""
    family = choose_family(words, rng)
    comp = Composition(jitter=None if symmetric else np.random.default_rng(rng.integers(1 << 32)))
    builder = objects.sculpture if family == "sculpture" else FAMILIES[family][0]
    builder(comp, rng, {_stem(w) for w in words} | set(words))
    return family, comp
