# slamon container image. Build: docker build -t slamon .
# Run:   docker run -d --name slamon -p 9115:9115 -e SLAMON_LISTEN=0.0.0.0:9115 \
#          -v slamon-state:/var/lib/slamon \
#          -v "$PWD/slamon.yaml:/etc/slamon/slamon.yaml:ro" slamon
# Reload: docker kill --signal=HUP slamon     Stop: docker stop slamon (SIGTERM)
# See docs/operations.md ("Container").

# -- build: install slamon and its dependencies into a virtualenv -------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/slamon
COPY pyproject.toml README.md ./
COPY slamon ./slamon
# every optional prober and channel: an image is used as it comes
RUN /opt/slamon/bin/pip install --no-cache-dir ".[chain,dns,icmp,grpc,apprise]" \
    && /opt/slamon/bin/slamon --version

# -- runtime: the virtualenv only, no compilers, no pip cache ------------------
FROM python:3.11-slim-bookworm
ENV PATH=/opt/slamon/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STATE_DIRECTORY=/var/lib/slamon \
    SLAMON_HEALTHZ=http://127.0.0.1:9115/healthz
RUN groupadd --system --gid 10001 slamon \
    && useradd --system --uid 10001 --gid slamon --home-dir /var/lib/slamon \
       --no-create-home --shell /usr/sbin/nologin slamon \
    && mkdir -p /var/lib/slamon /etc/slamon \
    && chown slamon:slamon /var/lib/slamon \
    && chmod 0700 /var/lib/slamon
COPY --from=build /opt/slamon /opt/slamon
# an example to start from; mount your own over it
COPY config/single-web.yaml /etc/slamon/slamon.yaml
USER 10001:10001
WORKDIR /var/lib/slamon
# SQLite state (windows, SLA periods, evidence, report journal) survives the container
VOLUME ["/var/lib/slamon"]
# /metrics and the API; slamon listens on loopback until SLAMON_LISTEN (read by the
# example configs) says otherwise, so nothing private is reachable by accident
EXPOSE 9115
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['SLAMON_HEALTHZ'], timeout=4)"]
# exec form: slamon is PID 1 and gets SIGTERM (graceful stop) and SIGHUP (reload) itself
STOPSIGNAL SIGTERM
ENTRYPOINT ["slamon"]
CMD ["run", "-c", "/etc/slamon/slamon.yaml"]
