FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml ./
COPY . .
RUN pip install --no-cache-dir -e .
# Run as an unprivileged user. /models exists in the image owned by that user, so the named
# volume mounted there starts with the same owner and the init step can install models into it.
RUN useradd --create-home --uid 10001 stickerloop \
    && mkdir -p /models /app/var \
    && chown -R stickerloop /models /app/var
USER stickerloop
EXPOSE 8000
