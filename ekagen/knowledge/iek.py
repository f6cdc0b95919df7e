"""Instance-level Expert Knowledge (IEK): diagnosed labels -> token ids of expert reports.

Training, evaluation and the CLI all turn a diagnosis (14 predicted 0/1 labels) into the token
sequence of RKS reports that the decoder fuses. The authors' code looked the 14-bit tuple up in
a dict and raised ``KeyError`` for any combination unseen in training; :class:`KnowledgeBase`
always answers, by the rule documented on :meth:`KnowledgeBase.lookup`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ekagen.config import IEK_RULES
from ekagen.data.vocab import Vocabulary
from ekagen.knowledge.pks import key_bits
from ekagen.observations import NUM_OBSERVATIONS, OBSERVATIONS

NO_FINDING = OBSERVATIONS.index("No Finding")


@dataclass(frozen=True)
class IEKMatch:
    """How one row's knowledge was chosen (for galleries and debugging).

    ``rule``: ``"exact"``, ``"nearest"``, ``"join"``, ``"nearest_unbounded"`` or ``"empty"``.
    ``key``: the combination key used (exact/nearest), or the joined observation names separated
    by ``"+"`` (join), or ``""`` (empty). ``hamming``: distance to the key for combination rules.
    ``report_ids``: the RKS reports whose tokens were used, in order.
    """

    rule: str
    key: str
    hamming: int | None
    report_ids: tuple[str, ...]


class KnowledgeBase:
    """The rank-0 RKS reports, indexed for batched IEK lookup (see :meth:`lookup`)."""

    def __init__(
        self,
        combo_keys: list[str],
        combo_support: list[int],
        combo_tokens: list[list[int]],
        combo_report_ids: list[str],
        observation_tokens: dict[str, list[int]],
        observation_report_ids: dict[str, str],
        max_len: int,
        max_hamming: int | None = None,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        if max_len < 2:
            raise ValueError(f"max_len must leave room for bos and eos, got {max_len}")
        if max_hamming is not None and max_hamming < 0:
            raise ValueError(f"max_hamming must be None or >= 0, got {max_hamming}")
        self.max_len, self.max_hamming = int(max_len), max_hamming
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        # Sorted once by (support desc, key asc): argmin over Hamming distances then returns
        # the first minimum, which is exactly the documented tie-break.
        order = sorted(range(len(combo_keys)), key=lambda i: (-combo_support[i], combo_keys[i]))
        self.combo_keys = [combo_keys[i] for i in order]
        self.combo_support = np.asarray([combo_support[i] for i in order], dtype=np.int64)
        self.combo_report_ids = [combo_report_ids[i] for i in order]
        self.combo_bits = (
            np.stack([key_bits(k) for k in self.combo_keys]).astype(np.int32)
            if order else np.zeros((0, NUM_OBSERVATIONS), dtype=np.int32)
        )
        self._combo_matrix = np.stack(
            [self._pack([self._content(combo_tokens[i])]) for i in order]
        ) if order else np.zeros((0, self.max_len), dtype=np.int64)
        self.observation_content = {
            name: self._content(tokens) for name, tokens in observation_tokens.items()
        }
        self.observation_report_ids = dict(observation_report_ids)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_rks(
        cls,
        rks: pd.DataFrame,
        vocab_or_max_len: Vocabulary | int,
        max_hamming: int | None = None,
    ) -> KnowledgeBase:
        """Build from the RKS table (e.g. read back from ``rks.parquet``).

        Uses rank-0 rows only: combination rows for rules (a)/(b), and for each observation
        its sub-centre 0 (the largest) for rule (c). ``vocab_or_max_len`` gives the output
        length (a :class:`Vocabulary`'s ``max_length`` and special ids, or an int with ids
        pad 0, bos 1, eos 2).
        """
        if isinstance(vocab_or_max_len, Vocabulary):
            v = vocab_or_max_len
            max_len, ids = v.max_length, {"pad_id": v.pad_id, "bos_id": v.bos_id,
                                          "eos_id": v.eos_id}
        else:
            max_len, ids = int(vocab_or_max_len), {}
        top = rks[rks["rank"] == 0] if len(rks) else rks
        combos = top[top["level"] == "combination"] if len(top) else top
        obs = top[(top["level"] == "observation") & (top["sub"] == 0)] if len(top) else top
        return cls(
            combo_keys=[str(k) for k in combos.get("key", [])],
            combo_support=[int(s) for s in combos.get("support", [])],
            combo_tokens=[list(map(int, t)) for t in combos.get("token_ids", [])],
            combo_report_ids=[str(r) for r in combos.get("report_id", [])],
            observation_tokens={str(o): list(map(int, t)) for o, t in
                                zip(obs.get("observation", []), obs.get("token_ids", []),
                                    strict=True)},
            observation_report_ids={str(o): str(r) for o, r in
                                    zip(obs.get("observation", []), obs.get("report_id", []),
                                        strict=True)},
            max_len=max_len,
            max_hamming=max_hamming,
            **ids,
        )

    def __len__(self) -> int:
        return len(self.combo_keys) + len(self.observation_content)

    # -- token helpers -------------------------------------------------------------------
    def _content(self, tokens: list[int]) -> list[int]:
        """Tokens without bos, eos (and anything after it) or padding."""
        out = []
        for t in tokens:
            if t == self.eos_id:
                break
            if t not in (self.bos_id, self.pad_id):
                out.append(int(t))
        return out

    def _pack(self, contents: list[list[int]]) -> np.ndarray:
        """``[bos, *contents..., eos]`` truncated to ``max_len`` (eos kept), then padded."""
        body = [t for c in contents for t in c][: self.max_len - 2]
        seq = [self.bos_id, *body, self.eos_id]
        out = np.full(self.max_len, self.pad_id, dtype=np.int64)
        out[: len(seq)] = seq
        return out

    # -- lookup ----------------------------------------------------------------------------
    def _positive(self, labels: np.ndarray) -> np.ndarray:
        values = np.asarray(labels)
        if values.ndim != 2 or values.shape[1] != NUM_OBSERVATIONS:
            raise ValueError(f"labels must have shape (B, {NUM_OBSERVATIONS}), got {values.shape}")
        positive = values.astype(np.float64) >= 0.5
        positive[~positive.any(axis=1), NO_FINDING] = True  # rule (d)
        return positive

    def _join_names(self, positive_row: np.ndarray) -> list[str]:
        names = [OBSERVATIONS[j] for j in np.flatnonzero(positive_row)]
        if len(names) > 1:
            names = [n for n in names if n != "No Finding"]
        return [n for n in names if n in self.observation_content]

    def _resolve(
        self, labels: np.ndarray, details: bool
    ) -> tuple[list[IEKMatch], np.ndarray]:
        positive = self._positive(labels)
        batch = len(positive)
        out = np.full((batch, self.max_len), self.pad_id, dtype=np.int64)
        if len(self.combo_keys):
            p = positive.astype(np.int32)
            # Hamming distance to every known key at once: |p| + |k| - 2 p.k
            dist = p.sum(1)[:, None] + self.combo_bits.sum(1)[None, :] - 2 * (p @ self.combo_bits.T)
            best = dist.argmin(axis=1)  # first minimum = largest support, then smallest key
            best_dist = dist[np.arange(batch), best]
            within = best_dist == 0
            if self.max_hamming is None:
                within[:] = True
            else:
                within |= best_dist <= self.max_hamming
        else:
            best = best_dist = np.full(batch, -1)
            within = np.zeros(batch, dtype=bool)
        out[within] = self._combo_matrix[best[within]]

        rules = np.where(best_dist == 0, "exact", "nearest").astype(object)
        joins: dict[int, tuple[str, ...]] = {}
        packed: dict[tuple[str, ...], np.ndarray] = {}
        for i in np.flatnonzero(~within):
            names = tuple(self._join_names(positive[i]))
            if names:
                if names not in packed:
                    packed[names] = self._pack([self.observation_content[n] for n in names])
                out[i], rules[i], joins[i] = packed[names], "join", names
            elif best[i] >= 0:
                out[i], rules[i] = self._combo_matrix[best[i]], "nearest_unbounded"
            else:
                out[i], rules[i] = self._pack([]), "empty"
        if not details:
            return [], out
        matches = []
        for i in range(batch):
            rule, b = str(rules[i]), int(best[i])
            if rule == "join":
                names = joins[i]
                ids = tuple(self.observation_report_ids[n] for n in names)
                matches.append(IEKMatch(rule, "+".join(names), None, ids))
            elif rule == "empty":
                matches.append(IEKMatch(rule, "", None, ()))
            else:
                matches.append(IEKMatch(rule, self.combo_keys[b], int(best_dist[i]),
                                        (self.combo_report_ids[b],)))
        return matches, out

    def lookup(self, labels: np.ndarray) -> np.ndarray:
        """Knowledge token ids for a batch of diagnoses: ``(B, max_len)`` int64, pad-filled.

        ``labels`` is ``(B, 14)`` in OBSERVATIONS order; a value >= 0.5 counts as positive
        (so 0/1 predictions, booleans or probabilities-already-thresholded all work, and -1
        is not positive). The rule, per row:

        (d) A row with no positive is treated as "No Finding" alone, then goes through (a)-(c).

        (a) If the row's 14-bit combination key is a known combination, its rank-0 RKS report.

        (b) Otherwise the known combination nearest in Hamming distance, ties broken by the
            larger support, then by the smaller key string; used only when the distance is at
            most ``max_hamming`` (``None``: no limit, so (b) always applies when any
            combination is known).

        (c) Otherwise the rank-0 RKS reports (sub-centre 0) of the row's positive observations
            in OBSERVATIONS order, leaving out No Finding unless it is the only positive and
            leaving out observations the knowledge base lacks, concatenated without their
            bos/eos as ``[bos, report 1, report 2, ..., eos]`` and truncated to ``max_len``
            (eos kept).

        (c') If (c) finds none of those observations, the nearest combination of (b) is used
             whatever its distance.

        (e) If nothing at all is known, ``[bos, eos]``.

        Every rule pads with ``pad_id`` to ``max_len``. Deterministic, vectorised over the
        batch (one integer matrix product against all known keys), never raises ``KeyError``.
        """
        return self._resolve(labels, details=False)[1]

    def most_likely_labels(self, probabilities: np.ndarray) -> np.ndarray:
        """The known label combination each row's class probabilities make most likely.

        ``probabilities`` is ``(B, 14)``, each column the DiagnosisBot's P(observation
        present), read as independent Bernoulli variables; the chosen key k maximises
        sum_j [k_j log p_j + (1 - k_j) log(1 - p_j)] over the combinations the knowledge base
        holds (ties: the larger support, then the smaller key). Returns its 0/1 bits, so
        :meth:`lookup` then finds that combination exactly, with one exception: a chosen
        combination without any positive (reports the labeler found nothing in) reaches
        :meth:`lookup` as a row without positives, which rule (d) reads as No Finding.

        Why: thresholding each class on its own and then taking the nearest known key
        ignores how sure the classifier was. With one uncertain class, the likelihood picks
        the combination whose other bits the classifier is confident about, and it never
        lands on a combination no training report has. The knowledge it selects scored
        higher than the threshold rule's on the default data (README, "IEK lookup by
        likelihood"). A prior weighting keys by their support (``+ w log support``) scored
        lower, so there is none. Without any known combination the probabilities are
        thresholded at 0.5.
        """
        values = np.asarray(probabilities, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != NUM_OBSERVATIONS:
            raise ValueError(f"probabilities must have shape (B, {NUM_OBSERVATIONS}), "
                             f"got {values.shape}")
        if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
            raise ValueError("probabilities must be finite and within [0, 1]")
        if not len(self.combo_keys):
            return (values >= 0.5).astype(np.float32)
        p = np.clip(values, 1e-6, 1 - 1e-6)
        bits = self.combo_bits.astype(np.float64)
        score = np.log(p) @ bits.T + np.log1p(-p) @ (1.0 - bits).T
        best = score.argmax(axis=1)  # first maximum = larger support, then smaller key
        return self.combo_bits[best].astype(np.float32)

    def diagnosis_labels(self, rule: str, predicted: np.ndarray,
                         probabilities: np.ndarray | None) -> np.ndarray:
        """The labels a diagnosis looks its knowledge up by under ``iek.rule``: ``threshold``
        takes the thresholded ``predicted`` labels, ``likelihood`` the
        :meth:`most_likely_labels` of the class ``probabilities``."""
        if rule not in IEK_RULES:
            raise ValueError(f"iek.rule must be one of {IEK_RULES}, got {rule!r}")
        if rule == "threshold":
            return np.asarray(predicted, dtype=np.float32)
        if probabilities is None:
            raise ValueError("iek.rule=likelihood needs the class probabilities")
        return self.most_likely_labels(probabilities)

    def lookup_details(self, labels: np.ndarray) -> list[IEKMatch]:
        """Which rule, key and RKS reports :meth:`lookup` used for each row."""
        return self._resolve(labels, details=True)[0]
