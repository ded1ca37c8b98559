FROM python:3.11-slim
WORKDIR /app
# WeasyPrint (the weekly report's PDF) draws text with pango; without it the PDF link answers 503.
RUN apt-get update && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
    && rm -rf /var/lib/apt/lists/*
# The versions `make test` ran with (the lock also holds the demo fleet's and the test tools).
COPY pyproject.toml requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY poolboard ./poolboard
RUN pip install --no-cache-dir --no-deps .
COPY . .
ENV PYTHONUNBUFFERED=1
