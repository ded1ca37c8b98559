FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml ./
COPY poolboard ./poolboard
RUN pip install --no-cache-dir .
COPY . .
ENV PYTHONUNBUFFERED=1
