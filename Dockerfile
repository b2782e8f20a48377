# One image for the API, the worker and the one-shot migration (docker-compose.yml picks the command).
FROM python:3.11-slim
WORKDIR /srv/meshfoundry
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libegl1 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md alembic.ini ./
COPY app app
COPY billing billing
COPY inference inference
COPY migrations migrations
RUN pip install --no-cache-dir . && python -m inference.bundled_models
ENV APP_ENV=production HOST=0.0.0.0
EXPOSE 8000
CMD ["meshfoundry", "api"]
