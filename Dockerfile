FROM python:3.11-slim
WORKDIR /app
# The versions `make test` ran with (the lock also holds the demo fleet's and the test tools).
COPY pyproject.toml requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY poolboard ./poolboard
RUN pip install --no-cache-dir --no-deps .
COPY . .
ENV PYTHONUNBUFFERED=1
