"""GET /: a page to try the API in a browser. One static file (serving/static/try.html): no CDN, no build step. It
posts to /v1/predict and shows each label and its probabilities, or the API's own error message.

Its Content-Security-Policy allows only that file's own script and style (by sha256) and requests to this origin.
"""

import base64
import hashlib
import re
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

PAGE = files("acceptability.serving").joinpath("static/try.html")


def inline_hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'" for block in blocks
    )


def add_page(app: FastAPI) -> None:
    html = PAGE.read_text(encoding="utf-8")
    policy = (
        f"default-src 'none'; script-src {inline_hashes(html, 'script')}; style-src {inline_hashes(html, 'style')}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    headers = {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff"}

    @app.get("/", include_in_schema=False)
    async def try_it() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)
