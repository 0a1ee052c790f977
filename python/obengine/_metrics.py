"""The recorder's metrics endpoint: ``/metrics`` in Prometheus' text format (prometheus_client)
and ``/healthz`` (200 while frames arrive, 503 when none came for ``stale_after_s``), served by
the standard library's WSGI server in a daemon thread. The figures are read from the recorder
at each scrape; nothing is copied between threads but a few integers."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from obengine.recorder import Health

__all__ = ["MetricsServer"]


class _Collector(Collector):
    def __init__(self, health: Callable[[], Health]) -> None:
        self._health = health

    def collect(self) -> Iterator[Any]:
        h = self._health()
        counters = {
            "frames": ("messages received and written", h.frames),
            "raw_bytes": ("payload bytes recorded", h.raw_bytes),
            "disk_bytes": ("bytes written to segment files", h.disk_bytes),
            "segments": ("segment files started", h.segments),
            "gaps": ("desyncs by a CS gap or a crossed book", h.gaps),
            "resyncs": ("re-joins sent after a desync or a timeout", h.resyncs),
            "reconnects": ("connections opened after the first", h.reconnects),
            "malformed": ("malformed frames", h.malformed),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"obengine_record_{name}", doc, value=value)
        yield GaugeMetricFamily("obengine_record_pairs", "pairs recorded", value=h.pairs)
        yield GaugeMetricFamily("obengine_record_pairs_synced", "pairs whose book is synced", value=h.synced)
        yield GaugeMetricFamily("obengine_record_compression_ratio", "raw bytes / bytes on disk", value=h.ratio)
        yield GaugeMetricFamily("obengine_record_uptime_seconds", "seconds since the recorder started", value=h.uptime_s)
        yield GaugeMetricFamily(
            "obengine_record_seconds_since_last_frame", "seconds since the last message (-1: none yet)",
            value=-1.0 if h.since_last_frame_s is None else h.since_last_frame_s,
        )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base's name)
        pass                                    # scrapes are not worth a log line each


class MetricsServer:
    """Serve the figures of ``health()`` on ``host:port`` until :meth:`close`."""

    def __init__(self, host: str, port: int, health: Callable[[], Health], *, stale_after_s: float = 60.0) -> None:
        registry = CollectorRegistry()
        registry.register(_Collector(health))
        metrics = make_wsgi_app(registry)
        self._health = health
        self.stale_after_s = stale_after_s

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                status, body = self._healthz()
                start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
                return [body.encode()]
            return metrics(environ, start_response)  # type: ignore[no-any-return]

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="obengine-metrics", daemon=True)
        self._thread.start()

    def _healthz(self) -> tuple[str, str]:
        h = self._health()
        since = h.since_last_frame_s
        if since is None:
            if h.uptime_s < self.stale_after_s:
                return "200 OK", "starting: no frame yet\n"
            return "503 Service Unavailable", f"no frame in {h.uptime_s:.0f} s since the start\n"
        if since >= self.stale_after_s:
            return "503 Service Unavailable", f"no frame for {since:.0f} s\n"
        return "200 OK", f"ok: last frame {since:.1f} s ago, {h.synced}/{h.pairs} synced\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
