"""The API's limits and wiring, from COLA_SERVE_* environment variables (all optional)."""

import os
from dataclasses import dataclass, fields
from pathlib import Path

PREFIX = "COLA_SERVE_"


class SettingsError(ValueError):
    """An environment variable that can't be used."""


@dataclass(frozen=True)
class ServeSettings:
    model_dir: Path = Path("models/onnx")
    variant: str = "auto"            # auto: int8 when the model card marks it servable, else fp32
    threads: int = 0                 # ONNX Runtime intra-op threads per call; 0 = every core
    workers: int = 1                 # predict calls at once, each in its own thread; threads x workers <= cores
    max_sentences: int = 64          # per request
    max_chars: int = 1000            # per sentence; longer ones are rejected, never cut
    max_body_bytes: int = 256 * 1024
    timeout_s: float = 10.0          # per request, queueing included
    batch_wait_ms: float = 5.0       # how long the batcher waits to fill a batch
    max_batch: int = 64              # sentences per ONNX call (one request is never split)
    max_queue: int = 1024            # sentences waiting; beyond this the API answers 503 with Retry-After
    log_text: bool = False           # put sentences in the prediction log (else their sha256 only)
    prediction_log: str = "-"        # "-" = stdout, else a file, rotated
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
            except ValueError:
                raise SettingsError(f"{PREFIX}{field.name.upper()}={raw!r} is not a valid "
                                    f"{kind.__name__}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.variant not in ("auto", "fp32", "int8"):
            raise SettingsError(f"{PREFIX}VARIANT must be auto, fp32 or int8; found {self.variant!r}")
        for name in ("max_sentences", "max_chars", "max_body_bytes", "max_batch", "max_queue", "workers"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{PREFIX}{name.upper()} must be at least 1")
        if self.max_batch < self.max_sentences:
            raise SettingsError(f"{PREFIX}MAX_BATCH must be at least {PREFIX}MAX_SENTENCES")
        if self.timeout_s <= 0 or self.batch_wait_ms < 0:
            raise SettingsError(f"{PREFIX}TIMEOUT_S must be positive and {PREFIX}BATCH_WAIT_MS not negative")


def choose_variant(settings: ServeSettings, card: dict) -> str:
    if settings.variant != "auto":
        return settings.variant
    return "int8" if card.get("int8", {}).get("servable") else "fp32"


def load_served_model(settings: ServeSettings):
    """The Predictor of the variant to serve and its version, `<variant>-<first 12 hex of the file's sha256>`."""
    from acceptability.predictor import VARIANT_FILES, Predictor, read_card

    card = read_card(settings.model_dir)
    variant = choose_variant(settings, card)
    predictor = Predictor.load(settings.model_dir, variant, threads=settings.threads)
    return predictor, f"{variant}-{card['sha256'][VARIANT_FILES[variant]][:12]}"
