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


def load_analyzer(language: str = "en", model: str | None = None) -> Any:
    """A Presidio AnalyzerEngine on an installed spaCy model, else on a blank pipeline.

    Never downloads: Presidio's own default would fetch a missing spaCy model from the
    internet. On the blank pipeline only the pattern recognizers (e-mail, phone, card, IBAN,
    IP, URL, SSN, ...) find anything; names and places need the model.
    """
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
    except ImportError:
        raise DataError("audit.presidio needs Presidio: pip install 'tunesmith[pii]' (and, for "
                        "names and places, a spaCy model such as en_core_web_lg)") from None
    _offline_suffix_list()
    model = model or f"{language}_core_web_lg"
    if spacy.util.is_package(model):
        engine = SpacyNlpEngine(models=[{"lang_code": language, "model_name": model}])
    else:
        logger.warning("spaCy model %s is not installed: Presidio runs its pattern recognizers "
                       "only (no names or places); pip install it to add them", model)
        engine = _blank_engine(SpacyNlpEngine, language)
    engine.load()
    # Presidio logs a warning per recognizer of every other language; none is actionable
    quiet = logging.getLogger("presidio-analyzer")
    level, _ = quiet.level, quiet.setLevel(logging.ERROR)
    try:
        return AnalyzerEngine(nlp_engine=engine, supported_languages=[language])
    finally:
        quiet.setLevel(level)


def _offline_suffix_list() -> None:
    """Make Presidio's e-mail and URL checks use tldextract's bundled public-suffix list.

    tldextract otherwise downloads the list on first use; a data check never goes online.
    """
    try:
        import tldextract.tldextract as tld
    except ImportError:  # newer Presidio versions may not use it
        return
    tld.TLD_EXTRACTOR.suffix_list_urls = ()


def _blank_engine(base: type, language: str) -> Any:
    """A Presidio spaCy engine over spaCy's blank pipeline: tokens, no entities."""

    class BlankSpacy(base):
        def load(self) -> None:
            import spacy

            self.nlp = {language: spacy.blank(language)}

    return BlankSpacy(models=[{"lang_code": language, "model_name": f"blank:{language}"}])
