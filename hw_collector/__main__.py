"""``python -m hw_collector``: flags and environment into CollectorSettings, then serve."""

from __future__ import annotations


from hw_collector.app import create_app
from hw_collector.config import CollectorSettings
from hw_collector.sampler import Sampler, default_sources
from ollama_otel_stack.service import add_flag, configure_logging, serve, service_parser
from ollama_otel_stack.telemetry import setup_telemetry

DEFAULTS = CollectorSettings()


def settings_from(argv: list[str] | None = None) -> CollectorSettings:
    parser = service_parser("hw-collector", "Hardware and Ollama-residency gauges for Prometheus and OTLP.", "HW_COLLECTOR", DEFAULTS.host, DEFAULTS.port)
    add_flag(parser, "--ollama", "OLLAMA_UPSTREAM", DEFAULTS.ollama, str, "Ollama's base URL, for /api/ps")
    add_flag(parser, "--interval", "HW_COLLECTOR_INTERVAL", DEFAULTS.interval_s, float, "seconds between samples")
    add_flag(parser, "--sysfs-root", "HW_COLLECTOR_SYSFS_ROOT", DEFAULTS.sysfs_root, str, "where drm/ and powercap/ are found")
    add_flag(parser, "--ollama-log", "HW_COLLECTOR_OLLAMA_LOG", DEFAULTS.ollama_log, str,
             "Ollama's server log: auto, a file, journald[:UNIT], podman:NAME, docker:NAME, or off")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be more than 0 seconds")
    return CollectorSettings(host=args.host, port=args.port, ollama=args.ollama, interval_s=args.interval, sysfs_root=args.sysfs_root,
                             ollama_log=args.ollama_log)


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    settings = settings_from(argv)
    telemetry = setup_telemetry("hw-collector", settings.instance_id)
    sampler = Sampler(default_sources(settings), settings.interval_s)
    try:
        serve(create_app(sampler, telemetry), settings.host, settings.port)
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
