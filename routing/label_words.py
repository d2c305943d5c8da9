"""Which words each trained intent is written with: a lexical out-of-scope signal.

A message of an intent nobody trained is often routed to a *sibling* intent that customers
word almost the same way ("check my invoice" to ``get_invoice``, "track my refund" to
``get_refund``): the sentence embedding, the SVM and the neighbours all find it close to that
sibling. What gives it away is a content word the sibling's training rows never use
("check", "track"). ``LabelWords`` keeps, per label, the set of content words of its
training rows (stop words and greetings dropped), and reads two figures per text:

- **label cover**: the share of the text's content words that occur in the training rows of
  the label the SVM picked (in-scope texts: ~0.96 on Bitext; texts of untrained intents:
  ~0.5);
- **unknown share**: the share of its content words that occur in fewer than two training
  rows at all.

Both go to the out-of-scope detector beside the embedding's signals (``routing.classifier``,
``Signals.lexical``); it costs a regular expression and a few set look-ups per text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_WORD = re.compile(r"[^\W_]+")
# scikit-learn's English stop words and the greetings that open a message whatever it asks
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | {
    "hi",
    "hello",
    "hey",
    "please",
    "pls",
    "thanks",
    "thank",
}
KNOWN_MIN_ROWS = 2  # a word in fewer training rows than this counts as unknown


def content_words(text: str) -> set[str]:
    """The distinct lower-cased words of ``text`` that carry meaning (two letters or more,
    not a stop word or a greeting)."""
    return {w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS}


class LabelWords:
    """Per label, the content words of its training rows; per word, how many rows use it."""

    def __init__(self, texts: Sequence[str], y: Sequence[int] | np.ndarray, n_labels: int):
        self.by_label: list[frozenset[str]] = []
        words_of: list[set[str]] = [set() for _ in range(n_labels)]
        rows: Counter[str] = Counter()
        for text, label in zip(texts, y, strict=True):
            words = content_words(text)
            words_of[int(label)] |= words
            rows.update(words)
        self.by_label = [frozenset(w) for w in words_of]
        self.known = frozenset(w for w, n in rows.items() if n >= KNOWN_MIN_ROWS)

    def features(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> np.ndarray:
        """(texts, 2): each text's label cover (for the label given beside it) and unknown
        share. A text with no content word counts as fully covered and known."""
        out = np.zeros((len(texts), 2))
        for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
            words = content_words(text)
            if not words:
                out[i] = (1.0, 0.0)
                continue
            vocabulary = self.by_label[int(label)]
            out[i, 0] = sum(w in vocabulary for w in words) / len(words)
            out[i, 1] = sum(w not in self.known for w in words) / len(words)
        return out
