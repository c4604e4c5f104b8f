"""The request and response bodies. The API validates with them and FastAPI builds the OpenAPI schema from them;
the Lambda handler validates with the same models."""

import json
import re
import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model
from pydantic_core import PydanticCustomError

Label = Literal["acceptable", "unacceptable"]


class Probabilities(BaseModel):
    acceptable: float = Field(ge=0, le=1)
    unacceptable: float = Field(ge=0, le=1)


class Prediction(BaseModel):
    label: Label
    probabilities: Probabilities


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Prediction]


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls but tab and line breaks
# Letters and symbols that render as nothing: the Hangul fillers and the blank Braille cell.
BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def check_sentence(sentence: str) -> str:
    """What every entry point (POST, GET, Lambda) demands of a sentence, beyond its length: text the model can
    read. Whitespace alone, control characters, and text with no letter, digit, punctuation or symbol (zero-width
    spaces, a BOM, private-use characters, blank glyphs) are refused: the model would still answer, with a confident
    guess."""
    if not sentence.strip():  # str.strip also takes control characters such as \x1d for space
        raise PydanticCustomError("blank", "must contain a non-space character")
    control = CONTROL.search(sentence)
    if control:
        raise PydanticCustomError(
            "control_character", "contains the control character U+{code}", {"code": f"{ord(control.group()):04X}"}
        )
    if not any(unicodedata.category(char)[0] in "LNPS" and char not in BLANK_GLYPHS for char in sentence):
        raise PydanticCustomError(
            "no_text",
            "has no letter, digit, punctuation or symbol (only invisible, blank, format or private-use characters)",
        )
    return sentence


def request_model(max_sentences: int, max_chars: int) -> type[BaseModel]:
    """`{"sentences": [...]}` with the configured limits. Unknown fields are rejected; a sentence needs a
    non-space character and readable text (check_sentence); longer sentences are refused, not cut."""
    sentence = Annotated[
        str, StringConstraints(min_length=1, max_length=max_chars, pattern=r"\S"), AfterValidator(check_sentence)
    ]
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid", strict=True),
        sentences=(
            list[sentence],
            Field(
                min_length=1,
                max_length=max_sentences,
                description=f"1 to {max_sentences} sentences of 1 to {max_chars} characters, not blank",
            ),
        ),
    )


PLAIN = {
    "string_pattern_mismatch": "must contain a non-space character",
    "string_unicode": "is not valid Unicode (a lone surrogate escape?)",
    "string_too_long": "is longer than {max_length} characters (sentences are rejected, not cut)",
}


def describe(errors: list[dict]) -> str:
    """Pydantic's errors as one line, e.g. `sentences.2: must contain a non-space character`."""
    parts = []
    for item in errors[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        message = PLAIN.get(item.get("type"), item.get("msg", "invalid")).format(**item.get("ctx") or {})
        parts.append(f"{where or 'body'}: {message}")
    return "; ".join(parts)


class Refused(Exception):
    """The caller's mistake, answered as {"error": {"type": kind, "message": ...}} with this status."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def sentences_from(payload, model: type[BaseModel], field: str = "sentences") -> list[str]:
    """The sentences of a decoded request, checked by the request model; errors name `field`."""
    try:
        return model.model_validate(payload).sentences
    except ValidationError as err:
        message = describe(err.errors())
        named = message if field == "sentences" else message.replace("sentences.0", field)
        raise Refused(422, "invalid_request", named) from None


def parse_body(raw: bytes, model: type[BaseModel]) -> list[str]:
    """A POST body as every entry point (the API, the Lambda handler) reads it: UTF-8, then JSON as FastAPI would
    parse it (a lone surrogate escape is JSON, and the model's to refuse), then the request model."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Refused(400, "invalid_encoding", f"the body is not valid UTF-8 (byte {err.start})") from None
    try:
        payload = json.loads(text)
    except RecursionError:
        raise Refused(400, "invalid_json", "the body is nested too deeply") from None
    except ValueError:  # JSONDecodeError, and integers too long to convert
        raise Refused(400, "invalid_json", "the body is not valid JSON") from None
    return sentences_from(payload, model)


def parse_query(sentence: str, model: type[BaseModel]) -> list[str]:
    """GET's ?sentence=, with POST's model and checks, so GET accepts nothing POST refuses."""
    return sentences_from({"sentences": [sentence]}, model, field="sentence")
