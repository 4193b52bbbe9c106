"""The app as gunicorn serves it in `make bench`: the real ``create_app()`` plus one hello-world
JSON route, registered on the same app so it runs through the same hooks (rate limiter, locale,
security headers, session interface) as every API route. Bench only: the production ``wsgi.py``
has no such route.

Settings come from the environment (DATABASE_URL, REDIS_URL, SECRET_KEY, MORALBANK_ENV) like
``wsgi.py``. The one override: the per-clerk code-lookup limit (``CODE_LOOKUP_LIMIT``, 60 a
minute in production) is raised to ``BENCH_CODE_LOOKUP_LIMIT`` so the redemption load measures
throughput, not the limiter's 429s. The limiter itself stays on (memory storage on SQLite,
Redis with REDIS_URL), so its cost is part of the figure.
"""
from __future__ import annotations

import gc
import os

from flask import jsonify

from bench.server import HELLO_PATH
from moralbank import create_app


def create_bench_app():
    app = create_app({"CODE_LOOKUP_LIMIT": os.environ.get("BENCH_CODE_LOOKUP_LIMIT", "1000000 per minute")})

    @app.get(HELLO_PATH)
    def bench_hello():
        return jsonify({"hello": "world"})

    return app


app = create_bench_app()
gc.freeze()  # as wsgi.py does
