"""Prediction logs: one JSON line per prediction, with Elastic Common Schema names where they fit, so Filebeat can
ship them to Elasticsearch/Kibana without a custom mapping. Sentences are logged as their sha256 unless asked."""

import hashlib
import json
import logging
import sys
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler

DATASET = "cola.predictions"


def prediction_logger(target: str, max_bytes: int, backups: int) -> logging.Logger:
    """`-` for stdout, else a file path rotated at max_bytes."""
    logger = logging.getLogger(DATASET)
    logger.handlers.clear()
    handler = (
        logging.StreamHandler(sys.stdout)
        if target == "-"
        else RotatingFileHandler(target, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def records(
    sentences: list[str],
    tokens: list[int],
    predictions: list[dict],
    request_id: str,
    model_version: str,
    duration_s: float,
    log_text: bool,
) -> list[dict]:
    """tokens: each sentence's length in tokens, as the model saw it: what the drift baselines measure."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    out = []
    for sentence, count, prediction in zip(sentences, tokens, predictions, strict=True):
        text = {"sha256": hashlib.sha256(sentence.encode("utf-8")).hexdigest(), "tokens": count}
        if log_text:
            text["content"] = sentence
        out.append(
            {
                "@timestamp": now,
                "ecs": {"version": "8.11.0"},
                "event": {"dataset": DATASET, "kind": "event", "category": ["web"], "duration": int(duration_s * 1e9)},
                "http": {"request": {"id": request_id}},
                "service": {"name": "cola-acceptability", "version": model_version},
                "cola": {
                    "sentence": text,
                    "label": prediction["label"],
                    "probabilities": prediction["probabilities"],
                    "confidence": max(prediction["probabilities"].values()),
                },
            }
        )
    return out


def token_lengths(predictor, sentences: list[str]) -> list[int]:
    """Each sentence's tokens, as the predictor will see them (truncated to the model's length): their sum is a
    request's cost, and each is a drift observation, live and in these logs."""
    return [len(encoding.ids) for encoding in predictor.tokenizer.encode_batch(sentences)]


def log_predictions(logger: logging.Logger, *args, **kwargs) -> None:
    """One JSON line per prediction, written in one call per request: the logging machinery (a lock, a record, a
    flush) cost the API more than the lines themselves."""
    logger.info("\n".join(json.dumps(record, separators=(",", ":")) for record in records(*args, **kwargs)))
