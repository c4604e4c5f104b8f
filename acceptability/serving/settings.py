"""The API's limits and wiring, from COLA_SERVE_* environment variables (all optional)."""

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

PREFIX = "COLA_SERVE_"


class SettingsError(ValueError):
    """An environment variable that can't be used."""


@dataclass(frozen=True)
class ServeSettings:
    model_dir: Path = Path("models/onnx")
    variant: str = "auto"  # auto: int8 when the card marks it servable and this CPU passes its golden set, else fp32
    threads: int = 0  # ONNX Runtime intra-op threads per call; 0 = every core
    workers: int = 1  # predict calls at once, each in its own thread; threads x workers <= cores
    max_sentences: int = 64  # per request
    max_chars: int = 1000  # per sentence; longer ones are rejected, never cut
    max_body_bytes: int = 256 * 1024
    timeout_s: float = 10.0  # per request, queueing included
    batch_wait_ms: float = 1.0  # how long the batcher waits to fill a batch; int8 (a call a sentence) gains little
    max_batch: int = 64  # sentences per predict call, at most 256
    max_call_tokens: int = 1024  # tokens per predict call: a larger request takes several calls, and other
    # requests run between them, so a small one never waits for a whole large one
    max_queue_tokens: int = 0  # tokens waiting; beyond this 503 + Retry-After. 0: what the engine answers
    # within timeout_s, measured at start-up
    head_timeout_s: float = 5.0  # a request line and headers must arrive whole within this (server.py)
    keep_alive_s: int = 5  # idle keep-alive connections close after this
    max_connections: int = 200  # open connections; one more is closed at once
    max_header_bytes: int = 16384  # request line and headers; more is a 431
    docs: bool = False  # /docs (Swagger UI loads its JavaScript from a CDN, so it is off by default)
    log_text: bool = False  # put sentences in the prediction log (else their sha256 only)
    prediction_log: str = "-"  # "-" = stdout, else a file, rotated
    log_max_bytes: int = 50 * 1024 * 1024
    log_backups: int = 5

    @classmethod
    def from_env(cls, env: dict | None = None) -> "ServeSettings":
        env = os.environ if env is None else env
        values = {}
        for field in fields(cls):
            raw = env.get(PREFIX + field.name.upper())
            if raw is None:
                continue
            kind = type(field.default)
            try:
                if kind is bool:
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(raw)
                    values[field.name] = raw.lower() in ("1", "true", "yes")
                else:
                    values[field.name] = kind(raw)
                    if kind is float and not math.isfinite(values[field.name]):
                        raise ValueError(raw)
            except ValueError:
                raise SettingsError(f"{PREFIX}{field.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.variant not in ("auto", "fp32", "int8"):
            raise SettingsError(f"{PREFIX}VARIANT must be auto, fp32 or int8; found {self.variant!r}")
        from acceptability.inference.predictor import MAX_BATCH

        for name in (
            "max_sentences",
            "max_chars",
            "max_body_bytes",
            "max_batch",
            "max_call_tokens",
            "workers",
            "keep_alive_s",
            "max_connections",
            "max_header_bytes",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{PREFIX}{name.upper()} must be at least 1")
        if self.max_batch > MAX_BATCH:
            raise SettingsError(f"{PREFIX}MAX_BATCH must be at most {MAX_BATCH}, what the predictor takes in one call")
        if self.max_queue_tokens < 0:
            raise SettingsError(f"{PREFIX}MAX_QUEUE_TOKENS must be 0 (measured) or positive")
        if not (self.timeout_s > 0 and self.head_timeout_s > 0 and self.batch_wait_ms >= 0):
            raise SettingsError(
                f"{PREFIX}TIMEOUT_S and {PREFIX}HEAD_TIMEOUT_S must be positive and {PREFIX}BATCH_WAIT_MS not negative"
            )


def load_served_model(settings: ServeSettings):
    """The Predictor to serve, its version (`<variant>-<first 12 hex of the file's sha256>`) and the Choice that says
    why: int8 only where this CPU reproduces the card's golden set (acceptability/inference/selfcheck.py)."""
    from acceptability.inference.card import VARIANT_FILES, read_card
    from acceptability.inference.selfcheck import choose

    card = read_card(settings.model_dir)
    predictor, choice = choose(settings.model_dir, card, settings.variant, settings.threads)
    return predictor, f"{choice.variant}-{card['sha256'][VARIANT_FILES[choice.variant]][:12]}", choice
