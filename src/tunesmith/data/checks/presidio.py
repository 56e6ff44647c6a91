"""Optional Presidio PII detection, merged with the built-in detectors.

Presidio's findings are mapped to tunesmith's kinds (EMAIL_ADDRESS -> EMAIL, ...); entity
types with no built-in counterpart (PERSON, LOCATION, ...) keep Presidio's name. Where both
find the same span, the built-in finding wins, since it was confirmed by checksum or pattern.
Presidio's named-entity recognizers need a spaCy model; without one it runs its pattern
recognizers only (see docs/data-audit.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tunesmith.data.checks import sensitive
from tunesmith.errors import DataError

logger = logging.getLogger(__name__)

KIND_OF = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD",
           "IBAN_CODE": "IBAN", "IP_ADDRESS": "IP", "US_SSN": "NATIONAL_ID",
           "UK_NINO": "NATIONAL_ID", "CRYPTO": "SECRET"}
MIN_SCORE = 0.5


def kind_of(entity_type: str) -> str:
    """tunesmith's kind for a Presidio entity type."""
    return KIND_OF.get(entity_type, entity_type)


def presidio_findings(analyzer: Any, text: str, language: str = "en",
                      min_score: float = MIN_SCORE) -> list[sensitive.Finding]:
    """Presidio's results as findings (entity, start, end), weak ones left out."""
    results = analyzer.analyze(text=text, language=language)
    return [sensitive.Finding(kind_of(r.entity_type), r.start, r.end)
            for r in results if r.score >= min_score]


def merge_findings(built_in: list[sensitive.Finding],
                   extra: list[sensitive.Finding]) -> list[sensitive.Finding]:
    """Built-in findings plus the extra ones that overlap none of them, in text order."""
    taken = list(built_in)
    for finding in sorted(extra, key=lambda f: (f.start, -f.end)):
        if not any(finding.start < t.end and t.start < finding.end for t in taken):
            taken.append(finding)
    return sorted(taken, key=lambda f: f.start)


def merged_finder(analyzer: Any, language: str = "en"
                  ) -> Callable[[str], list[sensitive.Finding]]:
    """A finder running the built-in detectors and Presidio on each text."""

    def find(text: str) -> list[sensitive.Finding]:
        return merge_findings(sensitive.find_sensitive(text),
                              presidio_findings(analyzer, text, language))

    return find


def load_analyzer(language: str = "en") -> Any:
    """A Presidio AnalyzerEngine: with the installed spaCy model, else pattern recognizers only."""
    try:
        from presidio_analyzer import AnalyzerEngine
    except ImportError:
        raise DataError("audit.presidio needs Presidio: pip install 'tunesmith[pii]' (and, for "
                        "names and places, a spaCy model such as en_core_web_lg)") from None
    try:
        return AnalyzerEngine(supported_languages=[language])
    except (OSError, ValueError) as err:  # no spaCy model installed for the language
        logger.warning("Presidio runs without named-entity recognition (%s); install a spaCy "
                       "model to find names and places", str(err).splitlines()[0][:160])
        return _pattern_only_analyzer(language)


def _pattern_only_analyzer(language: str) -> Any:
    """An AnalyzerEngine over a blank spaCy pipeline: its pattern recognizers still work."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class BlankSpacy(SpacyNlpEngine):
        """spaCy's blank pipeline: tokens but no entities, no downloaded model."""

        def load(self) -> None:
            import spacy

            self.nlp = {language: spacy.blank(language)}

    engine = BlankSpacy(models=[{"lang_code": language, "model_name": "blank"}])
    engine.load()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=[language])
