# The Accord API image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements/ requirements/
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements/regorus.txt
COPY pyproject.toml README.md alembic.ini ./
COPY service/ service/
COPY migrations/ migrations/
COPY policies/ policies/
RUN pip install --no-cache-dir . && useradd --system --uid 10001 accord
USER accord
EXPOSE 8000
CMD ["accord", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
