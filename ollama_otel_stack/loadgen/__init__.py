"""A traffic generator for Ollama (through the proxy): realistic generate and chat requests."""
