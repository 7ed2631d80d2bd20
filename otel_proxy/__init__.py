"""A transparent streaming proxy for Ollama that measures every request with OpenTelemetry."""

from otel_proxy.app import create_app
from otel_proxy.config import ProxySettings

__all__ = ["ProxySettings", "create_app"]
