"""The request and response bodies. The API validates with them and FastAPI builds the OpenAPI schema from them;
the Lambda handler validates with the same models."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model
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


def not_blank(sentence: str) -> str:
    """The predictor's idea of blank, which the schema's pattern \\S can't say: str.strip also takes control
    characters such as \\x1d for space."""
    if not sentence.strip():
        raise PydanticCustomError("blank", "must contain a non-space character")
    return sentence


def request_model(max_sentences: int, max_chars: int) -> type[BaseModel]:
    """`{"sentences": [...]}` with the configured limits. Unknown fields are rejected; a sentence needs a
    non-space character; longer sentences are refused, not cut."""
    sentence = Annotated[str, StringConstraints(min_length=1, max_length=max_chars, pattern=r"\S"),
                         AfterValidator(not_blank)]
    return create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid", strict=True),
        sentences=(list[sentence], Field(min_length=1, max_length=max_sentences,
                                         description=f"1 to {max_sentences} sentences of 1 to {max_chars} "
                                                     "characters, not blank")))


PLAIN = {"string_pattern_mismatch": "must contain a non-space character",
         "string_unicode": "is not valid Unicode (a lone surrogate escape?)",
         "string_too_long": "is longer than {max_length} characters (sentences are rejected, not cut)"}


def describe(errors: list[dict]) -> str:
    """Pydantic's errors as one line, e.g. `sentences.2: must contain a non-space character`."""
    parts = []
    for item in errors[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        message = PLAIN.get(item.get("type"), item.get("msg", "invalid")).format(**item.get("ctx") or {})
        parts.append(f"{where or 'body'}: {message}")
    return "; ".join(parts)
