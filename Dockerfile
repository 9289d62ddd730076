# The loyalty gateway: one image for every process (`serve`, `worker`, `migrate`, `verify` ...).
#   docker build -t loyalty-gateway .
#   docker run --rm -e LOYALTY_SECRET=... -e DATABASE_URL=postgres://... -p 8080:8080 loyalty-gateway
# Settings come from the environment (see docs/operations.md). compose.yaml runs the whole stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs; tests, bench and docs stay out of the image.
COPY pyproject.toml README.md LICENSE /src/
COPY gateway /src/gateway
COPY adapters /src/adapters
COPY loyalty_core /src/loyalty_core
RUN pip install /src && rm -rf /src

# A non-root user whose home is the working directory: without DATABASE_URL the default
# SQLite file lands in ./var/ there (use PostgreSQL for anything but a try-out).
RUN useradd --create-home --home-dir /home/loyalty --shell /usr/sbin/nologin --uid 10001 loyalty
USER loyalty
WORKDIR /home/loyalty

EXPOSE 8080

# No curl in the slim image: python's urllib asks /healthz (the process is up).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["loyalty"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
