"""A seed study's own claim, carried in its sweep file (``[claim]``), checked against the runs:
reproduced, contradicted, or not comparable (another budget, or runs that had not finished
learning), with the comparisons that decide it.

```toml
[claim]
source = "seed 000 (Keras notebook, raw loss curves)"
text = "MSE+Adam → CE+Adam → MSE+SGD → CE+SGD"
epochs = 40                                   # the budget the claim was made at (optional)
order = [{ "train.loss" = "mse", "train.optimizer" = "adam" }, ...]   # best first, or:
best = { "model.batch_norm" = true, "train.lr" = 0.001 }
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import ConfigError, Problem

CLAIM_KEYS = ("source", "text", "epochs", "order", "best")
REPRODUCED, CONTRADICTED, NOT_SHOWN, NOT_COMPARABLE = (
    "reproduced",
    "contradicted",
    "not reproduced (the data cannot tell)",
    "not comparable (budget)",
)


@dataclass(frozen=True)
class Claim:
    """What the seed concluded: configurations best first (``order``), or the one it found best."""

    source: str
    text: str
    order: list[dict[str, Any]]
    best: dict[str, Any] | None = None
    epochs: int | None = None


def parse_claim(raw: Any, where: str = "claim") -> Claim:
    """Check a ``[claim]`` table; one ConfigError listing every problem, each naming the key."""
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise ConfigError(Problem(where, raw, "must be a table with text, source and order or best"))
    for key in raw:
        if key not in CLAIM_KEYS:
            problems.append(
                Problem(f"{where}.{key}", raw[key], "is not a claim key; allowed: " + ", ".join(CLAIM_KEYS))
            )
    for key in ("source", "text"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            problems.append(Problem(f"{where}.{key}", raw.get(key), "must be a non-empty string"))
    epochs = raw.get("epochs")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        problems.append(Problem(f"{where}.epochs", epochs, "must be a whole number of epochs ≥ 1"))
    order, best = raw.get("order"), raw.get("best")
    if (order is None) == (best is None):
        problems.append(Problem(where, sorted(raw), "needs exactly one of order (best first) or best"))
    if order is not None and (
        not isinstance(order, list) or len(order) < 2 or not all(_settings(entry) for entry in order)
    ):
        problems.append(
            Problem(
                f"{where}.order",
                order,
                "must list 2 or more tables of settings, best first "
                '(e.g. [{ "train.loss" = "mse" }, { "train.loss" = "cross_entropy" }])',
            )
        )
    if best is not None and not _settings(best):
        problems.append(
            Problem(f"{where}.best", best, 'must be a table of settings (e.g. { "train.lr" = 0.001 })')
        )
    if problems:
        raise ConfigError(problems)
    return Claim(raw["source"].strip(), raw["text"].strip(), list(order or []), best, epochs)


def _settings(entry: Any) -> bool:
    return isinstance(entry, Mapping) and bool(entry) and all(isinstance(k, str) and "." in k for k in entry)


@dataclass(frozen=True)
class ClaimPair:
    """One comparison the claim makes: ``above`` better than ``below``, and what the data say."""

    above: str
    below: str
    text: str  # the difference with its interval
    outcome: str  # "supported", "contradicted" or "not shown"


def claim_verdict(pairs: Sequence[ClaimPair], unfinished: Sequence[str], budget_differs: str | None) -> str:
    """REPRODUCED, CONTRADICTED, NOT_SHOWN or NOT_COMPARABLE from the pairs and the budget."""
    if budget_differs or unfinished:
        return NOT_COMPARABLE
    if any(p.outcome == "contradicted" for p in pairs):
        return CONTRADICTED
    if pairs and all(p.outcome == "supported" for p in pairs):
        return REPRODUCED
    return NOT_SHOWN


def claim_sentence(
    claim: Claim,
    pairs: Sequence[ClaimPair],
    missing: Sequence[str],
    unfinished: Sequence[str],
    budget_differs: str | None,
    metric: str,
) -> str:
    """The claim, its verdict and why."""
    head = f"The seed's claim ({claim.source}): “{claim.text}”."
    if missing:
        return (
            f"{head} Not comparable: these runs have no configuration matching {', '.join(missing)}, "
            "so the claim cannot be checked."
        )
    verdict = claim_verdict(pairs, unfinished, budget_differs)
    why = []
    if budget_differs:
        why.append(budget_differs)
    if unfinished:
        named = "; ".join(unfinished)
        why.append(f"{len(unfinished)} of the configurations it compares had not finished learning ({named})")
    data = [p for p in pairs if p.outcome == "contradicted"] or list(pairs)
    words = {
        "supported": "as claimed",
        "contradicted": "the reverse of the claim",
        "not shown": "cannot be told apart",
    }
    shown = "; ".join(f"{p.above} against {p.below}: {p.text}, {words[p.outcome]}" for p in data)
    at = "At this budget, by " if verdict == NOT_COMPARABLE else "By "
    said = {REPRODUCED: "reproduce it", CONTRADICTED: "contradict it", NOT_SHOWN: "cannot tell"}
    data_say = said[claim_verdict(pairs, [], None)]
    tail = f" {at}{metric}, the data {data_say}: {shown}." if shown else ""
    because = f": {'; '.join(why)}." if why else "."
    return f"{head} {verdict[0].upper()}{verdict[1:]}{because}{tail}"
